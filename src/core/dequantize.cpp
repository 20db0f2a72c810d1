#include "core/dequantize.h"

#include "core/error.h"

namespace sr {

namespace {

// Every e4m3 code's value: decoding is one load (the bit-level decode costs more than the GEMM it feeds).
struct F8Table {
    float value[256];
    F8Table() {
        for (int i = 0; i < 256; ++i) value[i] = f8e4m3_to_f32(uint8_t(i));
    }
};
const F8Table kF8;

}  // namespace

void dequantize_rows(const QuantizedRows& m, int64_t r0, int64_t n, float* dst) {
    SR_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= m.rows, "rows [{}, {}) of {}", r0, r0 + n, m.rows);
    if (m.block) {
        const size_t row_bytes = quant_row_bytes(*m.block, m.cols);
        const int64_t blocks = m.cols / quant_info(*m.block).block_elems;
        const auto* src = static_cast<const uint8_t*>(m.data);
        for (int64_t r = 0; r < n; ++r)
            dequantize_blocks(*m.block, src + size_t(r0 + r) * row_bytes, dst + r * m.cols, blocks);
        return;
    }
    const auto* codes = static_cast<const uint8_t*>(m.data) + size_t(r0 * m.cols);
    for (int64_t i = 0; i < n * m.cols; ++i) dst[i] = kF8.value[codes[i]];
    if (!m.scale) return;
    SR_ASSERT(m.scale_count == 1 || m.scale_count == m.rows, "{} scales for {} rows", m.scale_count, m.rows);
    const size_t es = dtype_size(m.scale_dtype);
    for (int64_t r = 0; r < n; ++r) {
        const int64_t si = m.scale_count == 1 ? 0 : r0 + r;
        float k = 0;
        convert_elements(static_cast<const char*>(m.scale) + size_t(si) * es, m.scale_dtype, &k, DType::F32, 1);
        float* row = dst + r * m.cols;
        switch (m.scale_dtype) {
            case DType::BF16:
                for (int64_t c = 0; c < m.cols; ++c) row[c] = bf16_to_f32(f32_to_bf16(row[c] * k));
                break;
            case DType::F16:
                for (int64_t c = 0; c < m.cols; ++c) row[c] = f16_to_f32(f32_to_f16(row[c] * k));
                break;
            default:
                for (int64_t c = 0; c < m.cols; ++c) row[c] *= k;
        }
    }
}

}  // namespace sr
