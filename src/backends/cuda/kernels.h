// The CUDA backend's kernel entry points: plain C++17 functions over raw device pointers, sizes and a stream,
// one group per .cu file. nvcc compiles the kernels as C++17 (CMake 3.25 has no C++20 flag for nvcc), so this
// header sees no sr:: types; the backend (cuda_backend.h, C++20) checks tensors and calls these.
//
// Every function only enqueues work on `stream` and returns; the caller checks cudaGetLastError() after it.
// Element strides are in elements; a 64-bit index is used wherever a tensor can pass 2^31 elements.
//
//   sr::cuda::unary(sr::cuda::UnaryOp::Silu, x, y, n, stream);
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace sr::cuda {

// Element types, with the numeric values of sr::DType (cuda_backend.cpp static_asserts that they match).
enum class KType : int { F32 = 0, BF16 = 1, F16 = 2, F8_E4M3 = 3, I32 = 4, I64 = 5, Bool = 6 };

constexpr int kMaxRank = 8;

// ---- dequantize.cu ----
// A quantized weight matrix on the device (see core/dequantize.h): FP8 e4m3 codes [rows, cols] times a scale
// (one value or one per row; the product rounded to the scale's type), or block_type >= 0: rows of that
// sr::QuantType's blocks.
struct QuantizedRowsArgs {
    const void* data;
    int block_type;  // -1: FP8 codes
    int64_t cols;
    const void* scale;  // FP8 only; nullptr: 1
    KType scale_type;
    int64_t scale_count;
};
// Rows [row0, row0 + rows) -> rows x cols values of dst_type (F32 or BF16) at dst.
void dequantize_rows(const QuantizedRowsArgs& args, int64_t row0, int64_t rows, void* dst, KType dst_type,
                     cudaStream_t stream);

// ---- elementwise.cu ----
// Activations (the tensors named x and y below) of type F32 or BF16, each on its own (ops.h,
// kTakesBf16Activations): read as f32, computed in f32, rounded once when stored. The kernels are templated on
// the two types.
enum class UnaryOp : int { GeluTanh, Silu, QuickGelu };
void unary(UnaryOp op, const void* x, KType x_type, void* y, KType y_type, int64_t n, cudaStream_t stream);
void add(void* x, KType x_type, const void* y, KType y_type, int64_t n, cudaStream_t stream);  // x += y
void mul(float* x, const float* y, int64_t n, cudaStream_t stream);                            // x *= y
// y[b,l,:] = x[b,l,:] * (1 + scale[b,:]) + shift[b,:]; shift/scale f32, rows `*_sb` elements apart.
void modulate(const void* x, KType x_type, const float* shift, int64_t shift_sb, const float* scale, int64_t scale_sb,
              void* y, KType y_type, int64_t B, int64_t L, int64_t D, cudaStream_t stream);
// x[b,l,:] += y[b,l,:] * gate[b,:] (gate f32; null: gate = 1).
void gated_residual(void* x, KType x_type, const void* y, KType y_type, const float* gate, int64_t gate_sb, int64_t B,
                    int64_t L, int64_t D, cudaStream_t stream);
// y[b, dim] from t[b] (t any float type, element stride t_stride); neg_log_max_period = -ln(max_period) in f32.
void timestep_embedding(const void* t, KType t_type, int64_t t_stride, int64_t B, int dim, bool flip_sin_to_cos,
                        float downscale_freq_shift, float neg_log_max_period, float* y, cudaStream_t stream);
// y[m, n] = bias[n] (or 0 when bias is null): a GEMM with K = 0.
void fill_rows(float* y, int64_t M, int64_t N, const float* bias, cudaStream_t stream);

// ---- copy.cu ----
// dst[i] = src[i] for n contiguous elements, converted between float types exactly as sr::convert_elements.
void convert(const void* src, KType src_type, void* dst, KType dst_type, int64_t n, cudaStream_t stream);
struct StridedLayout {
    int rank = 0;
    int64_t shape[kMaxRank] = {};
    int64_t src_stride[kMaxRank] = {};
    int64_t dst_stride[kMaxRank] = {};
};
// dst = src for one shape with any strides (float types converted; other types must match).
void strided_copy(const void* src, KType src_type, void* dst, KType dst_type, const StridedLayout& layout,
                  cudaStream_t stream);
// y[b, l, :] = table[ids[b, l], :] as f32; ids are already validated (in [0, V)).
void embedding(const void* ids, KType id_type, int64_t ids_sb, int64_t ids_sl, const void* table, KType table_type,
               float* y, int64_t B, int64_t L, int64_t D, cudaStream_t stream);
// x [BC, F, H, W] -> y [BC, F+pf0+pf1, H+ph0+ph1, W+pw0+pw1] with edge values; pads = {f0, f1, h0, h1, w0, w1}.
void pad3d_replicate(const float* x, float* y, int64_t BC, int64_t F, int64_t H, int64_t W, const int64_t pads[6],
                     cudaStream_t stream);
void upsample_nearest3d(const float* x, float* y, int64_t BC, int64_t F, int64_t H, int64_t W, int64_t sf, int64_t sh,
                        int64_t sw, cudaStream_t stream);
// im2col for a convolution whose stride equals its kernel: x [B,C,F,H,W] (strided view) -> cols [B*N, C*pt*ph*pw].
void patchify(const float* x, const int64_t x_stride[5], int64_t B, int64_t C, int64_t F, int64_t H, int64_t W,
              int64_t pt, int64_t ph, int64_t pw, float* cols, cudaStream_t stream);

// ---- norms.cu ----
// Over the last dimension D of `rows` contiguous rows; weight/bias (any float type) may be null. layer_norm's x
// and y are F32 or BF16 activations (statistics in double, the output formed in f32 and rounded once).
void layer_norm(const void* x, KType x_type, void* y, KType y_type, int64_t rows, int64_t D, const void* weight,
                KType weight_type, const void* bias, KType bias_type, float eps, cudaStream_t stream);
void rms_norm(const float* x, float* y, int64_t rows, int64_t D, const void* weight, KType weight_type, float eps,
              cudaStream_t stream);
// GroupNorm of x [B, C, S] (contiguous): `scratch` holds group_norm_scratch_doubles(B, C, S) doubles.
int64_t group_norm_scratch_doubles(int64_t B, int64_t C, int64_t S);
void group_norm(const float* x, float* y, int64_t B, int64_t C, int64_t S, int64_t groups, const void* weight,
                KType weight_type, const void* bias, KType bias_type, float eps, double* scratch, cudaStream_t stream);

// ---- rope.cu ----
// In place on x [B, L, H, D] (strides sb, sl, sh; unit innermost) with cos/sin [L, D] f32 contiguous.
// interleaved: pairs (2i, 2i+1); else rotate-half pairs (i, i + D/2).
void rope(float* x, int64_t sb, int64_t sl, int64_t sh, int64_t B, int64_t L, int64_t H, int64_t D, const float* cos,
          const float* sin, bool interleaved, cudaStream_t stream);

// ---- conv3d.cu ----
// y [B,O,Fo,Ho,Wo] = conv(x [B,C,F,H,W], w [O,C,kt,kh,kw]) + bias[O], all f32 contiguous (weights widened by
// the caller), stride and symmetric zero padding per axis (t, h, w). C * kt * kh * kw must be below 2^31 (the
// caller checks): the reduction index is 32-bit.
struct Conv3dShape {
    int64_t B, C, F, H, W;
    int64_t O, kt, kh, kw;
    int64_t st, sh, sw;
    int64_t pt, ph, pw;
    int64_t Fo, Ho, Wo;
};
void conv3d(const float* x, const float* w, const float* bias, float* y, const Conv3dShape& s, cudaStream_t stream);

// ---- attention ----
// Masks shared by both attention kernels, for one batch row: keys [0, kv_len) are valid; causal: query i sees
// keys j <= i + causal_offset (Lk - Lq); dense: mask[i * m_sq + j * m_sk] != 0 (uint8 or f32), may be null.
struct AttentionMaskArgs {
    int64_t kv_len = 0;
    bool causal = false;
    int64_t causal_offset = 0;
    const void* dense = nullptr;
    bool dense_is_f32 = false;
    int64_t m_sq = 0, m_sk = 0;
};
// f32 attention for one batch row, all heads: q [H, Lq, D], k/v [H, Lk, D], out [H, Lq, D] with strides
// (head, token) and a unit innermost stride; any D up to kAttentionF32MaxD.
constexpr int64_t kAttentionF32MaxD = 512;
struct AttentionF32Args {
    const float* q;
    const float* k;
    const float* v;
    float* out;
    int64_t q_sh, q_sl, k_sh, k_sl, v_sh, v_sl, o_sh, o_sl;
    int64_t H, Lq, Lk, D;
    float scale;
    AttentionMaskArgs mask;
};
// Returns the error of the launch's preparation (the shared-memory opt-in); the launch itself is checked with
// cudaGetLastError() as for every kernel.
cudaError_t attention_f32(const AttentionF32Args& args, cudaStream_t stream);

// bf16 tensor-core attention (attention_bf16.cu), head dim 128: q/k/v are first rounded to bf16 into contiguous
// [H, L, 128] buffers (to_bf16_heads), then the fused kernel writes out [H, Lq, 128] (strided; f32 or bf16).
constexpr int64_t kAttentionBf16HeadDim = 128;
// dst [H, L, D] bf16 contiguous <- src [H, L, D] f32 or bf16 (src_type) with strides (head, token), unit
// innermost.
void to_bf16_heads(const void* src, KType src_type, int64_t s_sh, int64_t s_sl, uint16_t* dst, int64_t H, int64_t L,
                   int64_t D, cudaStream_t stream);
// QK-RMSNorm + interleaved RoPE + bf16 packing in one pass (qk_norm_rope.cu; element math in qk_norm_rope.h):
// dst [H, L, 128] bf16 contiguous <- src [H, L, 128] f32 or bf16 (src_type) with strides (head s_sh, token
// s_sl), each head row normalized (eps, weight w0 for tokens [0, n_rope), w1 for the rest; any float type) and
// tokens [0, n_rope) rotated by cos/sin [n_rope, 128] f32. Needs src and both strides aligned to four elements
// (one float4 or four-bf16 load), H <= 65535 and L < 2^31 (qk_norm_rope_fits, which the caller checks).
struct QkNormRopeArgs {
    const void* src;
    int64_t s_sh, s_sl;
    uint16_t* dst;
    int64_t H, L, n_rope;
    const void* w0;
    const void* w1;
    KType w0_type, w1_type;
    const float* cos;
    const float* sin;
    float eps;
    KType src_type = KType::F32;
};
bool qk_norm_rope_fits(const QkNormRopeArgs& args);
void qk_norm_rope_bf16(const QkNormRopeArgs& args, cudaStream_t stream);
struct AttentionBf16Args {
    const uint16_t* q;  // [H, Lq, 128]
    const uint16_t* k;  // [H, Lk, 128]
    const uint16_t* v;  // [H, Lk, 128]
    void* out;          // f32, or bf16 with out_bf16 (the transformer's bf16 activations)
    int64_t o_sh, o_sl;
    int64_t H, Lq, Lk;
    float scale;
    AttentionMaskArgs mask;
    bool out_pairs = false;  // out, o_sh and o_sl allow 8-byte stores of two floats (set by the caller)
    bool out_bf16 = false;
};
cudaError_t attention_bf16(const AttentionBf16Args& args, cudaStream_t stream);

}  // namespace sr::cuda
