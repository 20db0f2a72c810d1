// bf16 activations in the op-parity harness: every op that takes them (backends/ops.h,
// kTakesBf16Activations) on every backend under test, with bf16 inputs and outputs and the f32/bf16 mixes the
// transformer uses. The contract is "read any float, compute in f32, round once to the destination's
// dtype", so the expected result is the same backend's all-f32 op on the widened inputs (which the f32
// parity cases check against the double-precision reference), rounded to the output's dtype on the host.
//
// Tolerance: where the backend computes exactly what its f32 op computes, the two agree bit for bit; a
// kernel templated on the element type may sum in another order, moving the f32 value by f32 noise (below
// 1e-5 of the output's scale for these sizes, as the f32 cases bound it), which can flip the final rounding
// to the neighbouring bf16 value: one bf16 ulp, at most 2^-7 |want|. So tol = 2^-7 |want| + 1e-5 max|want|
// for a bf16 output and 1e-5 max|want| + 16 u |want| for an f32 one. Each case also checks that a bf16 output
// really was rounded (it differs from the f32 result somewhere), so an op that ignored the dtype would fail.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "support/op_harness.h"

namespace {

using namespace sr;
using namespace sr::test::harness;
namespace ref = sr::test::ref;

class Bf16OpParity : public OpParity {
protected:
    // Compares `got_dev` (dtype `dt`) with the f32 result `f32_dev` rounded to dt.
    void expect_rounded(const Tensor& got_dev, const Tensor& f32_dev, DType dt) {
        ASSERT_EQ(got_dev.dtype(), dt);
        const Tensor f32_host = GetParam().download(*be_, f32_dev).contiguous();
        const ref::Array f32a = ref::to_array(f32_host);
        const ref::Array want = ref::to_array(f32_host.to(dt));
        const ref::Array g = got(got_dev);
        const double scale = max_abs(want);
        if (dt == DType::BF16) {
            EXPECT_TRUE(all_close(g, want, [&](int64_t i) { return 0x1p-7 * std::fabs(want[i]) + 1e-5 * scale; }));
            bool rounded = false;
            for (int64_t i = 0; i < g.numel() && !rounded; ++i) rounded = g[i] != f32a[i];
            EXPECT_TRUE(rounded) << "a bf16 output equal to the f32 result everywhere: it was not rounded";
        } else {
            EXPECT_TRUE(all_close(g, want, [&](int64_t i) { return 1e-5 * scale + 16 * kU * std::fabs(want[i]); }));
        }
    }
    // A host tensor of random values representable in bf16, as f32 (its widened form) and as `dt`.
    std::pair<Tensor, Tensor> input(const Shape& s, std::mt19937_64& rng, DType dt, double mean = 0,
                                    double stddev = 1) {
        const Tensor wide = randn(s, rng, mean, stddev).to(DType::BF16).to(DType::F32);
        return {wide, wide.to(dt)};
    }
};

const std::vector<std::pair<DType, DType>> kMixes = {
    {DType::BF16, DType::BF16}, {DType::BF16, DType::F32}, {DType::F32, DType::BF16}};

SR_OP_PARITY(Bf16OpParity, Linear, LinearOp) {
    std::mt19937_64 rng(21);
    for (const auto& [xt, yt] : kMixes)
        for (DType wt : {DType::F32, DType::BF16}) {
            const int64_t M = 37, K = 96, N = 65;
            SCOPED_TRACE(::testing::Message()
                         << dtype_name(xt) << " -> " << dtype_name(yt) << ", weight " << dtype_name(wt));
            const auto [xw, x] = input({M, K}, rng, xt);
            const Tensor w = up(randn({N, K}, rng, 0, 1 / std::sqrt(double(K))).to(wt)), b = up(randn({N}, rng));
            Tensor y = up(filled({M, N}, kNaN).to(yt)), y32 = out({M, N});
            be().linear(up(x), w, &b, y);
            be().linear(up(xw), w, &b, y32);
            expect_rounded(y, y32, yt);
        }
}

SR_OP_PARITY(Bf16OpParity, QuantLinear, QuantLinearOp) {
    std::mt19937_64 rng(22);
    for (const auto& [xt, yt] : kMixes) {
        const int64_t M = 19, K = 256, N = 33;
        SCOPED_TRACE(::testing::Message() << dtype_name(xt) << " -> " << dtype_name(yt));
        const auto [xw, x] = input({M, K}, rng, xt);
        const Tensor w = up(randn({N, K}, rng, 0, 0.5).to(DType::F8_E4M3)), b = up(randn({N}, rng));
        Tensor y = up(filled({M, N}, kNaN).to(yt)), y32 = out({M, N});
        be().quant_linear(up(x), w, std::nullopt, K, nullptr, &b, y);
        be().quant_linear(up(xw), w, std::nullopt, K, nullptr, &b, y32);
        expect_rounded(y, y32, yt);
    }
}

// The transformer's use: [B, L, H*D] buffers seen as [B, H, L, D] views, raw projections normalized and
// rotated by the op (QkNormRope), a key-length mask.
SR_OP_PARITY(Bf16OpParity, Attention, AttentionOp) {
    std::mt19937_64 rng(23);
    const int64_t B = 2, L = 70, H = 2, D = 64, n_rope = 50;
    for (DType dt : {DType::BF16, DType::F32}) {  // q, k, v and out in dt; f32: the inputs bf16-representable
        SCOPED_TRACE(dtype_name(dt));
        auto heads = [&](const Tensor& t) { return t.unflatten(2, H, D).permute({0, 2, 1, 3}); };
        const auto [qw, q] = input({B, L, H * D}, rng, DType::BF16);
        const auto [kw, k] = input({B, L, H * D}, rng, DType::BF16);
        const auto [vw, v] = input({B, L, H * D}, rng, DType::BF16);
        const Tensor nq0 = up(randn({D}, rng, 1, 0.2)), nq1 = up(randn({D}, rng, 1, 0.2));
        const Tensor nk0 = up(randn({D}, rng, 1, 0.2)), nk1 = up(randn({D}, rng, 1, 0.2));
        Tensor angles = randn({n_rope, D}, rng);
        Tensor cos = angles.clone(), sin = angles.clone();
        for (int64_t i = 0; i < angles.numel(); ++i) {
            cos.data<float>()[i] = std::cos(angles.data<float>()[i]);
            sin.data<float>()[i] = std::sin(angles.data<float>()[i]);
        }
        const Tensor cos_d = up(cos), sin_d = up(sin);
        QkNormRope qk;
        qk.q_weight = {&nq0, &nq1};
        qk.k_weight = {&nk0, &nk1};
        qk.cos = &cos_d;
        qk.sin = &sin_d;
        qk.n_rope = n_rope;
        AttentionMask mask;
        mask.kv_len = {L, L - 13};
        const float scale = float(1.0 / std::sqrt(double(D)));
        Tensor o = up(filled({B, L, H * D}, kNaN).to(dt)), o32 = out({B, L, H * D});
        Tensor oh = heads(o), oh32 = heads(o32);
        be().attention(heads(up(q.to(dt))), heads(up(k.to(dt))), heads(up(v.to(dt))), oh, mask, scale, qk);
        be().attention(heads(up(qw)), heads(up(kw)), heads(up(vw)), oh32, mask, scale, qk);
        expect_rounded(o, o32, dt);
    }
}

SR_OP_PARITY(Bf16OpParity, LayerNorm, LayerNormOp) {
    std::mt19937_64 rng(24);
    for (const auto& [xt, yt] : kMixes) {
        SCOPED_TRACE(::testing::Message() << dtype_name(xt) << " -> " << dtype_name(yt));
        const auto [xw, x] = input({3, 17, 200}, rng, xt, 3.0, 2.0);
        const Tensor w = up(randn({200}, rng, 1, 0.5)), b = up(randn({200}, rng));
        Tensor y = up(filled(x.shape(), kNaN).to(yt)), y32 = out(x.shape());
        be().layer_norm(up(x), &w, &b, 1e-6f, y);
        be().layer_norm(up(xw), &w, &b, 1e-6f, y32);
        expect_rounded(y, y32, yt);
    }
}

// In place on a bf16 x (as the blocks call it), with f32 shift and scale sliced from a [B, 6D] adaLN output.
SR_OP_PARITY(Bf16OpParity, Modulate, ModulateOp) {
    std::mt19937_64 rng(25);
    const int64_t B = 2, L = 33, D = 130;
    for (const auto& [xt, yt] : kMixes) {
        SCOPED_TRACE(::testing::Message() << dtype_name(xt) << " -> " << dtype_name(yt));
        const auto [xw, x] = input({B, L, D}, rng, xt);
        const Tensor mod = up(randn({B, 6 * D}, rng));
        const Tensor shift = mod.slice(1, 0, D), sc = mod.slice(1, D, 2 * D);
        Tensor xd = up(x), y32 = out(x.shape());
        Tensor y = xt == yt ? xd : up(filled(x.shape(), kNaN).to(yt));
        be().modulate(xd, shift, sc, y);
        be().modulate(up(xw), shift, sc, y32);
        expect_rounded(y, y32, yt);
    }
}

SR_OP_PARITY(Bf16OpParity, GatedResidual, GatedResidualOp) {
    std::mt19937_64 rng(26);
    const int64_t B = 2, L = 33, D = 130;
    for (const auto& [xt, yt] : kMixes)
        for (bool gated : {true, false}) {
            SCOPED_TRACE(::testing::Message()
                         << "x " << dtype_name(xt) << ", y " << dtype_name(yt) << (gated ? ", gate" : ", no gate"));
            const auto [xw, x] = input({B, L, D}, rng, xt);
            const auto [yw, y] = input({B, L, D}, rng, yt);
            const Tensor mod = up(randn({B, 6 * D}, rng));
            const Tensor gate = gated ? mod.slice(1, 2 * D, 3 * D) : Tensor();
            Tensor xd = up(x), x32 = up(xw);
            be().gated_residual(xd, up(y), gate);
            be().gated_residual(x32, up(yw), gate);
            expect_rounded(xd, x32, xt);
        }
}

SR_OP_PARITY(Bf16OpParity, Add, AddOp) {
    std::mt19937_64 rng(27);
    for (const auto& [xt, yt] : kMixes) {
        SCOPED_TRACE(::testing::Message() << "x " << dtype_name(xt) << ", y " << dtype_name(yt));
        const auto [xw, x] = input({5, 301}, rng, xt);
        const auto [yw, y] = input({5, 301}, rng, yt);
        Tensor xd = up(x), x32 = up(xw);
        be().add(xd, up(y));
        be().add(x32, up(yw));
        expect_rounded(xd, x32, xt);
    }
}

SR_OP_PARITY(Bf16OpParity, GeluTanh, GeluTanhOp) {
    std::mt19937_64 rng(28);
    for (const auto& [xt, yt] : kMixes) {
        SCOPED_TRACE(::testing::Message() << dtype_name(xt) << " -> " << dtype_name(yt));
        const auto [xw, x] = input({7, 513}, rng, xt, 0, 3);
        Tensor xd = up(x), y32 = out(x.shape());
        Tensor y = xt == yt ? xd : up(filled(x.shape(), kNaN).to(yt));  // in place, as the MLPs call it
        be().gelu_tanh(xd, y);
        be().gelu_tanh(up(xw), y32);
        expect_rounded(y, y32, yt);
    }
}

// The copies the blocks make: bf16 projections into row ranges of a bf16 [B, S, D] buffer, f32 into bf16
// (the streams entering the blocks) and a strided bf16 slice out.
SR_OP_PARITY(Bf16OpParity, Copy, CopyOp) {
    std::mt19937_64 rng(29);
    const auto [srcw, src] = input({2, 40, 64}, rng, DType::BF16);
    Tensor dst = up(filled({2, 50, 64}, kNaN).to(DType::BF16));
    Tensor rows = dst.slice(1, 10, 50);
    be().copy(up(src), rows);
    EXPECT_TRUE(all_close(got(rows), ref::to_array(srcw), [](int64_t) { return 0.0; })) << "bf16 -> bf16 rows";
    const Tensor f = randn({2, 40, 64}, rng);
    Tensor b = up(filled({2, 40, 64}, kNaN).to(DType::BF16)), f32 = up(f);
    be().copy(f32, b);
    expect_rounded(b, f32, DType::BF16);
    Tensor back = out({2, 40, 32});
    be().copy(b.slice(2, 16, 48), back);
    EXPECT_TRUE(all_close(got(back), ref::to_array(f.to(DType::BF16).slice(2, 16, 48).contiguous()), [](int64_t) {
        return 0.0;
    })) << "strided bf16 -> f32";
}

// Every op that takes bf16 activations (ops.h) has a case here.
TEST(OpCoverage, EveryBf16OpHasABf16ParityCase) {
    std::array<int, kOpCount> cases{};
    for (const ParityCase& c : parity_cases())
        if (c.suite == "Bf16OpParity") ++cases[c.op];
    for (size_t op = 0; op < kOpCount; ++op) {
        if (!kOpTakesBf16[op]) continue;
        EXPECT_GT(cases[op], 0) << "op '" << kOpNames[op] << "' takes bf16 activations but has no Bf16OpParity case";
    }
}

INSTANTIATE_TEST_SUITE_P(Backends, Bf16OpParity, ::testing::ValuesIn(backends_under_test()),
                         [](const ::testing::TestParamInfo<BackendCase>& i) { return i.param.name; });

}  // namespace
