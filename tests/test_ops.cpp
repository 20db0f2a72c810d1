// The op-parity harness: every Backend op, on every backend under test, over a grid of shapes and dtypes,
// compared with the double-precision reference in tests/support/reference_ops.h. Each op's largest case is
// also timed, and the timings print as one table when the binary exits, so the harness doubles as a quick
// per-op timing table (bench/ holds the real benchmarks).
//
// Adding a backend: append a BackendCase to backends_under_test() with its upload/download/sync; every
// TEST_P below then runs on it. Each tolerance is written next to its check with the error analysis behind
// it; kU = 2^-24 is f32's unit roundoff.
//
//   ./test_ops --gtest_filter='*Attention*cpu_f32*'
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/op_checks.h"
#include "backends/profiling_backend.h"
#include "core/dequantize.h"
#include "support/op_harness.h"

namespace {

using namespace sr;
using namespace sr::test::harness;
namespace ref = sr::test::ref;

[[maybe_unused]] const bool kTimingRegistered = (register_timing_table(), true);

// ----------------------------------------------------------------------------------------------------------
// linear

SR_OP_PARITY(OpParity, Linear, LinearOp) {
    struct Case {
        std::vector<int64_t> x_shape;  // [..., K]
        int64_t N;
    };
    const std::vector<Case> cases = {
        {{1, 1}, 1},         // one element
        {{3, 7}, 17},        // odd sizes
        {{2, 17, 33}, 129},  // batch dims
        {{130, 257}, 3},     // N below any vector width
        {{7, 513}, 600},     // K one past a power of two
        {{5, 4096}, 600},    // K large enough that the CPU widens non-f32 weights in several row blocks
        {{129, 600}, 513},   // largest: timed
    };
    std::mt19937_64 rng(1);
    for (const Case& c : cases)
        for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
            const int64_t K = c.x_shape.back(), N = c.N;
            const Tensor x = randn(Shape(c.x_shape), rng);
            const Tensor w = randn({N, K}, rng, 0.0, 1.0 / std::sqrt(double(K))).to(wt);
            const Tensor b = randn({N}, rng).to(wt);  // the checkpoint's dtype, like the weight
            std::vector<int64_t> y_shape = c.x_shape;
            y_shape.back() = N;
            const Tensor xd = up(x), wd = up(w), bd = up(b);
            // Scale: |x_m| |w_n| / sqrt(K) = sqrt(K) rms(x_m) rms(w_n), the size of a dot product of unrelated
            // vectors and so of its rounding errors; the bias add and the final rounding scale with |b| and |y|.
            const std::vector<double> xn = row_norms(ref::to_array(x), K), wn = row_norms(ref::to_array(w), K);
            const ref::Array bias = ref::to_array(b);
            const double rtol = gemm_rtol(wt);
            for (bool with_bias : {false, true}) {
                SCOPED_TRACE(::testing::Message()
                             << "x " << shape_str(x) << " w " << shape_str(w) << (with_bias ? " +bias" : ""));
                Tensor y = out(Shape(y_shape));
                be().linear(xd, wd, with_bias ? &bd : nullptr, y);
                const ref::Array want = ref::linear(x, w, with_bias ? &b : nullptr);
                EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) {
                    const double dot_scale = xn[size_t(i / N)] * wn[size_t(i % N)] / std::sqrt(double(K));
                    return rtol * (dot_scale + (with_bias ? std::fabs(bias[i % N]) : 0.0) + std::fabs(want[i]));
                }));
                if (&c == &cases.back() && with_bias)
                    time_op(fmt::format("linear w={}", dtype_name(wt)),
                            fmt::format("x[{},{}] w[{},{}]", c.x_shape[0], K, N, K), 2.0 * c.x_shape[0] * N * K,
                            "GFLOP/s", [&] { be().linear(xd, wd, &bd, y); });
            }
        }
}

// Which views the linear op writes in place: rows at one stride, the last dim contiguous.
TEST(OpChecks, UniformRowStride) {
    const Tensor t = Tensor::empty({2, 3, 10}, DType::F32);
    EXPECT_EQ(uniform_row_stride(t), 10);                                          // contiguous
    EXPECT_EQ(uniform_row_stride(t.slice(2, 2, 6)), 10);                           // a column slice
    EXPECT_EQ(uniform_row_stride(t.slice(1, 1, 3).select(0, 0)), 10);              // some rows of one batch row
    EXPECT_EQ(uniform_row_stride(t.slice(1, 1, 3)), 0);                            // a gap between the batch rows
    EXPECT_EQ(uniform_row_stride(t.slice(0, 1, 2).slice(1, 1, 3)), 10);            // one batch row left: no gap
    EXPECT_EQ(uniform_row_stride(t.select(1, 0)), 30);                             // every third row
    EXPECT_EQ(uniform_row_stride(t.permute({0, 2, 1})), 0);                        // the last dim strided
    EXPECT_EQ(uniform_row_stride(t.select(0, 1).select(0, 2).slice(0, 3, 9)), 6);  // one row
    EXPECT_EQ(uniform_row_stride(t.unflatten(2, 5, 2).permute({0, 2, 1, 3})), 0);  // rows that interleave
}

// The same op with its GELU epilogue, writing into a column slice of a wider buffer (the single-stream block's
// MLP writes its hidden layer into the fused projection's input so): the columns around it stay as they were.
SR_OP_PARITY(OpParity, LinearGeluIntoColumns, LinearOp) {
    std::mt19937_64 rng(11);
    for (DType wt : {DType::F32, DType::BF16}) {
        const int64_t M = 67, K = 96, N = 40, left = 24, width = left + N + 8;
        const Tensor x = randn({M, K}, rng);
        const Tensor w = randn({N, K}, rng, 0.0, 1.0 / std::sqrt(double(K))).to(wt);
        const Tensor b = randn({N}, rng).to(wt);
        SCOPED_TRACE(::testing::Message() << "w " << dtype_name(wt));
        const Tensor xd = up(x), wd = up(w), bd = up(b);
        Tensor wide = out({M, width});  // NaN: the columns the op must not touch
        Tensor y = wide.slice(1, left, left + N);
        be().linear(xd, wd, &bd, y, Activation::GeluTanh);
        const ref::Array sum = ref::linear(x, w, &b);
        const ref::Array want = ref::gelu_tanh(from_array(sum));
        const ref::Array all = got(wide);
        const std::vector<double> xn = row_norms(ref::to_array(x), K), wn = row_norms(ref::to_array(w), K);
        const ref::Array bias = ref::to_array(b);
        const double rtol = gemm_rtol(wt);
        int64_t untouched = 0, wrong = 0;
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < width; ++j) {
                const double v = all[i * width + j];
                if (j < left || j >= left + N) {
                    untouched += std::isnan(v);
                    continue;
                }
                const int64_t n = j - left;
                // The linear op's bound on the sum (see Linear above), through GELU's slope (|gelu'| < 1.13),
                // plus the GELU's own rounding (the GeluTanh bound: 16u of |x| + |y|).
                const double s = sum[i * N + n], g = want[i * N + n];
                const double sum_tol =
                    rtol * (xn[size_t(i)] * wn[size_t(n)] / std::sqrt(double(K)) + std::fabs(bias[n]) + std::fabs(s));
                wrong += !(std::fabs(v - g) <= 1.13 * sum_tol + 16 * kU * (std::fabs(s) + std::fabs(g)));
            }
        EXPECT_EQ(untouched, M * (width - N)) << "the op wrote outside its columns";
        EXPECT_EQ(wrong, 0) << "of " << M * N;
    }
}

// ----------------------------------------------------------------------------------------------------------
// quant_linear: the same products with the weight stored quantized. The reference multiplies the weight as
// core/dequantize.h decodes it (exact f32 values), so this checks the backend's blocked GEMM path and its
// decoding against the host's; the decoding itself is checked bit for bit against ggml in test_quant.

struct QuantWeight {
    std::string name;
    Tensor data, scale;              // stored form (scale: FP8 only, may be undefined)
    std::optional<QuantType> block;  // nullopt: FP8
    Tensor dequantized;              // [N, K] f32, what the stored form means
};

std::vector<QuantWeight> quantized_forms(const Tensor& w, std::mt19937_64& rng) {
    const int64_t N = w.dim(0), K = w.dim(1);
    std::vector<QuantWeight> forms;
    auto finish = [&](QuantWeight q) {
        const Tensor scale = q.scale;
        const QuantizedRows rows{q.data.raw_data(),
                                 q.block,
                                 N,
                                 K,
                                 scale.defined() ? scale.raw_data() : nullptr,
                                 scale.defined() ? scale.dtype() : DType::F32,
                                 scale.defined() ? scale.numel() : 0};
        q.dequantized = Tensor::empty({N, K}, DType::F32);
        dequantize_rows(rows, 0, N, q.dequantized.data<float>());
        forms.push_back(std::move(q));
    };
    // FP8 e4m3: a plain cast, one f32 scale for the tensor (ComfyUI), one bf16 scale per row (torchao).
    const Tensor codes = w.to(DType::F8_E4M3);
    finish({"f8", codes, Tensor(), std::nullopt, Tensor()});
    finish({"f8 scale f32[1]", codes, Tensor::from_vector({0.75f}, {1}), std::nullopt, Tensor()});
    finish({"f8 scale bf16[N]", codes, randn({N}, rng, 1.0, 0.3).to(DType::BF16), std::nullopt, Tensor()});
    // Every GGUF block type, quantized with ggml's reference rules.
    for (int t = 0; t < kQuantTypeCount; ++t) {
        const QuantType type = QuantType(t);
        const size_t row_bytes = quant_row_bytes(type, K);
        Tensor rows = Tensor::empty({N, int64_t(row_bytes)}, DType::Bool);
        for (int64_t r = 0; r < N; ++r)
            quantize_row(type, w.data<float>() + r * K, static_cast<uint8_t*>(rows.raw_data()) + size_t(r) * row_bytes,
                         K);
        finish({std::string(quant_info(type).name), rows, Tensor(), type, Tensor()});
    }
    return forms;
}

SR_OP_PARITY(OpParity, QuantLinear, QuantLinearOp) {
    struct Case {
        std::vector<int64_t> x_shape;  // [..., K], K a multiple of 256 (the K types' block)
        int64_t N;
    };
    const std::vector<Case> cases = {
        {{1, 256}, 1},     {{3, 256}, 17},
        {{2, 9, 512}, 33}, {{5, 4096}, 600},  // several row blocks of dequantized weights
        {{129, 768}, 513},                    // largest: timed
    };
    std::mt19937_64 rng(2);
    // f32 arithmetic: the dense analysis (gemm_rtol). BF16: activations and the dequantized weights are both
    // rounded to bf16, twice the per-term error of the dense bf16-weight case, so twice its bound.
    const double rtol =
        GetParam().precision == GemmPrecision::BF16 ? 2.0 * gemm_rtol(DType::BF16) : gemm_rtol(DType::F32);
    for (const Case& c : cases) {
        const int64_t K = c.x_shape.back(), N = c.N;
        const Tensor x = randn(Shape(c.x_shape), rng);
        const Tensor w = randn({N, K}, rng, 0.0, 1.0 / std::sqrt(double(K)));
        const Tensor b = randn({N}, rng);
        std::vector<int64_t> y_shape = c.x_shape;
        y_shape.back() = N;
        const Tensor xd = up(x), bd = up(b);
        const std::vector<double> xn = row_norms(ref::to_array(x), K);
        for (const QuantWeight& q : quantized_forms(w, rng)) {
            SCOPED_TRACE(::testing::Message() << q.name << " x " << shape_str(x) << " N " << N);
            const Tensor wd = up(q.data), sd = q.scale.defined() ? up(q.scale) : Tensor();
            const std::vector<double> wn = row_norms(ref::to_array(q.dequantized), K);
            Tensor y = out(Shape(y_shape));
            be().quant_linear(xd, wd, q.block, K, sd.defined() ? &sd : nullptr, &bd, y);
            const ref::Array want = ref::linear(x, q.dequantized, &b);
            const ref::Array bias = ref::to_array(b);
            EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) {
                const double dot_scale = xn[size_t(i / N)] * wn[size_t(i % N)] / std::sqrt(double(K));
                return rtol * (dot_scale + std::fabs(bias[i % N]) + std::fabs(want[i]));
            }));
            if (&c == &cases.back())
                time_op(fmt::format("quant_linear {}", q.name), fmt::format("x[{},{}] w[{},{}]", c.x_shape[0], K, N, K),
                        2.0 * c.x_shape[0] * N * K, "GFLOP/s",
                        [&] { be().quant_linear(xd, wd, q.block, K, sd.defined() ? &sd : nullptr, &bd, y); });
        }
    }
}

// ----------------------------------------------------------------------------------------------------------
// attention

enum class Layout { BHLD, BLHD, FusedQKV };  // contiguous; permuted [B,L,H,D]; views into one [B,L,3,H,D]
enum class MaskKind { None, DenseBool, DenseF32, Refiner, RefinerF32 };

struct AttnCase {
    const char* name;
    int64_t B, H, Lq, Lk, D;
    Layout layout = Layout::BLHD;
    std::vector<int64_t> kv_len = {};
    MaskKind mask = MaskKind::None;
    std::vector<int64_t> n_valid_text = {};  // Refiner: valid tokens per batch row
    double qk_std = 1.0;                     // scores have std qk_std^2
    int ramp = 0;                            // +1 / -1: scores rise / fall along the keys by 40
    bool timed = false;
};

float& at4(Tensor& t, int64_t a, int64_t b, int64_t c, int64_t d) {
    return static_cast<float*>(t.raw_data())[a * t.stride(0) + b * t.stride(1) + c * t.stride(2) + d * t.stride(3)];
}

// Dense [B, Lq, Lk] mask of the given kind (Refiner: HunyuanVideo's token refiner, mask[i] & mask[j] with
// key 0 always allowed). The random kinds also plant rows that are fully masked, valid only in the last key
// tile, and valid only in the first, which are the online softmax's edge cases.
Tensor make_mask(const AttnCase& c, std::mt19937_64& rng) {
    const int64_t B = c.B, Lq = c.Lq, Lk = c.Lk;
    std::vector<float> m(size_t(B * Lq * Lk));
    std::uniform_real_distribution<double> u01(0, 1);
    const float attend_values[] = {1.0f, 0.5f, -2.0f, 1e-30f};  // nonzero attends, whatever its value
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < Lq; ++i)
            for (int64_t j = 0; j < Lk; ++j) {
                bool on;
                if (c.mask == MaskKind::Refiner || c.mask == MaskKind::RefinerF32) {
                    const int64_t n = c.n_valid_text[size_t(b)];
                    on = (i < n && j < n) || j == 0;
                } else if (i == 1) {
                    on = false;
                } else if (i == 2) {
                    on = j >= Lk - 5;
                } else if (i == 3) {
                    on = j < 3;
                } else {
                    on = u01(rng) < 0.6;
                }
                float v = on ? 1.0f : 0.0f;
                if (c.mask == MaskKind::DenseF32) v = on ? attend_values[(i + j) % 4] : ((i + j) % 2 ? -0.0f : 0.0f);
                m[size_t((b * Lq + i) * Lk + j)] = v;
            }
    const Tensor f = Tensor::from_vector(m, {B, Lq, Lk});
    if (c.mask == MaskKind::DenseF32 || c.mask == MaskKind::RefinerF32) return f;
    Tensor bt = Tensor::empty({B, Lq, Lk}, DType::Bool);
    for (int64_t i = 0; i < bt.numel(); ++i) bt.data<uint8_t>()[i] = m[size_t(i)] != 0.0f;
    return bt;
}

class AttentionParity : public OpParity {
protected:
    void run(const AttnCase& c) {
        SCOPED_TRACE(c.name);
        std::mt19937_64 rng(7);
        const int64_t B = c.B, H = c.H, Lq = c.Lq, Lk = c.Lk, D = c.D;
        // Host buffers in the model's layouts and the [B,H,L,D] views the op takes.
        std::vector<Tensor> bufs;
        auto views = [&](const std::vector<Tensor>& b) -> std::array<Tensor, 3> {
            if (c.layout == Layout::BHLD) return {b[0], b[1], b[2]};
            if (c.layout == Layout::BLHD)
                return {b[0].permute({0, 2, 1, 3}), b[1].permute({0, 2, 1, 3}), b[2].permute({0, 2, 1, 3})};
            return {b[0].select(2, 0).permute({0, 2, 1, 3}), b[0].select(2, 1).permute({0, 2, 1, 3}),
                    b[0].select(2, 2).permute({0, 2, 1, 3})};
        };
        if (c.layout == Layout::BHLD) {
            bufs = {randn({B, H, Lq, D}, rng), randn({B, H, Lk, D}, rng), randn({B, H, Lk, D}, rng)};
        } else if (c.layout == Layout::BLHD) {
            bufs = {randn({B, Lq, H, D}, rng), randn({B, Lk, H, D}, rng), randn({B, Lk, H, D}, rng)};
        } else {
            ASSERT_EQ(Lq, Lk) << "a fused qkv buffer has one length";
            bufs = {randn({B, Lq, 3, H, D}, rng)};
        }
        auto [q, k, v] = views(bufs);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h) {
                for (int64_t i = 0; i < Lq; ++i)
                    for (int64_t d = 0; d < D; ++d) {
                        at4(q, b, h, i, d) *= float(c.qk_std);
                        if (c.ramp) at4(q, b, h, i, 0) = 4.0f;
                    }
                for (int64_t j = 0; j < Lk; ++j)
                    for (int64_t d = 0; d < D; ++d) {
                        at4(k, b, h, j, d) *= float(c.qk_std);
                        // q0 * k0 * scale = 4 k0 / sqrt(D) runs over [0, 40] along the keys.
                        const double frac = c.ramp > 0 ? double(j) / double(Lk) : 1.0 - double(j) / double(Lk);
                        if (c.ramp && d == 0) at4(k, b, h, j, 0) = float(10.0 * std::sqrt(double(D)) * frac);
                    }
            }
        AttentionMask mask_host, mask_dev;
        mask_host.kv_len = mask_dev.kv_len = c.kv_len;
        if (c.mask != MaskKind::None) {
            mask_host.dense = make_mask(c, rng);
            mask_dev.dense = up(mask_host.dense);
        }
        const float scale = float(1.0 / std::sqrt(double(D)));

        std::vector<Tensor> bufs_dev;
        for (const Tensor& t : bufs) bufs_dev.push_back(up(t));
        auto [qd, kd, vd] = views(bufs_dev);
        Tensor out_buf = out(c.layout == Layout::BHLD ? Shape{B, H, Lq, D} : Shape{B, Lq, H, D});
        Tensor o = c.layout == Layout::BHLD ? out_buf : out_buf.permute({0, 2, 1, 3});
        be().attention(qd, kd, vd, o, mask_dev, scale);

        // The reference takes q, k and v as the backend multiplies them (attention_operand: bf16-rounded under
        // bf16 attention), so what is left is the f32 budget below plus the softmax weights' rounding.
        const GemmPrecision precision = GetParam().attention_precision;
        const Tensor qr = attention_operand(q, precision), kr = attention_operand(k, precision),
                     vr = attention_operand(v, precision);
        const ref::Array want = ref::attention(qr, kr, vr, mask_host, scale);
        // Error budget: a score s = q.k*scale computed in f32 is off by ~4u * sum_d|q_d k_d| * scale at most
        // for these D (bounded here by max|q_i| max|k_j| scale); perturbing the scores by ds moves the softmax
        // weights by at most 2 max|ds| in l1, so the output by 2 max|ds| max|v|. vec::exp's relative error
        // (<2e-7, twice in l1), the P.V accumulation and the tile rescalings add a few 1e-7 of max|v|: 1e-6.
        const ref::Array qa = ref::to_array(qr), ka = ref::to_array(kr);
        auto max_row_norm = [&](const ref::Array& a) {
            double m = 0;
            for (int64_t r = 0; r < a.numel() / D; ++r) {
                double s = 0;
                for (int64_t d = 0; d < D; ++d) s += a[r * D + d] * a[r * D + d];
                m = std::max(m, std::sqrt(s));
            }
            return m;
        };
        const double score_bound = max_row_norm(qa) * max_row_norm(ka) * scale;
        const double tol =
            max_abs(ref::to_array(vr)) * (8 * kU * score_bound + 1e-6 + attention_weights_rounding(precision));
        ref::Array result = got(out_buf);
        if (c.layout != Layout::BHLD) result = ref::to_array(from_array(result).permute({0, 2, 1, 3}));
        EXPECT_TRUE(all_close(result, want, [&](int64_t) { return tol; }))
            << "scores up to " << score_bound << ", tol " << tol;

        if (c.timed)
            time_op("attention", fmt::format("B{} H{} Lq{} Lk{} D{}", B, H, Lq, Lk, D), 4.0 * B * H * Lq * Lk * D,
                    "GFLOP/s", [&] { be().attention(qd, kd, vd, o, mask_dev, scale); });
    }
};

SR_OP_PARITY(AttentionParity, Shapes, AttentionOp) {
    run({"one key", 1, 1, 1, 1, 16, Layout::BHLD});
    run({"odd sizes", 2, 3, 7, 17, 64});
    run({"query and key tiles crossed", 2, 2, 130, 513, 64});
    run({"fused qkv, D16", 2, 3, 257, 257, 16, Layout::FusedQKV});
    run({"three key tiles, D128", 1, 2, 257, 1100, 128, Layout::BLHD, {}, MaskKind::None, {}, 1.0, 0, true});
}

SR_OP_PARITY(AttentionParity, KvLen, AttentionOp) {
    // Row 1 has no valid key (zeros out); 513 crosses a key tile by one; 1 leaves one key.
    run({"kv_len", 4, 2, 33, 600, 64, Layout::BLHD, {600, 0, 513, 1}});
    run({"kv_len fused", 2, 2, 130, 130, 64, Layout::FusedQKV, {129, 0}});
}

SR_OP_PARITY(AttentionParity, DenseMask, AttentionOp) {
    run({"bool", 2, 2, 129, 600, 64, Layout::BLHD, {}, MaskKind::DenseBool});
    run({"f32", 2, 2, 129, 600, 64, Layout::BLHD, {}, MaskKind::DenseF32});
    run({"bool with kv_len", 2, 1, 17, 530, 64, Layout::BHLD, {530, 300}, MaskKind::DenseBool});
}

SR_OP_PARITY(AttentionParity, RefinerMask, AttentionOp) {
    // HunyuanVideo's token refiner: text tokens attend to valid text tokens, key 0 always.
    run({"refiner bool", 2, 2, 257, 257, 128, Layout::FusedQKV, {}, MaskKind::Refiner, {37, 257}});
    run({"refiner f32, a row with no text", 2, 3, 33, 33, 64, Layout::BLHD, {}, MaskKind::RefinerF32, {5, 0}});
}

SR_OP_PARITY(AttentionParity, LargeScores, AttentionOp) {
    // Scores of magnitude ~30-40 exercise the online softmax's rescaling; the ramps put each row's maximum
    // in the last key tile (every tile rescales the accumulator) or in the first (later tiles underflow).
    run({"scores ~30", 1, 2, 130, 1100, 64, Layout::BLHD, {}, MaskKind::None, {}, std::sqrt(10.0)});
    run({"rising scores", 1, 1, 64, 1300, 64, Layout::BLHD, {}, MaskKind::None, {}, 1.0, +1});
    run({"falling scores", 1, 1, 64, 1300, 64, Layout::BLHD, {}, MaskKind::None, {}, 1.0, -1});
    run({"rising scores, kv_len", 2, 1, 64, 1300, 64, Layout::BLHD, {1300, 700}, MaskKind::None, {}, 1.0, +1});
}

// ----------------------------------------------------------------------------------------------------------
// normalizations

const std::vector<std::vector<int64_t>> kNormShapes = {{1, 1},       {7, 3},    {3, 17},   {130, 128},
                                                       {2, 33, 257}, {17, 600}, {64, 3072}};

SR_OP_PARITY(OpParity, LayerNorm, LayerNormOp) {
    std::mt19937_64 rng(2);
    const float eps = 1e-6f;
    for (const auto& shape : kNormShapes)
        for (int affine = 0; affine < 4; ++affine) {  // none, weight, weight + bias, bias
            const int64_t D = shape.back();
            // Rows off-center (mean 3, std 2) so a one-pass variance would lose digits; row 0 constant.
            Tensor x = randn(Shape(shape), rng, 3.0, 2.0);
            std::fill(x.data<float>(), x.data<float>() + D, 1.5f);
            const DType pt = affine == 1 ? DType::BF16 : DType::F32;
            const Tensor w = randn({D}, rng, 1.0, 0.5).to(pt), b = randn({D}, rng).to(pt);
            const Tensor* wp = affine == 1 || affine == 2 ? &w : nullptr;
            const Tensor* bp = affine >= 2 ? &b : nullptr;
            SCOPED_TRACE(::testing::Message() << shape_str(x) << " affine " << affine);

            const Tensor xd = up(x), wd = up(w), bd = up(b);
            Tensor y = out(Shape(shape));
            be().layer_norm(xd, wp ? &wd : nullptr, bp ? &bd : nullptr, eps, y);

            const ref::Array want = ref::layer_norm(x, wp, bp, eps);
            // f32 evaluation of (x - mean) * inv * w + b: x - mean loses u (|x| + |mean|), then each multiply
            // and add rounds once more, and row statistics kept in f32 or better add errors of the same
            // order; 8u of those magnitudes covers it.
            const ref::Array xa = ref::to_array(x), wa = ref::to_array(w), ba = ref::to_array(b);
            std::vector<double> row_mean(size_t(xa.numel() / D)), row_inv(row_mean.size());
            for (size_t r = 0; r < row_mean.size(); ++r) {
                double mean = 0, var = 0;
                for (int64_t i = 0; i < D; ++i) mean += xa[int64_t(r) * D + i];
                mean /= double(D);
                for (int64_t i = 0; i < D; ++i) var += std::pow(xa[int64_t(r) * D + i] - mean, 2);
                row_mean[r] = mean;
                row_inv[r] = 1.0 / std::sqrt(var / double(D) + eps);
            }
            EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) {
                const size_t r = size_t(i / D);
                return 8 * kU *
                       ((std::fabs(xa[i]) + std::fabs(row_mean[r])) * row_inv[r] * (wp ? std::fabs(wa[i % D]) : 1.0) +
                        (bp ? std::fabs(ba[i % D]) : 0.0) + std::fabs(want[i]));
            }));
            if (&shape == &kNormShapes.back() && affine == 2)
                time_op("layer_norm", shape_str(x), 2.0 * 4 * x.numel(), "GB/s",
                        [&] { be().layer_norm(xd, &wd, &bd, eps, y); });
        }
}

SR_OP_PARITY(OpParity, RmsNorm, RmsNormOp) {
    std::mt19937_64 rng(3);
    const float eps = 1e-6f;
    for (const auto& shape : kNormShapes)
        for (int variant = 0; variant < 3; ++variant) {  // no weight, f32 weight, bf16 weight
            const bool with_weight = variant > 0;
            const DType wt = variant == 2 ? DType::BF16 : DType::F32;
            const int64_t D = shape.back();
            Tensor x = randn(Shape(shape), rng);
            // Rows of rms 1e-3 (comparable to eps) and 1e3 check where eps enters.
            const int64_t rows = x.numel() / D;
            for (int64_t r = 1; r < rows; r += 3)
                for (int64_t i = 0; i < D; ++i) x.data<float>()[r * D + i] *= (r % 2 ? 1e-3f : 1e3f);
            const Tensor w = randn({D}, rng, 1.0, 0.5).to(wt);
            SCOPED_TRACE(::testing::Message()
                         << shape_str(x) << (with_weight ? " weight " : " no weight ") << dtype_name(wt));
            const Tensor xd = up(x), wd = up(w);
            Tensor y = out(Shape(shape));
            be().rms_norm(xd, with_weight ? &wd : nullptr, eps, y);
            const ref::Array want = ref::rms_norm(x, with_weight ? &w : nullptr, eps);
            // Products only (x * inv * w, inv rounded once): a few u relative to each output; 8u.
            EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) { return 8 * kU * std::fabs(want[i]) + 1e-37; }));
            if (&shape == &kNormShapes.back() && variant == 2)
                time_op("rms_norm", shape_str(x), 2.0 * 4 * x.numel(), "GB/s", [&] { be().rms_norm(xd, &wd, eps, y); });
        }
}

// ----------------------------------------------------------------------------------------------------------
// rope

SR_OP_PARITY(OpParity, RopeInterleaved, RopeInterleavedOp) {
    struct Case {
        int64_t B, L, H, D;
        bool fused;  // x is the q slot of a [B,L,3,H,D] qkv buffer, as the model passes it
    };
    const std::vector<Case> cases = {{1, 1, 1, 2, false},
                                     {2, 7, 3, 16, false},
                                     {1, 130, 2, 64, true},
                                     {2, 33, 3, 128, true},
                                     {1, 256, 24, 128, true}};
    std::mt19937_64 rng(4);
    for (const Case& c : cases) {
        const int64_t B = c.B, L = c.L, H = c.H, D = c.D;
        const Tensor buf = c.fused ? randn({B, L, 3, H, D}, rng) : randn({B, L, H, D}, rng);
        auto q_of = [&](const Tensor& t) { return c.fused ? t.select(2, 0) : t; };
        // Tables as the model builds them: angle l * theta^(-2i/D) per pair, each value repeated twice.
        Tensor cos = Tensor::empty({L, D}, DType::F32), sin = Tensor::empty({L, D}, DType::F32);
        for (int64_t l = 0; l < L; ++l)
            for (int64_t i = 0; i < D; i += 2) {
                const double angle = double(l) * std::pow(10000.0, -double(i) / double(D)) + 0.1 * double(i);
                cos.data<float>()[l * D + i] = cos.data<float>()[l * D + i + 1] = float(std::cos(angle));
                sin.data<float>()[l * D + i] = sin.data<float>()[l * D + i + 1] = float(std::sin(angle));
            }
        SCOPED_TRACE(::testing::Message() << "x " << shape_str(q_of(buf)) << (c.fused ? " in a fused qkv buffer" : ""));

        Tensor buf_dev = up(buf);
        Tensor x_dev = q_of(buf_dev);
        const Tensor cos_dev = up(cos), sin_dev = up(sin);
        be().rope_interleaved(x_dev, cos_dev, sin_dev);

        // Expected: the q slot rotated, the rest of the buffer untouched (exactly).
        const ref::Array before = ref::to_array(buf);
        ref::Array want = before;
        std::vector<double> tol(size_t(want.numel()), 0.0);
        const ref::Array rotated = ref::rope_interleaved(q_of(buf), cos, sin);
        const int64_t slots = c.fused ? 3 : 1;
        for (int64_t r = 0; r < B * L; ++r)
            for (int64_t e = 0; e < H * D; ++e) {
                const int64_t at = r * slots * H * D + e, pair = at - (e % 2);
                // Two products and one add/sub: a few u of |x_2i| + |x_2i+1| (|cos|, |sin| <= 1); 16u.
                tol[size_t(at)] = 16 * kU * (std::fabs(before[pair]) + std::fabs(before[pair + 1]));
                want[at] = rotated[r * H * D + e];
            }
        EXPECT_TRUE(all_close(got(buf_dev), want, [&](int64_t i) { return tol[size_t(i)]; }));
        if (&c == &cases.back())
            time_op("rope_interleaved", shape_str(x_dev), 2.0 * 4 * B * L * H * D, "GB/s",
                    [&] { be().rope_interleaved(x_dev, cos_dev, sin_dev); });
    }
}

// ----------------------------------------------------------------------------------------------------------
// activations and element-wise ops

const std::vector<int64_t> kElementwiseSizes = {1, 3, 17, 129, 513, 49157, 1 << 20};

// randn * 4 with the activation's hard spots planted at the front.
Tensor activation_input(int64_t n, std::mt19937_64& rng) {
    Tensor x = randn({n}, rng, 0.0, 4.0);
    const float specials[] = {0.0f,   -0.0f, 1e-8f,  -1e-8f, 1.0f,   -1.0f, 5.0f,   -5.0f, 10.0f,  -10.0f, 20.0f,
                              -20.0f, 44.5f, -44.5f, 88.0f,  -88.0f, 88.5f, -88.5f, 90.0f, -90.0f, 100.0f, -100.0f};
    for (int64_t i = 0; i < std::min<int64_t>(n, std::size(specials)); ++i) x.data<float>()[i] = specials[i];
    return x;
}

SR_OP_PARITY(OpParity, GeluTanh, GeluTanhOp) {
    std::mt19937_64 rng(5);
    for (int64_t n : kElementwiseSizes) {
        const Tensor x = activation_input(n, rng);
        SCOPED_TRACE(n);
        const Tensor xd = up(x);
        Tensor y = out({n});
        be().gelu_tanh(xd, y);
        const ref::Array want = ref::gelu_tanh(x), xa = ref::to_array(x);
        // 0.5 x (1 + tanh z): an f32 tanh has an absolute error of a few ulp of 1 (its 1 + tanh cancels
        // for x < 0), scaled by 0.5|x|; plus a few roundings of the result. 16u of |x| + |y|.
        EXPECT_TRUE(all_close(got(y), want,
                              [&](int64_t i) { return 16 * kU * (std::fabs(xa[i]) + std::fabs(want[i])) + 1e-37; }));
        if (n == kElementwiseSizes.back())
            time_op("gelu_tanh", shape_str(x), 2.0 * 4 * n, "GB/s", [&] { be().gelu_tanh(xd, y); });
    }
}

SR_OP_PARITY(OpParity, Silu, SiluOp) {
    std::mt19937_64 rng(6);
    for (int64_t n : kElementwiseSizes) {
        const Tensor x = activation_input(n, rng);
        SCOPED_TRACE(n);
        const Tensor xd = up(x);
        Tensor y = out({n});
        be().silu(xd, y);
        const ref::Array want = ref::silu(x);
        // x / (1 + exp(-x)): exp's relative error (<2e-7) and two roundings, relative to y; the absolute
        // floor covers x < -87, where y (< 1e-36) may flush to zero.
        EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) { return 1e-6 * std::fabs(want[i]) + 1e-36; }));
        if (n == kElementwiseSizes.back())
            time_op("silu", shape_str(x), 2.0 * 4 * n, "GB/s", [&] { be().silu(xd, y); });
    }
}

const std::vector<std::vector<int64_t>> kRowBroadcastShapes = {
    {1, 1, 1}, {2, 7, 3}, {3, 17, 129}, {2, 130, 600}, {2, 256, 3072}};

// Per-batch [B, D] vectors as the model has them: slice `which` of a [B, 6D] adaLN output (strided rows),
// or a contiguous [B, D] tensor.
Tensor per_batch(const Tensor& mod6, int which, bool sliced) {
    const int64_t D = mod6.dim(1) / 6;
    const Tensor v = mod6.slice(1, which * D, (which + 1) * D);
    return sliced ? v : v.contiguous();
}

SR_OP_PARITY(OpParity, Modulate, ModulateOp) {
    std::mt19937_64 rng(8);
    for (const auto& shape : kRowBroadcastShapes)
        for (bool sliced : {false, true}) {
            const int64_t B = shape[0], D = shape[2];
            const Tensor x = randn(Shape(shape), rng), mod = randn({B, 6 * D}, rng);
            SCOPED_TRACE(::testing::Message() << shape_str(x) << (sliced ? " sliced" : " contiguous"));
            const Tensor shift = per_batch(mod, 0, sliced), scale = per_batch(mod, 1, sliced);
            const Tensor mod_dev = up(mod), xd = up(x);
            const Tensor shift_dev = sliced ? per_batch(mod_dev, 0, true) : up(shift);
            const Tensor scale_dev = sliced ? per_batch(mod_dev, 1, true) : up(scale);
            Tensor y = out(Shape(shape));
            be().modulate(xd, shift_dev, scale_dev, y);
            const ref::Array want = ref::modulate(x, shift, scale), xa = ref::to_array(x);
            const ref::Array sh = ref::to_array(shift), sc = ref::to_array(scale);
            // x * (1 + scale) + shift: three roundings of terms of size |x|(1 + |scale|) and |shift|; 16u.
            EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) {
                const int64_t bi = i / (shape[1] * D) * D + i % D;
                return 16 * kU * (std::fabs(xa[i]) * (1 + std::fabs(sc[bi])) + std::fabs(sh[bi]));
            }));
            if (&shape == &kRowBroadcastShapes.back() && sliced)
                time_op("modulate", shape_str(x), 2.0 * 4 * x.numel(), "GB/s",
                        [&] { be().modulate(xd, shift_dev, scale_dev, y); });
        }
}

SR_OP_PARITY(OpParity, GatedResidual, GatedResidualOp) {
    std::mt19937_64 rng(9);
    for (const auto& shape : kRowBroadcastShapes)
        for (int gate_kind = 0; gate_kind < 3; ++gate_kind) {  // no gate, contiguous, sliced
            const int64_t B = shape[0], D = shape[2];
            const Tensor x = randn(Shape(shape), rng), y = randn(Shape(shape), rng), mod = randn({B, 6 * D}, rng);
            const Tensor gate = gate_kind ? per_batch(mod, 2, gate_kind == 2) : Tensor();
            SCOPED_TRACE(::testing::Message() << shape_str(x) << " gate kind " << gate_kind);
            Tensor xd = up(x);
            const Tensor yd = up(y), mod_dev = up(mod);
            const Tensor gate_dev = gate_kind == 0 ? Tensor() : gate_kind == 2 ? per_batch(mod_dev, 2, true) : up(gate);
            be().gated_residual(xd, yd, gate_dev);
            const ref::Array want = ref::gated_residual(x, y, gate), xa = ref::to_array(x), ya = ref::to_array(y);
            const ref::Array ga = gate_kind ? ref::to_array(gate) : ref::Array();
            // x + y * gate: two roundings of terms of size |x| and |y gate|; 16u.
            EXPECT_TRUE(all_close(got(xd), want, [&](int64_t i) {
                const double g = gate_kind ? std::fabs(ga[i / (shape[1] * D) * D + i % D]) : 1.0;
                return 16 * kU * (std::fabs(xa[i]) + std::fabs(ya[i]) * g);
            }));
            if (&shape == &kRowBroadcastShapes.back() && gate_kind == 2)
                time_op("gated_residual", shape_str(x), 3.0 * 4 * x.numel(), "GB/s",
                        [&] { be().gated_residual(xd, yd, gate_dev); });
        }
}

SR_OP_PARITY(OpParity, Add, AddOp) {
    std::mt19937_64 rng(10);
    for (const auto& shape : std::vector<std::vector<int64_t>>{{1}, {3, 17}, {49157}, {2, 130, 600}, {2, 256, 3072}}) {
        const Tensor x = randn(Shape(shape), rng), y = randn(Shape(shape), rng, 0.0, 100.0);
        SCOPED_TRACE(shape_str(x));
        Tensor xd = up(x);
        const Tensor yd = up(y);
        be().add(xd, yd);
        const ref::Array want = ref::add(x, y);
        // One IEEE addition: correctly rounded, within half an ulp (2^-24 relative) of the exact sum.
        EXPECT_TRUE(all_close(got(xd), want, [&](int64_t i) { return kU * std::fabs(want[i]) * (1 + 1e-6); }));
        if (shape.size() == 3 && shape[1] == 256)
            time_op("add", shape_str(x), 3.0 * 4 * x.numel(), "GB/s", [&] { be().add(xd, yd); });
    }
}

// ----------------------------------------------------------------------------------------------------------
// patch embedding and timestep embedding

SR_OP_PARITY(OpParity, PatchEmbed3d, PatchEmbed3dOp) {
    struct Case {
        std::vector<int64_t> x_shape;  // [B,C,F,H,W]
        int64_t D, pt, ph, pw;
    };
    const std::vector<Case> cases = {
        {{1, 1, 1, 1, 1}, 1, 1, 1, 1},
        {{2, 3, 3, 6, 10}, 17, 1, 2, 2},
        {{2, 4, 4, 6, 6}, 7, 2, 2, 3},  // temporal patch 2
        {{1, 16, 5, 8, 12}, 33, 1, 2, 2},
        {{1, 16, 5, 32, 48}, 128, 1, 2, 2},  // HunyuanVideo's patchify (C16, 1x2x2): timed
    };
    std::mt19937_64 rng(11);
    for (const Case& c : cases)
        for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
            const int64_t C = c.x_shape[1], P = C * c.pt * c.ph * c.pw;
            const int64_t N = c.x_shape[2] / c.pt * (c.x_shape[3] / c.ph) * (c.x_shape[4] / c.pw);
            const Tensor x = randn(Shape(c.x_shape), rng);
            const Tensor w = randn({c.D, C, c.pt, c.ph, c.pw}, rng, 0.0, 1.0 / std::sqrt(double(P))).to(wt);
            const Tensor b = randn({c.D}, rng).to(wt);
            const bool with_bias = wt != DType::F16;
            SCOPED_TRACE(::testing::Message() << "x " << shape_str(x) << " w " << shape_str(w));
            const Tensor xd = up(x), wd = up(w), bd = up(b);
            Tensor y = out({c.x_shape[0], N, c.D});
            be().patch_embed_3d(xd, wd, with_bias ? &bd : nullptr, y);
            const ref::Array want = ref::patch_embed_3d(x, w, with_bias ? &b : nullptr);
            // A GEMM with K = P = C*pt*ph*pw: as linear, against |patch| |w_d| / sqrt(P).
            const ref::Array xa = ref::to_array(x), ba = ref::to_array(b);
            const std::vector<double> wn = row_norms(ref::to_array(w), P);
            std::vector<double> patch_sq(size_t(c.x_shape[0] * N), 0.0);
            const int64_t F = c.x_shape[2], H = c.x_shape[3], W = c.x_shape[4];
            for (int64_t i = 0; i < xa.numel(); ++i) {
                const int64_t w_ = i % W, h = i / W % H, f = i / (W * H) % F, b_ = i / (W * H * F * C);
                const int64_t token = (f / c.pt * (H / c.ph) + h / c.ph) * (W / c.pw) + w_ / c.pw;
                patch_sq[size_t(b_ * N + token)] += xa[i] * xa[i];
            }
            const double rtol = gemm_rtol(wt);
            EXPECT_TRUE(all_close(got(y), want, [&](int64_t i) {
                const int64_t d = i % c.D;
                const double dot_scale = std::sqrt(patch_sq[size_t(i / c.D)]) * wn[size_t(d)] / std::sqrt(double(P));
                return rtol * (dot_scale + (with_bias ? std::fabs(ba[d]) : 0.0) + std::fabs(want[i]));
            }));
            if (&c == &cases.back() && wt == DType::BF16)
                time_op("patch_embed_3d w=bf16", shape_str(x), 2.0 * c.x_shape[0] * N * c.D * P, "GFLOP/s",
                        [&] { be().patch_embed_3d(xd, wd, &bd, y); });
        }
}

SR_OP_PARITY(OpParity, TimestepEmbedding, TimestepEmbeddingOp) {
    // Diffusion timesteps, fractional ones, and HunyuanVideo's guidance embedding (guidance * 1000).
    const Tensor t = Tensor::from_vector({0.0f, 1.0f, 17.5f, 999.0f, 1000.0f, 6016.5f}, {6});
    struct Case {
        int dim;
        bool flip;
        float shift, max_period;
    };
    const std::vector<Case> cases = {{1, true, 0, 10000},  {3, false, 0, 10000},  {16, true, 1, 10000},
                                     {16, false, 0, 100},  {257, true, 0, 10000}, {256, false, 1, 10000},
                                     {256, true, 0, 10000}};
    const Tensor td = up(t);
    for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << "dim " << c.dim << " flip " << c.flip << " shift " << c.shift
                                          << " max_period " << c.max_period);
        Tensor y = out({t.numel(), c.dim});
        be().timestep_embedding(td, c.dim, c.flip, c.shift, c.max_period, y);
        const ref::Array want = ref::timestep_embedding(t, c.dim, c.flip, c.shift, c.max_period);
        // The op follows diffusers' f32 steps: the argument t * freq is off by up to ~2.5u|t| (the f32
        // exponent's error, at most 1.54u|t| after exp, plus the product's rounding), and sin/cos have slope
        // <= 1; 6u|t| + 2u.
        EXPECT_TRUE(all_close(got(y), want,
                              [&](int64_t i) { return 6 * kU * std::fabs(t.data<float>()[i / c.dim]) + 2 * kU; }));
        if (&c == &cases.back())
            time_op("timestep_embedding", fmt::format("t[{}] dim {}", t.numel(), c.dim), 4.0 * t.numel() * c.dim,
                    "GB/s", [&] { be().timestep_embedding(td, c.dim, c.flip, c.shift, c.max_period, y); });
    }
}

// ----------------------------------------------------------------------------------------------------------
// copy and concat (exact: a copy converts each element with one correct rounding)

// f32 values at each conversion's edges: ties, overflow thresholds, subnormals, specials.
Tensor conversion_edge_values(std::mt19937_64& rng) {
    std::vector<float> v = {0.0f, -0.0f, kNaN, kInf, -kInf, 1.0f, -1.0f};
    const std::vector<std::vector<float>> groups = {
        {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f},              // bf16 ties: to even, down then up
        {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f},            // f16 ties
        {65504.0f, 65519.99f, 65520.0f, -70000.0f},        // f16 max, last value below inf, inf threshold
        {0x1p-24f, 0x1p-25f, 3 * 0x1p-26f, 6e-5f},         // f16 subnormals and their rounding
        {3.3e38f, -3.4e38f},                               // bf16 overflow to inf
        {1e-40f, -1e-45f},                                 // f32 subnormals
        {448.0f, 463.0f, 465.0f, 1000.0f, 0x1p-9f, 0.3f},  // e4m3: max, saturation, subnormal, rounding
    };
    for (const auto& g : groups) v.insert(v.end(), g.begin(), g.end());
    std::normal_distribution<double> dist(0, 10);
    while (v.size() < 64) v.push_back(float(dist(rng)));
    return Tensor::from_vector(v, {2, 32});
}

SR_OP_PARITY(OpParity, Copy, CopyOp) {
    std::mt19937_64 rng(12);
    auto check = [&](const Tensor& src_host, const std::function<Tensor(const Tensor&)>& view_of, DType dst_dtype,
                     const std::string& what) {
        SCOPED_TRACE(what);
        const Tensor src = view_of(src_host);
        const Tensor src_dev = view_of(up(src_host));
        Tensor dst = up(filled(src.shape(), kNaN).to(dst_dtype));  // NaN: an unwritten element fails
        be().copy(src_dev, dst);
        EXPECT_TRUE(all_close(got(dst), ref::copy(src, dst_dtype), [](int64_t) { return 0.0; }));
    };
    auto same = [](const Tensor& t) { return t; };
    auto permuted4 = [](const Tensor& t) { return t.permute({3, 1, 0, 2}); };
    auto reversed5 = [](const Tensor& t) { return t.permute({4, 3, 2, 1, 0}); };
    const Tensor edges = conversion_edge_values(rng);
    for (DType from : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3})
        for (DType to : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3}) {
            // Widening to f32 first is exact, so every source holds exactly the values of its dtype.
            check(edges.to(from), same, to, fmt::format("{} -> {}", dtype_name(from), dtype_name(to)));
            check(randn({3, 5, 7, 2}, rng, 0, 3).to(from), permuted4, to,
                  fmt::format("permuted {} -> {}", dtype_name(from), dtype_name(to)));
        }
    check(randn({3, 4, 5, 6, 7}, rng), reversed5, DType::F16, "rank 5, reversed dims");
    check(randn({0, 3}, rng), same, DType::BF16, "empty");

    {
        // A strided destination (a permuted slice of a larger buffer): the rest must stay untouched.
        SCOPED_TRACE("strided destination");
        const Tensor big = filled({4, 40, 6}, 7.0f);
        const Tensor src = randn({6, 4, 17}, rng).to(DType::BF16);
        Tensor big_dev = up(big);
        Tensor dst = big_dev.slice(1, 3, 20).permute({2, 0, 1});  // [6, 4, 17]
        be().copy(up(src), dst);
        ref::Array want = ref::to_array(big);
        const ref::Array sa = ref::to_array(src);
        for (int64_t a = 0; a < 6; ++a)
            for (int64_t b = 0; b < 4; ++b)
                for (int64_t c = 0; c < 17; ++c) want[(b * 40 + 3 + c) * 6 + a] = sa[(a * 4 + b) * 17 + c];
        EXPECT_TRUE(all_close(got(big_dev), want, [](int64_t) { return 0.0; }));
    }
    {
        // The model's [B,L,H,D] -> [B,H,L,D] relayout at its size: timed.
        const Tensor src_host = randn({2, 512, 24, 128}, rng);
        const Tensor src_dev = up(src_host).permute({0, 2, 1, 3});
        Tensor dst = out({2, 24, 512, 128});
        be().copy(src_dev, dst);
        EXPECT_TRUE(
            all_close(got(dst), ref::copy(src_host.permute({0, 2, 1, 3}), DType::F32), [](int64_t) { return 0.0; }));
        time_op("copy (permute)", shape_str(src_dev), 2.0 * 4 * src_dev.numel(), "GB/s",
                [&] { be().copy(src_dev, dst); });
    }
}

SR_OP_PARITY(OpParity, Concat, CopyOp) {
    std::mt19937_64 rng(13);
    struct Case {
        std::vector<std::vector<int64_t>> parts;
        int dim;
    };
    const std::vector<Case> cases = {
        {{{2, 1, 5}, {2, 7, 5}, {2, 17, 5}}, 1},
        {{{1, 3, 4}, {3, 3, 4}}, 0},
        {{{3, 2}, {3, 129}, {3, 1}}, -1},
        {{{2, 0, 3}, {2, 4, 3}}, 1},  // an empty part
    };
    for (const Case& c : cases) {
        std::vector<Tensor> parts, parts_dev;
        std::vector<int64_t> out_shape = c.parts[0];
        const size_t d = size_t(c.dim < 0 ? int(out_shape.size()) + c.dim : c.dim);
        out_shape[d] = 0;
        for (size_t i = 0; i < c.parts.size(); ++i) {
            // Mixed dtypes: concat converts like copy.
            parts.push_back(randn(Shape(c.parts[i]), rng).to(i % 2 ? DType::BF16 : DType::F32));
            parts_dev.push_back(up(parts.back()));
            out_shape[d] += c.parts[i][d];
        }
        SCOPED_TRACE(::testing::Message() << "dim " << c.dim << " into " << Shape(out_shape).str());
        Tensor y = out(Shape(out_shape));
        concat(be(), parts_dev, c.dim, y);
        EXPECT_TRUE(all_close(got(y), ref::concat(parts, c.dim), [](int64_t) { return 0.0; }));
    }
}

INSTANTIATE_TEST_SUITE_P(Backends, OpParity, ::testing::ValuesIn(backends_under_test()),
                         [](const auto& info) { return info.param.name; });
INSTANTIATE_TEST_SUITE_P(Backends, AttentionParity, ::testing::ValuesIn(backends_under_test()),
                         [](const auto& info) { return info.param.name; });

// ----------------------------------------------------------------------------------------------------------
// The op list against the cases: every op in backends/ops.h has a parity case (this binary holds every op
// test file: test_ops.cpp, test_ops_text.cpp, test_ops_vae.cpp), and every case runs on every backend under
// test. An op added without a case fails here, by name.

TEST(OpCoverage, EveryOpHasAParityCase) {
    std::array<int, kOpCount> cases{};
    for (const ParityCase& c : parity_cases()) ++cases[c.op];
    for (size_t op = 0; op < kOpCount; ++op)
        EXPECT_GT(cases[op], 0) << "op '" << kOpNames[op]
                                << "' (backends/ops.h) has no parity case: add one with SR_OP_PARITY";
}

// The dispatch point: a backend implementing some ops runs them and names the op it lacks; decorators see
// every op through their one run().
struct AddOnlyBackend final : Backend {
    std::string name() const override { return "add-only"; }
    Device device() const override { return Device::cpu(); }
    Allocator& allocator() override { return host_allocator(); }
    void run(const OpCall& op) override { dispatch_op(*this, op); }
    void exec(const AddOp& op) { cpu_backend().run(op); }
};

TEST(OpDispatch, ABackendWithoutAnOpNamesIt) {
    static_assert(!implements_every_op<AddOnlyBackend>());
    static_assert(implements_every_op<CpuBackend>());
    AddOnlyBackend be;
    Tensor x = filled({3}, 1.0f), y = filled({3}, 2.0f);
    be.add(x, y);
    EXPECT_EQ(x.data<float>()[2], 3.0f);
    try {
        be.mul(x, y);
        FAIL() << "mul ran on a backend without it";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "the add-only backend has no op 'mul'");
    }
}

TEST(OpDispatch, OpNamesAndFlopsComeFromTheList) {
    EXPECT_EQ(kOpNames.size(), kOpCount);
    EXPECT_EQ(kOpNames[op_index<LinearOp>()], "linear");
    EXPECT_EQ(kOpNames[op_index<MulOp>()], "mul");
    for (size_t i = 0; i < kOpCount; ++i)
        for (size_t j = i + 1; j < kOpCount; ++j) EXPECT_NE(kOpNames[i], kOpNames[j]);
    Tensor x = filled({4, 8}, 1.0f), w = filled({3, 8}, 1.0f), y = filled({4, 3}, 0.0f);
    const OpCall call = LinearOp{x, w, nullptr, y};
    EXPECT_EQ(op_name(call), "linear");
    EXPECT_EQ(op_flops(call), 2.0 * 4 * 8 * 3);
    EXPECT_EQ(op_flops(OpCall{AddOp{x, x}}), 0.0);
    int args = 0, present = 0;
    for_each_tensor_arg(call, [&](const OpTensorArg& a) { ++args, present += a.tensor != nullptr; });
    EXPECT_EQ(args, 4);     // x, weight, bias, y
    EXPECT_EQ(present, 3);  // no bias
}

TEST(OpDispatch, TheProfilerCountsEveryOpByName) {
    ProfilingBackend prof(cpu_backend());
    Tensor x = filled({4, 8}, 1.0f), w = filled({3, 8}, 0.5f), y = filled({4, 3}, 0.0f);
    prof.linear(x, w, nullptr, y);
    prof.linear(x, w, nullptr, y);
    prof.silu(y, y);
    EXPECT_NEAR(y.data<float>()[0], 4.0 / (1.0 + std::exp(-4.0)), 1e-6);  // the inner backend ran: silu(8 * 0.5)
    ASSERT_EQ(prof.stats().size(), 2u);
    EXPECT_EQ(prof.stats().at("linear").calls, 2);
    EXPECT_EQ(prof.stats().at("linear").flops, 2 * 2.0 * 4 * 8 * 3);
    EXPECT_EQ(prof.stats().at("silu").calls, 1);
    EXPECT_EQ(prof.stats().at("silu").flops, 0.0);
}

// ----------------------------------------------------------------------------------------------------------
// The CPU's free GEMM (used by the attention tiles and by linear): leading dimensions wider than the rows,
// accumulate, bf16 operands, and the single-threaded variant that runs inside a parallel region.

struct GemmCase {
    int64_t M, N, K;
    bool b_transposed, accumulate;
    DType dtype;
};

void check_gemm(const GemmCase& g, std::mt19937_64& rng, bool nested = false) {
    const int64_t lda = g.K + 3, ldb = (g.b_transposed ? g.K : g.N) + 5, ldc = g.N + 7;
    const int64_t b_rows = g.b_transposed ? g.N : g.K;
    SCOPED_TRACE(::testing::Message() << "M" << g.M << " N" << g.N << " K" << g.K << (g.b_transposed ? " B^T" : "")
                                      << (g.accumulate ? " accumulate " : " ") << dtype_name(g.dtype)
                                      << (nested ? " nested" : ""));
    const Tensor A = randn({std::max<int64_t>(g.M, 1), lda}, rng).to(g.dtype);
    const Tensor B = randn({std::max<int64_t>(b_rows, 1), ldb}, rng).to(g.dtype);
    const Tensor C0 = randn({std::max<int64_t>(g.M, 1), ldc}, rng);
    Tensor C = C0.clone();
    if (nested) {
        // Two threads each run one GEMM on half the rows from inside parallel_for.
        const int64_t half = g.M / 2;
        const size_t es = dtype_size(g.dtype);
        parallel_for(2, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t r0 = i ? half : 0, rows = i ? g.M - half : half;
                gemm(rows, g.N, g.K, static_cast<const char*>(A.raw_data()) + size_t(r0 * lda) * es, lda, B.raw_data(),
                     ldb, g.b_transposed, g.dtype, C.data<float>() + r0 * ldc, ldc, g.accumulate);
            }
        });
    } else {
        gemm(g.M, g.N, g.K, A.raw_data(), lda, B.raw_data(), ldb, g.b_transposed, g.dtype, C.data<float>(), ldc,
             g.accumulate);
    }
    const ref::Array want = ref::gemm(g.M, g.N, g.K, A.raw_data(), lda, B.raw_data(), ldb, g.b_transposed, g.dtype,
                                      C0.data<float>(), ldc, g.accumulate);
    const ref::Array c_in = ref::to_array(C0.slice(0, 0, g.M));
    // Magnitude of each dot product, sqrt(sum_k (a_k b_k)^2), from the same GEMM on squares (bf16 squares
    // are exact in f32, so the squared operands go in as f32).
    const Tensor A2 = squared(A), B2 = squared(B), Z = Tensor::zeros(C0.shape(), DType::F32);
    const ref::Array mag = map(ref::gemm(g.M, g.N, g.K, A2.raw_data(), lda, B2.raw_data(), ldb, g.b_transposed,
                                         DType::F32, Z.data<float>(), ldc, false),
                               std::sqrt);
    EXPECT_TRUE(all_close(ref::to_array(C.slice(0, 0, g.M)), want, [&](int64_t i) {
        // Columns past N must be untouched; the products have exact f32 values (bf16 x bf16 fits in 16 bits),
        // so only f32 accumulation rounds: 1e-5 of the magnitude, plus C's own size when accumulating.
        if (i % ldc >= g.N) return 0.0;
        return 1e-5 * (mag[i] + std::fabs(want[i]) + (g.accumulate ? std::fabs(c_in[i]) : 0.0));
    }));
}

TEST(CpuGemm, LeadingDimsAndAccumulate) {
    std::mt19937_64 rng(14);
    for (DType dt : {DType::F32, DType::BF16})
        for (bool bt : {true, false})
            for (bool acc : {false, true})
                for (auto [M, N, K] :
                     std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {3, 17, 33}, {17, 600, 7}, {130, 129, 257}})
                    check_gemm({M, N, K, bt, acc, dt}, rng);
}

TEST(CpuGemm, NestedInParallelRegion) {
    // oneDNN plans these for one thread (a separate cached primitive); results must not change.
    std::mt19937_64 rng(15);
    for (DType dt : {DType::F32, DType::BF16})
        for (bool acc : {false, true}) check_gemm({130, 129, 257, true, acc, dt}, rng, true);
}

TEST(CpuGemm, EmptyDimensions) {
    std::mt19937_64 rng(16);
    // K = 0: C = 0 (or unchanged when accumulating); M = 0 or N = 0: nothing written.
    for (bool acc : {false, true}) {
        check_gemm({5, 9, 0, true, acc, DType::F32}, rng);
        check_gemm({0, 9, 4, true, acc, DType::F32}, rng);
        check_gemm({5, 0, 4, false, acc, DType::BF16}, rng);
    }
}

TEST(CpuGemm, Timing) {
    // The attention's tile GEMM at the model's size (128 queries x 512 keys, D 128): checked, then timed.
    std::mt19937_64 rng(17);
    const int64_t M = 128, N = 512, K = 128;
    check_gemm({M, N, K, true, false, DType::F32}, rng);
    const Tensor A = randn({M, K}, rng), B = randn({N, K}, rng);
    Tensor C = Tensor::zeros({M, N}, DType::F32);
    std::vector<double> ms;
    for (int r = 0; r < 6; ++r) {  // the first run is the warm-up
        const auto t0 = std::chrono::steady_clock::now();
        gemm(M, N, K, A.raw_data(), K, B.raw_data(), K, true, DType::F32, C.data<float>(), N, false);
        if (r) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    timing_rows().push_back(
        {"cpu", "gemm f32 (B^T)", fmt::format("M{} N{} K{}", M, N, K), ms[2], ms[0], 2.0 * M * N * K, "GFLOP/s"});
}

// ----------------------------------------------------------------------------------------------------------
// The reference against values worked out by hand, so the harness does not rest on an unchecked reference.

TEST(ReferenceOps, HandValues) {
    // Decoding: f16 1.0, its smallest subnormal and largest finite; bf16 1.0; e4m3 448 and 2^-9; NaNs.
    const uint16_t f16[] = {0x3c00, 0x0001, 0x7bff, 0xfc00, 0x7e00};
    EXPECT_EQ(ref::decode(&f16[0], DType::F16), 1.0);
    EXPECT_EQ(ref::decode(&f16[1], DType::F16), 0x1p-24);
    EXPECT_EQ(ref::decode(&f16[2], DType::F16), 65504.0);
    EXPECT_EQ(ref::decode(&f16[3], DType::F16), -INFINITY);
    EXPECT_TRUE(std::isnan(ref::decode(&f16[4], DType::F16)));
    const uint16_t bf16_one = 0x3f80;
    EXPECT_EQ(ref::decode(&bf16_one, DType::BF16), 1.0);
    const uint8_t f8[] = {0x7e, 0x01, 0x7f, 0xb8};
    EXPECT_EQ(ref::decode(&f8[0], DType::F8_E4M3), 448.0);
    EXPECT_EQ(ref::decode(&f8[1], DType::F8_E4M3), 0x1p-9);
    EXPECT_TRUE(std::isnan(ref::decode(&f8[2], DType::F8_E4M3)));
    EXPECT_EQ(ref::decode(&f8[3], DType::F8_E4M3), -1.0);
    // Rounding: ties to even, overflow, saturation, subnormals.
    EXPECT_EQ(ref::round_to(1.0 + 0x1p-8, DType::BF16), 1.0);
    EXPECT_EQ(ref::round_to(1.0 + 3 * 0x1p-8, DType::BF16), 1.0 + 0x1p-6);
    EXPECT_EQ(ref::round_to(65519.0, DType::F16), 65504.0);
    EXPECT_EQ(ref::round_to(65520.0, DType::F16), INFINITY);
    EXPECT_EQ(ref::round_to(3 * 0x1p-26, DType::F16), 0x1p-24);  // 0.75 quantum rounds up
    EXPECT_EQ(ref::round_to(0x1p-25, DType::F16), 0.0);          // half a quantum ties to even (0)
    EXPECT_EQ(ref::round_to(470.0, DType::F8_E4M3), 448.0);
    EXPECT_EQ(ref::round_to(-INFINITY, DType::F8_E4M3), -448.0);
    EXPECT_EQ(ref::round_to(0.3, DType::F8_E4M3), 0.3125);

    // Ops on tiny inputs.
    const Tensor x = Tensor::from_vector({1, 2, 3}, {1, 3});
    const ref::Array ln = ref::layer_norm(x, nullptr, nullptr, 0.0);
    EXPECT_NEAR(ln[0], -1.224744871391589, 1e-15);
    EXPECT_NEAR(ln[1], 0.0, 1e-15);
    EXPECT_NEAR(ref::rms_norm(x, nullptr, 0.0)[2], 3.0 / std::sqrt(14.0 / 3.0), 1e-15);
    const Tensor g = Tensor::from_vector({1.0f, -2.0f}, {2});
    EXPECT_NEAR(ref::gelu_tanh(g)[0], 0.8411919906082768, 1e-15);
    EXPECT_NEAR(ref::gelu_tanh(g)[1], -0.04540230591222494, 1e-15);
    EXPECT_NEAR(ref::silu(g)[0], 0.7310585786300049, 1e-15);
    const Tensor w = Tensor::from_vector({1, 0, -1, 2, 2, 2}, {2, 3}), b = Tensor::from_vector({0.5f, 0}, {2});
    const ref::Array lin = ref::linear(x, w, &b);
    EXPECT_EQ(lin[0], -1.5);
    EXPECT_EQ(lin[1], 12.0);
    // Two keys with scores 0 and ln 3 weigh values 1 and 5 as 1/4 and 3/4: 4; the masked second batch row: 0.
    const Tensor q = Tensor::from_vector({1, 1}, {2, 1, 1, 1}),
                 k = Tensor::from_vector({0, std::log(3.0f), 0, 0}, {2, 1, 2, 1});
    const Tensor v = Tensor::from_vector({1, 5, 1, 5}, {2, 1, 2, 1});
    AttentionMask m;
    m.kv_len = {2, 0};
    const ref::Array att = ref::attention(q, k, v, m, 1.0);
    EXPECT_NEAR(att[0], 4.0, 1e-6);
    EXPECT_EQ(att[1], 0.0);
    // t = 0: [cos 0, sin 0] = [1, 0] with flip_sin_to_cos; the odd dim's last column is zero.
    const Tensor t0 = Tensor::from_vector({0}, {1});
    const ref::Array te = ref::timestep_embedding(t0, 3, true, 0, 10000);
    EXPECT_EQ(te[0], 1.0);
    EXPECT_EQ(te[1], 0.0);
    EXPECT_EQ(te[2], 0.0);
    // rope on one pair (1, 0) by 90 degrees: (0, 1).
    const Tensor r = Tensor::from_vector({1, 0}, {1, 1, 1, 2});
    const ref::Array rot =
        ref::rope_interleaved(r, Tensor::from_vector({0, 0}, {1, 2}), Tensor::from_vector({1, 1}, {1, 2}));
    EXPECT_EQ(rot[0], 0.0);
    EXPECT_EQ(rot[1], 1.0);
}

}  // namespace
