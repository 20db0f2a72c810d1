// The CPU backend's linear layer under GemmPrecision::BF16 with bf16 weights, where oneDNN reads bf16
// activations as they are, adds the bias to the f32 sum and rounds a bf16 output once on store
// (cpu_backend.cpp, gemm.cpp). The op-parity cases run at the default F32 precision, so this path is
// checked here, exactly: both properties below are promises of the implementation, not approximations.
//  - a bf16 output is the f32-output linear (same precision, x widened) rounded to bf16, bit for bit: one
//    f32 sum plus bias, rounded once to nearest even (as Tensor::to rounds);
//  - a row of the output does not depend on how many rows the call has, bit for bit: sequence-parallel
//    ranks run a linear on a shard of the tokens and must reproduce the single-process result (test_mpi
//    checks the pipeline at F32 precision only). A one-row shard is included: oneDNN multiplies one bf16
//    row with another kernel, which gemm_linear avoids.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/cpu/cpu_backend.h"
#include "support/compare.h"

namespace {

using namespace sr;

Tensor randn(const Shape& s, std::mt19937_64& rng, double stddev, DType dt) {
    std::normal_distribution<float> dist(0.0f, float(stddev));
    Tensor t = Tensor::empty(s, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t.to(dt);
}

// The CPU backend at `precision` for one test, restored after.
class CpuLinear : public ::testing::Test {
protected:
    void SetUp() override { saved_ = cpu_backend().gemm_precision(); }
    void TearDown() override { cpu_backend().set_gemm_precision(saved_); }
    GemmPrecision saved_ = GemmPrecision::F32;
};

// Sizes past oneDNN's row and column blocking (tens of rows, 16-64 columns) and not multiples of them.
constexpr int64_t kM = 300, kK = 160, kN = 200;

TEST_F(CpuLinear, Bf16OutputIsTheF32OutputRoundedOnce) {
    cpu_backend().set_gemm_precision(GemmPrecision::BF16);
    std::mt19937_64 rng(5);
    const Tensor w = randn({kN, kK}, rng, 0.1, DType::BF16);
    for (DType bias_dt : {DType::F32, DType::BF16})
        for (DType xt : {DType::F32, DType::BF16}) {
            SCOPED_TRACE(::testing::Message() << "x " << dtype_name(xt) << ", bias " << dtype_name(bias_dt));
            const Tensor x = randn({kM, kK}, rng, 1.0, DType::BF16).to(xt);  // bf16 values either way
            const Tensor b = randn({kN}, rng, 1.0, bias_dt);
            Tensor y16 = Tensor::empty({kM, kN}, DType::BF16), y32 = Tensor::empty({kM, kN}, DType::F32);
            cpu_backend().linear(x, w, &b, y16);
            cpu_backend().linear(x.to(DType::F32), w, &b, y32);
            EXPECT_TRUE(test::bit_identical(y16, y32.to(DType::BF16)));
        }
}

TEST_F(CpuLinear, RowsDoNotDependOnTheRowCount) {
    std::mt19937_64 rng(6);
    for (GemmPrecision p : {GemmPrecision::F32, GemmPrecision::BF16}) {
        cpu_backend().set_gemm_precision(p);
        for (DType wt : {DType::F32, DType::BF16})
            for (DType act : {DType::F32, DType::BF16}) {
                SCOPED_TRACE(::testing::Message() << (p == GemmPrecision::BF16 ? "bf16" : "f32") << " GEMM, weight "
                                                  << dtype_name(wt) << ", activations " << dtype_name(act));
                const Tensor w = randn({kN, kK}, rng, 0.1, wt), b = randn({kN}, rng, 1.0, DType::F32);
                const Tensor x = randn({kM, kK}, rng, 1.0, act);
                Tensor all = Tensor::empty({kM, kN}, act);
                cpu_backend().linear(x, w, &b, all);
                // Shards as uneven as a sequence split of odd token counts, a single row among them.
                for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, 77}, {77, 78}, {78, kM}}) {
                    Tensor part = Tensor::empty({r1 - r0, kN}, act);
                    cpu_backend().linear(x.slice(0, r0, r1).contiguous(), w, &b, part);
                    EXPECT_TRUE(test::bit_identical(part, all.slice(0, r0, r1).contiguous()))
                        << "rows " << r0 << ".." << r1;
                }
            }
    }
}

}  // namespace

// Weights not multiplied as stored (bf16 at F32 precision) are widened a block of rows at a time, each
// block's GEMM adding its own slice of the bias as it stores its columns. 1,100 rows of K = 4,096 make two
// blocks (16 MiB of f32 scratch holds 1,024 rows), so the second block's columns test the slice offset.
// Against a double-precision sum: an f32 GEMM of K terms errs by at most K u sum|x w| (u = 2^-24), while a
// bias from the wrong column or none would be off by about |bias| (standard normal), so the bound below
// cannot hide a wrong slice.
TEST_F(CpuLinear, WeightBlocksAddTheirOwnBiasSlice) {
    cpu_backend().set_gemm_precision(GemmPrecision::F32);
    std::mt19937_64 rng(7);
    const int64_t M = 3, K = 4096, N = 1100;
    const Tensor w = randn({N, K}, rng, 0.02, DType::BF16), b = randn({N}, rng, 1.0, DType::BF16);
    const Tensor x = randn({M, K}, rng, 1.0, DType::F32);
    Tensor y = Tensor::empty({M, N}, DType::F32);
    cpu_backend().linear(x, w, &b, y);
    const Tensor wf = w.to(DType::F32), bf = b.to(DType::F32);
    int64_t bad = 0;
    for (int64_t i = 0; i < M; ++i)
        for (int64_t n = 0; n < N; ++n) {
            double want = bf.data<float>()[n], mag = std::fabs(want);
            for (int64_t k = 0; k < K; ++k) {
                const double t = double(x.data<float>()[i * K + k]) * wf.data<float>()[n * K + k];
                want += t;
                mag += std::fabs(t);
            }
            const double err = std::fabs(double(y.data<float>()[i * N + n]) - want);
            if (!(err <= double(K) * 0x1p-24 * mag)) ++bad;
        }
    EXPECT_EQ(bad, 0) << "of " << M * N << " outputs";
}
