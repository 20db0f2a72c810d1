// The host-side rules of the CUDA backend's cuBLASLt GEMMs, kept free of CUDA headers so CI tests them without
// a GPU (tests/test_cuda_host.cpp): what a cached plan is keyed on, and how scratch is cut into row blocks.
//
// A cuBLASLt algorithm chosen by the heuristic is only valid for pointers at least as aligned as those it was
// chosen for (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES; the bias vector's alignment comes from the bias
// pointer set on the operation), so the alignment of every pointer, the bias included, is part of the key.
//
//   const sr::GemmPlanKey key = sr::gemm_plan_key({M, N, K, ldy, ab, yt}, x, w, y, bias);
//   auto [it, fresh] = plans.try_emplace(key);   // one heuristic query per distinct key
#pragma once

#include <compare>
#include <cstdint>

namespace sr {

// The largest power of two, up to 256, that divides the address (256 for a null pointer is never asked:
// absent operands have alignment 0 in a key).
int pointer_alignment(const void* p);

struct GemmShape {
    int64_t M = 0, N = 0, K = 0, ldy = 0;
    int ab_type = 0, y_type = 0;  // sr::DType values of the operands and of y
    auto operator<=>(const GemmShape&) const = default;
};

struct GemmPlanKey {
    GemmShape shape;
    bool bias = false;
    int align_x = 0, align_w = 0, align_y = 0, align_bias = 0;  // bytes; align_bias 0 without a bias

    auto operator<=>(const GemmPlanKey&) const = default;
};

GemmPlanKey gemm_plan_key(const GemmShape& shape, const void* x, const void* w, const void* y, const void* bias);

// Rows per block when `total` rows of `bytes_per_row` go through `scratch_bytes` of scratch: a multiple of 64
// (so each block's start keeps the base pointer's alignment up to 256 bytes for 4-byte elements), at least 64,
// at most `total`. The scratch bound holds whenever 64 rows fit in it.
int64_t scratch_chunk_rows(int64_t total, int64_t bytes_per_row, int64_t scratch_bytes);

}  // namespace sr
