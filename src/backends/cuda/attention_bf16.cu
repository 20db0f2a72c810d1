// Fused attention on the tensor cores for head dim 128, bf16 operands with f32 accumulation: the transformer's
// hot path (at 544x960x97, attention over ~51,000 tokens is about three quarters of a forward's FLOPs). The
// fallback of cuDNN's fused SDPA (cuda_attention.cpp), and the path for the masks cuDNN does not take.
//
// Structure of FlashAttention-2 (Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work
// Partitioning", 2023, Algorithm 1 and section 3.3): a block of 4 warps owns 128 query rows of one head, each
// warp 32 rows (two m16 MMA tiles), and loops over 32-key tiles of K and V with an online softmax (running max
// and sum in registers; the output accumulator rescaled when the max grows; one division at the end). With 32
// rows per warp every K and V fragment read from shared memory feeds two MMAs, half the shared-memory traffic per
// FLOP of 16 rows per warp. The Q tile stays in shared memory (its fragments are re-read per key tile: 32 rows of
// Q fragments in registers would not fit next to the 128-float output accumulator); K/V tiles are double-buffered
// with cp.async so the next tile loads while the current one is multiplied. Both products are mma.sync.m16n8k16
// (bf16 x bf16 -> f32, PTX ISA "Warp-level matrix multiply-accumulate instructions"); S = Q K^T stays in
// registers, and its accumulator layout is exactly the A-operand layout of the P V product, so P never touches
// shared memory. Rows are XOR-swizzled in 16-byte chunks (attention_tiling.h) so that ldmatrix is conflict-free.
//
// Masking is applied only to boundary tiles (attn_tile_is_interior: the last valid keys, the causal diagonal,
// the last query rows, any tile under a dense mask), and the softmax scale is folded into the exponent's FMA
// (the kernel needs scale > 0: the running maxima are kept in raw score units).
//
// Numerics: q, k, v are rounded to bf16 (8 significant bits); scores, softmax statistics and the accumulator are
// f32; the probabilities are rounded to bf16 for the P V product while the row sum uses their f32 values (as
// FlashAttention does). tests/test_cuda_ops.cpp derives the tolerance from that.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backends/cuda/attention_tiling.h"
#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

constexpr int kD = kAttnHeadDim;
constexpr int kQTileElems = kAttnBlockRows * kD;
constexpr int kKTileElems = kAttnKeyTile * kD;
constexpr int kThreadsB = kAttnWarps * 32;
constexpr int kKeyN = kAttnKeyTile / 8;  // n8 score tiles per key tile
// Q (128 rows), then K and V twice (double buffer, 32 rows each): 32 + 32 KB.
constexpr int kSmemBytes = (kQTileElems + 4 * kKTileElems) * 2;

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; src_bytes < 16 zero-fills the rest (0: a row past the end).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                                  uint32_t& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// c += a b for one m16n8k16 tile: a = 4 registers of bf16 pairs (row-major 16x16), b = 2 (col-major 16x8).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) in the low half: the lower k index
    return *reinterpret_cast<const uint32_t*>(&v);
}

// Rows [row0, row0 + kRows) of a [L, 128] bf16 matrix into a swizzled shared tile; rows at or past `limit` are
// zero-filled (their keys are masked, and zeros keep 0 * v finite).
template <int kRows>
__device__ __forceinline__ void load_tile(uint16_t* tile, const uint16_t* g, int64_t row0, int64_t limit) {
#pragma unroll 1  // unrolled, the 8-16 copies' addresses were hoisted out of the key loop and kept in registers
    for (int c = threadIdx.x; c < kRows * (kD / 8); c += kThreadsB) {
        const int row = c >> 4, chunk = c & 15;
        const int64_t grow = row0 + row;
        const bool in = grow < limit;
        const uint16_t* src = g + (in ? grow : 0) * kD + chunk * 8;
        cp_async_16(shared_address(tile + attn_swizzle(row, chunk * 8)), src, in ? 16 : 0);
    }
}

__device__ __forceinline__ bool dense_allows(const AttentionMaskArgs& m, int64_t i, int64_t j) {
    if (!m.dense) return true;
    const int64_t off = i * m.m_sq + j * m.m_sk;
    return m.dense_is_f32 ? static_cast<const float*>(m.dense)[off] != 0.0f
                          : static_cast<const uint8_t*>(m.dense)[off] != 0;
}

__global__ void __launch_bounds__(kThreadsB, 1) attention_bf16_kernel(AttentionBf16Args a) {
    extern __shared__ __align__(128) uint16_t smem_tiles[];
    uint16_t* Qs = smem_tiles;
    uint16_t* Ks = smem_tiles + kQTileElems;                    // two buffers
    uint16_t* Vs = smem_tiles + kQTileElems + 2 * kKTileElems;  // two buffers

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;  // mma fragment coordinates: row group, thread in group
    const int64_t h = blockIdx.y, i0 = int64_t(blockIdx.x) * kAttnBlockRows;
    const uint16_t* q = a.q + h * a.Lq * kD;
    const uint16_t* k = a.k + h * a.Lk * kD;
    const uint16_t* v = a.v + h * a.Lk * kD;
    // f32 or bf16 (a.out_bf16): element offsets are the same, the store below differs.
    float* out = a.out_bf16 ? nullptr : static_cast<float*>(a.out) + h * a.o_sh;
    uint16_t* out16 = a.out_bf16 ? static_cast<uint16_t*>(a.out) + h * a.o_sh : nullptr;
    const AttentionMaskArgs& mask = a.mask;

    const int64_t kv_end = attn_kv_end(mask.kv_len, a.Lk);
    const int64_t i_last = min(i0 + kAttnBlockRows, a.Lq) - 1;
    const int64_t block_end = attn_row_key_end(i_last, kv_end, mask.causal, mask.causal_offset);
    const int n_tiles = attn_tile_count(block_end);

    load_tile<kAttnBlockRows>(Qs, q, i0, a.Lq);
    if (n_tiles > 0) {
        load_tile<kAttnKeyTile>(Ks, k, 0, block_end);
        load_tile<kAttnKeyTile>(Vs, v, 0, block_end);
    }
    cp_async_commit();

    // This thread's four query rows: fragment rows g and g + 8 of the warp's two m16 tiles (rr = 2 mi + r), rows
    // row0 + kRowOffset[rr]. Rows and keys in 32 bits (the launch checks Lq, Lk < 2^31), and per-row key ends
    // recomputed in the masked branch rather than kept: registers are what bounds this kernel (the 128-float
    // output accumulator and the scores), and every one kept across the key loop pushes it toward spills.
    const int lq = int(a.Lq), kv = int(kv_end);
    const int row0 = int(attn_fragment_row(i0, warp, g, 0));
    const int min_end = int(attn_row_key_end(row0, kv_end, mask.causal, mask.causal_offset));  // the first row's
    const bool rows_valid = row0 + 24 < lq;                  // the largest of the four (attn_fragment_row(.., 3))
    const float scale_log2 = a.scale * 1.4426950408889634f;  // softmax in base 2: exp(x) = exp2(x log2 e)
    float o[2][16][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int n = 0; n < 16; ++n) o[mi][n][0] = o[mi][n][1] = o[mi][n][2] = o[mi][n][3] = 0.0f;
    float m_run[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, l_run[4] = {0.0f, 0.0f, 0.0f, 0.0f};

    for (int t = 0; t < n_tiles; ++t) {
        const int buf = t & 1;
        if (t + 1 < n_tiles) {
            load_tile<kAttnKeyTile>(Ks + (buf ^ 1) * kKTileElems, k, int64_t(t + 1) * kAttnKeyTile, block_end);
            load_tile<kAttnKeyTile>(Vs + (buf ^ 1) * kKTileElems, v, int64_t(t + 1) * kAttnKeyTile, block_end);
        }
        cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning tile t (and Q)
        cp_async_wait<1>();
        __syncthreads();
        const uint16_t* Kt = Ks + buf * kKTileElems;
        const uint16_t* Vt = Vs + buf * kKTileElems;

        // S = Q K^T: 32 rows x 32 keys per warp. Q fragments (A operand) per k-step: matrices (rows 0-7 | 8-15) x
        // (cols k0 | k0 + 8), addressed by lanes 0-7, 8-15, 16-23, 24-31 in the order a0..a3. K rows are the B
        // operand's columns, so the non-transposing ldmatrix yields B fragments: matrices (keys n..n+7 |
        // n+8..n+15) x (d | d + 8); each feeds both m16 tiles.
        float s[2][kKeyN][4];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
            for (int n = 0; n < kKeyN; ++n) s[mi][n][0] = s[mi][n][1] = s[mi][n][2] = s[mi][n][3] = 0.0f;
#pragma unroll 1  // unrolled, the scheduler hoists the K fragments of several k-steps into registers
        for (int kk = 0; kk < 8; ++kk) {
            uint32_t qa[2][4];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                const int r = warp * kAttnWarpRows + mi * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                const int c = kk * 16 + (lane >> 4) * 8;
                ldmatrix_x4(shared_address(Qs + attn_swizzle(r, c)), qa[mi][0], qa[mi][1], qa[mi][2], qa[mi][3]);
            }
#pragma unroll
            for (int nb = 0; nb < kKeyN / 2; ++nb) {
                const int r = nb * 16 + (lane & 7) + (lane >> 4) * 8, c = kk * 16 + ((lane >> 3) & 1) * 8;
                uint32_t b0, b1, b2, b3;
                ldmatrix_x4(shared_address(Kt + attn_swizzle(r, c)), b0, b1, b2, b3);
#pragma unroll
                for (int mi = 0; mi < 2; ++mi) {
                    mma_bf16(s[mi][2 * nb], qa[mi], b0, b1);
                    mma_bf16(s[mi][2 * nb + 1], qa[mi], b2, b3);
                }
            }
        }

        // Masks and the tile's row maxima, on the raw scores (the scale is folded into the exponent below).
        // Element (n, e) of s[mi] is row rr = 2 mi + e / 2, key j0 + n*8 + 2 tig + e%2.
        const int j0 = t * kAttnKeyTile;
        float mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        // min_end is the smallest of the four rows' key ends: causal ends grow with the row.
        if (attn_tile_is_interior(j0, min_end, rows_valid, mask.dense != nullptr)) {
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int n = 0; n < kKeyN; ++n)
#pragma unroll
                    for (int e = 0; e < 4; ++e) mx[2 * mi + (e >> 1)] = fmaxf(mx[2 * mi + (e >> 1)], s[mi][n][e]);
        } else {
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int n = 0; n < kKeyN; ++n)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int rr = 2 * mi + (e >> 1);
                        const int r = row0 + 16 * mi + 8 * (e >> 1);
                        const int end = int(attn_row_key_end(r, kv, mask.causal, mask.causal_offset));
                        const int key = j0 + n * 8 + 2 * tig + (e & 1);
                        const bool ok = key < end && r < lq && dense_allows(mask, r, key);
                        s[mi][n][e] = ok ? s[mi][n][e] : -INFINITY;
                        mx[rr] = fmaxf(mx[rr], s[mi][n][e]);
                    }
        }
        float m_use[4];
#pragma unroll
        for (int rr = 0; rr < 4; ++rr) {
            // The four threads of a quad hold the same rows.
            mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
            mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
            // Running maxima are in raw score units (the scale is positive, so the maximum is the same key).
            const float m_new = fmaxf(m_run[rr], mx[rr]);
            // No valid key yet: exp2(-inf * c - 0) = 0 everywhere.
            m_use[rr] = m_new == -INFINITY ? 0.0f : m_new * scale_log2;
            const float corr = m_new == m_run[rr] ? 1.0f : exp2f(fmaf(m_run[rr], scale_log2, -m_use[rr]));
            m_run[rr] = m_new;
            l_run[rr] *= corr;  // quad-partial sums; reduced at the end
            const int mi = rr >> 1, e = 2 * (rr & 1);
#pragma unroll
            for (int n = 0; n < 16; ++n) {
                o[mi][n][e] *= corr;
                o[mi][n][e + 1] *= corr;
            }
        }
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
            for (int n = 0; n < kKeyN; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    // exp((s - m) scale) = exp2(s scale log2(e) - m scale log2(e)): one FMA and the exp2.
                    const int rr = 2 * mi + (e >> 1);
                    s[mi][n][e] = exp2f(fmaf(s[mi][n][e], scale_log2, -m_use[rr]));
                    l_run[rr] += s[mi][n][e];
                }

                // O += P V. P's k-step kk2 (keys 16 kk2 ..) is S n-tiles 2 kk2 and 2 kk2 + 1 repacked as bf16 A
                // fragments. V rows (keys) are the B operand's k index, so the transposing ldmatrix yields B fragments:
                // matrices (keys k..k+7 | k+8..k+15) x (d | d + 8) in the order b0, b1 of d-tile 2dp, b0, b1 of 2dp +
                // 1; each feeds both m16 tiles.
#pragma unroll
        for (int kk2 = 0; kk2 < kKeyN / 2; ++kk2) {
            uint32_t pa[2][4];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                pa[mi][0] = pack_bf16(s[mi][2 * kk2][0], s[mi][2 * kk2][1]);
                pa[mi][1] = pack_bf16(s[mi][2 * kk2][2], s[mi][2 * kk2][3]);
                pa[mi][2] = pack_bf16(s[mi][2 * kk2 + 1][0], s[mi][2 * kk2 + 1][1]);
                pa[mi][3] = pack_bf16(s[mi][2 * kk2 + 1][2], s[mi][2 * kk2 + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < 8; ++dp) {
                const int r = kk2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, c = dp * 16 + (lane >> 4) * 8;
                uint32_t b0, b1, b2, b3;
                ldmatrix_x4_trans(shared_address(Vt + attn_swizzle(r, c)), b0, b1, b2, b3);
#pragma unroll
                for (int mi = 0; mi < 2; ++mi) {
                    mma_bf16(o[mi][2 * dp], pa[mi], b0, b1);
                    mma_bf16(o[mi][2 * dp + 1], pa[mi], b2, b3);
                }
            }
        }
        __syncthreads();  // every warp is done with this buffer before the next iteration refills it
    }
    cp_async_wait<0>();

#pragma unroll
    for (int rr = 0; rr < 4; ++rr) {
        float l = l_run[rr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // a row with no valid key yields zeros
        const int r = row0 + 16 * (rr >> 1) + 8 * (rr & 1);
        if (r >= lq) continue;
        const int mi = rr >> 1, e = 2 * (rr & 1);
        if (out16) {  // bf16 activations: each value rounded once, from the same f32 value as below
            uint16_t* orow16 = out16 + int64_t(r) * a.o_sl;
#pragma unroll
            for (int n = 0; n < 16; ++n) {
                const int c = n * 8 + 2 * tig;
                orow16[c] = f32_to_bf16(o[mi][n][e] * inv);
                orow16[c + 1] = f32_to_bf16(o[mi][n][e + 1] * inv);
            }
            continue;
        }
        float* orow = out + int64_t(r) * a.o_sl;
#pragma unroll
        for (int n = 0; n < 16; ++n) {
            const int c = n * 8 + 2 * tig;  // even: one 8-byte store where the output layout allows it
            const float x0 = o[mi][n][e] * inv, x1 = o[mi][n][e + 1] * inv;
            if (a.out_pairs) {
                *reinterpret_cast<float2*>(orow + c) = make_float2(x0, x1);
            } else {
                orow[c] = x0;
                orow[c + 1] = x1;
            }
        }
    }
}

// 8 consecutive elements per thread: one 16-byte store of bf16.
// T: float (rounded here) or uint16_t (bf16 activations: copied as they are).
template <class T>
__global__ void to_bf16_heads_kernel(const T* __restrict__ src, int64_t s_sh, int64_t s_sl, uint16_t* __restrict__ dst,
                                     int64_t L, int64_t D, int64_t n_groups) {
    const int64_t groups_per_row = D / 8;
    for (int64_t gi = global_thread(); gi < n_groups; gi += grid_threads()) {
        const int64_t d = (gi % groups_per_row) * 8, row = gi / groups_per_row;  // row = h * L + l
        const T* s = src + (row / L) * s_sh + (row % L) * s_sl + d;
        uint32_t packed[4];
#pragma unroll
        for (int e = 0; e < 4; ++e)
            packed[e] =
                uint32_t(f32_to_bf16(load_act(s, 2 * e))) | (uint32_t(f32_to_bf16(load_act(s, 2 * e + 1))) << 16);
        *reinterpret_cast<uint4*>(dst + row * D + d) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    }
}

}  // namespace

void to_bf16_heads(const void* src, KType src_type, int64_t s_sh, int64_t s_sl, uint16_t* dst, int64_t H, int64_t L,
                   int64_t D, cudaStream_t stream) {
    const int64_t n_groups = H * L * (D / 8);  // D is a multiple of 8 (the caller checks)
    if (n_groups <= 0) return;
    with_act_type(src_type, [&](auto t) {
        to_bf16_heads_kernel<<<grid_for(n_groups), kThreads, 0, stream>>>(static_cast<const decltype(t)*>(src), s_sh,
                                                                          s_sl, dst, L, D, n_groups);
    });
}

cudaError_t attention_bf16(const AttentionBf16Args& a, cudaStream_t stream) {
    if (a.Lq <= 0 || a.H <= 0) return cudaSuccess;
    if (!fits_32(a.Lq + kAttnBlockRows) || !fits_32(a.Lk + kAttnKeyTile)) return cudaErrorInvalidValue;  // 32-bit rows
    if (const cudaError_t e = opt_in_shared_memory<attention_bf16_kernel>(kSmemBytes); e != cudaSuccess) return e;
    const dim3 grid(unsigned((a.Lq + kAttnBlockRows - 1) / kAttnBlockRows), unsigned(a.H));
    attention_bf16_kernel<<<grid, kThreadsB, kSmemBytes, stream>>>(a);
    return cudaSuccess;
}

}  // namespace sr::cuda
