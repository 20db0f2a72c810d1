// The per-element math of the fused QK-RMSNorm + RoPE + bf16 packing kernel (qk_norm_rope.cu), callable on the
// host so that CI checks it against the CPU backend's rms_norm and rope_interleaved without a GPU
// (tests/test_cuda_host.cpp). The kernel and the host reference of one head row below call exactly these
// functions; only the warp's shuffles are replaced on the host by the same butterfly over 32 partial sums.
//
// One warp owns one 128-element head row: lane t holds elements [4t, 4t + 4), that is two of RoPE's interleaved
// pairs (2i, 2i + 1), so the rotation needs no data from another lane and the row is one 16-byte load and one
// 8-byte store of four bf16 per lane. The sum of squares is reduced in f32 (the CPU backend's double sum over
// 128 values differs by a few f32 ulps of the sum, far below the bf16 rounding of the output).
// Plain C++17: nvcc compiles the .cu files as such.
//
//   float p = sr::cuda::qk_lane_sum_squares(x4);                        // per lane, then a warp sum
//   const float inv = sr::cuda::qk_rms_inverse(sum, 128, eps);
//   sr::cuda::qk_norm_rope_pair(x4[0], x4[1], inv, w[0], w[1], c[0], s[0], c[1], s[1], y0, y1);
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backends/cuda/index_math.h"  // SR_INDEX_FN

namespace sr::cuda {

constexpr int kQkNormRopeHeadDim = 128;                // one warp per row: 32 lanes x 4 elements
constexpr int kQkLaneElems = kQkNormRopeHeadDim / 32;  // elements per lane
constexpr int kQkRowsPerBlock = 8;                     // warps (rows) per block of the kernel

// The lane's part of the sum of squares: its four elements, in this order (the host reference repeats it).
SR_INDEX_FN float qk_lane_sum_squares(const float (&x)[kQkLaneElems]) {
    return (x[0] * x[0] + x[1] * x[1]) + (x[2] * x[2] + x[3] * x[3]);
}

// 1 / sqrt(mean of squares + eps), in f32 with correctly rounded sqrt and division on both host and device (nvcc
// without --use_fast_math rounds sqrtf and '/' as IEEE does), as the CPU's rms_norm forms it in double and rounds
// to f32 once: the two differ by at most a few f32 ulps.
SR_INDEX_FN float qk_rms_inverse(float sum_squares, int d, float eps) {
    return 1.0f / sqrtf(sum_squares / float(d) + eps);
}

// One interleaved pair: normalized (x * inv) * w in the CPU rms_norm's order, then rotated as the CPU's
// rope_interleaved: (n0 c0 - n1 s0, n1 c1 + n0 s1). c and s are the pair's two table entries (equal in
// HunyuanVideo's tables, but the op defines both). `rotate` false: the text tokens, normalized only.
SR_INDEX_FN void qk_norm_rope_pair(float x0, float x1, float inv, float w0, float w1, float c0, float s0, float c1,
                                   float s1, bool rotate, float& y0, float& y1) {
    const float n0 = (x0 * inv) * w0, n1 = (x1 * inv) * w1;
    if (!rotate) {
        y0 = n0;
        y1 = n1;
        return;
    }
    y0 = n0 * c0 - n1 * s0;
    y1 = n1 * c1 + n0 * s1;
}

// f32 -> bf16 bits, round to nearest even, NaN kept quiet (as sr::convert_elements and kernel_util's f32_to_bf16).
SR_INDEX_FN uint16_t qk_bf16_bits(float f) {
#if defined(__CUDA_ARCH__)
    uint32_t u = __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
#endif
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

// The host reference of one row, step for step the kernel's: lane partials, the xor butterfly (which leaves the
// same f32 sum in every lane), then each lane's two pairs rounded to bf16. x, w, cos, sin: 128 values (cos and
// sin ignored unless rotate).
inline void qk_norm_rope_row_reference(const float* x, const float* w, const float* cos, const float* sin, bool rotate,
                                       float eps, uint16_t* out) {
    float partial[32];
    for (int t = 0; t < 32; ++t) {
        const float lane[kQkLaneElems] = {x[4 * t], x[4 * t + 1], x[4 * t + 2], x[4 * t + 3]};
        partial[t] = qk_lane_sum_squares(lane);
    }
    for (int o = 16; o > 0; o >>= 1) {
        float next[32];
        for (int t = 0; t < 32; ++t) next[t] = partial[t] + partial[t ^ o];
        std::memcpy(partial, next, sizeof partial);
    }
    const float inv = qk_rms_inverse(partial[0], kQkNormRopeHeadDim, eps);
    for (int e = 0; e < kQkNormRopeHeadDim; e += 2) {
        float y0, y1;
        qk_norm_rope_pair(x[e], x[e + 1], inv, w[e], w[e + 1], rotate ? cos[e] : 1.0f, rotate ? sin[e] : 0.0f,
                          rotate ? cos[e + 1] : 1.0f, rotate ? sin[e + 1] : 0.0f, rotate, y0, y1);
        out[e] = qk_bf16_bits(y0);
        out[e + 1] = qk_bf16_bits(y1);
    }
}

}  // namespace sr::cuda
