// JPEG through libjpeg-turbo with the settings Pillow's JpegDecode uses (the reference's load_image): the
// accurate integer IDCT (JDCT_ISLOW) and fancy (smooth) chroma upsampling, colour converted by libjpeg to
// RGB; grey replicated; CMYK/YCCK read as Adobe-inverted CMYK ("CMYK;I") and turned into RGB with Pillow's
// cmyk2rgb. Any other decoder differs by a few levels of 255 on subsampled images. Errors leave libjpeg by
// longjmp, which must not cross C++ frames: all C++ objects live outside the setjmp-protected part.
#include <csetjmp>
#include <cstddef>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first
#include <cstring>
#include <vector>

// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

#include "core/error.h"
#include "media/image_codecs.h"

namespace sr::detail {
namespace {

struct JpegError {
    jpeg_error_mgr mgr;  // first: libjpeg hands back a pointer to it
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void on_jpeg_error(j_common_ptr cinfo) {
    auto* e = reinterpret_cast<JpegError*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, e->message);
    std::longjmp(e->jump, 1);
}

// libjpeg recovers from missing data by padding with grey and says so in a warning; Pillow reports such a
// file as truncated, and a video conditioned on invented pixels is the silent wrong output we refuse. Other
// warnings (extraneous bytes between markers, which real cameras write) decode the same in Pillow: ignored.
void on_jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    const int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) on_jpeg_error(cinfo);
}

// Pillow 9.4 Convert.c cmyk2rgb on the inverted samples: (255 - k) scaled by (255 - c) / 255, rounded.
uint8_t cmyk_channel(unsigned c, unsigned k) {
    const unsigned nk = 255 - k;
    const unsigned t = c * nk + 128;
    const int v = int(nk) - int(((t >> 8) + t) >> 8);
    return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

Image8 decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
    Image8 out;
    std::vector<uint8_t> row;  // one decoded scanline (grey: 1, RGB: 3, CMYK: 4 samples per pixel)
    jpeg_decompress_struct cinfo{};
    JpegError err{};
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = on_jpeg_error;
    err.mgr.emit_message = on_jpeg_message;
    enum class Outcome { Ok, LibjpegError, TooLarge, Unsupported };
    volatile Outcome outcome = Outcome::Ok;  // volatile: these are read after a longjmp
    volatile int64_t width = 0, height = 0;
    volatile int components = 0;
    jpeg_create_decompress(&cinfo);
    if (setjmp(err.jump)) {
        outcome = Outcome::LibjpegError;
    } else {
        jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
        jpeg_read_header(&cinfo, TRUE);
        width = int64_t(cinfo.image_width);
        height = int64_t(cinfo.image_height);
        components = cinfo.num_components;
        if (width < 1 || height < 1 || width > kMaxImageSide || height > kMaxImageSide ||
            width * height > kMaxImagePixels) {
            outcome = Outcome::TooLarge;  // before libjpeg allocates the image (progressive: all coefficients)
        } else if (cinfo.jpeg_color_space == JCS_GRAYSCALE) {
            cinfo.out_color_space = JCS_GRAYSCALE;
        } else if (cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_RGB) {
            cinfo.out_color_space = JCS_RGB;
        } else if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
            cinfo.out_color_space = JCS_CMYK;
        } else {
            outcome = Outcome::Unsupported;  // 2-component or unknown colour spaces: Pillow refuses them too
        }
        if (outcome == Outcome::Ok) {
            cinfo.dct_method = JDCT_ISLOW;
            cinfo.do_fancy_upsampling = TRUE;
            jpeg_start_decompress(&cinfo);
            const int n = cinfo.output_components;
            out.width = width, out.height = height;
            out.rgb.resize(size_t(width * height * 3));
            row.resize(size_t(width) * size_t(n));
            while (cinfo.output_scanline < cinfo.output_height) {
                const int64_t y = int64_t(cinfo.output_scanline);
                JSAMPROW rows[1] = {row.data()};
                jpeg_read_scanlines(&cinfo, rows, 1);
                uint8_t* dst = &out.rgb[size_t(y * width * 3)];
                for (int64_t x = 0; x < width; ++x) {
                    const uint8_t* s = &row[size_t(x * n)];
                    if (n == 1) {
                        dst[x * 3] = dst[x * 3 + 1] = dst[x * 3 + 2] = s[0];
                    } else if (n == 3) {
                        dst[x * 3] = s[0], dst[x * 3 + 1] = s[1], dst[x * 3 + 2] = s[2];
                    } else {  // Adobe CMYK is stored inverted; Pillow's "CMYK;I" undoes that before cmyk2rgb
                        const unsigned k = 255u - s[3];
                        for (int c = 0; c < 3; ++c) dst[x * 3 + c] = cmyk_channel(255u - s[c], k);
                    }
                }
            }
            jpeg_finish_decompress(&cinfo);
        }
    }
    jpeg_destroy_decompress(&cinfo);
    switch (outcome) {
        case Outcome::Ok:
            return out;
        case Outcome::TooLarge:
            check_image_size(width, height, name);  // throws, naming the limit
            break;
        case Outcome::Unsupported:
            SR_THROW("image '{}': a JPEG with {} colour components, which is not read (grey, RGB or CMYK only)", name,
                     components);
        case Outcome::LibjpegError:
            break;
    }
    SR_THROW("image '{}': corrupt or truncated JPEG ({})", name, err.message);
}

}  // namespace sr::detail
