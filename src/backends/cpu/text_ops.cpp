// CPU ops of the text encoders (Llama, CLIP): embedding gather, rotate-half RoPE, quick GELU, product.
#include <algorithm>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/rope_rows.h"
#include "backends/cpu/vec_math.h"
#include "backends/op_checks.h"
#include "core/parallel.h"

namespace sr {

namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per task: enough work to amortize a thread wake-up

}  // namespace

void CpuBackend::exec(const EmbeddingOp& op) {
    const auto& [ids, table, y] = op;
    const EmbeddingShape s = check_embedding(ids, table, y);
    const int64_t B = s.B, L = s.L, D = s.D;
    check_token_ids(ids, s.V);  // every id before anything is written
    const size_t row_bytes = size_t(D) * dtype_size(table.dtype());
    const auto* td = static_cast<const uint8_t*>(table.raw_data());
    float* yd = y.data<float>();
    parallel_for(
        B * L,
        [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t id = token_id_at(ids, r / L, r % L);
                convert_elements(td + size_t(id) * row_bytes, table.dtype(), yd + r * D, DType::F32, size_t(D));
            }
        },
        std::max<int64_t>(1, kGrain / std::max<int64_t>(D, 1)));
}

void CpuBackend::exec(const RopeHalfOp& op) {
    const auto& [x, cos, sin] = op;
    // x*cos + rotate_half(x)*sin, rotate_half(x) = (-x[D/2:], x[:D/2]).
    for_each_rope_head(x, cos, sin, "rope_half", [](float* v, const float* c, const float* s, int64_t D) {
        const int64_t half = D / 2;
        for (int64_t i = 0; i < half; ++i) {
            const float lo = v[i], hi = v[i + half];
            v[i] = lo * c[i] - hi * s[i];
            v[i + half] = hi * c[i + half] + lo * s[i + half];
        }
    });
}

void CpuBackend::exec(const QuickGeluOp& op) {
    const auto& [x, y] = op;
    SR_ASSERT(x.dtype() == DType::F32 && y.dtype() == DType::F32 && x.is_contiguous() && y.is_contiguous() &&
                  x.numel() == y.numel(),
              "quick_gelu on {} -> {}", x.describe(), y.describe());
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    parallel_for(
        x.numel(),
        [&](int64_t i0, int64_t i1) {
            vec::map(xd + i0, yd + i0, i1 - i0, [](auto v) { return v / (1.0f + vec::exp(-1.702f * v)); });
        },
        kGrain);
}

void CpuBackend::exec(const MulOp& op) {
    const auto& [x, y] = op;
    SR_ASSERT(x.dtype() == DType::F32 && y.dtype() == DType::F32 && x.is_contiguous() && y.is_contiguous() &&
                  x.numel() == y.numel(),
              "mul on {} *= {}", x.describe(), y.describe());
    float* xd = x.data<float>();
    const float* yd = y.data<float>();
    parallel_for(
        x.numel(),
        [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) xd[i] *= yd[i];
        },
        kGrain);
}

}  // namespace sr
