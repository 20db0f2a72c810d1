// Rotary position embedding in place on a [B, L, H, D] view (e.g. the q slot of a fused qkv buffer): one
// thread per rotated pair. Interleaved pairs (x[2i], x[2i+1]) are HunyuanVideo's (diffusers apply_rotary_emb
// with use_real_unbind_dim=-1); rotate-half pairs (x[i], x[i + D/2]) are Llama's (transformers
// apply_rotary_pos_emb). cos/sin are [L, D] tables with each frequency at both positions of its pair.
#include <cuda_runtime.h>

#include "backends/cuda/index_math.h"
#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

// The pair's coordinates: 32-bit FastDivmod decomposition where the pair count fits (every real shape), else
// 64-bit division.
struct RopeIndex32 {
    FastDivmod half, H, L;
};

template <bool kInterleaved>
__device__ __forceinline__ void rotate_pair(float* x, int64_t sb, int64_t sl, int64_t sh, int64_t D,
                                            const float* __restrict__ cos, const float* __restrict__ sin, int64_t b,
                                            int64_t l, int64_t h, int64_t i) {
    const int64_t half = D / 2;
    float* v = x + b * sb + l * sl + h * sh;
    const float* c = cos + l * D;
    const float* s = sin + l * D;
    const int64_t a = kInterleaved ? 2 * i : i;             // first element of the pair
    const int64_t z = kInterleaved ? 2 * i + 1 : i + half;  // second
    const float x0 = v[a], x1 = v[z];
    // x * cos + rotate(x) * sin with rotate(x0, x1) = (-x1, x0).
    v[a] = x0 * c[a] - x1 * s[a];
    v[z] = x1 * c[z] + x0 * s[z];
}

template <bool kInterleaved>
__global__ void rope32_kernel(float* x, int64_t sb, int64_t sl, int64_t sh, int64_t D, const float* __restrict__ cos,
                              const float* __restrict__ sin, RopeIndex32 ix, uint32_t n_pairs) {
    for (uint32_t p = uint32_t(global_thread()); p < n_pairs; p += uint32_t(grid_threads())) {
        uint32_t rest, i, h, l, b;
        ix.half.divmod(p, rest, i);
        ix.H.divmod(rest, rest, h);
        ix.L.divmod(rest, b, l);
        rotate_pair<kInterleaved>(x, sb, sl, sh, D, cos, sin, b, l, h, i);
    }
}

template <bool kInterleaved>
__global__ void rope_kernel(float* x, int64_t sb, int64_t sl, int64_t sh, int64_t L, int64_t H, int64_t D,
                            const float* __restrict__ cos, const float* __restrict__ sin, int64_t n_pairs) {
    const int64_t half = D / 2;
    for (int64_t p = global_thread(); p < n_pairs; p += grid_threads()) {
        const int64_t i = p % half, h = (p / half) % H, l = (p / (half * H)) % L, b = p / (half * H * L);
        rotate_pair<kInterleaved>(x, sb, sl, sh, D, cos, sin, b, l, h, i);
    }
}

}  // namespace

void rope(float* x, int64_t sb, int64_t sl, int64_t sh, int64_t B, int64_t L, int64_t H, int64_t D, const float* cos,
          const float* sin, bool interleaved, cudaStream_t stream) {
    const int64_t n_pairs = B * L * H * (D / 2);
    if (n_pairs <= 0) return;
    if (fits_32(n_pairs)) {
        const RopeIndex32 ix{FastDivmod(uint32_t(D / 2)), FastDivmod(uint32_t(H)), FastDivmod(uint32_t(L))};
        if (interleaved)
            rope32_kernel<true>
                <<<grid_for(n_pairs), kThreads, 0, stream>>>(x, sb, sl, sh, D, cos, sin, ix, uint32_t(n_pairs));
        else
            rope32_kernel<false>
                <<<grid_for(n_pairs), kThreads, 0, stream>>>(x, sb, sl, sh, D, cos, sin, ix, uint32_t(n_pairs));
        return;
    }
    if (interleaved)
        rope_kernel<true><<<grid_for(n_pairs), kThreads, 0, stream>>>(x, sb, sl, sh, L, H, D, cos, sin, n_pairs);
    else
        rope_kernel<false><<<grid_for(n_pairs), kThreads, 0, stream>>>(x, sb, sl, sh, L, H, D, cos, sin, n_pairs);
}

}  // namespace sr::cuda
