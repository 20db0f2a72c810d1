// SkyReels' --quant: torchao 0.7.0's float8_weight_only applied to a linear layer's weight, bit for bit.
// ref: torchao 0.7.0 torchao/quantization/quant_api.py (float8_weight_only: to_affine_quantized_floatx with
//      block_size (1, in_features), float8_e4m3fn) and torchao/quantization/quant_primitives.py
//      (choose_qparams_affine, SYMMETRIC, preserve_zero, eps = torch.finfo(torch.float32).eps, scale in the
//      input's dtype; quantize_affine for float8 targets: clamp(input * scale.reciprocal()), then the cast).
//
// The weight is first rounded to bf16 (SkyReelsInfer loads the transformer and the text encoder in bf16 and
// quantizes those), and every operation then runs as PyTorch's bf16 tensor arithmetic does (the op in f32,
// the result rounded to bf16):
//   scale[r] = max(bf16(amax(|w[r, :]|) / 448), 2^-23)              one bf16 scale per output row
//   q[r, c]  = e4m3(clamp(bf16(w[r, c] * bf16(1 / scale[r])), -448, 448))   round to nearest even
// and a forward uses bf16(f32(q) * f32(scale)) (core/dequantize.h rounds the product to the scale's dtype).
//
//   std::vector<uint8_t> codes(N * K); std::vector<uint16_t> scales(N);
//   sr::quantize_float8_weight_only(w, sr::DType::BF16, N, K, codes.data(), scales.data());
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace sr {

// w: rows x cols values of w_dtype (F32, BF16 or F16); codes: rows x cols e4m3 bytes; scales: rows bf16 bits.
void quantize_float8_weight_only(const void* w, DType w_dtype, int64_t rows, int64_t cols, uint8_t* codes,
                                 uint16_t* scales);

}  // namespace sr
