// Argument checks every backend shares: the shapes, dtypes and layouts backend.h promises for an op, checked
// once here for the CPU and the CUDA backends alike. A failure is a bug in the calling model (SR_ASSERT, named
// with the op and the tensors), except a token id outside the vocabulary, which comes from the user's input
// (InputError). Where a tensor lives is each backend's own check.
#pragma once

#include <array>

#include "backends/backend.h"

namespace sr {

struct LinearShape {
    int64_t M, N, K;
    int64_t ldy;  // elements from one row of y to the next (N when y is contiguous)
};
// The elements from one row of t [..., n] to the next when its rows lie at one stride (its last dim
// contiguous), else 0.
int64_t uniform_row_stride(const Tensor& t);
// x [..., K] contiguous and y [..., N] with rows at one stride (uniform_row_stride), f32 or bf16 with as many
// rows, weight contiguous [N, K] f32/bf16/f16 (no fp8), bias N values.
LinearShape check_linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor& y);
// The same for a quantized weight: contiguous FP8 codes [N, K] with an optional float scale of 1 or N values,
// or contiguous block rows [N, quant_row_bytes(block, K)] (Bool) without a scale.
LinearShape check_quant_linear(const QuantLinearOp& op);

// x [B,C,F,H,W] and y [B,O,F',H',W'] contiguous f32, weight [O,C,kt,kh,kw] of a float dtype, the output size
// that stride and padding give, bias O values.
void check_conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                  std::array<int64_t, 3> padding, const Tensor& y);

struct AttentionShape {
    int64_t B, H, Lq, Lk, D;
};
// q [B,H,Lq,D], k and v [B,H,Lk,D], out [B,H,Lq,D]: f32 or bf16, unit innermost stride; kv_len one per batch row;
// the dense mask [B,Lq,Lk] Bool or F32.
AttentionShape check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                               const AttentionMask& mask);

// The attention's QkNormRope for q/k of that shape: every weight defined with D float values, 0 <= n_rope <=
// min(Lq, Lk), tables contiguous f32 [n_rope, D] (absent when n_rope is 0), D even.
void check_qk_norm_rope(const QkNormRope& qk, const AttentionShape& shape);

struct RopeShape {
    int64_t B, L, H, D;
};
// x an f32 [B,L,H,D] view (unit innermost stride, D even), cos/sin contiguous f32 [L, D].
RopeShape check_rope(const Tensor& x, const Tensor& cos, const Tensor& sin, const char* op);

struct PatchEmbedShape {
    int64_t B, C, F, H, W;  // input
    int64_t D, pt, ph, pw;  // weight [D, C, pt, ph, pw]
    int64_t N, P;           // patches per batch row, values per patch (C pt ph pw)
};
// x f32 [B,C,F,H,W] with F, H, W multiples of the patch; y f32 contiguous with B N D elements.
PatchEmbedShape check_patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor& y);

struct EmbeddingShape {
    int64_t B, L, V, D;
};
// ids I32/I64 [B, L] (InputError otherwise: they may come from the user), table contiguous [V, D] f32/bf16/f16,
// y contiguous f32 [B, L, D].
EmbeddingShape check_embedding(const Tensor& ids, const Tensor& table, const Tensor& y);
// Every id of the host tensor `ids` [B, L] (any strides) is in [0, vocab): an InputError names the first that
// is not (a tokenizer/model mismatch), before anything is written.
void check_token_ids(const Tensor& ids, int64_t vocab);
// ids[b, l] of a host I32/I64 tensor with any strides.
int64_t token_id_at(const Tensor& ids, int64_t b, int64_t l);

}  // namespace sr
