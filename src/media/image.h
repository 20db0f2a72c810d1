// Still images: reading the I2V conditioning image (PNG or JPEG), writing PNG frames, and SkyReels-V1's
// crop-and-resize of the conditioning image.
//
//   sr::Tensor rgb = sr::load_image_rgb("cat.jpg");                // f32 [3,H,W] in [0,1]
//   sr::Tensor cond = sr::skyreels_resize_crop(rgb, 544, 960);     // f32 [3,544,960] in [-1,1]
//   sr::save_png("frame.png", rgb);
//
// Every decode error (missing, unreadable, truncated, corrupt, too large) is an sr::InputError naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace sr {

// Limits checked on the header's size before the pixels are allocated.
constexpr int64_t kMaxImageSide = 16384;
constexpr int64_t kMaxImagePixels = int64_t(1) << 28;     // 268 Mpixel, ~3 GiB as f32 RGB
constexpr int64_t kMaxImageFileBytes = int64_t(1) << 30;  // 1 GiB

// Decodes a PNG or JPEG (grey, grey+alpha, RGB, RGBA, palette; alpha dropped like PIL's convert("RGB"))
// into f32 [3,H,W] with values k/255, turned upright by its EXIF orientation as the reference's load_image
// does (media/exif_orientation.h). Reads the whole file first; the decoded size is checked against the
// limits above before any pixel buffer is allocated.
Tensor load_image_rgb(const std::string& path);
// The same from bytes in memory; `name` names the source in errors (used by the fuzz target).
Tensor decode_image_rgb(const uint8_t* data, size_t size, const std::string& name);

// Writes f32 [3,H,W] (values clamped to [0,1], scaled by 255 and rounded half to even) as 8-bit RGB PNG.
// An unwritable path is an InputError naming it.
void save_png(const std::string& path, const Tensor& rgb);

// SkyReels-V1's preparation of the I2V conditioning image, from an f32 [3,H,W] image in [0,1] (as
// load_image_rgb returns; values are requantized to 8 bits because the reference works on a uint8 PIL
// image) to the f32 [3, height - height % 8, width - width % 8] tensor in [-1,1] that the pipeline hands
// to vae.encode. See image.cpp for the exact steps and the reference code they reproduce.
Tensor skyreels_resize_crop(const Tensor& rgb, int64_t height, int64_t width);

}  // namespace sr
