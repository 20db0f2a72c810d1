#include "media/exif_orientation.h"

#include <cstring>
#include <string_view>

namespace sr {

namespace {

// A TIFF block (the EXIF payload): its byte order, and bounds-checked reads.
struct Tiff {
    const uint8_t* p;
    size_t n;
    bool little;
    bool has(size_t off, size_t len) const { return off <= n && len <= n - off; }
    uint32_t u16(size_t off) const {
        return little ? uint32_t(p[off]) | uint32_t(p[off + 1]) << 8 : uint32_t(p[off]) << 8 | uint32_t(p[off + 1]);
    }
    uint32_t u32(size_t off) const { return little ? u16(off) | u16(off + 2) << 16 : u16(off) << 16 | u16(off + 2); }
};

int orientation_in_tiff(const uint8_t* p, size_t n) {
    if (n >= 6 && std::memcmp(p, "Exif\0\0", 6) == 0) p += 6, n -= 6;  // some PNG writers keep the JPEG prefix
    if (n < 8) return 1;
    Tiff t{p, n, false};
    if (p[0] == 'I' && p[1] == 'I') {
        t.little = true;
    } else if (!(p[0] == 'M' && p[1] == 'M')) {
        return 1;
    }
    if (t.u16(2) != 42) return 1;
    const size_t ifd = t.u32(4);
    if (!t.has(ifd, 2)) return 1;
    const size_t entries = t.u16(ifd);
    for (size_t i = 0; i < entries; ++i) {
        const size_t e = ifd + 2 + 12 * i;
        if (!t.has(e, 12)) return 1;
        if (t.u16(e) != 0x0112) continue;
        // SHORT (type 3), count 1: the value sits in the first two bytes of the value field.
        if (t.u16(e + 2) != 3 || t.u32(e + 4) != 1) return 1;
        const uint32_t v = t.u16(e + 8);
        return v >= 1 && v <= 8 ? int(v) : 1;
    }
    return 1;
}

uint32_t be32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

int jpeg_orientation(const uint8_t* d, size_t n) {
    size_t i = 2;  // after SOI
    while (i + 4 <= n) {
        if (d[i] != 0xFF) return 1;
        const uint8_t marker = d[i + 1];
        if (marker == 0xFF) {  // fill byte
            ++i;
            continue;
        }
        if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
            i += 2;
            continue;
        }
        if (marker == 0xDA || marker == 0xD9) return 1;  // image data: the metadata segments are over
        const size_t len = size_t(d[i + 2]) << 8 | d[i + 3];
        if (len < 2 || i + 2 + len > n) return 1;
        if (marker == 0xE1 && len >= 2 + 6 && std::memcmp(d + i + 4, "Exif\0\0", 6) == 0)
            return orientation_in_tiff(d + i + 4 + 6, len - 2 - 6);
        i += 2 + len;
    }
    return 1;
}

int png_orientation(const uint8_t* d, size_t n) {
    size_t i = 8;  // after the signature
    while (i + 12 <= n) {
        const size_t len = be32(d + i);
        if (len > n - i - 12) return 1;
        const std::string_view type(reinterpret_cast<const char*>(d + i + 4), 4);
        if (type == "eXIf") return orientation_in_tiff(d + i + 8, len);
        if (type == "IEND") return 1;
        i += 12 + len;
    }
    return 1;
}

}  // namespace

int exif_orientation(const uint8_t* data, size_t size) {
    static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return png_orientation(data, size);
    if (size >= 4 && data[0] == 0xFF && data[1] == 0xD8) return jpeg_orientation(data, size);
    return 1;
}

Image8 apply_exif_orientation(Image8 img, int o) {
    if (o < 2 || o > 8) return img;
    const int64_t H = img.height, W = img.width;
    const bool swaps = o >= 5;  // transpose, rotations by 90 and transverse exchange height and width
    Image8 out;
    out.height = swaps ? W : H, out.width = swaps ? H : W;
    out.rgb.resize(img.rgb.size());
    for (int64_t y = 0; y < out.height; ++y)
        for (int64_t x = 0; x < out.width; ++x) {
            int64_t sy = y, sx = x;  // the source pixel of output (y, x), PIL's Image.transpose methods
            switch (o) {
                case 2:
                    sx = W - 1 - x;
                    break;  // FLIP_LEFT_RIGHT
                case 3:
                    sy = H - 1 - y, sx = W - 1 - x;
                    break;  // ROTATE_180
                case 4:
                    sy = H - 1 - y;
                    break;  // FLIP_TOP_BOTTOM
                case 5:
                    sy = x, sx = y;
                    break;  // TRANSPOSE
                case 6:
                    sy = H - 1 - x, sx = y;
                    break;  // ROTATE_270 (90 clockwise)
                case 7:
                    sy = H - 1 - x, sx = W - 1 - y;
                    break;  // TRANSVERSE
                case 8:
                    sy = x, sx = W - 1 - y;
                    break;  // ROTATE_90 (90 counter-clockwise)
            }
            std::memcpy(&out.rgb[size_t((y * out.width + x) * 3)], &img.rgb[size_t((sy * W + sx) * 3)], 3);
        }
    return out;
}

}  // namespace sr
