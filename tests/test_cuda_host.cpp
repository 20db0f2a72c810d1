// The CUDA backend's host-side rules, tested on the CPU (no GPU, no CUDA header): what a cuBLASLt plan is keyed
// on, how GEMM scratch is cut into row blocks, the device allocator's block cache (real block bytes against the
// budget, capped reuse slack, freeing only what a miss needs), the staging ring's slot cycling, the kernels'
// 32-bit index math and fused QK-norm/RoPE element logic, and the cuDNN descriptors' shapes and strides. The
// GPU code calls exactly these functions, so a failure here is a failure there.
#include <gtest/gtest.h>

#include <set>

#include "backends/cuda/gemm_plan.h"

namespace {

using namespace sr;

const void* at(uintptr_t address) {
    return reinterpret_cast<const void*>(address);
}

TEST(CudaGemmPlan, PointerAlignment) {
    EXPECT_EQ(pointer_alignment(at(0x10000)), 256);
    EXPECT_EQ(pointer_alignment(at(0x10080)), 128);
    EXPECT_EQ(pointer_alignment(at(0x10010)), 16);
    EXPECT_EQ(pointer_alignment(at(0x10004)), 4);
    EXPECT_EQ(pointer_alignment(at(0x10002)), 2);
    EXPECT_EQ(pointer_alignment(at(0x10001)), 1);
}

TEST(CudaGemmPlan, KeyHoldsEveryPointersAlignment) {
    const GemmShape shape{64, 3072, 3072, 3072, 0, 0};
    const auto base = gemm_plan_key(shape, at(0x1000), at(0x2000), at(0x3000), at(0x4000));
    EXPECT_TRUE(base.bias);
    EXPECT_EQ(base.align_bias, 256);
    // A bias slice 4 floats in (a column block of a fused projection) must not reuse a plan chosen for 256.
    const auto bias_view = gemm_plan_key(shape, at(0x1000), at(0x2000), at(0x3000), at(0x4010));
    EXPECT_EQ(bias_view.align_bias, 16);
    EXPECT_NE(base, bias_view);
    EXPECT_NE(base, gemm_plan_key(shape, at(0x1008), at(0x2000), at(0x3000), at(0x4000)));
    EXPECT_NE(base, gemm_plan_key(shape, at(0x1000), at(0x2008), at(0x3000), at(0x4000)));
    EXPECT_NE(base, gemm_plan_key(shape, at(0x1000), at(0x2000), at(0x3008), at(0x4000)));
    // Without a bias: no bias alignment, and a different key from the biased one.
    const auto no_bias = gemm_plan_key(shape, at(0x1000), at(0x2000), at(0x3000), nullptr);
    EXPECT_FALSE(no_bias.bias);
    EXPECT_EQ(no_bias.align_bias, 0);
    EXPECT_NE(base, no_bias);
    // Same pointers' alignment, other addresses: the same plan.
    EXPECT_EQ(base, gemm_plan_key(shape, at(0x9000), at(0xa000), at(0xb000), at(0xc000)));
    // Shape and types are in the key.
    GemmShape other = shape;
    other.ldy = 3 * 3072;
    EXPECT_NE(base, gemm_plan_key(other, at(0x1000), at(0x2000), at(0x3000), at(0x4000)));
    other = shape;
    other.ab_type = 1;
    EXPECT_NE(base, gemm_plan_key(other, at(0x1000), at(0x2000), at(0x3000), at(0x4000)));
    std::set<GemmPlanKey> keys{base, bias_view, no_bias, base};
    EXPECT_EQ(keys.size(), 3u);
}

TEST(CudaGemmPlan, ScratchChunksStayInsideTheBound) {
    const int64_t scratch = int64_t(64) << 20;
    // The model's shapes: 51,456 tokens, K = 3072 (f32 rows) and K = 12288 (the MLP's down projection).
    for (const int64_t K : {int64_t(3072), int64_t(12288), int64_t(3), int64_t(1) << 17}) {
        const int64_t bytes_per_row = K * 4;
        const int64_t rows = scratch_chunk_rows(51456, bytes_per_row, scratch);
        EXPECT_EQ(rows % 64, 0) << K;
        EXPECT_GE(rows, 64);
        if (64 * bytes_per_row <= scratch) {
            EXPECT_LE(rows * bytes_per_row, scratch) << K;
        }
        // Every row is covered exactly once by the blocks.
        int64_t covered = 0;
        for (int64_t r0 = 0; r0 < 51456; r0 += rows) covered += std::min(rows, 51456 - r0);
        EXPECT_EQ(covered, 51456);
    }
    EXPECT_EQ(scratch_chunk_rows(10, 4, scratch), 10);  // fewer rows than a block
    EXPECT_EQ(scratch_chunk_rows(0, 4, scratch), 0);
}

}  // namespace
