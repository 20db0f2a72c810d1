#include "media/pil_resample.h"

#include <cmath>
#include <vector>

#include "core/error.h"

namespace sr {
namespace {

// Pillow resizes a uint8 image in two separable passes, horizontal first and only over the rows the
// vertical pass reads, with double-precision filter weights normalised per output pixel, turned into fixed
// point with 22 fractional bits (32 - 8 - 2: the sum of 8-bit pixels times weights must fit an int32 with
// room for negative lobes), and rounded and clipped to uint8 between the passes. Doing the same integer
// arithmetic gives the same bytes.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kLanczosSupport = 3.0;

double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return std::sin(x) / x;
}

double lanczos3(double x) {
    return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
}

// Per output pixel: the first input pixel, how many input pixels, and that many fixed-point weights.
struct Coeffs {
    int64_t ksize = 0;
    std::vector<int64_t> first, count;
    std::vector<int32_t> weights;  // [out][ksize]
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size).
Coeffs precompute(int64_t in_size, int64_t out_size) {
    const double scale = double(in_size) / double(out_size);
    const double filterscale = scale < 1.0 ? 1.0 : scale;  // widen the filter when reducing (antialiasing)
    const double support = kLanczosSupport * filterscale;
    Coeffs c;
    c.ksize = int64_t(std::ceil(support)) * 2 + 1;
    c.first.resize(size_t(out_size));
    c.count.resize(size_t(out_size));
    c.weights.assign(size_t(out_size * c.ksize), 0);
    std::vector<double> k(size_t(c.ksize));
    for (int64_t xx = 0; xx < out_size; ++xx) {
        const double center = (double(xx) + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        // Pillow truncates toward zero ((int) casts) and clamps to the image.
        int64_t xmin = int64_t(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = int64_t(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        std::fill(k.begin(), k.end(), 0.0);
        for (int64_t x = 0; x < xmax; ++x) {
            const double w = lanczos3((double(x + xmin) - center + 0.5) * ss);
            k[size_t(x)] = w;
            ww += w;
        }
        for (int64_t x = 0; x < xmax; ++x)
            if (ww != 0.0) k[size_t(x)] /= ww;
        for (int64_t x = 0; x < c.ksize; ++x) {
            const double v = k[size_t(x)] * (1 << kPrecisionBits);
            c.weights[size_t(xx * c.ksize + x)] = int32_t(v < 0 ? -0.5 + v : 0.5 + v);
        }
        c.first[size_t(xx)] = xmin;
        c.count[size_t(xx)] = xmax;
    }
    return c;
}

uint8_t clip8(int64_t v) {
    if (v >= (int64_t(1) << kPrecisionBits << 8)) return 255;
    if (v <= 0) return 0;
    return uint8_t(v >> kPrecisionBits);
}

// One output sample: sum of `n` inputs `stride` bytes apart, times the weights, rounded at half.
uint8_t filter(const uint8_t* src, int64_t stride, const int32_t* k, int64_t n) {
    int64_t ss = int64_t(1) << (kPrecisionBits - 1);
    for (int64_t i = 0; i < n; ++i) ss += int64_t(src[i * stride]) * k[i];
    return clip8(ss);
}

}  // namespace

Image8 pil_resize_lanczos(const Image8& in, int64_t out_w, int64_t out_h) {
    SR_ASSERT(in.width >= 1 && in.height >= 1 && out_w >= 1 && out_h >= 1 &&
                  in.rgb.size() == size_t(in.width * in.height * 3),
              "pil_resize_lanczos: {}x{} image to {}x{}", in.width, in.height, out_w, out_h);
    const bool need_h = out_w != in.width;
    const bool need_v = out_h != in.height;
    if (!need_h && !need_v) return in;
    const Coeffs horiz = precompute(in.width, out_w);
    Coeffs vert = precompute(in.height, out_h);
    // The rows the vertical pass reads: the horizontal pass filters only these.
    const int64_t y_first = need_v ? vert.first[0] : 0;
    const int64_t y_last = need_v ? vert.first[size_t(out_h - 1)] + vert.count[size_t(out_h - 1)] : in.height;

    Image8 tmp;
    const Image8* cur = &in;
    if (need_h) {
        tmp.width = out_w;
        tmp.height = y_last - y_first;
        tmp.rgb.resize(size_t(tmp.width * tmp.height * 3));
        for (int64_t yy = 0; yy < tmp.height; ++yy) {
            const uint8_t* row = &in.rgb[size_t((yy + y_first) * in.width * 3)];
            uint8_t* out = &tmp.rgb[size_t(yy * out_w * 3)];
            for (int64_t xx = 0; xx < out_w; ++xx) {
                const int32_t* k = &horiz.weights[size_t(xx * horiz.ksize)];
                const uint8_t* src = row + horiz.first[size_t(xx)] * 3;
                for (int c = 0; c < 3; ++c) out[xx * 3 + c] = filter(src + c, 3, k, horiz.count[size_t(xx)]);
            }
        }
        for (int64_t& f : vert.first) f -= y_first;
        cur = &tmp;
    }
    if (!need_v) return tmp;
    Image8 out;
    out.width = out_w;
    out.height = out_h;
    out.rgb.resize(size_t(out_w * out_h * 3));
    const int64_t stride = cur->width * 3;
    for (int64_t yy = 0; yy < out_h; ++yy) {
        const int32_t* k = &vert.weights[size_t(yy * vert.ksize)];
        const uint8_t* src = &cur->rgb[size_t(vert.first[size_t(yy)] * stride)];
        uint8_t* dst = &out.rgb[size_t(yy * out_w * 3)];
        for (int64_t i = 0; i < out_w * 3; ++i) dst[i] = filter(src + i, stride, k, vert.count[size_t(yy)]);
    }
    return out;
}

}  // namespace sr
