#include "media/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "media/exif_orientation.h"

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

// ---- Pillow's resampling (src/libImaging/Resample.c, Pillow 7-11), reproduced for 8-bit RGB ----------------
// Pillow resizes a uint8 image in two separable passes (horizontal first, only the rows the vertical pass
// needs), with double-precision filter weights normalized per output pixel, converted to fixed point with
// 22 fractional bits, and rounded and clipped to uint8 between the passes. Doing the same integer arithmetic
// gives the same bytes; the only platform dependence is libm's sin() in the weights.
constexpr int kPrecisionBits = 32 - 8 - 2;

double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return std::sin(x) / x;
}

double lanczos3(double x) {
    return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
}

struct Coeffs {
    int ksize = 0;
    std::vector<int> bounds;     // per output pixel: first input pixel, number of input pixels
    std::vector<int32_t> fixed;  // per output pixel: ksize weights in fixed point
};

Coeffs precompute_lanczos(int in_size, float in0, float in1, int out_size) {
    constexpr double kSupport = 3.0;
    double scale = double(in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = kSupport * filterscale;
    Coeffs c;
    c.ksize = int(std::ceil(support)) * 2 + 1;
    c.bounds.resize(size_t(out_size) * 2);
    c.fixed.assign(size_t(out_size) * size_t(c.ksize), 0);
    std::vector<double> k(size_t(c.ksize));
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = int(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = int(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        std::fill(k.begin(), k.end(), 0.0);
        for (int x = 0; x < xmax; ++x) {
            const double w = lanczos3((x + xmin - center + 0.5) * ss);
            k[size_t(x)] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x)
            if (ww != 0.0) k[size_t(x)] /= ww;
        for (int x = 0; x < c.ksize; ++x) {
            const double v = k[size_t(x)] * (1 << kPrecisionBits);
            c.fixed[size_t(xx) * size_t(c.ksize) + size_t(x)] = int32_t(v < 0 ? -0.5 + v : 0.5 + v);
        }
        c.bounds[size_t(xx) * 2] = xmin;
        c.bounds[size_t(xx) * 2 + 1] = xmax;
    }
    return c;
}

uint8_t clip8(int64_t v) {
    if (v >= (int64_t(1) << kPrecisionBits << 8)) return 255;
    if (v <= 0) return 0;
    return uint8_t(v >> kPrecisionBits);
}

// Interleaved RGB8 image.
struct Rgb8 {
    int w = 0, h = 0;
    std::vector<uint8_t> px;
    uint8_t* at(int x, int y) { return &px[(size_t(y) * size_t(w) + size_t(x)) * 3]; }
    const uint8_t* at(int x, int y) const { return &px[(size_t(y) * size_t(w) + size_t(x)) * 3]; }
};

// PIL's Image.resize((out_w, out_h), Image.LANCZOS) with the default box (the whole image).
Rgb8 pil_resize_lanczos(const Rgb8& in, int out_w, int out_h) {
    const bool need_h = out_w != in.w;
    const bool need_v = out_h != in.h;
    Coeffs horiz = precompute_lanczos(in.w, 0.0f, float(in.w), out_w);
    Coeffs vert = precompute_lanczos(in.h, 0.0f, float(in.h), out_h);
    const int y_first = vert.bounds[0];
    const int y_last = vert.bounds[size_t(out_h) * 2 - 2] + vert.bounds[size_t(out_h) * 2 - 1];

    Rgb8 cur = in;
    if (need_h) {
        for (int i = 0; i < out_h; ++i) vert.bounds[size_t(i) * 2] -= y_first;
        Rgb8 tmp{out_w, y_last - y_first, {}};
        tmp.px.resize(size_t(tmp.w) * size_t(tmp.h) * 3);
        for (int yy = 0; yy < tmp.h; ++yy)
            for (int xx = 0; xx < out_w; ++xx) {
                const int xmin = horiz.bounds[size_t(xx) * 2], xn = horiz.bounds[size_t(xx) * 2 + 1];
                const int32_t* k = &horiz.fixed[size_t(xx) * size_t(horiz.ksize)];
                for (int c = 0; c < 3; ++c) {
                    int64_t ss = int64_t(1) << (kPrecisionBits - 1);
                    for (int x = 0; x < xn; ++x) ss += int64_t(in.at(x + xmin, yy + y_first)[c]) * k[x];
                    tmp.at(xx, yy)[c] = clip8(ss);
                }
            }
        cur = std::move(tmp);
    }
    if (need_v) {
        Rgb8 out{out_w, out_h, {}};
        out.px.resize(size_t(out_w) * size_t(out_h) * 3);
        for (int yy = 0; yy < out_h; ++yy) {
            const int ymin = vert.bounds[size_t(yy) * 2], yn = vert.bounds[size_t(yy) * 2 + 1];
            const int32_t* k = &vert.fixed[size_t(yy) * size_t(vert.ksize)];
            for (int xx = 0; xx < out_w; ++xx)
                for (int c = 0; c < 3; ++c) {
                    int64_t ss = int64_t(1) << (kPrecisionBits - 1);
                    for (int y = 0; y < yn; ++y) ss += int64_t(cur.at(xx, y + ymin)[c]) * k[y];
                    out.at(xx, yy)[c] = clip8(ss);
                }
        }
        cur = std::move(out);
    }
    return cur;
}

// Python's round() on the half-integers and integers that resizecrop's box holds: half to even.
int64_t round_half_even(double v) {
    return int64_t(std::nearbyint(v));
}

}  // namespace

Tensor decode_image_rgb(const uint8_t* data, size_t size, const std::string& name) {
    SR_THROW_IF(size == 0, "image '{}': empty file", name);
    SR_THROW_IF(int64_t(size) > kMaxImageFileBytes, "image '{}': {} bytes, more than the limit of {}", name, size,
                kMaxImageFileBytes);
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(data, int(size), &w, &h, &comp))
        SR_THROW("image '{}': not a readable PNG or JPEG ({})", name, stbi_failure_reason());
    SR_THROW_IF(w < 1 || h < 1 || w > kMaxImageSide || h > kMaxImageSide || int64_t(w) * h > kMaxImagePixels,
                "image '{}': size {}x{} outside the limits (each side 1..{}, at most {} pixels)", name, w, h,
                kMaxImageSide, kMaxImagePixels);
    int w2 = 0, h2 = 0;
    uint8_t* px = stbi_load_from_memory(data, int(size), &w2, &h2, &comp, 3);
    if (!px) SR_THROW("image '{}': corrupt or truncated ({})", name, stbi_failure_reason());
    std::unique_ptr<uint8_t, void (*)(void*)> guard(px, stbi_image_free);
    SR_ASSERT(w2 == w && h2 == h, "stb_image decoded {}x{} after announcing {}x{}", w2, h2, w, h);

    Tensor out = Tensor::empty({3, h, w}, DType::F32, host_allocator(), "image " + name);  // [3,H,W]
    float* dst = out.data<float>();
    const int64_t plane = int64_t(w) * h;
    // Same float32 values as diffusers' np.array(image).astype(np.float32) / 255.0.
    for (int64_t i = 0; i < plane; ++i)
        for (int c = 0; c < 3; ++c) dst[c * plane + i] = float(px[i * 3 + c]) / 255.0f;
    // Upright, as diffusers' load_image makes it (PIL.ImageOps.exif_transpose).
    return apply_exif_orientation(out, exif_orientation(data, size));
}

Tensor load_image_rgb(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    SR_THROW_IF(!f, "image '{}': cannot open the file", path);
    const std::streamoff end = f.tellg();
    SR_THROW_IF(end < 0, "image '{}': cannot read the file (not a regular file?)", path);
    SR_THROW_IF(end > kMaxImageFileBytes, "image '{}': {} bytes, more than the limit of {}", path, int64_t(end),
                kMaxImageFileBytes);
    std::vector<uint8_t> bytes(static_cast<size_t>(end));
    f.seekg(0);
    if (end > 0) f.read(reinterpret_cast<char*>(bytes.data()), end);
    SR_THROW_IF(!f, "image '{}': read error", path);
    return decode_image_rgb(bytes.data(), bytes.size(), path);
}

void save_png(const std::string& path, const Tensor& rgb) {
    SR_WITH_CONTEXT("writing PNG '" + path + "'", {
        const Tensor t = as_rgb_f32(rgb, "save_png");
        SR_THROW_IF(t.dim(1) > kMaxImageSide || t.dim(2) > kMaxImageSide, "image {} larger than {} per side",
                    t.describe(), kMaxImageSide);
        const std::vector<uint8_t> bytes = to_interleaved_u8(t);
        const int w = int(t.dim(2)), h = int(t.dim(1));
        SR_THROW_IF(!stbi_write_png(path.c_str(), w, h, 3, bytes.data(), w * 3), "cannot write the file");
    });
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
// Pillow's Lanczos is reproduced integer for integer (see pil_resize_lanczos), so for a PNG input the result
// matches the reference bit for bit (checked against Pillow 9.4.0 on upscales, downscales and odd crops). What is not
// matched: (a) JPEG decoding: PIL uses libjpeg-turbo, load_image_rgb uses stb_image, whose IDCT and chroma upsampling
// differ by a few levels of 255; (b) EXIF orientation (step 0) is not applied; (c) 16-bit PNGs are reduced to 8 bits by
// stb (PIL may differ).
Tensor skyreels_resize_crop(const Tensor& rgb, int64_t height, int64_t width) {
    const Tensor t = as_rgb_f32(rgb, "skyreels_resize_crop");
    SR_THROW_IF(height < 8 || width < 8 || height > kMaxImageSide || width > kMaxImageSide,
                "skyreels_resize_crop: target {}x{} (height x width) outside 8..{}", height, width, kMaxImageSide);
    SR_THROW_IF(t.dim(1) > kMaxImageSide || t.dim(2) > kMaxImageSide, "skyreels_resize_crop: image {} too large",
                t.describe());
    const int64_t w = t.dim(2), h = t.dim(1);
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
    SR_THROW_IF(x1 <= x0 || y1 <= y0, "skyreels_resize_crop: image {} crops to nothing for {}x{}", t.describe(), height,
                width);

    // The crop, requantized to the uint8 PIL image the reference holds; PIL fills outside the image with 0.
    const std::vector<uint8_t> full = to_interleaved_u8(t);
    Rgb8 crop{int(x1 - x0), int(y1 - y0), {}};
    crop.px.assign(size_t(crop.w) * size_t(crop.h) * 3, 0);
    for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x)
            if (x >= 0 && x < w && y >= 0 && y < h)
                std::copy_n(&full[size_t((y * w + x) * 3)], 3, crop.at(int(x - x0), int(y - y0)));

    // Step 2.
    const int out_h = int(height - height % 8), out_w = int(width - width % 8);
    const Rgb8 resized = pil_resize_lanczos(crop, out_w, out_h);
    Tensor out = Tensor::empty({3, out_h, out_w}, DType::F32, host_allocator(), "conditioning image");
    float* dst = out.data<float>();
    const int64_t plane = int64_t(out_h) * out_w;
    for (int64_t i = 0; i < plane; ++i)
        for (int c = 0; c < 3; ++c) dst[c * plane + i] = 2.0f * (float(resized.px[size_t(i * 3 + c)]) / 255.0f) - 1.0f;
    return out;
}

}  // namespace sr
