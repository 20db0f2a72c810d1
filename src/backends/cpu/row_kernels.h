// One row of the CPU backend's rms_norm and of its interleaved RoPE, shared by those ops and by the bf16 flash
// attention's fused q/k prologue (attention_flash_bf16.cpp), so that normalizing and rotating inside the
// attention gives the same bits as running the ops first.
#pragma once

#include <cmath>
#include <cstdint>

#include "backends/cpu/vec_math.h"

namespace sr {

// y = x / sqrt(mean(x^2) + eps) * w (w null: no weight), the mean in double and the inverse rounded to f32
// once. y may equal x.
inline void rms_norm_row(const float* x, const float* w, int64_t D, float eps, float* y) {
    const double ss = vec::sum_f64(x, D, [](auto v) { return v * v; });
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
