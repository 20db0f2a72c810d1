// Rows of a quantized matrix as f32: the one host implementation that loading (io), the CPU GEMM path and
// the tests share. FP8 e4m3 codes are multiplied by their scale (one value, or one per row) and the product
// is rounded to the scale's dtype: bf16 scales give torchao's float8_weight_only values (bf16(q) * scale in
// bf16), f32 scales ComfyUI's scaled FP8 in f32. Block types are dequantized as ggml does (core/quant.h).
//
//   sr::QuantizedRows m{codes, std::nullopt, N, K, scale.raw_data(), sr::DType::BF16, N};
//   sr::dequantize_rows(m, n0, nb, scratch);   // rows [n0, n0 + nb) -> nb x K floats
#pragma once

#include <cstdint>
#include <optional>

#include "core/dtype.h"
#include "core/quant.h"

namespace sr {

struct QuantizedRows {
    const void* data = nullptr;      // FP8: rows x cols codes; block types: rows x quant_row_bytes(cols) bytes
    std::optional<QuantType> block;  // nullopt: FP8 e4m3
    int64_t rows = 0, cols = 0;
    const void* scale = nullptr;  // FP8 only: nullptr (scale 1), or scale_count values of scale_dtype
    DType scale_dtype = DType::F32;
    int64_t scale_count = 0;  // 1 (per tensor) or rows (per row)
};

// Rows [r0, r0 + n) -> n x cols floats at dst. Single-threaded: callers parallelize over rows.
void dequantize_rows(const QuantizedRows& m, int64_t r0, int64_t n, float* dst);

}  // namespace sr
