#include "server/image_header.h"

#include <fmt/format.h>

#include <cstring>

#include "media/image.h"
#include "server/api_error.h"

namespace sr::server {

namespace {

uint32_t be32(const unsigned char* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}
uint32_t be16(const unsigned char* p) {
    return uint32_t(p[0]) << 8 | uint32_t(p[1]);
}

// The size in a JPEG's first SOFn segment: markers are walked by their lengths, each checked against the
// bytes that remain.
bool jpeg_size(const unsigned char* d, size_t n, int64_t& w, int64_t& h) {
    size_t i = 2;  // after SOI
    while (i + 4 <= n) {
        if (d[i] != 0xFF) return false;
        const unsigned char marker = d[i + 1];
        if (marker == 0xFF) {  // fill byte
            ++i;
            continue;
        }
        if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {  // no length
            i += 2;
            continue;
        }
        const size_t len = be16(d + i + 2);
        if (len < 2 || i + 2 + len > n) return false;
        const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
        if (sof) {
            if (len < 7) return false;
            h = be16(d + i + 5);
            w = be16(d + i + 7);
            return true;
        }
        if (marker == 0xDA || marker == 0xD9) return false;  // scan data or the end before any frame header
        i += 2 + len;
    }
    return false;
}

}  // namespace

ImageHeader read_image_header(std::string_view bytes, const std::string& param) {
    const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
    const size_t n = bytes.size();
    const std::string format = sniff_image_format(d, n);
    ImageHeader h;
    if (format == "PNG") {
        h.format = "png";
        if (n < 33 || std::memcmp(d + 12, "IHDR", 4) != 0)
            throw ApiError::bad_request(param, fmt::format("{}: a truncated PNG (no IHDR chunk)", param),
                                        "invalid_image");
        h.width = be32(d + 16);
        h.height = be32(d + 20);
    } else if (format == "JPEG") {
        h.format = "jpeg";
        if (!jpeg_size(d, n, h.width, h.height))
            throw ApiError::bad_request(
                param, fmt::format("{}: a truncated or malformed JPEG (no frame header)", param), "invalid_image");
    } else {
        throw ApiError::bad_request(param,
                                    fmt::format("{}: {} images are not accepted: send a PNG or JPEG", param,
                                                format.empty() ? std::string("unrecognized") : format),
                                    "invalid_image");
    }
    if (h.width < 1 || h.height < 1 || h.width > kMaxUploadSide || h.height > kMaxUploadSide)
        throw ApiError::bad_request(param,
                                    fmt::format("{}: the image is {}x{} pixels; each side must be 1..{}", param,
                                                h.width, h.height, kMaxUploadSide),
                                    "invalid_image");
    return h;
}

}  // namespace sr::server
