// Op parity of the VAE ops (conv3d, pad3d_replicate, group_norm, upsample_nearest3d) on every backend under
// test, against the double-precision references in support/reference_ops_vae.h, over a grid of shapes,
// strides, paddings and weight dtypes; and the CPU's direct convolution (its fallback when oneDNN refuses a
// shape) against the same reference and against oneDNN.
#include <cmath>

#include "support/op_harness.h"
#include "support/reference_ops_vae.h"

namespace sr {
// The CPU backend's direct convolution (backends/cpu/vae_ops.cpp); not in a header because only the op
// tests call it directly.
void conv3d_direct(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                   std::array<int64_t, 3> padding, Tensor& y);
}  // namespace sr

namespace {

using namespace sr;
using namespace sr::test::harness;
namespace ref = sr::test::ref;

[[maybe_unused]] const bool kTimingRegistered = (register_timing_table(), true);

class VAEOpParity : public OpParity {};

struct ConvCase {
    Shape x;                         // [B, C, F, H, W]
    int64_t out;                     // O
    std::array<int64_t, 3> kernel;   // kt, kh, kw
    std::array<int64_t, 3> stride;   // t, h, w
    std::array<int64_t, 3> padding;  // symmetric zeros
    bool bias;
};

const std::vector<ConvCase> kConvCases = {
    {{1, 3, 5, 8, 10}, 8, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, true},      // VAE conv_in after causal padding
    {{2, 8, 7, 9, 6}, 16, {3, 3, 3}, {2, 2, 2}, {0, 0, 0}, true},      // time+space downsampler
    {{1, 16, 5, 10, 10}, 16, {3, 3, 3}, {1, 2, 2}, {0, 0, 0}, false},  // space-only downsampler
    {{1, 16, 3, 4, 6}, 32, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, true},     // quant_conv / conv_shortcut
    {{1, 5, 4, 6, 7}, 3, {2, 3, 1}, {1, 1, 2}, {1, 1, 0}, true},       // odd kernel, zero padding
    {{1, 24, 3, 8, 8}, 17, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, true},     // channel counts off oneDNN's blocks
};

// f32 accumulation of K = C*kt*kh*kw products (each exact in double, the bf16/f16 weights widened
// exactly): the rounding error of the sum is about u*sqrt(K) times the sum of |products| for random signs
// and at most u*K times it. We allow 8*u*sqrt(K)*sum|x w| (8 sigma-ish), plus 1e-7 for the f32 output
// rounding of values near zero.
double conv_tol(const ConvCase& c, double abs_sum) {
    const double K = double(c.x[1] * c.kernel[0] * c.kernel[1] * c.kernel[2]);
    return 8.0 * kU * std::sqrt(K) * abs_sum + 1e-7;
}

SR_OP_PARITY(VAEOpParity, Conv3d, Conv3dOp) {
    std::mt19937_64 rng(11);
    for (DType wdt : {DType::F32, DType::BF16, DType::F16})
        for (const ConvCase& c : kConvCases) {
            SCOPED_TRACE(c.x.str() + " weight " + std::string(dtype_name(wdt)));
            const Tensor x = randn(c.x, rng);
            const Tensor w = randn({c.out, c.x[1], c.kernel[0], c.kernel[1], c.kernel[2]}, rng, 0.0, 0.2).to(wdt);
            const Tensor b = randn({c.out}, rng);
            const ref::Array want = ref::conv3d(x, w, c.bias ? &b : nullptr, c.stride, c.padding);
            const ref::Array mag = ref::conv3d(x, w, c.bias ? &b : nullptr, c.stride, c.padding, true);
            Tensor y = out(Shape(want.shape));
            const Tensor bu = up(b);
            be().conv3d(up(x), up(w), c.bias ? &bu : nullptr, c.stride, c.padding, y);
            EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) { return conv_tol(c, mag[i]); }));

            // The direct fallback, on the host: same reference, same bound.
            Tensor yd = filled(Shape(want.shape), kNaN);
            conv3d_direct(x, w, c.bias ? &b : nullptr, c.stride, c.padding, yd);
            EXPECT_TRUE(all_close(ref::to_array(yd), want, [&](int64_t i) { return conv_tol(c, mag[i]); }))
                << "direct conv3d";
            // And oneDNN vs direct: two f32 sums of the same terms, each within the bound above.
            EXPECT_TRUE(all_close(got(y), ref::to_array(yd), [&](int64_t i) { return 2 * conv_tol(c, mag[i]); }));
        }
}

TEST_P(VAEOpParity, Conv3dTiming) {
    // The measurement case: 64 channels, 3x3x3, a decoder-like block of 8 frames at 64x64.
    std::mt19937_64 rng(3);
    const Tensor x = up(randn({1, 64, 10, 66, 66}, rng));  // causally padded input
    for (DType wdt : {DType::F32, DType::BF16}) {
        const Tensor w = up(randn({64, 64, 3, 3, 3}, rng, 0.0, 0.05).to(wdt));
        const Tensor b = up(randn({64}, rng));
        Tensor y = out({1, 64, 8, 64, 64});
        // FLOPs: 2 * B * O * F' * H' * W' * C * kt * kh * kw (a multiply and an add per weight per output).
        const double flops = 2.0 * 64 * 8 * 64 * 64 * 64 * 27;
        time_op(std::string("conv3d w:") + std::string(dtype_name(wdt)), "[1,64,10,66,66]*[64,64,3,3,3]", flops,
                "GFLOP/s", [&] {
                    be().conv3d(x, w, &b, {1, 1, 1}, {0, 0, 0}, y);
                });
        EXPECT_TRUE(std::isfinite(got(y)[0]));
    }
}

SR_OP_PARITY(VAEOpParity, Pad3dReplicate, Pad3dReplicateOp) {
    std::mt19937_64 rng(5);
    const std::vector<std::pair<Shape, std::array<int64_t, 6>>> cases = {
        {{1, 3, 4, 5, 6}, {2, 0, 1, 1, 1, 1}},  // the causal conv's (k-1, 0, k//2, k//2, k//2, k//2)
        {{2, 2, 1, 1, 1}, {2, 0, 1, 1, 1, 1}},  // a single pixel is replicated everywhere
        {{1, 4, 3, 7, 2}, {0, 3, 2, 0, 0, 4}},  // asymmetric, trailing pads
        {{1, 1, 2, 3, 3}, {0, 0, 0, 0, 0, 0}},  // identity
    };
    for (const auto& [s, p] : cases) {
        SCOPED_TRACE(s.str());
        const Tensor x = randn(s, rng);
        const ref::Array want = ref::pad3d_replicate(x, p);
        Tensor y = out(Shape(want.shape));
        be().pad3d_replicate(up(x), p, y);
        // A copy: exact.
        EXPECT_TRUE(all_close(got(y), want, [](int64_t) { return 0.0; }));
    }
}

SR_OP_PARITY(VAEOpParity, GroupNorm, GroupNormOp) {
    std::mt19937_64 rng(9);
    struct Case {
        Shape x;
        int64_t groups;
        bool affine;
        DType wdt;
    };
    const std::vector<Case> cases = {
        {{1, 8, 3, 4, 6}, 4, true, DType::F32},    // the fixture VAE's norms
        {{2, 16, 2, 5, 5}, 1, true, DType::BF16},  // one group
        {{1, 6, 1, 3, 3}, 6, false, DType::F32},   // one channel per group, no affine
        {{2, 12, 17}, 3, true, DType::F16},        // any rank >= 2 (attention's [B, C, L])
        {{1, 32, 5, 16, 16}, 32, true, DType::F32},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.x.str());
        // A large mean against the spread (mean 2, std 0.5) exercises the two-pass variance.
        const Tensor x = randn(c.x, rng, 2.0, 0.5);
        const Tensor w = randn({c.x[1]}, rng, 1.0, 0.3).to(c.wdt), b = randn({c.x[1]}, rng).to(c.wdt);
        const ref::Array want = ref::group_norm(x, c.groups, c.affine ? &w : nullptr, c.affine ? &b : nullptr, 1e-6);
        Tensor y = out(c.x);
        const Tensor wu = up(w), bu = up(b);
        be().group_norm(up(x), c.groups, c.affine ? &wu : nullptr, c.affine ? &bu : nullptr, 1e-6f, y);
        // Statistics are double; y = x*scale + shift in f32 with scale, shift rounded from double: a few
        // roundings of terms up to (|x| + |mean|) * rstd * |w| + |b| ~ 12 here, 3 ulps of which is 2e-6;
        // 1e-5 * (1 + |y|) leaves margin.
        EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) { return 1e-5 * (1.0 + std::fabs(want[i])); }));
    }
}

SR_OP_PARITY(VAEOpParity, UpsampleNearest3d, UpsampleNearest3dOp) {
    std::mt19937_64 rng(13);
    const std::vector<std::pair<Shape, std::array<int64_t, 3>>> cases = {
        {{1, 4, 3, 4, 5}, {2, 2, 2}},  // time + space (the decoder's later frames)
        {{2, 3, 1, 3, 3}, {1, 2, 2}},  // space only (the first frame)
        {{1, 2, 2, 2, 3}, {3, 1, 4}},  // arbitrary factors
    };
    for (const auto& [s, f] : cases) {
        SCOPED_TRACE(s.str());
        const Tensor x = randn(s, rng);
        const ref::Array want = ref::upsample_nearest3d(x, f);
        Tensor y = out(Shape(want.shape));
        be().upsample_nearest3d(up(x), f, y);
        EXPECT_TRUE(all_close(got(y), want, [](int64_t) { return 0.0; }));  // a copy: exact
    }
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Backends, VAEOpParity, ::testing::ValuesIn(backends_under_test()),
                         [](const auto& info) { return info.param.name; });
