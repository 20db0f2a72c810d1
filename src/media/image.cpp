#include "media/image.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "media/exif_orientation.h"
#include "media/image_codecs.h"
#include "media/pil_resample.h"

namespace sr {
namespace {

// Host f32 contiguous [3,H,W], or an InputError naming `what`.
Tensor as_rgb_f32(const Tensor& rgb, const char* what) {
    SR_THROW_IF(!rgb.defined(), "{}: undefined tensor", what);
    SR_THROW_IF(rgb.rank() != 3 || rgb.dim(0) != 3, "{}: expected an RGB image [3,H,W], got {}", what, rgb.describe());
    SR_THROW_IF(!dtype_is_float(rgb.dtype()), "{}: expected a float image, got {}", what, rgb.describe());
    SR_THROW_IF(rgb.dim(1) < 1 || rgb.dim(2) < 1, "{}: empty image {}", what, rgb.describe());
    Tensor t = rgb.dtype() == DType::F32 ? rgb.contiguous() : rgb.to(DType::F32);
    return t;
}

// [0,1] float -> 8 bits exactly like numpy's (x * 255).round().astype(uint8) after a clamp: rounding half
// to even (nearbyint in the default rounding mode). NaN becomes 0.
uint8_t to_u8(float v) {
    if (!(v > 0.0f)) return 0;
    if (v >= 1.0f) return 255;
    return uint8_t(std::nearbyint(v * 255.0f));
}

// Planar f32 [3,H,W] in [0,1] -> interleaved RGB bytes.
std::vector<uint8_t> to_interleaved_u8(const Tensor& rgb) {
    const int64_t h = rgb.dim(1), w = rgb.dim(2), plane = h * w;
    const float* src = rgb.data<float>();
    std::vector<uint8_t> out(size_t(plane * 3));
    for (int64_t i = 0; i < plane; ++i)
        for (int c = 0; c < 3; ++c) out[size_t(i * 3 + c)] = to_u8(src[c * plane + i]);
    return out;
}

// Python's round() on the half-integers and integers that resizecrop's box holds: half to even.
int64_t round_half_even(double v) {
    return int64_t(std::nearbyint(v));
}

// Writes `bytes` to `path` with checked calls (core/files.h write_all: a full disk is an error, not a short
// file); on failure the file is removed.
void write_file_checked(const std::string& path, const std::vector<uint8_t>& bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    SR_THROW_IF(fd < 0, "cannot create the file: {}", std::strerror(errno));
    const FileHandle file(fd);
    try {
        write_all(file.get(), bytes.data(), bytes.size(), path);
    } catch (...) {
        ::unlink(path.c_str());
        throw;
    }
}

}  // namespace

void detail::check_image_size(int64_t width, int64_t height, const std::string& name) {
    SR_THROW_IF(
        width < 1 || height < 1 || width > kMaxImageSide || height > kMaxImageSide || width * height > kMaxImagePixels,
        "image '{}': {}x{} (width x height) is outside the limits (each side 1..{}, at most {} pixels)", name, width,
        height, kMaxImageSide, kMaxImagePixels);
}

std::string sniff_image_format(const uint8_t* d, size_t n) {
    auto starts = [&](const char* magic, size_t len, size_t at = 0) {
        return n >= at + len && std::memcmp(d + at, magic, len) == 0;
    };
    if (starts("\x89PNG\r\n\x1a\n", 8)) return "PNG";
    if (starts("\xff\xd8\xff", 3)) return "JPEG";
    if (starts("GIF87a", 6) || starts("GIF89a", 6)) return "GIF";
    if (starts("BM", 2)) return "BMP";
    if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return "WebP";
    if (starts("II*\0", 4) || starts("MM\0*", 4)) return "TIFF";
    if (starts("#?RADIANCE", 10) || starts("#?RGBE", 6)) return "Radiance HDR";
    if (starts("\x53\x80\xf6\x34", 4)) return "Softimage PIC";
    if (starts("8BPS", 4)) return "PSD";
    if (starts("ftyp", 4, 4)) return "HEIF/AVIF";
    if (starts("qoif", 4)) return "QOI";
    if (starts("\0\0\0\x0cjP  ", 8) || starts("\xff\x4f\xff\x51", 4)) return "JPEG 2000";
    if (starts("\xff\x0a", 2)) return "JPEG XL";
    if (n >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7') return "PNM";
    if (n >= 3 && d[0] == 0 && (d[2] == 2 || d[2] == 10) && d[1] <= 1) return "TGA";
    return "";
}

Image8 decode_image(const uint8_t* data, size_t size, const std::string& name) {
    SR_THROW_IF(size == 0, "image '{}': empty file", name);
    SR_THROW_IF(int64_t(size) > kMaxImageFileBytes, "image '{}': {} bytes, more than the limit of {}", name, size,
                kMaxImageFileBytes);
    // The format from the magic bytes, before any decoder sees the data: only the two decoders we trust run.
    const std::string format = sniff_image_format(data, size);
    Image8 img;
    if (format == "PNG") {
        img = detail::decode_png(data, size, name);
    } else if (format == "JPEG") {
        img = detail::decode_jpeg(data, size, name);
    } else if (format.empty()) {
        SR_THROW("image '{}': not a PNG or JPEG file (unrecognised content)", name);
    } else {
        SR_THROW("image '{}': a {} file; only PNG and JPEG images are read (convert it first)", name, format);
    }
    // Upright, as diffusers' load_image makes it (PIL.ImageOps.exif_transpose).
    return apply_exif_orientation(std::move(img), exif_orientation(data, size));
}

Image8 load_image(const std::string& path) {
    // core/files.h: a FIFO is refused as not a regular file without waiting for a writer; the size is checked
    // before anything is read.
    const std::string bytes = read_regular_file(path, size_t(kMaxImageFileBytes));
    return decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

Tensor image_to_tensor(const Image8& image) {
    Tensor out = Tensor::empty({3, image.height, image.width}, DType::F32, host_allocator(), "image");  // [3,H,W]
    float* dst = out.data<float>();
    const int64_t plane = image.width * image.height;
    // Same float32 values as diffusers' np.array(image).astype(np.float32) / 255.0.
    for (int64_t i = 0; i < plane; ++i)
        for (int c = 0; c < 3; ++c) dst[c * plane + i] = float(image.rgb[size_t(i * 3 + c)]) / 255.0f;
    return out;
}

Tensor load_image_rgb(const std::string& path) {
    return image_to_tensor(load_image(path));
}

Tensor decode_image_rgb(const uint8_t* data, size_t size, const std::string& name) {
    return image_to_tensor(decode_image(data, size, name));
}

Image8 image_from_tensor(const Tensor& rgb) {
    const Tensor t = as_rgb_f32(rgb, "image");
    Image8 img;
    img.height = t.dim(1), img.width = t.dim(2);
    img.rgb = to_interleaved_u8(t);
    return img;
}

std::vector<uint8_t> encode_png(const Image8& image, const PngText& text) {
    return detail::encode_png_rgb8(image, text);
}

void save_png(const std::string& path, const Tensor& rgb) {
    SR_WITH_CONTEXT("writing PNG '" + path + "'", {
        const Tensor t = as_rgb_f32(rgb, "save_png");
        SR_THROW_IF(t.dim(1) > kMaxImageSide || t.dim(2) > kMaxImageSide, "image {} larger than {} per side",
                    t.describe(), kMaxImageSide);
        write_file_checked(path, encode_png(image_from_tensor(t)));
    });
}

void save_png(const std::string& path, const Image8& image, const PngText& text) {
    SR_WITH_CONTEXT("writing PNG '" + path + "'", { write_file_checked(path, encode_png(image, text)); });
}

// SkyReels-V1 I2V conditioning image, step by step (refs: SkyReels-V1 skyreelsinfer/pipelines/
// pipeline_skyreels_video.py `resizecrop` and `__call__`; diffusers 0.32.2 VideoProcessor = VaeImageProcessor
// with vae_scale_factor=8 and its defaults resample="lanczos", do_resize=True, do_normalize=True):
//  0. video_generate.py: diffusers.utils.load_image(path) = PIL open, ImageOps.exif_transpose, convert("RGB").
//  1. resizecrop(image, th=height, tw=width), a center crop to the target aspect ratio, no scaling:
//       if h / w > th / tw: new_w = w, new_h = int(w * th / tw)   else: new_h = h, new_w = int(h * tw / th)
//       box = ((w - new_w) / 2, (h - new_h) / 2, (w + new_w) / 2, (h + new_h) / 2)
//     PIL's crop rounds each box coordinate with Python's round() (half to even), so an odd margin can make
//     the crop one pixel wider or narrower than new_w / new_h; reproduced here.
//  2. video_processor.preprocess(image, height, width): the target becomes (height - height % 8,
//     width - width % 8), the crop is stretched to exactly that with PIL Image.resize(..., LANCZOS)
//     (antialiased 3-lobe Lanczos on the uint8 image), then np.float32(x) / 255 and 2 * x - 1 -> [-1, 1].
// Pillow's decoders' settings and its Lanczos are reproduced integer for integer (media/png_codec.cpp,
// media/jpeg_decoder.cpp, media/pil_resample.h), so the result equals the reference's byte for byte; the
// fixture test (tests/test_image_fixtures.cpp) checks that on every case it finds.
Tensor skyreels_resize_crop(const Image8& image, int64_t height, int64_t width) {
    SR_THROW_IF(height < 8 || width < 8 || height > kMaxImageSide || width > kMaxImageSide,
                "skyreels_resize_crop: target {}x{} (height x width) outside 8..{}", height, width, kMaxImageSide);
    SR_THROW_IF(image.width < 1 || image.height < 1 || image.width > kMaxImageSide || image.height > kMaxImageSide,
                "skyreels_resize_crop: image {}x{} (width x height) outside 1..{} per side", image.width, image.height,
                kMaxImageSide);
    const int64_t w = image.width, h = image.height;
    const int64_t th = height, tw = width;

    // Step 1 (Python true division on ints: exact products, one correctly rounded division).
    int64_t new_w, new_h;
    if (double(h) / double(w) > double(th) / double(tw)) {
        new_w = w;
        new_h = int64_t(double(new_w * th) / double(tw));
    } else {
        new_h = h;
        new_w = int64_t(double(new_h * tw) / double(th));
    }
    const int64_t x0 = round_half_even(double(w - new_w) / 2), y0 = round_half_even(double(h - new_h) / 2);
    const int64_t x1 = round_half_even(double(w + new_w) / 2), y1 = round_half_even(double(h + new_h) / 2);
    SR_THROW_IF(x1 <= x0 || y1 <= y0, "skyreels_resize_crop: a {}x{} image crops to nothing for {}x{}", w, h, height,
                width);

    // The crop (8-bit, as PIL holds it); PIL fills what lies outside the image with 0.
    Image8 crop;
    crop.width = x1 - x0, crop.height = y1 - y0;
    crop.rgb.assign(size_t(crop.width * crop.height * 3), 0);
    for (int64_t y = std::max<int64_t>(y0, 0); y < std::min(y1, h); ++y) {
        const int64_t xa = std::max<int64_t>(x0, 0), xb = std::min(x1, w);
        if (xb > xa)
            std::copy_n(&image.rgb[size_t((y * w + xa) * 3)], size_t((xb - xa) * 3),
                        &crop.rgb[size_t(((y - y0) * crop.width + (xa - x0)) * 3)]);
    }

    // Step 2.
    const int64_t out_h = height - height % 8, out_w = width - width % 8;
    const Image8 resized = pil_resize_lanczos(crop, out_w, out_h);
    Tensor out = Tensor::empty({3, out_h, out_w}, DType::F32, host_allocator(), "conditioning image");
    float* dst = out.data<float>();
    const int64_t plane = out_h * out_w;
    for (int64_t i = 0; i < plane; ++i)
        for (int c = 0; c < 3; ++c) dst[c * plane + i] = 2.0f * (float(resized.rgb[size_t(i * 3 + c)]) / 255.0f) - 1.0f;
    return out;
}

Tensor skyreels_resize_crop(const Tensor& rgb, int64_t height, int64_t width) {
    const Tensor t = as_rgb_f32(rgb, "skyreels_resize_crop");
    SR_THROW_IF(t.dim(1) > kMaxImageSide || t.dim(2) > kMaxImageSide, "skyreels_resize_crop: image {} too large",
                t.describe());
    return skyreels_resize_crop(image_from_tensor(t), height, width);
}

}  // namespace sr
