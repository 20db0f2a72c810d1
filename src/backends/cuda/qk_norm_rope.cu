// Fused QK-RMSNorm + interleaved RoPE + bf16 packing: the step between the q/k projections and the bf16
// attention (cuDNN SDPA or attention_bf16.cu). Unfused it is three launches and two f32 round trips through
// memory (rms_norm writes the normalized f32 rows, rope reads and writes them again, to_bf16_heads reads them a
// third time); fused, each head row is read once in f32 and written once in bf16.
//
// One warp per 128-element head row, eight rows per block; lane t owns elements [4t, 4t + 4) (two RoPE pairs):
// one float4 load of x, of each table and of the weights when they are f32, a shuffle-only f32 sum of squares,
// and one 8-byte store of four bf16. Grid (row blocks, heads): the head and token come from the block indices
// without a division. The element math is qk_norm_rope.h's, which the host tests check against the CPU ops.
#include <cuda_runtime.h>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/qk_norm_rope.h"

namespace sr::cuda {

namespace {

__device__ __forceinline__ void load_weights(const void* w, KType t, int e0, float (&out)[kQkLaneElems]) {
    if (t == KType::F32) {
        const float4 v = *reinterpret_cast<const float4*>(static_cast<const float*>(w) + e0);
        out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
        return;
    }
#pragma unroll
    for (int e = 0; e < kQkLaneElems; ++e) out[e] = load_float(w, t, e0 + e);
}

__global__ void __launch_bounds__(kQkRowsPerBlock * 32) qk_norm_rope_kernel(QkNormRopeArgs a) {
    const int lane = threadIdx.x & 31;
    const uint32_t l = blockIdx.x * uint32_t(kQkRowsPerBlock) + (threadIdx.x >> 5);
    const uint32_t h = blockIdx.y;
    if (l >= uint32_t(a.L)) return;  // whole warps leave together: the shuffles below see all 32 lanes
    const int e0 = lane * kQkLaneElems;
    const int64_t at = h * a.s_sh + int64_t(l) * a.s_sl + e0;
    float x[kQkLaneElems];
    if (a.src_type == KType::BF16) {  // bf16 activations: one 8-byte load of four values, widened exactly
        const uint2 bits = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(a.src) + at);
        x[0] = bf16_to_f32(uint16_t(bits.x)), x[1] = bf16_to_f32(uint16_t(bits.x >> 16));
        x[2] = bf16_to_f32(uint16_t(bits.y)), x[3] = bf16_to_f32(uint16_t(bits.y >> 16));
    } else {
        const float4 xv = *reinterpret_cast<const float4*>(static_cast<const float*>(a.src) + at);
        x[0] = xv.x, x[1] = xv.y, x[2] = xv.z, x[3] = xv.w;
    }

    const float sum = warp_sum(qk_lane_sum_squares(x));  // xor butterfly: the same f32 sum in every lane
    const float inv = qk_rms_inverse(sum, kQkNormRopeHeadDim, a.eps);

    const bool rotate = l < uint32_t(a.n_rope);
    float w[kQkLaneElems];
    load_weights(rotate ? a.w0 : a.w1, rotate ? a.w0_type : a.w1_type, e0, w);
    float c[kQkLaneElems] = {1.0f, 1.0f, 1.0f, 1.0f}, s[kQkLaneElems] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (rotate) {
        const float4 cv = *reinterpret_cast<const float4*>(a.cos + l * uint32_t(kQkNormRopeHeadDim) + e0);
        const float4 sv = *reinterpret_cast<const float4*>(a.sin + l * uint32_t(kQkNormRopeHeadDim) + e0);
        c[0] = cv.x, c[1] = cv.y, c[2] = cv.z, c[3] = cv.w;
        s[0] = sv.x, s[1] = sv.y, s[2] = sv.z, s[3] = sv.w;
    }
    float y[kQkLaneElems];
#pragma unroll
    for (int p = 0; p < kQkLaneElems; p += 2)
        qk_norm_rope_pair(x[p], x[p + 1], inv, w[p], w[p + 1], c[p], s[p], c[p + 1], s[p + 1], rotate, y[p], y[p + 1]);
    const uint2 packed = make_uint2(uint32_t(qk_bf16_bits(y[0])) | (uint32_t(qk_bf16_bits(y[1])) << 16),
                                    uint32_t(qk_bf16_bits(y[2])) | (uint32_t(qk_bf16_bits(y[3])) << 16));
    *reinterpret_cast<uint2*>(a.dst + (h * uint32_t(a.L) + l) * uint32_t(kQkNormRopeHeadDim) + e0) = packed;
}

}  // namespace

bool qk_norm_rope_fits(const QkNormRopeArgs& a) {
    // 16-byte aligned rows (float4 loads of x, or 8-byte loads of four bf16; the tables and an f32 weight are
    // contiguous 128-float rows, so aligned when their base is), grid.y <= 65535, 32-bit output and table offsets.
    auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    const bool src_aligned = a.src_type == KType::BF16 ? reinterpret_cast<uintptr_t>(a.src) % 8 == 0 : aligned(a.src);
    const bool tables = a.n_rope == 0 || (aligned(a.cos) && aligned(a.sin));
    const bool weights = (a.w0_type != KType::F32 || aligned(a.w0)) && (a.w1_type != KType::F32 || aligned(a.w1));
    return src_aligned && (a.src_type == KType::F32 || a.src_type == KType::BF16) && a.s_sh % 4 == 0 &&
           a.s_sl % 4 == 0 && tables && weights && a.H <= 65535 && a.H * a.L * kQkNormRopeHeadDim <= kMaxIndex32 &&
           a.n_rope <= a.L && aligned(a.dst);
}

void qk_norm_rope_bf16(const QkNormRopeArgs& a, cudaStream_t stream) {
    if (a.H <= 0 || a.L <= 0) return;
    const dim3 grid(unsigned((a.L + kQkRowsPerBlock - 1) / kQkRowsPerBlock), unsigned(a.H));
    qk_norm_rope_kernel<<<grid, kQkRowsPerBlock * 32, 0, stream>>>(a);
}

}  // namespace sr::cuda
