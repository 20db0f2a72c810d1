// The traversal both RoPE variants share: checks x [B, L, H, D] (an f32 view, unit innermost stride) and
// its cos/sin tables [L, D], then calls rotate(v, c, s, D) for every (batch, token, head) in parallel, with
// v the head's D values and c, s the token's table rows. The variants differ only in which pairs rotate.
#pragma once

#include "backends/op_checks.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace sr {

template <class Rotate>
void for_each_rope_head(Tensor& x, const Tensor& cos, const Tensor& sin, const char* op, Rotate&& rotate) {
    const RopeShape s = check_rope(x, cos, sin, op);
    const int64_t B = s.B, L = s.L, H = s.H, D = s.D;
    const float* cd = cos.data<float>();
    const float* sd = sin.data<float>();
    float* xd = static_cast<float*>(x.raw_data());
    parallel_for(
        B * L,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t b = r / L, l = r % L;
                for (int64_t h = 0; h < H; ++h)
                    rotate(xd + b * x.stride(0) + l * x.stride(1) + h * x.stride(2), cd + l * D, sd + l * D, D);
            }
        },
        64);
}

}  // namespace sr
