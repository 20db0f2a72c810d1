// Still images: reading the I2V conditioning image exactly as the reference reads it, SkyReels-V1's
// crop-and-resize of it, and writing PNG frames.
//
//   sr::Image8 img = sr::load_image("cat.jpg");                    // upright 8-bit RGB, as PIL's load_image
//   sr::Tensor cond = sr::skyreels_resize_crop(img, 544, 960);     // f32 [3,544,960] in [-1,1]
//   sr::save_png("frame.png", rgb);                                // f32 [3,H,W] in [0,1]
//
// Only PNG (libpng) and JPEG (libjpeg-turbo) are read, told apart by their magic bytes before any decoder
// runs; every decode error (missing, not a regular file, another format, truncated, corrupt, too large) is
// an sr::InputError naming the file. docs/ARCHITECTURE.md says why these decoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/image8.h"
#include "core/tensor.h"

namespace sr {

// The limits an image's header is checked against before any pixel memory is taken. The side limit is the
// largest video side generate accepts, so any image that can condition a video is readable; the pixel limit
// keeps the decoded bytes (3 per pixel) under 192 MiB, above any camera's 50-megapixel photo.
constexpr int64_t kMaxImageSide = 16384;
constexpr int64_t kMaxImagePixels = int64_t(64) << 20;
constexpr int64_t kMaxImageFileBytes = int64_t(1) << 30;  // 1 GiB

// The file format its first bytes say: "PNG", "JPEG", or the name of a format we refuse ("GIF", "BMP", "WebP",
// "TIFF", "PNM", "Radiance HDR", "Softimage PIC", "PSD", "HEIF/AVIF", ...), or "" when unknown.
std::string sniff_image_format(const uint8_t* data, size_t size);

// PIL's load_image: Image.open, ImageOps.exif_transpose, convert("RGB") (alpha dropped, not composited;
// palettes expanded; 16-bit grey clamped to 255 and other 16-bit samples cut to their high byte, as PIL
// does). JPEG decodes with libjpeg-turbo at Pillow's settings: the accurate integer IDCT and fancy chroma
// upsampling. `name` names the source in errors.
Image8 decode_image(const uint8_t* data, size_t size, const std::string& name);
// The same from a file: refuses what is not a regular file (a FIFO, a folder) before reading it.
Image8 load_image(const std::string& path);

// f32 [3,H,W] with values k / 255 (diffusers' np.array(image).astype(np.float32) / 255).
Tensor image_to_tensor(const Image8& image);
Tensor load_image_rgb(const std::string& path);
Tensor decode_image_rgb(const uint8_t* data, size_t size, const std::string& name);

// f32 [3,H,W] in [0,1] -> 8-bit, rounding half to even like numpy's (x * 255).round() after a clamp.
Image8 image_from_tensor(const Tensor& rgb);

// Writes f32 [3,H,W] (values clamped to [0,1], scaled by 255 and rounded half to even) as an 8-bit RGB PNG:
// encoded in memory, written with checked calls. An unwritable path or a failed write (a full disk) is an
// InputError naming it. encode_png gives the file's bytes.
// `text`: key/value pairs written as iTXt chunks (UTF-8), e.g. the prompt and seed that made a frame.
using PngText = std::vector<std::pair<std::string, std::string>>;
std::vector<uint8_t> encode_png(const Image8& image, const PngText& text = {});
void save_png(const std::string& path, const Tensor& rgb);
void save_png(const std::string& path, const Image8& image, const PngText& text = {});

// SkyReels-V1's preparation of the I2V conditioning image (see image.cpp for the steps and the reference
// code they reproduce): a centre crop to the target's aspect ratio, PIL's LANCZOS resize to (height -
// height % 8) x (width - width % 8), then 2 * (x / 255) - 1. Returns f32 [3, H', W'] in [-1,1]. The crop and
// resize work on the 8-bit image, so a large photo costs no full-resolution float copy.
Tensor skyreels_resize_crop(const Image8& image, int64_t height, int64_t width);
// The same from an f32 [3,H,W] image in [0,1], requantized to 8 bits first (the reference holds a uint8 image).
Tensor skyreels_resize_crop(const Tensor& rgb, int64_t height, int64_t width);

}  // namespace sr
