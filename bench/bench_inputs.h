// Inputs the benchmarks make up: repeatable pseudo-random values, so that runs (and our side and a peer's
// side) time the same arithmetic.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sr::bench {

// f32 values in [-scale, scale) from a xorshift64 stream seeded by `seed`.
inline Tensor uniform(const Shape& s, uint64_t seed, float scale = 1.0f) {
    Tensor t = Tensor::empty(s, DType::F32);
    float* d = t.data<float>();
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int64_t i = 0; i < t.numel(); ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        d[i] = scale * (float(x >> 40) / float(1 << 24) * 2.0f - 1.0f);
    }
    return t;
}

}  // namespace sr::bench
