// The CPU attention's kernels against each other and against the invariant parallel runs rely on. The op
// harness (test_ops.cpp) checks whichever kernel a precision selects against the reference; on an AMX or
// AVX-512 BF16 processor that is our flash kernel for unmasked bf16 attention, so here the oneDNN-tile kernel it
// replaced is checked against it on the same shapes, and every kernel is checked to give each (batch, head) bits that
// do not depend on how many heads the call has: sequence-parallel ranks attend for a slice of the heads, and
// their video must equal one process's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/attention_flash_bf16.h"
#include "backends/cpu/cpu_backend.h"

namespace {

using namespace sr;

struct Kernel {
    std::string name;
    GemmPrecision precision;
    bool flash;
};

std::vector<Kernel> kernels() {
    std::vector<Kernel> out{{"f32 tiles", GemmPrecision::F32, false}, {"bf16 tiles", GemmPrecision::BF16, false}};
    if (flash_attention_available()) out.push_back({flash_attention_engine(), GemmPrecision::BF16, true});
    return out;
}

// [B, L, H, D] with N(0, scale^2) values.
Tensor randn(int64_t B, int64_t L, int64_t H, int64_t D, double scale, std::mt19937_64& rng) {
    std::normal_distribution<double> normal(0, scale);
    Tensor t = Tensor::empty({B, L, H, D}, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(normal(rng));
    return t;
}

// out [B, Lq, H, D] of the attention of [B, L, H, D] buffers, with `kernel`.
Tensor attend(const Kernel& kernel, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask) {
    CpuBackend& be = cpu_backend();
    be.set_gemm_precision(kernel.precision);
    be.set_flash_attention(kernel.flash);
    Tensor out = Tensor::empty(q.shape(), DType::F32);
    Tensor out_heads = out.permute({0, 2, 1, 3});
    be.attention(q.permute({0, 2, 1, 3}), k.permute({0, 2, 1, 3}), v.permute({0, 2, 1, 3}), out_heads, mask,
                 float(1.0 / std::sqrt(double(q.dim(3)))));
    be.set_gemm_precision(GemmPrecision::F32);
    be.set_flash_attention(true);
    return out;
}

bool same_bits(const Tensor& a, const Tensor& b) {
    const Tensor ac = a.contiguous(), bc = b.contiguous();
    return ac.shape() == bc.shape() &&
           std::memcmp(ac.raw_data(), bc.raw_data(), size_t(ac.numel()) * sizeof(float)) == 0;
}

struct Case {
    const char* name;
    int64_t B, Lq, Lk, H, D;
    std::vector<int64_t> kv_len;
};

// Query and key counts that are not multiples of the kernels' tiles, a batch row with no valid key, one with
// a key block and one more key, and the model's head size.
const std::vector<Case> kCases = {
    {"odd lengths, D64", 2, 77, 301, 3, 64, {}},
    {"kv_len across key blocks, D128", 3, 130, 600, 2, 128, {600, 0, 257}},
    {"one key, D32", 1, 33, 1, 2, 32, {}},
};

TEST(CpuAttentionKernels, HeadsAndRowsDoNotDependOnTheCall) {
    for (const Kernel& kernel : kernels())
        for (const Case& c : kCases) {
            SCOPED_TRACE(kernel.name + ", " + c.name);
            std::mt19937_64 rng(5);
            const Tensor q = randn(c.B, c.Lq, c.H, c.D, 2.0, rng), k = randn(c.B, c.Lk, c.H, c.D, 2.0, rng),
                         v = randn(c.B, c.Lk, c.H, c.D, 1.0, rng);
            AttentionMask mask;
            mask.kv_len = c.kv_len;
            const Tensor full = attend(kernel, q, k, v, mask);
            // The last head alone (a rank's share of the heads), and query rows [r0, Lq) alone.
            const int64_t h0 = c.H - 1, r0 = c.Lq / 3 + 1;
            const Tensor head = attend(kernel, q.slice(2, h0, c.H).contiguous(), k.slice(2, h0, c.H).contiguous(),
                                       v.slice(2, h0, c.H).contiguous(), mask);
            EXPECT_TRUE(same_bits(head, full.slice(2, h0, c.H)));
            // Query rows alone: only the flash kernel promises that (each row's sums run over the same fixed
            // key blocks); the tile kernels' oneDNN GEMMs may block a tile of fewer rows differently.
            if (!kernel.flash) continue;
            const Tensor rows = attend(kernel, q.slice(1, r0, c.Lq).contiguous(), k, v, mask);
            EXPECT_TRUE(same_bits(rows, full.slice(1, r0, c.Lq)));
        }
}

TEST(CpuAttentionKernels, FlashAgreesWithTheTileGemms) {
    if (!flash_attention_available()) GTEST_SKIP() << "no AMX or AVX-512 BF16 on this processor or build";
    std::printf("  flash attention engine: %s\n", flash_attention_engine());
    // Both take q, k and v rounded to bf16 and round the softmax weights to bf16 (each weight off by 2^-9 of
    // itself at most, and the weights of a row sum to 1), so each differs from the exact result on those
    // operands by 2^-9 max|v| plus f32 noise (1e-6 max|v| at these sizes, the op harness's bound), and from
    // each other by twice that; the flash kernel's exponentials (a polynomial of relative error below 3e-6,
    // twice in l1) add 6e-6 max|v|.
    for (const Case& c : kCases) {
        SCOPED_TRACE(c.name);
        std::mt19937_64 rng(9);
        const Tensor q = randn(c.B, c.Lq, c.H, c.D, 2.0, rng), k = randn(c.B, c.Lk, c.H, c.D, 2.0, rng),
                     v = randn(c.B, c.Lk, c.H, c.D, 1.0, rng);
        AttentionMask mask;
        mask.kv_len = c.kv_len;
        const Tensor flash = attend({flash_attention_engine(), GemmPrecision::BF16, true}, q, k, v, mask);
        const Tensor tiles = attend({"bf16 tiles", GemmPrecision::BF16, false}, q, k, v, mask);
        double max_v = 0, worst = 0;
        for (int64_t i = 0; i < v.numel(); ++i) max_v = std::max(max_v, std::fabs(double(v.data<float>()[i])));
        for (int64_t i = 0; i < flash.numel(); ++i)
            worst = std::max(worst, std::fabs(double(flash.data<float>()[i]) - double(tiles.data<float>()[i])));
        const double tol = (2 * (0x1p-9 + 1e-6) + 6e-6) * max_v;
        EXPECT_LE(worst, tol);
        EXPECT_GT(worst, 0.0) << "the two kernels gave the same bits: is the flash kernel running?";
    }
}

}  // namespace
