// The text-encoder ops (embedding, rope_half, quick_gelu, mul) and causal attention in the op-parity
// harness: every backend under test against the double-precision references in
// support/reference_ops_text.h, each tolerance next to its check with its reason; kU = 2^-24 is f32's unit
// roundoff. The largest case of each op is timed into the harness's table.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "support/op_harness.h"
#include "support/reference_ops_text.h"

namespace {

using namespace sr;
using namespace sr::test::harness;
namespace ref = sr::test::ref;

[[maybe_unused]] const bool kTimingRegistered = (register_timing_table(), true);

class TextOpParity : public OpParity {};

Tensor random_ids(const Shape& s, int64_t V, DType dtype, std::mt19937_64& rng) {
    Tensor t = Tensor::empty(s, dtype);
    std::uniform_int_distribution<int64_t> dist(0, V - 1);
    for (int64_t i = 0; i < t.numel(); ++i) {
        if (dtype == DType::I64)
            t.data<int64_t>()[i] = dist(rng);
        else
            t.data<int32_t>()[i] = int32_t(dist(rng));
    }
    return t;
}

SR_OP_PARITY(TextOpParity, Embedding, EmbeddingOp) {
    struct Case {
        int64_t B, L, V, D;
        DType ids, table;
    };
    const std::vector<Case> cases = {{1, 1, 1, 1, DType::I64, DType::F32},
                                     {2, 7, 50, 64, DType::I32, DType::BF16},
                                     {2, 20, 512, 64, DType::I64, DType::F16},
                                     {2, 351, 4000, 4096, DType::I64, DType::BF16}};
    std::mt19937_64 rng(11);
    for (const Case& c : cases) {
        const Tensor ids = random_ids({c.B, c.L}, c.V, c.ids, rng);
        const Tensor table = randn({c.V, c.D}, rng).to(c.table);
        SCOPED_TRACE(::testing::Message() << "ids " << shape_str(ids) << " table " << shape_str(table));
        const Tensor ids_dev = up(ids), table_dev = up(table);
        Tensor y = out({c.B, c.L, c.D});
        be().embedding(ids_dev, table_dev, y);
        // A gather with exact widening of f32/bf16/f16: bit-exact.
        EXPECT_TRUE(all_close(got(y), ref::embedding(ids, table), [](int64_t) { return 0.0; }));
        if (&c == &cases.back())
            time_op("embedding", shape_str(table), double(c.B * c.L * c.D) * (4 + 2), "GB/s",
                    [&] { be().embedding(ids_dev, table_dev, y); });
    }
}

TEST_P(TextOpParity, EmbeddingRejectsIdsOutsideTheTable) {
    const Tensor table = up(filled({10, 4}, 1.0f));
    Tensor y = out({1, 3, 4});
    for (int64_t bad : {int64_t(10), int64_t(-1), int64_t(1) << 40}) {
        Tensor ids = Tensor::zeros({1, 3}, DType::I64);
        ids.data<int64_t>()[1] = bad;
        EXPECT_THROW(be().embedding(up(ids), table, y), InputError) << bad;
    }
}

SR_OP_PARITY(TextOpParity, RopeHalf, RopeHalfOp) {
    struct Case {
        int64_t B, L, H, D;
        bool strided;  // x is the first H heads of a wider [B, L, H + 2, D] buffer, a view
    };
    const std::vector<Case> cases = {
        {1, 1, 1, 2, false}, {2, 20, 4, 16, true}, {2, 33, 3, 64, false}, {1, 351, 32, 128, true}};
    std::mt19937_64 rng(5);
    for (const Case& c : cases) {
        const int64_t B = c.B, L = c.L, H = c.H, D = c.D, half = D / 2;
        const Tensor buf = randn({B, L, c.strided ? H + 2 : H, D}, rng);
        auto x_of = [&](const Tensor& t) { return c.strided ? t.slice(2, 0, H) : t; };
        // Tables as Llama builds them: cat(freqs, freqs), freqs = l * 500000^(-2i/D).
        Tensor cos = Tensor::empty({L, D}, DType::F32), sin = Tensor::empty({L, D}, DType::F32);
        for (int64_t l = 0; l < L; ++l)
            for (int64_t i = 0; i < half; ++i) {
                const double angle = double(l) * std::pow(500000.0, -2.0 * double(i) / double(D));
                cos.data<float>()[l * D + i] = cos.data<float>()[l * D + i + half] = float(std::cos(angle));
                sin.data<float>()[l * D + i] = sin.data<float>()[l * D + i + half] = float(std::sin(angle));
            }
        SCOPED_TRACE(::testing::Message() << "x " << shape_str(x_of(buf)));
        Tensor buf_dev = up(buf);
        Tensor x_dev = x_of(buf_dev);
        const Tensor cos_dev = up(cos), sin_dev = up(sin);
        be().rope_half(x_dev, cos_dev, sin_dev);
        const ref::Array want = ref::rope_half(x_of(buf), cos, sin);
        const ref::Array before = ref::to_array(x_of(buf));
        // Two products and one add/sub: a few u of |x_i| + |x_{i+D/2}| (|cos|, |sin| <= 1); 16u.
        auto tol = [&](int64_t at) {
            const int64_t e = at % D, pair = at - e + (e % half);
            return 16 * kU * (std::fabs(before[pair]) + std::fabs(before[pair + half]));
        };
        EXPECT_TRUE(all_close(got(x_dev), want, tol));
        // The rest of the buffer is untouched.
        if (c.strided) {
            const ref::Array rest = ref::to_array(buf.slice(2, H, H + 2));
            EXPECT_TRUE(all_close(got(buf_dev.slice(2, H, H + 2)), rest, [](int64_t) { return 0.0; }));
        }
        if (&c == &cases.back())
            time_op("rope_half", shape_str(x_of(buf)), 2.0 * 4 * double(B * L * H * D), "GB/s",
                    [&] { be().rope_half(x_dev, cos_dev, sin_dev); });
    }
}

SR_OP_PARITY(TextOpParity, QuickGelu, QuickGeluOp) {
    std::mt19937_64 rng(6);
    for (int64_t n : {int64_t(1), int64_t(17), int64_t(1000), int64_t(2 * 77 * 3072)}) {
        Tensor x = randn({n}, rng, 0.0, 4.0);
        x.data<float>()[0] = -100.0f;  // deep negative tail: y underflows towards 0
        SCOPED_TRACE(n);
        const Tensor xd = up(x);
        Tensor y = out({n});
        be().quick_gelu(xd, y);
        const ref::Array want = ref::quick_gelu(x);
        // x / (1 + exp(-1.702 x)): the f32 product 1.702x (u), exp's relative error (<2e-7) amplified by
        // |1.702x| at most ~1 in the sigmoid's transition and two roundings: 2e-6 relative to y, with an
        // absolute floor for x < -50, where y (< 1e-36) may flush to zero.
        EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) { return 2e-6 * std::fabs(want[i]) + 1e-36; }));
        // In place (y = x) is allowed.
        Tensor inplace = up(x);
        be().quick_gelu(inplace, inplace);
        EXPECT_TRUE(all_close(got(inplace), want, [&](int64_t i) { return 2e-6 * std::fabs(want[i]) + 1e-36; }));
        if (n == 2 * 77 * 3072)
            time_op("quick_gelu", shape_str(x), 2.0 * 4 * n, "GB/s", [&] { be().quick_gelu(xd, y); });
    }
}

SR_OP_PARITY(TextOpParity, Mul, MulOp) {
    std::mt19937_64 rng(8);
    for (int64_t n : {int64_t(1), int64_t(33), int64_t(351 * 14336)}) {
        const Tensor x = randn({n}, rng), yv = randn({n}, rng);
        SCOPED_TRACE(n);
        Tensor xd = up(x);
        const Tensor yd = up(yv);
        be().mul(xd, yd);
        const ref::Array want = ref::mul(x, yv);
        // One f32 rounding of an exact product: u relative.
        EXPECT_TRUE(all_close(got(xd), want, [&](int64_t i) { return kU * std::fabs(want[i]); }));
        if (n == 351 * 14336) time_op("mul", shape_str(x), 3.0 * 4 * n, "GB/s", [&] { be().mul(xd, yd); });
    }
}

SR_OP_PARITY(TextOpParity, CausalAttention, AttentionOp) {
    struct Case {
        const char* name;
        int64_t B, H, Lq, Lk, D;
        std::vector<int64_t> kv_len;
        bool dense_padding;  // a dense key mask with a hole (left/inner padding) on top of causal
    };
    const std::vector<Case> cases = {
        {"one token", 1, 1, 1, 1, 8, {}, false},
        {"llama fixture shape, right padding", 2, 4, 20, 20, 16, {20, 13}, false},
        {"clip 77, no mask", 2, 12, 77, 77, 64, {}, false},
        {"queries at the end (Lq < Lk)", 1, 2, 5, 40, 32, {}, false},
        {"dense hole", 2, 2, 30, 30, 32, {}, true},
        {"llama 351 tokens", 1, 32, 351, 351, 128, {351}, false},
    };
    std::mt19937_64 rng(9);
    for (const Case& c : cases) {
        SCOPED_TRACE(c.name);
        const Tensor q = randn({c.B, c.Lq, c.H, c.D}, rng).permute({0, 2, 1, 3});
        const Tensor k = randn({c.B, c.Lk, c.H, c.D}, rng).permute({0, 2, 1, 3});
        const Tensor v = randn({c.B, c.Lk, c.H, c.D}, rng).permute({0, 2, 1, 3});
        AttentionMask mask_host, mask_dev;
        mask_host.causal = mask_dev.causal = true;
        mask_host.kv_len = mask_dev.kv_len = c.kv_len;
        if (c.dense_padding) {
            mask_host.dense = Tensor::empty({c.B, c.Lq, c.Lk}, DType::Bool);
            uint8_t* m = mask_host.dense.data<uint8_t>();
            for (int64_t b = 0; b < c.B; ++b)
                for (int64_t i = 0; i < c.Lq; ++i)
                    for (int64_t j = 0; j < c.Lk; ++j) m[(b * c.Lq + i) * c.Lk + j] = (j >= 3 && j < 7) ? 0 : 1;
            mask_dev.dense = up(mask_host.dense);
        }
        const float scale = float(1.0 / std::sqrt(double(c.D)));
        Tensor out_buf = out({c.B, c.Lq, c.H, c.D});
        Tensor o = out_buf.permute({0, 2, 1, 3});
        const Tensor qd = up(q.contiguous()), kd = up(k.contiguous()), vd = up(v.contiguous());
        be().attention(qd, kd, vd, o, mask_dev, scale);
        // The operands as the backend multiplies them (bf16-rounded under bf16 attention, op_harness.h).
        const GemmPrecision precision = GetParam().attention_precision;
        const Tensor qr = attention_operand(q, precision), kr = attention_operand(k, precision),
                     vr = attention_operand(v, precision);
        const ref::Array want = ref::attention_masked(qr, kr, vr, mask_host, scale);
        // The budget of test_ops.cpp's attention: score errors ~8u |q||k| scale move the output by at most
        // twice that in units of max|v|, plus 1e-6 max|v| for exp, accumulation and rescaling, plus the softmax
        // weights' rounding under bf16.
        const double score_bound = max_abs(ref::to_array(qr)) * max_abs(ref::to_array(kr)) * double(c.D) * scale;
        const double tol =
            max_abs(ref::to_array(vr)) * (8 * kU * score_bound + 1e-6 + attention_weights_rounding(precision));
        const ref::Array result = ref::to_array(from_array(got(out_buf)).permute({0, 2, 1, 3}));
        EXPECT_TRUE(all_close(result, want, [&](int64_t) { return tol; })) << "tol " << tol;
        if (&c == &cases.back())
            time_op("attention causal", "[1,32,351,128]", 4.0 * c.H * c.Lq * c.Lk * c.D / 2, "GFLOP/s",
                    [&] { be().attention(qd, kd, vd, o, mask_dev, scale); });
    }
}

INSTANTIATE_TEST_SUITE_P(Backends, TextOpParity, ::testing::ValuesIn(backends_under_test()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
