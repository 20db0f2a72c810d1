// Fused attention on the tensor cores for head dim 128, bf16 operands with f32 accumulation: the transformer's
// hot path (at 544x960x97, attention over ~51,000 tokens is about three quarters of a forward's FLOPs).
//
// Structure of FlashAttention-2 (Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work
// Partitioning", 2023, Algorithm 1): a block of 4 warps owns 64 query rows of one head, each warp 16 rows, and
// loops over 64-key tiles of K and V with an online softmax (running max and sum in registers; the output
// accumulator rescaled when the max grows; one division at the end). The block's Q tile is read once into
// registers; K/V tiles are double-buffered in shared memory with cp.async so the next tile loads while the
// current one is multiplied. Both products are mma.sync.m16n8k16 (bf16 x bf16 -> f32, PTX ISA "Warp-level
// matrix multiply-accumulate instructions"); S = Q K^T stays in registers, and its accumulator layout is
// exactly the A-operand layout of the P V product, so P never touches shared memory. Shared-memory rows are
// 256 bytes, XOR-swizzled in 16-byte chunks (chunk ^ row % 8) so that ldmatrix's eight row reads land in
// eight different bank groups.
//
// Masking is applied only to boundary tiles (the last valid keys, the causal diagonal, the last query rows, any
// tile under a dense mask), and the softmax scale is folded into the exponent's FMA (the kernel needs scale > 0:
// the running maxima are kept in raw score units).
//
// Numerics: q, k, v are rounded to bf16 (a relative error of at most 2^-9 each); scores, softmax statistics
// and the accumulator are f32; the probabilities are rounded to bf16 for the P V product while the row sum
// uses their f32 values (as FlashAttention does). tests/test_cuda_ops.cpp derives the tolerance from that.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backends/cuda/kernel_util.cuh"

namespace sr::cuda {

namespace {

constexpr int kD = 128;     // head dim
constexpr int kRows = 64;   // query rows per block, keys per tile
constexpr int kWarpsB = 4;  // 16 query rows per warp
constexpr int kTileElems = kRows * kD;
constexpr int kSmemBytes = 5 * kTileElems * 2;  // Q, then K and V twice (double buffer): 80 KB

__device__ __forceinline__ int swizzle(int row, int col) {
    return row * kD + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

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

// Rows [row0, row0 + 64) of a [L, 128] bf16 matrix into a swizzled shared tile; rows at or past `limit` are
// zero-filled (their keys are masked, and zeros keep 0 * v finite).
__device__ __forceinline__ void load_tile(uint16_t* tile, const uint16_t* g, int64_t row0, int64_t limit) {
    for (int c = threadIdx.x; c < kRows * (kD / 8); c += kWarpsB * 32) {
        const int row = c >> 4, chunk = c & 15;
        const int64_t grow = row0 + row;
        const bool in = grow < limit;
        const uint16_t* src = g + (in ? grow : 0) * kD + chunk * 8;
        cp_async_16(shared_address(tile + swizzle(row, chunk * 8)), src, in ? 16 : 0);
    }
}

__device__ __forceinline__ bool dense_allows(const AttentionMaskArgs& m, int64_t i, int64_t j) {
    if (!m.dense) return true;
    const int64_t off = i * m.m_sq + j * m.m_sk;
    return m.dense_is_f32 ? static_cast<const float*>(m.dense)[off] != 0.0f
                          : static_cast<const uint8_t*>(m.dense)[off] != 0;
}

__global__ void __launch_bounds__(kWarpsB * 32) attention_bf16_kernel(AttentionBf16Args a) {
    extern __shared__ __align__(128) uint16_t smem_tiles[];
    uint16_t* Qs = smem_tiles;
    uint16_t* Ks = smem_tiles + kTileElems;      // two buffers
    uint16_t* Vs = smem_tiles + 3 * kTileElems;  // two buffers

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;  // mma fragment coordinates: row group, thread in group
    const int64_t h = blockIdx.y, i0 = int64_t(blockIdx.x) * kRows;
    const uint16_t* q = a.q + h * a.Lq * kD;
    const uint16_t* k = a.k + h * a.Lk * kD;
    const uint16_t* v = a.v + h * a.Lk * kD;
    float* out = a.out + h * a.o_sh;
    const AttentionMaskArgs& mask = a.mask;

    const int64_t kv_end = min(max(mask.kv_len, int64_t(0)), a.Lk);
    const int64_t i_last = min(i0 + kRows, a.Lq) - 1;
    const int64_t block_end = mask.causal ? min(max(i_last + 1 + mask.causal_offset, int64_t(0)), kv_end) : kv_end;
    const int n_tiles = int((block_end + kRows - 1) / kRows);

    load_tile(Qs, q, i0, a.Lq);
    if (n_tiles > 0) {
        load_tile(Ks, k, 0, block_end);
        load_tile(Vs, v, 0, block_end);
    }
    cp_async_commit();

    // This thread's two query rows (fragment rows g and g + 8 of its warp's 16).
    const int64_t row[2] = {i0 + warp * 16 + g, i0 + warp * 16 + g + 8};
    int64_t row_end[2];
    for (int r = 0; r < 2; ++r)
        row_end[r] = mask.causal ? min(max(row[r] + 1 + mask.causal_offset, int64_t(0)), kv_end) : kv_end;

    const float scale_log2 = a.scale * 1.4426950408889634f;  // softmax in base 2: exp(x) = exp2(x log2 e)
    float o[16][4];
#pragma unroll
    for (int n = 0; n < 16; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
    uint32_t qf[8][4];

    for (int t = 0; t < n_tiles; ++t) {
        const int buf = t & 1;
        if (t + 1 < n_tiles) {
            load_tile(Ks + (buf ^ 1) * kTileElems, k, int64_t(t + 1) * kRows, block_end);
            load_tile(Vs + (buf ^ 1) * kTileElems, v, int64_t(t + 1) * kRows, block_end);
        }
        cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning tile t
        cp_async_wait<1>();
        __syncthreads();

        if (t == 0) {
            // Q fragments (A operand): matrices (rows 0-7 | 8-15) x (cols k0 | k0 + 8), addressed by lanes 0-7,
            // 8-15, 16-23, 24-31 in the order a0, a1, a2, a3.
#pragma unroll
            for (int kk = 0; kk < 8; ++kk) {
                const int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, c = kk * 16 + (lane >> 4) * 8;
                ldmatrix_x4(shared_address(Qs + swizzle(r, c)), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
            }
        }
        const uint16_t* Kt = Ks + buf * kTileElems;
        const uint16_t* Vt = Vs + buf * kTileElems;

        // S = Q K^T: 16 rows x 64 keys per warp, 8 n-tiles of 8 keys. K rows are the B operand's columns, so
        // the non-transposing ldmatrix yields B fragments: matrices (keys n..n+7 | n+8..n+15) x (d | d + 8).
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk)
#pragma unroll
            for (int nb = 0; nb < 4; ++nb) {
                const int r = nb * 16 + (lane & 7) + (lane >> 4) * 8, c = kk * 16 + ((lane >> 3) & 1) * 8;
                uint32_t b0, b1, b2, b3;
                ldmatrix_x4(shared_address(Kt + swizzle(r, c)), b0, b1, b2, b3);
                mma_bf16(s[2 * nb], qf[kk], b0, b1);
                mma_bf16(s[2 * nb + 1], qf[kk], b2, b3);
            }

        // Masks and the tile's row maxima, on the raw scores (the scale is folded into the exponent below).
        // Element (n, e) is row g + 8 (e >= 2), key n*8 + 2 tig + e%2. Only a boundary tile (the last valid
        // keys, a causal diagonal, the last query rows, or any tile under a dense mask) is masked element by
        // element; for the others every key is valid for both of this thread's rows.
        const int64_t j0 = int64_t(t) * kRows;
        const bool interior = !mask.dense && j0 + kRows <= row_end[0] && j0 + kRows <= row_end[1] && row[1] < a.Lq;
        float mx[2] = {-INFINITY, -INFINITY};
        if (interior) {
#pragma unroll
            for (int n = 0; n < 8; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
        } else {
#pragma unroll
            for (int n = 0; n < 8; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int r = e >> 1;
                    const int64_t key = j0 + n * 8 + 2 * tig + (e & 1);
                    const bool ok = key < row_end[r] && row[r] < a.Lq && dense_allows(mask, row[r], key);
                    s[n][e] = ok ? s[n][e] : -INFINITY;
                    mx[r] = fmaxf(mx[r], s[n][e]);
                }
        }
        float corr[2], m_use[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            // The four threads of a quad hold the same two rows.
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            // Running maxima are in raw score units (the scale is positive, so the maximum is the same key).
            const float m_new = fmaxf(m_run[r], mx[r]);
            // No valid key yet: exp2(-inf * c - 0) = 0 everywhere.
            m_use[r] = m_new == -INFINITY ? 0.0f : m_new * scale_log2;
            corr[r] = m_new == m_run[r] ? 1.0f : exp2f(fmaf(m_run[r], scale_log2, -m_use[r]));
            m_run[r] = m_new;
        }
        float sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                // exp((s - m) scale) = exp2(s scale log2(e) - m scale log2(e)): one FMA and the exp2.
                s[n][e] = exp2f(fmaf(s[n][e], scale_log2, -m_use[e >> 1]));
                sum[e >> 1] += s[n][e];
            }
#pragma unroll
        for (int r = 0; r < 2; ++r) l_run[r] = l_run[r] * corr[r] + sum[r];  // quad-partial; reduced at the end
#pragma unroll
        for (int n = 0; n < 16; ++n) {
            o[n][0] *= corr[0];
            o[n][1] *= corr[0];
            o[n][2] *= corr[1];
            o[n][3] *= corr[1];
        }

        // O += P V. P's k-step kk2 (keys 16 kk2 ..) is S n-tiles 2 kk2 and 2 kk2 + 1 repacked as bf16 A
        // fragments. V rows (keys) are the B operand's k index, so the transposing ldmatrix yields B fragments:
        // matrices (keys k..k+7 | k+8..k+15) x (d | d + 8) in the order b0, b1 of d-tile 2dp, b0, b1 of 2dp + 1.
#pragma unroll
        for (int kk2 = 0; kk2 < 4; ++kk2) {
            const uint32_t pa[4] = {pack_bf16(s[2 * kk2][0], s[2 * kk2][1]), pack_bf16(s[2 * kk2][2], s[2 * kk2][3]),
                                    pack_bf16(s[2 * kk2 + 1][0], s[2 * kk2 + 1][1]),
                                    pack_bf16(s[2 * kk2 + 1][2], s[2 * kk2 + 1][3])};
#pragma unroll
            for (int dp = 0; dp < 8; ++dp) {
                const int r = kk2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, c = dp * 16 + (lane >> 4) * 8;
                uint32_t b0, b1, b2, b3;
                ldmatrix_x4_trans(shared_address(Vt + swizzle(r, c)), b0, b1, b2, b3);
                mma_bf16(o[2 * dp], pa, b0, b1);
                mma_bf16(o[2 * dp + 1], pa, b2, b3);
            }
        }
        __syncthreads();  // every warp is done with this buffer before the next iteration refills it
    }
    cp_async_wait<0>();

    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        inv[r] = l > 0.0f ? 1.0f / l : 0.0f;  // a row with no valid key yields zeros
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        if (row[r] >= a.Lq) continue;
        float* orow = out + row[r] * a.o_sl;
#pragma unroll
        for (int n = 0; n < 16; ++n) {
            const int c = n * 8 + 2 * tig;  // even: one 8-byte store where the output layout allows it
            const float x0 = o[n][2 * r] * inv[r], x1 = o[n][2 * r + 1] * inv[r];
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
__global__ void to_bf16_heads_kernel(const float* __restrict__ src, int64_t s_sh, int64_t s_sl,
                                     uint16_t* __restrict__ dst, int64_t L, int64_t D, int64_t n_groups) {
    const int64_t groups_per_row = D / 8;
    for (int64_t gi = global_thread(); gi < n_groups; gi += grid_threads()) {
        const int64_t d = (gi % groups_per_row) * 8, row = gi / groups_per_row;  // row = h * L + l
        const float* s = src + (row / L) * s_sh + (row % L) * s_sl + d;
        uint32_t packed[4];
#pragma unroll
        for (int e = 0; e < 4; ++e)
            packed[e] = uint32_t(f32_to_bf16(s[2 * e])) | (uint32_t(f32_to_bf16(s[2 * e + 1])) << 16);
        *reinterpret_cast<uint4*>(dst + row * D + d) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    }
}

}  // namespace

void to_bf16_heads(const float* src, int64_t s_sh, int64_t s_sl, uint16_t* dst, int64_t H, int64_t L, int64_t D,
                   cudaStream_t stream) {
    const int64_t n_groups = H * L * (D / 8);  // D is a multiple of 8 (the caller checks)
    if (n_groups <= 0) return;
    to_bf16_heads_kernel<<<grid_for(n_groups), kThreads, 0, stream>>>(src, s_sh, s_sl, dst, L, D, n_groups);
}

cudaError_t attention_bf16(const AttentionBf16Args& a, cudaStream_t stream) {
    if (a.Lq <= 0 || a.H <= 0) return cudaSuccess;
    if (const cudaError_t e = opt_in_shared_memory<attention_bf16_kernel>(kSmemBytes); e != cudaSuccess) return e;
    const dim3 grid(unsigned((a.Lq + kRows - 1) / kRows), unsigned(a.H));
    attention_bf16_kernel<<<grid, kWarpsB * 32, kSmemBytes, stream>>>(a);
    return cudaSuccess;
}

}  // namespace sr::cuda
