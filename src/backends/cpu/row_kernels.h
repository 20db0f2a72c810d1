// One row of the CPU backend's rms_norm and of its interleaved RoPE, shared by those ops and by the AMX
// attention's fused q/k prologue (attention_amx.cpp), so that normalizing and rotating inside the attention
// gives the same bits as running the ops first.
#pragma once

#include <cmath>
#include <cstdint>

namespace sr {

// The sum of f(x[i]) in double over n floats, as 8 interleaved partial sums (element i into sum i % 8) added
// pairwise at the end: a fixed order, as one running sum has, that the compiler vectorizes (a running sum is
// a chain of dependent adds, 4 cycles each: 512 cycles for a 128-wide head row).
template <class F>
inline double sum_of(const float* x, int64_t n, F f) {
    double acc[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += f(double(x[i + j]));
    for (int j = 0; i < n; ++i, ++j) acc[j] += f(double(x[i]));
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

// y = x / sqrt(mean(x^2) + eps) * w (w null: no weight), the mean in double and the inverse rounded to f32
// once. y may equal x.
inline void rms_norm_row(const float* x, const float* w, int64_t D, float eps, float* y) {
    const double ss = sum_of(x, D, [](double v) { return v * v; });
    const float inv = float(1.0 / std::sqrt(ss / double(D) + eps));
    for (int64_t i = 0; i < D; ++i) y[i] = w ? (x[i] * inv) * w[i] : x[i] * inv;
}

// Pairs (v[2i], v[2i+1]) rotated in place by the table rows c and s (each frequency repeated twice).
inline void rope_interleaved_row(float* v, const float* c, const float* s, int64_t D) {
    for (int64_t i = 0; i < D; i += 2) {
        const float re = v[i], im = v[i + 1];
        v[i] = re * c[i] - im * s[i];
        v[i + 1] = im * c[i + 1] + re * s[i + 1];
    }
}

}  // namespace sr
