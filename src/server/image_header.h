// An uploaded image's type and size read from its first bytes, before any decoder sees it: the server takes
// PNG and JPEG only, at most kMaxUploadSide pixels a side, and refuses anything else without decoding it.
//
//   sr::server::ImageHeader h = sr::server::read_image_header(bytes);   // ApiError 400 on input_reference
//   // h.format "png", h.width, h.height
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sr::server {

constexpr int64_t kMaxUploadSide = 4096;

struct ImageHeader {
    std::string format;  // "png" or "jpeg"
    int64_t width = 0, height = 0;
};

// PNG: the IHDR chunk; JPEG: the first start-of-frame marker. ApiError 400 (param `param`) for another
// format, a truncated or malformed header, a zero size or a side over kMaxUploadSide.
ImageHeader read_image_header(std::string_view bytes, const std::string& param = "input_reference");

}  // namespace sr::server
