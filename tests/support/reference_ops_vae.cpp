#include "support/reference_ops_vae.h"

#include <cmath>

namespace sr::test::ref {

Array conv3d(const Tensor& x, const Tensor& w, const Tensor* bias, std::array<int64_t, 3> stride,
             std::array<int64_t, 3> padding, bool absolute) {
    const Array xa = to_array(x), wa = to_array(w);
    const Array ba = bias ? to_array(*bias) : Array();
    const int64_t B = x.dim(0), C = x.dim(1), F = x.dim(2), H = x.dim(3), W = x.dim(4);
    const int64_t O = w.dim(0), kt = w.dim(2), kh = w.dim(3), kw = w.dim(4);
    const int64_t Fo = (F + 2 * padding[0] - kt) / stride[0] + 1, Ho = (H + 2 * padding[1] - kh) / stride[1] + 1,
                  Wo = (W + 2 * padding[2] - kw) / stride[2] + 1;
    Array y({B, O, Fo, Ho, Wo});
    int64_t idx = 0;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t o = 0; o < O; ++o)
            for (int64_t f = 0; f < Fo; ++f)
                for (int64_t h = 0; h < Ho; ++h)
                    for (int64_t v = 0; v < Wo; ++v, ++idx) {
                        double s = bias ? (absolute ? std::fabs(ba[o]) : ba[o]) : 0.0;
                        for (int64_t c = 0; c < C; ++c)
                            for (int64_t a = 0; a < kt; ++a)
                                for (int64_t i = 0; i < kh; ++i)
                                    for (int64_t j = 0; j < kw; ++j) {
                                        const int64_t fi = f * stride[0] - padding[0] + a;
                                        const int64_t hi = h * stride[1] - padding[1] + i;
                                        const int64_t wi = v * stride[2] - padding[2] + j;
                                        if (fi < 0 || fi >= F || hi < 0 || hi >= H || wi < 0 || wi >= W) continue;
                                        const double p = xa[(((b * C + c) * F + fi) * H + hi) * W + wi] *
                                                         wa[(((o * C + c) * kt + a) * kh + i) * kw + j];
                                        s += absolute ? std::fabs(p) : p;
                                    }
                        y[idx] = s;
                    }
    return y;
}

Array pad3d_replicate(const Tensor& x, std::array<int64_t, 6> pads) {
    const Array xa = to_array(x);
    const int64_t B = x.dim(0), C = x.dim(1), F = x.dim(2), H = x.dim(3), W = x.dim(4);
    const int64_t Fo = F + pads[0] + pads[1], Ho = H + pads[2] + pads[3], Wo = W + pads[4] + pads[5];
    Array y({B, C, Fo, Ho, Wo});
    auto clamp = [](int64_t v, int64_t n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); };
    int64_t idx = 0;
    for (int64_t bc = 0; bc < B * C; ++bc)
        for (int64_t f = 0; f < Fo; ++f)
            for (int64_t h = 0; h < Ho; ++h)
                for (int64_t w = 0; w < Wo; ++w, ++idx)
                    y[idx] =
                        xa[((bc * F + clamp(f - pads[0], F)) * H + clamp(h - pads[2], H)) * W + clamp(w - pads[4], W)];
    return y;
}

Array group_norm(const Tensor& x, int64_t groups, const Tensor* weight, const Tensor* bias, double eps) {
    const Array xa = to_array(x);
    const Array wa = weight ? to_array(*weight) : Array(), ba = bias ? to_array(*bias) : Array();
    const int64_t B = x.dim(0), C = x.dim(1), S = x.numel() / (B * C), cg = C / groups, n = cg * S;
    Array y(xa.shape);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t base = (b * C + g * cg) * S;
            double mean = 0, var = 0;
            for (int64_t i = 0; i < n; ++i) mean += xa[base + i];
            mean /= double(n);
            for (int64_t i = 0; i < n; ++i) var += (xa[base + i] - mean) * (xa[base + i] - mean);
            const double rstd = 1.0 / std::sqrt(var / double(n) + eps);
            for (int64_t i = 0; i < n; ++i) {
                const int64_t c = g * cg + i / S;
                y[base + i] = (xa[base + i] - mean) * rstd * (weight ? wa[c] : 1.0) + (bias ? ba[c] : 0.0);
            }
        }
    return y;
}

Array upsample_nearest3d(const Tensor& x, std::array<int64_t, 3> scale) {
    const Array xa = to_array(x);
    const int64_t B = x.dim(0), C = x.dim(1), F = x.dim(2), H = x.dim(3), W = x.dim(4);
    Array y({B, C, F * scale[0], H * scale[1], W * scale[2]});
    int64_t idx = 0;
    for (int64_t bc = 0; bc < B * C; ++bc)
        for (int64_t f = 0; f < F * scale[0]; ++f)
            for (int64_t h = 0; h < H * scale[1]; ++h)
                for (int64_t w = 0; w < W * scale[2]; ++w, ++idx)
                    y[idx] = xa[((bc * F + f / scale[0]) * H + h / scale[1]) * W + w / scale[2]];
    return y;
}

}  // namespace sr::test::ref
