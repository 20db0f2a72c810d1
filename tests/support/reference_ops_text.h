// Plain double-precision references for the text-encoder ops (backends/backend.h, "text encoder ops") and for
// causal attention, in the style of reference_ops.h: naive loops straight from each definition, tensors
// decoded with ref::to_array, in-place ops returning the updated value.
//
//   ref::Array want = sr::test::ref::rope_half(x, cos, sin);
#pragma once

#include "backends/backend.h"
#include "support/reference_ops.h"

namespace sr::test::ref {

// table[ids[b, l], :] -> [B, L, D]; ids I32/I64 (assumed in range).
Array embedding(const Tensor& ids, const Tensor& table);
// x [B, L, H, D] rotated as transformers' apply_rotary_pos_emb: x*cos + rotate_half(x)*sin,
// rotate_half(x) = cat(-x[D/2:], x[:D/2]); cos/sin [L, D].
Array rope_half(const Tensor& x, const Tensor& cos, const Tensor& sin);
// x * sigmoid(1.702 x).
Array quick_gelu(const Tensor& x);
// x * y element-wise.
Array mul(const Tensor& x, const Tensor& y);
// Attention with every part of AttentionMask honoured, including `causal` (query i sees keys
// j <= i + Lk - Lq), with the whole score matrix in double. A row with no valid key gives zeros.
Array attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask, double scale);

}  // namespace sr::test::ref
