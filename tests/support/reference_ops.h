// Plain reference implementations of every Backend op (backends/backend.h), for the op-parity harness in
// tests/test_ops.cpp. Everything is computed in double with naive loops straight from the op's definition:
// no tiling, no online softmax, no oneDNN, and tensors are decoded here (bf16/f16/f8 bits widened by hand,
// not through the engine's convert_elements), so a disagreement with a backend is the backend's or this
// file's, never a helper they share.
//
// Each function takes the same host tensors the backend op takes (any strides, any float dtype) and returns
// a dense row-major double Array with the op's output shape. In-place ops (rope, gated_residual, add) return
// the updated value instead of writing.
//
//   namespace ref = sr::test::ref;
//   ref::Array want = ref::linear(x, w, &b);      // [..., N]
//   backend.linear(x, w, &b, y);
//   ref::Array got = ref::to_array(y);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/tensor.h"

namespace sr::test::ref {

// A dense row-major array of doubles: the reference's working type.
struct Array {
    std::vector<int64_t> shape;
    std::vector<double> data;

    Array() = default;
    explicit Array(std::vector<int64_t> shape_);  // zero-filled
    int64_t numel() const { return int64_t(data.size()); }
    int rank() const { return int(shape.size()); }
    double& operator[](int64_t i) { return data[size_t(i)]; }
    double operator[](int64_t i) const { return data[size_t(i)]; }
    std::string shape_str() const;  // "[2,3,7]"
};

// One element of a float dtype (F32/BF16/F16/F8_E4M3), or Bool/I32/I64, as its exact value.
double decode(const void* element, DType dtype);
// The value of v rounded to the nearest value representable in `dtype` (ties to even), with that dtype's
// overflow rule from core/dtype.h: F32/BF16/F16 overflow to +-inf, F8_E4M3 saturates at +-448; NaN stays
// NaN. v must itself be representable in f32 for BF16/F16/F8 (one rounding, not two).
double round_to(double v, DType dtype);
// Every element of a host tensor of any strides, in row-major logical order.
Array to_array(const Tensor& t);

// y[..., N] = x[..., K] @ w[N, K]^T (+ bias[N]), weights widened exactly.
Array linear(const Tensor& x, const Tensor& w, const Tensor* bias);

// softmax(q k^T * scale) v per (batch, head), materializing the whole [Lq, Lk] score matrix. q [B,H,Lq,D],
// k and v [B,H,Lk,D]. Key j is valid for (b, i) when j < kv_len[b] (kv_len empty: always) and dense[b,i,j]
// is nonzero (dense undefined: always). A query row with no valid key gives zeros. -> [B,H,Lq,D]
Array attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask, double scale);

// (x - mean) / sqrt(var + eps) * weight + bias over the last dim, var the biased (population) variance.
Array layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, double eps);
// x / sqrt(mean(x^2) + eps) * weight over the last dim.
Array rms_norm(const Tensor& x, const Tensor* weight, double eps);

// x [B,L,H,D] rotated by cos/sin [L,D]: out[2i] = x[2i] cos[2i] - x[2i+1] sin[2i],
// out[2i+1] = x[2i+1] cos[2i+1] + x[2i] sin[2i+1].
Array rope_interleaved(const Tensor& x, const Tensor& cos, const Tensor& sin);

// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), with std::tanh.
Array gelu_tanh(const Tensor& x);
// x / (1 + exp(-x)).
Array silu(const Tensor& x);

// x[b,l,:] * (1 + scale[b,:]) + shift[b,:].
Array modulate(const Tensor& x, const Tensor& shift, const Tensor& scale);
// x[b,l,:] + y[b,l,:] * gate[b,:]; gate undefined means 1.
Array gated_residual(const Tensor& x, const Tensor& y, const Tensor& gate);
// x + y.
Array add(const Tensor& x, const Tensor& y);

// Direct 3-D convolution with stride == kernel: x [B,C,F,H,W], weight [D,C,pt,ph,pw], bias [D]
// -> [B, Fp*Hp*Wp, D], tokens in (f, h, w) row-major order.
Array patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor* bias);

// diffusers get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, scale=1, max_period):
// freq_i = exp(-ln(max_period) * i / (dim/2 - shift)) for i < dim/2, emb = [sin(t freq), cos(t freq)],
// halves swapped when flip_sin_to_cos, one zero column appended when dim is odd. -> [B, dim]
Array timestep_embedding(const Tensor& t, int dim, bool flip_sin_to_cos, double downscale_freq_shift,
                         double max_period);

// The elements of src as they read after a copy into a tensor of dtype `dst_dtype`.
Array copy(const Tensor& src, DType dst_dtype);
// parts laid one after another along dim (their other dims equal).
Array concat(const std::vector<Tensor>& parts, int dim);

// The free function sr::gemm on host buffers: C[M,N] = A[M,K] op(B) (+ C_in when accumulate), op(B) =
// B[N,K]^T when b_transposed, else B[K,N]; A and B of `ab_dtype` (F32 or BF16), leading dims in elements.
// Returns the whole [M, ldc] C buffer: columns N..ldc-1 keep C_in's values (gemm must not touch them).
Array gemm(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb, bool b_transposed,
           DType ab_dtype, const float* C_in, int64_t ldc, bool accumulate);

}  // namespace sr::test::ref
