// PNG through libpng, with the pixel semantics of Pillow's PngImagePlugin + convert("RGB") (Pillow 9.4's
// _MODES table): no gamma, colour-management or background transforms; grey of 1, 2 and 4 bits scaled to
// 0..255; palettes expanded (tRNS ignored); alpha dropped; 16-bit grey opened as mode "I" and clamped to
// 255; other 16-bit samples reduced to their high byte. Every libpng call runs under one setjmp: libpng
// reports errors by longjmp, which must not cross C++ frames, so all C++ objects live outside it.
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "media/image_codecs.h"

namespace sr::detail {
namespace {

// libpng's error message, kept for the InputError thrown once libpng's frames are gone.
struct PngError {
    char message[256] = {};
};

// Everything the setjmp-protected code touches, created before setjmp so a longjmp skips no destructor.
struct PngReadState {
    const uint8_t* data = nullptr;
    size_t size = 0, pos = 0;
    PngError error;
};

void on_png_error(png_structp png, png_const_charp msg) {
    auto* e = static_cast<PngError*>(png_get_error_ptr(png));
    std::snprintf(e->message, sizeof(e->message), "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}  // benign (e.g. a bad ancillary chunk CRC): ignored

void read_from_memory(png_structp png, png_bytep out, png_size_t n) {
    auto* st = static_cast<PngReadState*>(png_get_io_ptr(png));
    if (n > st->size - st->pos) png_error(png, "the file is truncated");
    std::memcpy(out, st->data + st->pos, n);
    st->pos += n;
}

// One decoded row (as libpng gives it after png_set_packing: one byte per sample below 8 bits, two
// big-endian bytes per 16-bit sample) into RGB8, as Pillow's unpackers and convert("RGB") would.
void row_to_rgb(const uint8_t* in, uint8_t* out, int64_t width, int color_type, int bit_depth, const png_color* palette,
                int palette_size) {
    const bool wide = bit_depth == 16;
    const int64_t step = wide ? 2 : 1;
    auto sample = [&](int64_t i) -> uint8_t { return in[i * step]; };  // the high byte of a 16-bit sample
    switch (color_type) {
        case PNG_COLOR_TYPE_GRAY:
            for (int64_t x = 0; x < width; ++x) {
                uint8_t v;
                if (wide) {
                    const unsigned full = unsigned(in[x * 2]) << 8 | in[x * 2 + 1];
                    v = uint8_t(std::min(full, 255u));  // mode "I" -> RGB clamps: nearly every pixel is white
                } else {
                    v = uint8_t(in[x] * (bit_depth == 1 ? 255 : bit_depth == 2 ? 85 : bit_depth == 4 ? 17 : 1));
                }
                out[x * 3] = out[x * 3 + 1] = out[x * 3 + 2] = v;
            }
            break;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            for (int64_t x = 0; x < width; ++x) out[x * 3] = out[x * 3 + 1] = out[x * 3 + 2] = sample(x * 2);
            break;
        case PNG_COLOR_TYPE_RGB:
            for (int64_t x = 0; x < width * 3; ++x) out[x] = sample(x);
            break;
        case PNG_COLOR_TYPE_RGB_ALPHA:
            for (int64_t x = 0; x < width; ++x)
                for (int c = 0; c < 3; ++c) out[x * 3 + c] = sample(x * 4 + c);
            break;
        case PNG_COLOR_TYPE_PALETTE:
            for (int64_t x = 0; x < width; ++x) {
                // Pillow's palette has 256 entries; those the file does not give keep their initial grey ramp (i,i,i).
                const int i = in[x];
                const png_color c = i < palette_size ? palette[i] : png_color{uint8_t(i), uint8_t(i), uint8_t(i)};
                out[x * 3] = c.red, out[x * 3 + 1] = c.green, out[x * 3 + 2] = c.blue;
            }
            break;
        default:
            break;
    }
}

}  // namespace

Image8 decode_png(const uint8_t* data, size_t size, const std::string& name) {
    // IHDR sits at a fixed place: check the size before libpng allocates anything for the pixels.
    SR_THROW_IF(size < 33 || std::memcmp(data + 12, "IHDR", 4) != 0, "image '{}': not a valid PNG (no IHDR)", name);
    auto be32 = [&](size_t o) {
        return int64_t(data[o]) << 24 | int64_t(data[o + 1]) << 16 | int64_t(data[o + 2]) << 8 | int64_t(data[o + 3]);
    };
    check_image_size(be32(16), be32(20), name);

    Image8 out;
    std::vector<uint8_t> raw;     // interlaced images: the whole decoded image
    std::vector<png_bytep> rows;  // pointers into raw
    std::vector<uint8_t> row;     // progressive (non-interlaced) images: one row
    std::vector<png_color> palette(256);
    PngReadState st;
    st.data = data, st.size = size;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st.error, on_png_error, on_png_warning);
    SR_THROW_IF(!png, "image '{}': libpng could not start", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, nullptr, nullptr);
        SR_THROW("image '{}': libpng could not start", name);
    }
    volatile bool failed = false;  // volatile: read after a longjmp
    int64_t width = 0, height = 0;
    if (setjmp(png_jmpbuf(png))) {
        failed = true;
    } else {
        png_set_read_fn(png, &st, read_from_memory);
        // Pillow checks the CRC of every chunk it reads; libpng's default (error on critical chunks, warn and
        // skip ancillary ones) refuses the same broken files that matter for the pixels.
        png_set_user_limits(png, uint32_t(kMaxImageSide), uint32_t(kMaxImageSide));
        png_read_info(png, info);
        png_uint_32 w = 0, h = 0;
        int bit_depth = 0, color_type = 0, interlace = 0;
        png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, nullptr, nullptr);
        width = int64_t(w), height = int64_t(h);
        int palette_size = 0;
        if (color_type == PNG_COLOR_TYPE_PALETTE) {
            png_colorp p = nullptr;
            if (png_get_PLTE(png, info, &p, &palette_size) == 0) png_error(png, "a palette image without a palette");
            std::copy_n(p, std::min(palette_size, 256), palette.begin());
        }
        if (bit_depth < 8) png_set_packing(png);  // one sample per byte, unscaled
        const int passes = png_set_interlace_handling(png);
        png_read_update_info(png, info);
        const size_t rowbytes = png_get_rowbytes(png, info);
        out.width = width, out.height = height;
        out.rgb.resize(size_t(width * height * 3));
        if (passes > 1) {
            raw.resize(rowbytes * size_t(height));
            rows.resize(size_t(height));
            for (int64_t y = 0; y < height; ++y) rows[size_t(y)] = raw.data() + size_t(y) * rowbytes;
            png_read_image(png, rows.data());
            for (int64_t y = 0; y < height; ++y)
                row_to_rgb(rows[size_t(y)], &out.rgb[size_t(y * width * 3)], width, color_type, bit_depth,
                           palette.data(), palette_size);
        } else {
            row.resize(rowbytes);
            for (int64_t y = 0; y < height; ++y) {
                png_read_row(png, row.data(), nullptr);
                row_to_rgb(row.data(), &out.rgb[size_t(y * width * 3)], width, color_type, bit_depth, palette.data(),
                           palette_size);
            }
        }
        // Every row decoded is the whole image; like Pillow, what follows it (even a missing IEND) is not read.
    }
    png_destroy_read_struct(&png, &info, nullptr);
    if (failed) SR_THROW("image '{}': corrupt or truncated PNG ({})", name, st.error.message);
    return out;
}

namespace {

struct PngWriteState {
    std::vector<uint8_t>* out = nullptr;
    PngError error;
};

void write_to_memory(png_structp png, png_bytep p, png_size_t n) {
    auto* st = static_cast<PngWriteState*>(png_get_io_ptr(png));
    st->out->insert(st->out->end(), p, p + n);  // bad_alloc cannot cross libpng: the size is reserved first
}

void flush_nothing(png_structp) {}

}  // namespace

namespace {

// The libpng write, alone in its frame: setjmp's frame must hold no C++ object a longjmp would skip.
bool write_png(png_structp png, png_infop info, PngWriteState* st, const Image8& image, png_text* chunks, int n_chunks,
               png_bytepp rows) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_write_fn(png, st, write_to_memory, flush_nothing);
    png_set_IHDR(png, info, png_uint_32(image.width), png_uint_32(image.height), 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 3);  // frames are many and large: fast, still much smaller than raw
    if (n_chunks > 0) png_set_text(png, info, chunks, n_chunks);
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
    return true;
}

}  // namespace

std::vector<uint8_t> encode_png_rgb8(const Image8& image, const PngText& text) {
    SR_ASSERT(image.width >= 1 && image.height >= 1 && image.rgb.size() == size_t(image.width * image.height * 3),
              "encode_png: {}x{} image with {} bytes", image.width, image.height, image.rgb.size());
    std::vector<uint8_t> bytes;
    // The worst case (stored deflate blocks, a filter byte per row, 12 bytes per 8 KiB IDAT chunk) plus the
    // text, so write_to_memory does not reallocate inside libpng.
    size_t text_bytes = 0;
    for (const auto& kv : text) text_bytes += kv.first.size() + kv.second.size() + 32;
    bytes.reserve(image.rgb.size() + size_t(image.height) + image.rgb.size() / 64 + text_bytes + 4096);
    std::vector<png_bytep> rows(size_t(image.height));
    for (int64_t y = 0; y < image.height; ++y)
        rows[size_t(y)] = const_cast<png_bytep>(&image.rgb[size_t(y * image.width * 3)]);
    // tEXt chunks for ASCII values, iTXt (UTF-8) for the others (a CJK prompt); keys are 1..79 Latin-1
    // characters (PNG spec), cut to that.
    std::vector<std::string> keys;
    for (const auto& kv : text) keys.push_back(kv.first.substr(0, 79));
    std::vector<png_text> chunks(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        const std::string& v = text[i].second;
        const bool ascii = std::all_of(v.begin(), v.end(), [](char c) { return (unsigned char)c < 0x80; });
        chunks[i].compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        chunks[i].key = const_cast<char*>(keys[i].c_str());
        chunks[i].text = const_cast<char*>(v.c_str());
        (ascii ? chunks[i].text_length : chunks[i].itxt_length) = v.size();
    }
    PngWriteState st;
    st.out = &bytes;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &st.error, on_png_error, on_png_warning);
    SR_THROW_IF(!png, "libpng could not start");
    png_infop info = png_create_info_struct(png);
    const bool ok = info && write_png(png, info, &st, image, chunks.data(), int(chunks.size()), rows.data());
    png_destroy_write_struct(&png, info ? &info : nullptr);
    SR_THROW_IF(!ok, "encoding a PNG failed ({})", st.error.message);
    return bytes;
}

}  // namespace sr::detail
