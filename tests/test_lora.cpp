// LoRA adapters (models/hunyuan_video_lora.h, nn/lora.h): parity with the PEFT reference on every LoRA fixture
// folder found by content (a transformer fixture with lora/ and lora.json), in merge and runtime modes; the
// runtime side path on FP8 and GGUF weights against merging into the same weights dequantized; a LoRA under
// block streaming on the simulated device; and hostile adapter files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <optional>

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

// Runtime adapters stay resident while their blocks stream: through the simulated device under budgets that
// force streaming, the output is bit-identical to the forward on the weights as loaded, and each pass moves
// exactly the base model's bytes of the streamed blocks (the side paths were uploaded once, with the manager).
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
    const auto base_specs = HunyuanVideoTransformer::load((dir / "model").string()).weight_blocks();
    ASSERT_EQ(specs.size(), base_specs.size());
    size_t side = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
        EXPECT_EQ(device_block_bytes(specs[i]), device_block_bytes(base_specs[i])) << specs[i].name;
        side += side_path_bytes(specs[i]);
    }
    EXPECT_GT(side, 0u) << "runtime adapters declare no side-path tensors";
    size_t total = 0, largest = 0;
    for (const auto& s : specs) total += device_block_bytes(s), largest = std::max(largest, device_block_bytes(s));
    VirtualAllocator space("plan", 0, Device{DeviceType::Simulated, 0});
    NullBackend planner(space);
    model.forward(planner, inputs);
    const size_t act = space.peak_bytes();
    // Budgets for the blocks (the side paths and activations come on top) from everything resident down to a
    // half; the ones that leave no room for the ring are skipped, but some must stream. This small model has few
    // blocks, one of them most of its weights: a ring of one slot (prefetch 0) is what streams it under the
    // whole model's size; prefetch 1 where two slots fit.
    int streamed_runs = 0;
    for (const auto& [weights, prefetch] : std::vector<std::pair<size_t, int>>{{0, 1},
                                                                               {total - 1, 0},
                                                                               {total - 1, 1},
                                                                               {total * 3 / 4, 0},
                                                                               {total * 3 / 4, 1},
                                                                               {total / 2, 0},
                                                                               {largest * 2, 1}}) {
        SCOPED_TRACE(::testing::Message() << "weight budget " << weights << ", prefetch " << prefetch);
        const size_t budget = weights ? weights + side + act : 0;  // the side paths are resident besides
        SimulatedDevice device({.memory_budget = budget, .bandwidth_bytes_per_s = 0, .latency_s = 0});
        std::optional<ResidencyManager> placed;
        try {
            placed.emplace(
                device, specs,
                ResidencyOptions{.budget_bytes = budget, .reserve_bytes = weights ? act : 0, .prefetch = prefetch});
        } catch (const OutOfMemoryError&) {
            std::printf("%s: weight budget %zu of %zu bytes, prefetch %d: no room to stream (skipped)\n",
                        dir.filename().c_str(), weights, total, prefetch);
            continue;
        }
        ResidencyManager& mgr = *placed;
        streamed_runs += mgr.plan().streamed_blocks() > 0;
        const Tensor got = to_host(device.backend(), model.forward(device.backend(), inputs, {}, &mgr));
        EXPECT_EQ(test::compare(got, expected).max_abs, 0.0);
        EXPECT_EQ(mgr.plan().side_path_bytes, side);
        // A second pass moves the streamed blocks' base weights and nothing else.
        const ResidencyStats first = mgr.stats();
        const Tensor again = to_host(device.backend(), model.forward(device.backend(), inputs, {}, &mgr));
        EXPECT_EQ(test::compare(again, expected).max_abs, 0.0);
        const ResidencyStats second = mgr.stats();
        size_t base_streamed = 0, base_streamed_device = 0;
        for (size_t i = 0; i < specs.size(); ++i)
            if (!mgr.plan().resident[i])
                base_streamed += base_specs[i].bytes(), base_streamed_device += device_block_bytes(base_specs[i]);
        EXPECT_EQ(second.bytes_moved - first.bytes_moved, base_streamed) << "the side paths moved with their blocks";
        EXPECT_EQ(second.streamed_bytes - first.streamed_bytes, base_streamed_device);
        if (weights != 0 && weights < total) {
            EXPECT_GT(mgr.plan().streamed_blocks(), 0);
        }
        std::printf(
            "%s, weight budget %zu of %zu bytes, prefetch %d: %d blocks streamed, bit-identical; %zu bytes of side "
            "paths resident, %zu bytes moved per pass (the base model's streamed blocks)\n",
            dir.filename().c_str(), weights, total, prefetch, mgr.plan().streamed_blocks(), side, base_streamed);
    }
    EXPECT_GT(streamed_runs, 0) << "no budget made the blocks stream";
}

// A job's adapters (TransformerPass::adapters) on a model loaded without any: bit-identical to the model loaded
// with them in runtime mode, on the CPU and streamed through the simulated device (uploaded once, outside the
// blocks: each pass moves the base model's streamed bytes); the forward after it, without them, is the base's.
TEST(LoraStreaming, JobAdaptersOnAStreamedModel) {
    const auto dirs = lora_fixtures();
    ASSERT_FALSE(dirs.empty());
    const fs::path& dir = dirs.back();
    const auto base = HunyuanVideoTransformer::load((dir / "model").string());
    TransformerLoadOptions o;
    o.lora = fixture_loras(dir, LoraMode::Runtime);
    const auto loaded = HunyuanVideoTransformer::load((dir / "model").string(), o);
    const LoraSet job = base.read_loras(fixture_loras(dir, LoraMode::Runtime));
    const TransformerInputs inputs =
        test::read_transformer_inputs(WeightStore::open((dir / "inputs.safetensors").string()));
    cpu_backend().set_gemm_precision(GemmPrecision::F32);
    const Tensor want = loaded.forward(cpu_backend(), inputs);
    const Tensor plain = base.forward(cpu_backend(), inputs);
    TransformerPass pass;
    pass.adapters = &job;
    EXPECT_EQ(test::compare(base.forward(cpu_backend(), inputs, {}, nullptr, pass), want).max_abs, 0.0);
    EXPECT_EQ(test::compare(base.forward(cpu_backend(), inputs), plain).max_abs, 0.0);

    const auto specs = base.weight_blocks();
    size_t total = 0;
    for (const auto& b : specs) total += device_block_bytes(b);
    VirtualAllocator space("plan", 0, Device{DeviceType::Simulated, 0});
    NullBackend planner(space);
    base.forward(planner, inputs);
    const size_t act = space.peak_bytes() + job.bytes() * 2;  // the job's adapters live in the activations' room
    const size_t budget = total - 1 + act;
    SimulatedDevice device({.memory_budget = budget, .bandwidth_bytes_per_s = 0, .latency_s = 0});
    ResidencyManager mgr(device, specs, {.budget_bytes = budget, .reserve_bytes = act, .prefetch = 0});
    ASSERT_GT(mgr.plan().streamed_blocks(), 0);
    const LoraSet on_device = job.on_backend(device.backend());
    TransformerPass device_pass;
    device_pass.adapters = &on_device;
    const ResidencyStats before = mgr.stats();
    const Tensor got = to_host(device.backend(), base.forward(device.backend(), inputs, {}, &mgr, device_pass));
    EXPECT_EQ(test::compare(got, want).max_abs, 0.0);
    const ResidencyStats after = mgr.stats();
    size_t streamed = 0;
    for (size_t i = 0; i < specs.size(); ++i)
        if (!mgr.plan().resident[i]) streamed += specs[i].bytes();
    EXPECT_EQ(after.bytes_moved - before.bytes_moved, streamed);
    EXPECT_EQ(test::compare(to_host(device.backend(), base.forward(device.backend(), inputs, {}, &mgr)), plain).max_abs,
              0.0);
    std::printf(
        "%s: a job's adapters streamed with %d blocks: bit-identical to the model loaded with them; %zu bytes "
        "moved per pass\n",
        dir.filename().c_str(), mgr.plan().streamed_blocks(), streamed);
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

// PEFT's per-module alpha and rank (alpha_pattern, rank_pattern in the adapter metadata diffusers saves): a key
// matches a module named it or ending in "." + it; its alpha replaces lora_alpha for that module, and a
// rank_pattern that disagrees with the matrices is an error naming the module.
TEST(LoraMetadata, AlphaAndRankPatterns) {
    const auto dirs = lora_fixtures();
    ASSERT_FALSE(dirs.empty());
    const auto model = HunyuanVideoTransformer::load((dirs.front() / "model").string());
    const auto linears = model.linear_shapes();
    const int64_t D = linears.at("transformer_blocks.0.attn.to_q").second, r = 2;
    const Tensor a = Tensor::zeros({r, D}, DType::F32);
    Tensor b = Tensor::zeros({D, r}, DType::F32);
    for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = 1.0f;
    const std::string p = "transformer.transformer_blocks.0.attn.";
    const fs::path file = test::scratch_dir("lora_metadata") / "patterns.safetensors";
    auto read = [&](const std::string& metadata) {
        write_safetensors(file.string(),
                          {{p + "to_q.lora_A.weight", a},
                           {p + "to_q.lora_B.weight", b},
                           {p + "to_k.lora_A.weight", a},
                           {p + "to_k.lora_B.weight", b}},
                          {{"lora_adapter_metadata", metadata}});
        return model.read_loras({.files = {{file.string(), 1.0f}}});
    };
    const LoraSet set = read(R"({"lora_alpha": 4, "alpha_pattern": {"attn.to_q": 8, "o_k": 100},
                                 "rank_pattern": {"to_q": 2, "to_k": 2}})");
    // scale = alpha / rank: 8 / 2 for to_q (its pattern), 4 / 2 for to_k ("o_k" is no module name's suffix).
    EXPECT_EQ(set.find("transformer_blocks.0.attn.to_q")->front().up.data<float>()[0], 4.0f);
    EXPECT_EQ(set.find("transformer_blocks.0.attn.to_k")->front().up.data<float>()[0], 2.0f);
    // The most specific key wins where two match.
    const LoraSet nested = read(R"({"lora_alpha": 4, "alpha_pattern": {"to_q": 6, "0.attn.to_q": 10}})");
    EXPECT_EQ(nested.find("transformer_blocks.0.attn.to_q")->front().up.data<float>()[0], 5.0f);
    try {
        read(R"({"lora_alpha": 4, "rank_pattern": {"to_q": 3}})");
        ADD_FAILURE() << "a rank_pattern that disagrees with the matrices was accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("rank_pattern"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("to_q"), std::string::npos) << e.what();
    }
    EXPECT_THROW(read(R"({"lora_alpha": 4, "alpha_pattern": {"to_q": "eight"}})"), InputError);
    EXPECT_THROW(read(R"({"lora_alpha": 4, "alpha_pattern": [8]})"), InputError);
}
