// LoRA adapters (models/hunyuan_video_lora.h, nn/lora.h): parity with the PEFT reference on every LoRA fixture
// folder found by content (a transformer fixture with lora/ and lora.json), in merge and runtime modes; the
// runtime side path on FP8 and GGUF weights against merging into the same weights dequantized; a LoRA under
// block streaming on the simulated device; and hostile adapter files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "backends/cpu/cpu_backend.h"
#include "backends/null_backend.h"
#include "core/virtual_allocator.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_checkpoint.h"
#include "models/hunyuan_video_convert.h"
#include "models/hunyuan_video_transformer.h"
#include "runtime/residency.h"
#include "runtime/simulated_device.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/pipeline_fixture.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

std::vector<fs::path> lora_fixtures() {
    return test::find_fixture_dirs(test::is_lora_fixture);
}

LoraOptions fixture_loras(const fs::path& dir, LoraMode mode) {
    LoraOptions o;
    o.mode = mode;
    const Json j = load_json_file((dir / "lora.json").string());
    for (const Json& e : j)
        o.files.push_back({(dir / e.at("file").get<std::string>()).string(), e.at("strength").get<float>()});
    return o;
}

// The fixture's suggested_max_abs_sample: ~100x the reference's own f32 noise (|f32 - f64|), or 1e-5 of the
// output's scale when that is larger.
double sample_tolerance(const fs::path& dir) {
    return load_json_file((dir / "tolerances.json").string()).at("suggested_max_abs_sample").get<double>();
}

Tensor run(const HunyuanVideoTransformer& model, const fs::path& dir) {
    CpuBackend& be = cpu_backend();
    be.set_gemm_precision(GemmPrecision::F32);
    const WeightStore inputs = WeightStore::open((dir / "inputs.safetensors").string());
    return model.forward(be, test::read_transformer_inputs(inputs));
}

// Every tensor of another source dequantized to f32: what "merging into the dequantized weights" starts from.
class DequantizedSource final : public TensorSource {
public:
    explicit DequantizedSource(const TensorSource& inner) : inner_(inner), name_(inner.source() + " (dequantized)") {}
    const std::string& source() const override { return name_; }
    bool contains(std::string_view n) const override { return inner_.contains(n); }
    TensorInfo info(std::string_view n) const override {
        TensorInfo i = inner_.info(n);
        return {i.shape, DType::F32, std::nullopt, false};
    }
    StoredTensor stored(std::string_view n) const override {
        const Tensor t = dequantize_to_f32(inner_.stored(n));
        return {{t.shape(), DType::F32, std::nullopt, false}, t, Tensor()};
    }
    std::vector<std::string> names() const override { return inner_.names(); }
    std::vector<std::string> unused_names() const override { return inner_.unused_names(); }

private:
    const TensorSource& inner_;
    std::string name_;
};

}  // namespace

TEST(LoraParity, FixturesExist) {
    EXPECT_GE(lora_fixtures().size(), 4u) << "LoRA fixtures under " << test::fixtures_root();
}

// Merged into the f32 weights and as a runtime side path: both within the reference's f32 noise of PEFT's
// merged model.
TEST(LoraParity, MergeAndRuntimeMatchReference) {
    for (const fs::path& dir : lora_fixtures()) {
        SCOPED_TRACE(dir.string());
        const Tensor expected = WeightStore::open((dir / "output.safetensors").string()).get("sample");
        const double tol = sample_tolerance(dir);
        const Tensor base = run(HunyuanVideoTransformer::load((dir / "model").string()), dir);
        for (LoraMode mode : {LoraMode::Merge, LoraMode::Runtime}) {
            TransformerLoadOptions o;
            o.lora = fixture_loras(dir, mode);
            const Tensor got = run(HunyuanVideoTransformer::load((dir / "model").string(), o), dir);
            const auto d = test::compare(got, expected);
            EXPECT_LE(d.max_abs, tol) << lora_mode_name(mode) << ": " << d.str();
            std::printf("%s (%zu LoRA file%s) %s: %s (tolerance %.3g; the base model is %.3g away)\n",
                        dir.filename().c_str(), o.lora.files.size(), o.lora.files.size() == 1 ? "" : "s",
                        lora_mode_name(mode), d.str().c_str(), tol, test::compare(base, expected).max_abs);
        }
    }
}

// Auto mode on a zero-copy f32 model keeps the mapped weights and adds side paths; with weights converted at
// load (bf16) it merges. Both give the reference (bf16 within its rounding).
TEST(LoraParity, AutoModeChoosesByStorage) {
    const auto dirs = lora_fixtures();
    ASSERT_FALSE(dirs.empty());
    const fs::path& dir = dirs.front();
    TransformerLoadOptions o;
    o.lora = fixture_loras(dir, LoraMode::Auto);
    const auto model = HunyuanVideoTransformer::load((dir / "model").string(), o);
    size_t adapters = 0;
    for (const WeightBlock& b : model.weight_blocks())
        for (const std::string& n : b.tensor_names) adapters += n.find(".lora_up") != std::string::npos;
    EXPECT_GT(adapters, 0u);
    const Tensor expected = WeightStore::open((dir / "output.safetensors").string()).get("sample");
    EXPECT_LE(test::compare(run(model, dir), expected).max_abs, sample_tolerance(dir));

    o.weight_dtype = DType::BF16;
    const auto merged = HunyuanVideoTransformer::load((dir / "model").string(), o);
    for (const WeightBlock& b : merged.weight_blocks())
        for (const std::string& n : b.tensor_names) EXPECT_EQ(n.find(".lora_"), std::string::npos) << n;
}

// The side path on quantized weights (scaled FP8, GGUF Q8_0) computes what merging the adapters into the same
// weights dequantized computes: the only difference is the f32 summation order of x (W + sBA)^T against
// x W^T + s (x A^T) B^T, so the fixture's f32 tolerance holds.
TEST(LoraParity, RuntimeOnQuantizedEqualsMergeIntoDequantized) {
    for (const fs::path& dir : lora_fixtures()) {
        SCOPED_TRACE(dir.string());
        const fs::path scratch = test::scratch_dir("lora_quantized_" + dir.filename().string());
        struct Case {
            const char* name;
            ConvertOptions options;
        };
        const Case cases[] = {
            {"scaled FP8", {(scratch / "fp8.safetensors").string(), ConvertFormat::ScaledFp8, std::nullopt, false}},
            {"GGUF Q8_0", {(scratch / "q8_0.gguf").string(), ConvertFormat::Gguf, QuantType::Q8_0, false}},
        };
        for (const Case& c : cases) {
            SCOPED_TRACE(c.name);
            const ConvertReport r = convert_transformer((dir / "model").string(), c.options);
            bool quantized = false;
            for (const auto& [type, n] : r.by_type) quantized |= type != "F32" && type != "BF16";
            ASSERT_TRUE(quantized) << "the conversion quantized nothing";
            const TransformerCheckpoint ckpt = open_transformer_checkpoint(c.options.output);

            TransformerLoadOptions runtime;
            runtime.lora = fixture_loras(dir, LoraMode::Auto);  // auto: quantized weights take the side path
            const Tensor got = run(HunyuanVideoTransformer(ckpt.config, *ckpt.source, runtime), dir);

            const DequantizedSource dense(*ckpt.source);
            TransformerLoadOptions merge;
            merge.lora = fixture_loras(dir, LoraMode::Merge);
            const Tensor want = run(HunyuanVideoTransformer(ckpt.config, dense, merge), dir);
            const auto d = test::compare(got, want);
            EXPECT_LE(d.max_abs, sample_tolerance(dir)) << d.str();
            std::printf("%s %s: runtime vs merged into dequantized: %s\n", dir.filename().c_str(), c.name,
                        d.str().c_str());

            TransformerLoadOptions bad;
            bad.lora = fixture_loras(dir, LoraMode::Merge);
            EXPECT_THROW(HunyuanVideoTransformer(ckpt.config, *ckpt.source, bad), InputError)
                << "merge into quantized weights must be refused";
        }
    }
}

// Runtime adapters travel with their blocks: streamed through the simulated device under budgets that force
// streaming, the output is bit-identical to the forward on the weights as loaded.
TEST(LoraStreaming, BitIdenticalAcrossResidencyModes) {
    const auto dirs = lora_fixtures();
    ASSERT_FALSE(dirs.empty());
    const fs::path& dir = dirs.back();
    TransformerLoadOptions o;
    o.lora = fixture_loras(dir, LoraMode::Runtime);
    const auto model = HunyuanVideoTransformer::load((dir / "model").string(), o);
    const WeightStore in = WeightStore::open((dir / "inputs.safetensors").string());
    const TransformerInputs inputs = test::read_transformer_inputs(in);
    cpu_backend().set_gemm_precision(GemmPrecision::F32);
    const Tensor expected = model.forward(cpu_backend(), inputs);
    const auto specs = model.weight_blocks();
    size_t total = 0, largest = 0;
    for (const auto& s : specs) total += device_block_bytes(s), largest = std::max(largest, device_block_bytes(s));
    VirtualAllocator space("plan", 0, Device{DeviceType::Simulated, 0});
    NullBackend planner(space);
    model.forward(planner, inputs);
    const size_t act = space.peak_bytes();
    for (size_t weights : {size_t(0), largest * 2, total - 1}) {
        SCOPED_TRACE(::testing::Message() << "weight budget " << weights);
        if (weights && largest * 2 >= total) continue;
        const size_t budget = weights ? weights + act : 0;
        SimulatedDevice device({.memory_budget = budget, .bandwidth_bytes_per_s = 0, .latency_s = 0});
        ResidencyManager mgr(device, specs,
                             {.budget_bytes = budget, .reserve_bytes = weights ? act : 0, .prefetch = 1});
        const Tensor got = to_host(device.backend(), model.forward(device.backend(), inputs, {}, &mgr));
        EXPECT_EQ(test::compare(got, expected).max_abs, 0.0);
        if (budget) {
            EXPECT_GT(mgr.plan().streamed_blocks(), 0);
        }
        std::printf("%s streamed, weight budget %zu of %zu bytes: bit-identical\n", dir.filename().c_str(), weights,
                    total);
    }
}

// The memory plan counts the side path: a planned load with runtime adapters holds more than without.
TEST(LoraPlan, SidePathWeightsAreCounted) {
    const auto dirs = lora_fixtures();
    ASSERT_FALSE(dirs.empty());
    const fs::path& dir = dirs.front();
    auto planned_bytes = [&](bool with_lora) {
        VirtualAllocator space("plan", 0, Device::cpu());
        TransformerLoadOptions o;
        o.planning_space = &space;
        if (with_lora) o.lora = fixture_loras(dir, LoraMode::Runtime);
        const auto model = HunyuanVideoTransformer::load((dir / "model").string(), o);
        size_t n = 0;
        for (const WeightBlock& b : model.weight_blocks()) n += b.bytes();
        return n;
    };
    const size_t base = planned_bytes(false), with = planned_bytes(true);
    EXPECT_GT(with, base);
    std::printf("%s planned weights: %zu bytes, %zu with the LoRA side path\n", dir.filename().c_str(), base, with);
}
