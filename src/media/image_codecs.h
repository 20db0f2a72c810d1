// The decoders and the encoder behind media/image.h (internal to skyreels_media). Each decoder reads the
// header, calls check_image_size before taking any pixel memory, and returns the image as stored (EXIF
// orientation is applied by the caller). Errors are sr::InputError naming `name`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "media/image.h"

namespace sr::detail {

// Throws unless 1 <= width, height <= kMaxImageSide and width * height <= kMaxImagePixels.
void check_image_size(int64_t width, int64_t height, const std::string& name);

Image8 decode_png(const uint8_t* data, size_t size, const std::string& name);   // libpng
Image8 decode_jpeg(const uint8_t* data, size_t size, const std::string& name);  // libjpeg-turbo

std::vector<uint8_t> encode_png_rgb8(const Image8& image, const PngText& text);  // libpng, to memory

}  // namespace sr::detail
