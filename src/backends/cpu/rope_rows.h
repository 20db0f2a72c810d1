// The traversal both RoPE variants share: checks x [B, L, H, D] (an f32 view, unit innermost stride) and
// its cos/sin tables [L, D], then calls rotate(v, c, s, D) for every (batch, token, head) in parallel, with
// v the head's D values and c, s the token's table rows. The variants differ only in which pairs rotate.
#pragma once

#include "core/parallel.h"
#include "core/tensor.h"

namespace sr {

template <class Rotate>
void for_each_rope_head(Tensor& x, const Tensor& cos, const Tensor& sin, const char* op, Rotate&& rotate) {
    SR_ASSERT(x.rank() == 4 && x.dtype() == DType::F32 && x.stride(3) == 1, "{} wants an f32 [B,L,H,D] view, got {}",
              op, x.describe());
    const int64_t B = x.dim(0), L = x.dim(1), H = x.dim(2), D = x.dim(3);
    SR_ASSERT(D % 2 == 0, "{} head dim {} is odd", op, D);
    SR_ASSERT(cos.dtype() == DType::F32 && sin.dtype() == DType::F32 && cos.is_contiguous() && sin.is_contiguous() &&
                  cos.numel() == L * D && sin.numel() == L * D,
              "{} tables {} / {} for L={} D={}", op, cos.describe(), sin.describe(), L, D);
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
