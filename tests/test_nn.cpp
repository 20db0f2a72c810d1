// The nn layer: Linear (its storage format and low-rank side path) and the weight declaration that binding,
// listing and rebinding all walk. The models' declarations against real checkpoints are checked in
// test_model_blocks.cpp (ModelBlocks.DeclarationsNameEveryCheckpointTensorOnce).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backends/cpu/cpu_backend.h"
#include "core/dequantize.h"
#include "core/float8_weight_only.h"
#include "io/safetensors.h"
#include "nn/linear.h"
#include "nn/weight_visitor.h"

using namespace sr;

namespace {

Tensor random_f32(const Shape& s, uint64_t seed) {
    Tensor t = Tensor::empty(s, DType::F32);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(rng);
    return t;
}

double at(const Tensor& t, int64_t r, int64_t c) {
    return double(t.data<float>()[r * t.dim(1) + c]);
}

// A block as a model would write it: a linear layer and a norm vector, declared once.
struct ToyBlock {
    Linear proj;
    Tensor norm;
};
void declare(WeightVisitor& v, ToyBlock& b, const std::string& p) {
    v.linear(p + ".proj", b.proj, 8, 6);
    v.small_f32(p + ".norm.weight", b.norm, {6});
}

}  // namespace

// y = x (W + up down)^T + b: the adapter's side path adds exactly what merging it into W would, within f32
// GEMM rounding (K = 8 and rank 2 here: |error| <= ~10 u of the magnitude; 1e-5 is far above it).
TEST(Linear, AppliesWeightBiasAndLowRankAdapters) {
    Linear l;
    l.weight.data = random_f32({6, 8}, 1);
    l.weight.out = 6, l.weight.in = 8;
    l.bias = random_f32({6}, 2);
    const Tensor x = random_f32({3, 5, 8}, 3);
    const Tensor plain = l.apply(cpu_backend(), x);
    l.adapters.push_back({random_f32({2, 8}, 4), random_f32({6, 2}, 5)});
    const Tensor adapted = l.apply(cpu_backend(), x);
    ASSERT_EQ(adapted.shape(), (Shape{3, 5, 6}));
    const Tensor x2 = x.view({15, 8}), y0 = plain.view({15, 6}), y = adapted.view({15, 6});
    const Tensor& W = l.weight.data;
    const Tensor &down = l.adapters[0].down, &up = l.adapters[0].up;
    double worst = 0, changed = 0;
    for (int64_t r = 0; r < 15; ++r)
        for (int64_t o = 0; o < 6; ++o) {
            double want = at(l.bias.view({1, 6}), 0, o), want0 = want, mag = 0;
            for (int64_t k = 0; k < 8; ++k) {
                double merged = at(W, o, k);
                for (int64_t q = 0; q < 2; ++q) merged += at(up, o, q) * at(down, q, k);
                want += at(x2, r, k) * merged;
                want0 += at(x2, r, k) * at(W, o, k);
                mag += std::fabs(at(x2, r, k)) * (std::fabs(merged) + std::fabs(at(W, o, k)));
            }
            worst = std::max(worst, std::fabs(at(y, r, o) - want) / (mag + 1));
            worst = std::max(worst, std::fabs(at(y0, r, o) - want0) / (mag + 1));
            changed = std::max(changed, std::fabs(at(y, r, o) - at(y0, r, o)));
        }
    EXPECT_LT(worst, 1e-5);
    EXPECT_GT(changed, 1e-3);  // the side path did something
    EXPECT_EQ(l.bytes(), size_t(6 * 8 + 6 + 2 * 8 + 6 * 2) * sizeof(float));
}

// One declaration: binding makes the tensors, listing finds the same ones by name, rebinding swaps them.
TEST(WeightVisitor, BindListAndRebindWalkTheSameDeclaration) {
    WeightBinder binder = WeightBinder::random(7, DType::BF16);
    ToyBlock block;
    BindWeights bind(binder);
    declare(bind, block, "blocks.0");
    EXPECT_EQ(block.proj.weight.format, WeightFormat::Dense);
    EXPECT_EQ(block.proj.weight.data.shape(), (Shape{6, 8}));
    EXPECT_EQ(block.proj.weight.data.dtype(), DType::BF16);  // a matrix, stored as bound
    EXPECT_EQ(block.proj.bias.dtype(), DType::F32);          // small vectors always f32
    EXPECT_EQ(block.norm.shape(), (Shape{6}));
    EXPECT_EQ(binder.parameter_count(), 6 * 8 + 6 + 6);

    const WeightBlock listed =
        declared_block("toy", block, [](WeightVisitor& v, ToyBlock& b) { declare(v, b, "blocks.0"); });
    ASSERT_EQ(listed.tensors.size(), 3u);
    EXPECT_EQ(listed.tensor_names,
              (std::vector<std::string>{"blocks.0.proj.weight", "blocks.0.proj.bias", "blocks.0.norm.weight"}));
    EXPECT_EQ(listed.tensors[0].raw_data(), block.proj.weight.data.raw_data());
    EXPECT_EQ(listed.bytes(), size_t(6 * 8 * 2 + 6 * 4 + 6 * 4));

    std::vector<Tensor> copies;
    for (const Tensor& t : listed.tensors) copies.push_back(t.clone());
    const ToyBlock moved = rebind_block(block, copies, [](WeightVisitor& v, ToyBlock& b) { declare(v, b, ""); });
    EXPECT_EQ(moved.proj.weight.data.raw_data(), copies[0].raw_data());
    EXPECT_EQ(moved.proj.bias.raw_data(), copies[1].raw_data());
    EXPECT_EQ(moved.norm.raw_data(), copies[2].raw_data());
    EXPECT_EQ(moved.proj.weight.in, 8);                              // what is not a tensor is kept
    EXPECT_EQ(block.norm.raw_data(), listed.tensors[2].raw_data());  // the original is untouched

    ListWeightNames names;
    ToyBlock copy = block;
    declare(names, copy, "blocks.0");
    ASSERT_EQ(names.names.size(), 3u);
    EXPECT_EQ(names.names[0], (std::pair<std::string, Shape>{"blocks.0.proj.weight", Shape{6, 8}}));
    EXPECT_EQ(names.names[2], (std::pair<std::string, Shape>{"blocks.0.norm.weight", Shape{6}}));
}

TEST(WeightVisitorDeathTest, ARebindWithTheWrongTensorCountIsABug) {
    WeightBinder binder = WeightBinder::random(7, DType::F32);
    ToyBlock block;
    BindWeights bind(binder);
    declare(bind, block, "b");
    auto decl = [](WeightVisitor& v, ToyBlock& b) { declare(v, b, ""); };
    const std::vector<Tensor> two{block.proj.weight.data, block.proj.bias};
    EXPECT_DEATH(rebind_block(block, two, decl), "fewer than the block declares");
    const std::vector<Tensor> four{block.proj.weight.data, block.proj.bias, block.norm, block.norm};
    EXPECT_DEATH(rebind_block(block, four, decl), "returned 4 tensors for a block that declares 3");
}

// The FP8 row decoder (core/dequantize.h) against the scalar reference for every e4m3 code, with and without
// a scale.
TEST(Float8WeightOnly, RowDecoderMatchesTheScalarReferenceOnEveryCode) {
    std::vector<uint8_t> codes(256);
    for (int i = 0; i < 256; ++i) codes[size_t(i)] = uint8_t(i);
    std::vector<float> got(256);
    dequantize_rows({codes.data(), std::nullopt, 1, 256}, 0, 1, got.data());
    const uint16_t scale = f32_to_bf16(0.375f);
    std::vector<float> scaled(256);
    dequantize_rows({codes.data(), std::nullopt, 1, 256, &scale, DType::BF16, 1}, 0, 1, scaled.data());
    for (int i = 0; i < 256; ++i) {
        const float want = f8e4m3_to_f32(uint8_t(i));
        if (std::isnan(want)) {
            EXPECT_TRUE(std::isnan(got[size_t(i)]) && std::isnan(scaled[size_t(i)])) << i;
            continue;
        }
        EXPECT_EQ(f32_to_bits(got[size_t(i)]), f32_to_bits(want)) << "code " << i;
        EXPECT_EQ(f32_to_bits(scaled[size_t(i)]), f32_to_bits(bf16_to_f32(f32_to_bf16(want * 0.375f)))) << "code " << i;
    }
}

// SkyReels' --quant against torchao 0.7.0 itself (tests/data/fp8, made by scripts/fixtures/make_fp8_fixture.py):
// the codes and per-row scales bit for bit, an all-zero row (scale clamped to eps), one huge value, values
// that underflow e4m3; and a layer bound with LinearQuant::Float8WeightOnly computes what torchao's layer
// computes. torchao's forward runs in bf16 (its output rounded to bf16, relative error up to 2^-8, and bf16
// partial sums): we run the same products in f32, so we allow 2^-7 of |y| plus 2^-7 of the magnitude
// sum |x||w| / sqrt(K) for the bf16 accumulation.
TEST(Float8WeightOnly, MatchesTorchaoBitForBit) {
    const WeightStore ref =
        WeightStore::open(std::string(SKYREELS_SOURCE_DIR) + "/tests/data/fp8/torchao_float8_weight_only.safetensors");
    int cases = 0;
    for (const std::string& name : ref.names()) {
        if (!name.ends_with(".weight")) continue;
        const std::string c = name.substr(0, name.size() - 7);
        SCOPED_TRACE(c);
        const Tensor w = ref.get(name), codes = ref.get(c + ".codes"), scale = ref.get(c + ".scale");
        const int64_t N = w.dim(0), K = w.dim(1);
        std::vector<uint8_t> got_codes(size_t(N * K));
        std::vector<uint16_t> got_scales(static_cast<size_t>(N));
        quantize_float8_weight_only(w.raw_data(), w.dtype(), N, K, got_codes.data(), got_scales.data());
        int64_t code_mismatches = 0, scale_mismatches = 0;
        for (int64_t i = 0; i < N * K; ++i) code_mismatches += got_codes[size_t(i)] != codes.data<uint8_t>()[i];
        for (int64_t r = 0; r < N; ++r) scale_mismatches += got_scales[size_t(r)] != scale.data<uint16_t>()[r];
        EXPECT_EQ(code_mismatches, 0);
        EXPECT_EQ(scale_mismatches, 0);

        WeightBinder binder(ref);
        BindWeights bind(binder, LinearQuant::Float8WeightOnly);
        Linear l;
        bind.linear(c, l, K, N, false);
        ASSERT_EQ(l.weight.format, WeightFormat::F8);
        EXPECT_EQ(std::memcmp(l.weight.data.raw_data(), codes.raw_data(), size_t(N * K)), 0);
        EXPECT_EQ(l.weight.scale.dtype(), DType::BF16);
        const Tensor x = ref.get(c + ".x").to(DType::F32), want = ref.get(c + ".y").to(DType::F32);
        const Tensor y = l.apply(cpu_backend(), x);
        const Tensor wf = w.to(DType::F32);
        double worst = 0;
        for (int64_t m = 0; m < x.dim(0); ++m)
            for (int64_t n = 0; n < N; ++n) {
                double mag = 0;
                for (int64_t k = 0; k < K; ++k) mag += std::fabs(at(x, m, k) * at(wf, n, k));
                const double tol = 0x1p-7 * (std::fabs(at(want, m, n)) + mag / std::sqrt(double(K))) + 1e-30;
                worst = std::max(worst, std::fabs(at(y, m, n) - at(want, m, n)) / tol);
            }
        EXPECT_LE(worst, 1.0);
        ++cases;
    }
    EXPECT_GT(cases, 0);
}
