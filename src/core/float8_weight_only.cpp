#include "core/float8_weight_only.h"

#include <cmath>
#include <vector>

#include "core/parallel.h"

namespace sr {

namespace {

float round_bf16(float x) {
    return bf16_to_f32(f32_to_bf16(x));
}

}  // namespace

void quantize_float8_weight_only(const void* w, DType w_dtype, int64_t rows, int64_t cols, uint8_t* codes,
                                 uint16_t* scales) {
    const size_t es = dtype_size(w_dtype);
    constexpr float kEps = 1.1920928955078125e-07f;  // torch.finfo(torch.float32).eps = 2^-23, exact in bf16
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = r0; r < r1; ++r) {
            convert_elements(static_cast<const char*>(w) + size_t(r * cols) * es, w_dtype, row.data(), DType::F32,
                             size_t(cols));
            float amax = 0;  // amax(|row|) with preserve_zero: max(-min(min, 0), max(max, 0))
            for (float& v : row) {
                v = round_bf16(v);  // the weight as the bf16 model holds it
                amax = std::fmax(amax, std::fabs(v));
            }
            const float scale = std::fmax(round_bf16(amax / 448.0f), kEps);
            scales[r] = f32_to_bf16(scale);
            const float inv = round_bf16(1.0f / scale);  // scale.reciprocal() in bf16
            for (int64_t c = 0; c < cols; ++c) {
                float q = round_bf16(row[size_t(c)] * inv);
                q = std::fmin(std::fmax(q, -448.0f), 448.0f);
                codes[r * cols + c] = f32_to_f8e4m3(q);
            }
        }
    });
}

}  // namespace sr
