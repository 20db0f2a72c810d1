// Rotary position embedding in place on a [B, L, H, D] view (e.g. the q slot of a fused qkv buffer): one
// thread per rotated pair. Interleaved pairs (x[2i], x[2i+1]) are HunyuanVideo's (diffusers apply_rotary_emb
// with use_real_unbind_dim=-1); rotate-half pairs (x[i], x[i + D/2]) are Llama's (transformers
// apply_rotary_pos_emb). cos/sin are [L, D] tables with each frequency at both positions of its pair.
#include <cuda_runtime.h>

#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

template <bool kInterleaved>
__global__ void rope_kernel(float* x, int64_t sb, int64_t sl, int64_t sh, int64_t L, int64_t H, int64_t D,
                            const float* __restrict__ cos, const float* __restrict__ sin, int64_t n_pairs) {
    const int64_t half = D / 2;
    for (int64_t p = global_thread(); p < n_pairs; p += grid_threads()) {
        const int64_t i = p % half, h = (p / half) % H, l = (p / (half * H)) % L, b = p / (half * H * L);
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
}

}  // namespace

void rope(float* x, int64_t sb, int64_t sl, int64_t sh, int64_t B, int64_t L, int64_t H, int64_t D, const float* cos,
          const float* sin, bool interleaved, cudaStream_t stream) {
    const int64_t n_pairs = B * L * H * (D / 2);
    if (n_pairs <= 0) return;
    if (interleaved)
        rope_kernel<true><<<grid_for(n_pairs), kThreads, 0, stream>>>(x, sb, sl, sh, L, H, D, cos, sin, n_pairs);
    else
        rope_kernel<false><<<grid_for(n_pairs), kThreads, 0, stream>>>(x, sb, sl, sh, L, H, D, cos, sin, n_pairs);
}

}  // namespace sr::cuda
