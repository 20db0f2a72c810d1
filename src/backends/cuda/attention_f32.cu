// Attention in f32 for any head dim up to 512: the parity path (f32 arithmetic throughout, so results match
// the CPU backend to the op tests' f32 tolerances) and the fallback for head dims the bf16 tensor-core kernel
// does not cover (the VAE's single 512-wide head, CLIP's 64).
//
// Flash-attention structure (Dao et al., "FlashAttention", 2022, Algorithm 1): a block owns a tile of query
// rows of one head; keys and values stream through shared memory 32 at a time with an online softmax (running
// max m and sum l per row, the accumulator rescaled by exp(m_old - m_new) when the max grows), so memory is
// O(tile) and the Lq x Lk score matrix never exists. Within a warp, lane j owns key j of the tile for the
// scores (a full dot product over D, q broadcast from shared memory, k rows padded to D + 1 floats so the 32
// lanes hit 32 banks) and element d = lane + 32t of the output for P V. Each warp owns R query rows, so every
// k and v element read from shared memory feeds R rows.
#include <cuda_runtime.h>

#include <cfloat>

#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

constexpr int kWarps = 4, kTile = 32;

__device__ __forceinline__ bool dense_allows(const AttentionMaskArgs& m, int64_t i, int64_t j) {
    if (!m.dense) return true;
    const int64_t off = i * m.m_sq + j * m.m_sk;
    return m.dense_is_f32 ? static_cast<const float*>(m.dense)[off] != 0.0f
                          : static_cast<const uint8_t*>(m.dense)[off] != 0;
}

// NT: output elements per lane (D <= 32 * NT); R: query rows per warp.
template <int NT, int R>
__global__ void __launch_bounds__(kWarps * 32) attention_f32_kernel(AttentionF32Args a) {
    extern __shared__ __align__(16) float smem[];
    constexpr int RB = kWarps * R;  // query rows per block
    const int D = int(a.D), Dp = D + 1;
    float* Qs = smem;              // [RB][D]
    float* KVs = Qs + RB * D;      // [kTile][D + 1]: the k tile, then the v tile
    float* Ps = KVs + kTile * Dp;  // [RB][kTile]: probabilities of the current tile

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t h = blockIdx.y, i0 = int64_t(blockIdx.x) * RB;
    const float* q = a.q + h * a.q_sh;
    const float* k = a.k + h * a.k_sh;
    const float* v = a.v + h * a.v_sh;
    float* out = a.out + h * a.o_sh;
    const AttentionMaskArgs& mask = a.mask;

    // Keys this block may see: the valid prefix, cut by the causal limit of its last row.
    const int64_t kv_end = min(max(mask.kv_len, int64_t(0)), a.Lk);
    const int64_t i_last = min(i0 + RB, a.Lq) - 1;
    const int64_t block_end = mask.causal ? min(max(i_last + 1 + mask.causal_offset, int64_t(0)), kv_end) : kv_end;

    for (int idx = tid; idx < RB * D; idx += blockDim.x) {
        const int r = idx / D, d = idx % D;
        const int64_t i = i0 + r;
        Qs[idx] = i < a.Lq ? q[i * a.q_sl + d] : 0.0f;
    }

    int64_t row_i[R], row_end[R];
    float m[R], l[R], acc[R][NT];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        row_i[r] = i0 + warp * R + r;
        row_end[r] = mask.causal ? min(max(row_i[r] + 1 + mask.causal_offset, int64_t(0)), kv_end) : kv_end;
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
    }

    for (int64_t j0 = 0; j0 < block_end; j0 += kTile) {
        __syncthreads();  // the previous v tile (and, the first time, the q tile) is done with / written
        for (int idx = tid; idx < kTile * D; idx += blockDim.x) {
            const int jj = idx / D, d = idx % D;
            const int64_t j = j0 + jj;
            KVs[jj * Dp + d] = j < block_end ? k[j * a.k_sl + d] : 0.0f;  // zeros: masked keys stay finite
        }
        __syncthreads();

        // Scores: lane = key.
        float s[R];
#pragma unroll
        for (int r = 0; r < R; ++r) s[r] = 0.0f;
        const float* kr = KVs + lane * Dp;
        if ((D & 3) == 0) {
            for (int d = 0; d < D; d += 4) {
                const float k0 = kr[d], k1 = kr[d + 1], k2 = kr[d + 2], k3 = kr[d + 3];
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const float4 qv = *reinterpret_cast<const float4*>(Qs + (warp * R + r) * D + d);
                    s[r] = fmaf(qv.x, k0, s[r]);
                    s[r] = fmaf(qv.y, k1, s[r]);
                    s[r] = fmaf(qv.z, k2, s[r]);
                    s[r] = fmaf(qv.w, k3, s[r]);
                }
            }
        } else {
            for (int d = 0; d < D; ++d) {
                const float kv = kr[d];
#pragma unroll
                for (int r = 0; r < R; ++r) s[r] = fmaf(Qs[(warp * R + r) * D + d], kv, s[r]);
            }
        }

        // Online softmax, one row at a time; every lane of the warp holds the row's m and l.
        const int64_t j = j0 + lane;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const bool valid = row_i[r] < a.Lq && j < row_end[r] && dense_allows(mask, row_i[r], j);
            const float x = valid ? s[r] * a.scale : -INFINITY;
            const float m_new = fmaxf(m[r], warp_max(x));
            float p = 0.0f, corr = 1.0f;
            if (m_new != -INFINITY) {  // warp-uniform: a row with no valid key so far adds nothing
                p = expf(x - m_new);   // exactly 0 for a masked key
                corr = expf(m[r] - m_new);
            }
            l[r] = l[r] * corr + warp_sum(p);
            m[r] = m_new;
#pragma unroll
            for (int t = 0; t < NT; ++t) acc[r][t] *= corr;
            Ps[(warp * R + r) * kTile + lane] = p;
        }
        __syncthreads();  // every warp is done with the k tile

        for (int idx = tid; idx < kTile * D; idx += blockDim.x) {
            const int jj = idx / D, d = idx % D;
            const int64_t jv = j0 + jj;
            KVs[jj * Dp + d] = jv < block_end ? v[jv * a.v_sl + d] : 0.0f;
        }
        __syncthreads();

        // acc += P V: lane = output element.
        for (int jj = 0; jj < kTile; ++jj) {
            const float* vr = KVs + jj * Dp;
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const float p = Ps[(warp * R + r) * kTile + jj];
#pragma unroll
                for (int t = 0; t < NT; ++t) {
                    const int d = lane + 32 * t;
                    if (d < D) acc[r][t] = fmaf(p, vr[d], acc[r][t]);
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r) {
        if (row_i[r] >= a.Lq) continue;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;  // a row with no valid key yields zeros
        float* o = out + row_i[r] * a.o_sl;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            const int d = lane + 32 * t;
            if (d < D) o[d] = acc[r][t] * inv;
        }
    }
}

template <int NT, int R>
constexpr size_t shared_bytes(int D) {
    return sizeof(float) * size_t(kWarps * R * D + kTile * (D + 1) + kWarps * R * kTile);
}

template <int NT, int R>
cudaError_t launch(const AttentionF32Args& a, cudaStream_t stream) {
    constexpr int RB = kWarps * R;
    const size_t bytes = shared_bytes<NT, R>(int(a.D));
    // Above the default 48 KB a kernel must opt in to its dynamic shared memory (up to 99 KB on sm_89,
    // 163 KB on sm_80, 227 KB on sm_90; the largest here is 83 KB), once, for the largest D it serves.
    constexpr size_t most = shared_bytes<NT, R>(32 * NT);
    if (most > 48 * 1024)
        if (const cudaError_t e = opt_in_shared_memory<attention_f32_kernel<NT, R>>(int(most)); e != cudaSuccess)
            return e;
    const dim3 grid(unsigned((a.Lq + RB - 1) / RB), unsigned(a.H));
    attention_f32_kernel<NT, R><<<grid, kWarps * 32, bytes, stream>>>(a);
    return cudaSuccess;
}

}  // namespace

cudaError_t attention_f32(const AttentionF32Args& a, cudaStream_t stream) {
    if (a.Lq <= 0 || a.H <= 0 || a.D <= 0) return cudaSuccess;
    if (a.D <= 32) return launch<1, 8>(a, stream);
    if (a.D <= 64) return launch<2, 8>(a, stream);
    if (a.D <= 128) return launch<4, 8>(a, stream);
    if (a.D <= 256) return launch<8, 4>(a, stream);
    return launch<16, 2>(a, stream);
}

}  // namespace sr::cuda
