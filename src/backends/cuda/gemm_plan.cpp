#include "backends/cuda/gemm_plan.h"

#include <algorithm>

namespace sr {

int pointer_alignment(const void* p) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    int al = 256;
    while (al > 1 && a % uintptr_t(al) != 0) al >>= 1;
    return al;
}

GemmPlanKey gemm_plan_key(const GemmShape& shape, const void* x, const void* w, const void* y, const void* bias) {
    GemmPlanKey k;
    k.shape = shape;
    k.bias = bias != nullptr;
    k.align_x = pointer_alignment(x);
    k.align_w = pointer_alignment(w);
    k.align_y = pointer_alignment(y);
    k.align_bias = bias ? pointer_alignment(bias) : 0;
    return k;
}

int64_t scratch_chunk_rows(int64_t total, int64_t bytes_per_row, int64_t scratch_bytes) {
    const int64_t fit = scratch_bytes / std::max<int64_t>(bytes_per_row, 1) / 64 * 64;
    return std::min(std::max<int64_t>(64, fit), std::max<int64_t>(total, 0));
}

}  // namespace sr
