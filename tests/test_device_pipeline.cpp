// The pipeline on the simulated device, every memory mode against the plain CPU run: offload none / model /
// block x host memory pinned / pageable / mmap x budgets from unlimited down to the tightest one the plan
// allows x prefetch depths. Asserted for each: the final latents are bit-identical to the CPU run's; the
// device allocator's measured peak per stage equals the memory plan's prediction (the plan runs the real
// code on a NullBackend, so they agree to the byte; the issue asks for 10 %) and stays inside the budget;
// tight block budgets really stream; a budget below the minimum fails before anything runs, naming the stage
// and the shortfall.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "backends/cpu/cpu_backend.h"
#include "backends/null_backend.h"
#include "core/virtual_allocator.h"
#include "io/json.h"
#include "pipeline/demo_model.h"
#include "pipeline/device_run.h"
#include "runtime/simulated_device.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/memory_planning.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

// A demo model whose transformer dominates the weights, as at real size, on a small video so that the VAE's
// activations do not dominate the budget.
struct Scenario {
    SkyReelsPipeline pipe;
    GenerationRequest req;
    Tensor reference;  // final latents of the CPU run
};

Scenario make_scenario(Task task, DemoTransformerSize size, int64_t hw, int64_t frames, int steps) {
    Scenario s{make_demo_pipeline(task, 7, size), {}, {}};
    s.req.params = demo_params(task);
    s.req.params.height = s.req.params.width = hw;
    s.req.params.num_frames = frames;
    s.req.params.num_inference_steps = steps;
    s.req.params.seed = 11;
    s.req.prompt = "FPS-24, a lighthouse at dusk";
    if (task == Task::I2V) {
        s.req.image = Tensor::empty({3, hw, hw}, DType::F32);
        for (int64_t i = 0; i < s.req.image.numel(); ++i) s.req.image.data<float>()[i] = float(i % 17) / 8.0f - 1.0f;
    }
    s.reference = s.pipe.generate(cpu_backend(), s.req, {}, [](const Tensor&, int64_t) {});
    return s;
}

const Scenario& t2v() {
    static const Scenario s =
        make_scenario(Task::T2V, {.heads = 4, .head_dim = 32, .dual_blocks = 3, .single_blocks = 3}, 32, 5, 2);
    return s;
}

// A transformer of head dim 32 with `blocks` dual and `blocks` single blocks of `heads` heads, and a small
// text side (`text_dim` wide, pooled half that).
HunyuanVideoConfig small_transformer_config(int64_t blocks, int64_t heads, int64_t text_dim) {
    HunyuanVideoConfig c;
    c.num_layers = c.num_single_layers = blocks;
    c.num_attention_heads = heads;
    c.attention_head_dim = 32;
    c.rope_axes_dim = {8, 12, 12};
    c.text_embed_dim = text_dim;
    c.pooled_projection_dim = text_dim / 2;
    return c;
}

using test::bit_identical;

// The smallest budget the plan accepts for `o` on the scenario's request.
size_t tightest_budget(const Scenario& s, const MemoryOptions& o) {
    return test::tightest_budget(s.pipe, s.req, o);
}

DeviceRunReport run_on_sim(const Scenario& s, const MemoryOptions& o, Tensor* latents) {
    SimulatedDevice dev({.memory_budget = o.vram_budget, .bandwidth_bytes_per_s = 0, .latency_s = 0});
    DeviceRunReport report;
    *latents = generate_on_device(
        s.pipe, dev, {.memory = o, .device_memory_is_host = true}, s.req, {}, [](const Tensor&, int64_t) {}, {},
        &report);
    EXPECT_LE(dev.memory().peak_bytes(), o.vram_budget ? o.vram_budget : SIZE_MAX);
    EXPECT_EQ(dev.memory().in_use_bytes(), 0u) << "device memory left allocated after the run";
    return report;
}

void expect_plan_matches(const DeviceRunReport& r, const std::string& what) {
    ASSERT_EQ(r.stage_peaks.size(), r.plan.stages.size()) << what;
    for (size_t i = 0; i < r.stage_peaks.size(); ++i) {
        const double planned = double(r.plan.stages[i].device_peak()), measured = double(r.stage_peaks[i].second);
        EXPECT_EQ(r.stage_peaks[i].first, r.plan.stages[i].name) << what;
        // The bound is 10 %; by construction the plan is exact, so hold it to that.
        EXPECT_NEAR(measured, planned, 0.10 * planned) << what << ", stage " << r.stage_peaks[i].first;
        EXPECT_EQ(measured, planned) << what << ", stage " << r.stage_peaks[i].first;
    }
}

}  // namespace

TEST(DevicePipeline, EveryModeIsBitIdenticalAndMatchesItsPlan) {
    const Scenario& s = t2v();
    for (OffloadMode offload : {OffloadMode::None, OffloadMode::Model, OffloadMode::Block}) {
        for (HostMemoryMode host : {HostMemoryMode::Pinned, HostMemoryMode::Pageable, HostMemoryMode::Mmap}) {
            for (int prefetch : {0, 1, 2}) {
                if (offload != OffloadMode::Block && prefetch != 1) continue;  // nothing streams
                MemoryOptions o{.offload = offload, .vram_budget = 0, .host_memory = host, .prefetch = prefetch};
                const size_t tight = tightest_budget(s, o);  // a deeper prefetch needs more ring buffers
                const size_t unlimited_peak = plan_memory(s.pipe, s.req, o).device_peak();
                for (size_t budget : {size_t(0), (tight + unlimited_peak) / 2, tight}) {
                    o.vram_budget = budget;
                    const std::string what =
                        fmt::format("offload {} host {} budget {} prefetch {}", offload_mode_name(offload),
                                    host_memory_mode_name(host), budget, prefetch);
                    Tensor latents;
                    const DeviceRunReport r = run_on_sim(s, o, &latents);
                    EXPECT_TRUE(bit_identical(latents, s.reference)) << what;
                    expect_plan_matches(r, what);
                    if (offload == OffloadMode::Block && budget == tight) {
                        EXPECT_GT(r.plan.streamed_blocks, 0) << what;
                        EXPECT_EQ(r.streamed_bytes_per_step, double(r.plan.streamed_bytes_per_step)) << what;
                    }
                    if (offload != OffloadMode::Block) {
                        EXPECT_EQ(r.plan.streamed_blocks, 0) << what;
                    }
                }
            }
        }
    }
}

TEST(DevicePipeline, ModelOffloadNeedsLessThanNoneAndBlockLessThanModel) {
    const Scenario& s = t2v();
    const size_t none = tightest_budget(s, {.offload = OffloadMode::None});
    const size_t model = tightest_budget(s, {.offload = OffloadMode::Model});
    const size_t block = tightest_budget(s, {.offload = OffloadMode::Block});
    EXPECT_LT(model, none);
    EXPECT_LT(block, model);
}

TEST(DevicePipeline, ImageToVideoOnTheDeviceIsBitIdentical) {
    static const Scenario s =
        make_scenario(Task::I2V, {.heads = 4, .head_dim = 32, .dual_blocks = 2, .single_blocks = 2}, 32, 5, 2);
    for (OffloadMode offload : {OffloadMode::None, OffloadMode::Model, OffloadMode::Block}) {
        MemoryOptions o{.offload = offload};
        o.vram_budget = tightest_budget(s, o);
        Tensor latents;
        const DeviceRunReport r = run_on_sim(s, o, &latents);
        EXPECT_TRUE(bit_identical(latents, s.reference)) << offload_mode_name(offload);
        ASSERT_EQ(r.plan.stages.size(), 4u);  // text, image, denoising, decoding
        expect_plan_matches(r, offload_mode_name(offload));
    }
}

// A plan meets each VAE tile shape once (pipeline/memory_plan.h: the largest videos have tens of millions of
// tiles of a handful of shapes); the repeats are counted from that one run. Here 64x64 frames in tiles of 16
// every 8 (7x7 tiles, most of one shape) and 17 frames in temporal tiles of 8 every 4: the planned decoding
// peak is still exactly what the device measures, with the weights resident and streamed.
TEST(DevicePipeline, PlanOfManyRepeatedVaeTilesIsExact) {
    Scenario s =
        make_scenario(Task::T2V, {.heads = 2, .head_dim = 32, .dual_blocks = 1, .single_blocks = 1}, 64, 17, 1);
    VAETiling& t = s.req.params.vae_tiling;
    t.tile_sample_min_height = t.tile_sample_min_width = 16;
    t.tile_sample_stride_height = t.tile_sample_stride_width = 8;
    t.tile_sample_min_num_frames = 8;
    t.tile_sample_stride_num_frames = 4;
    for (OffloadMode offload : {OffloadMode::None, OffloadMode::Block}) {
        MemoryOptions o{.offload = offload};
        Tensor latents;
        const DeviceRunReport r = run_on_sim(s, o, &latents);
        expect_plan_matches(r, std::string("repeated tiles, ") + offload_mode_name(offload));
    }
}

// The host/device boundary. The simulated device's memory may not be touched by host code (a stray host
// read or write, or a host tensor handed to a kernel, aborts the run naming the tensor), so this run proves
// that every model uploads its inputs, tables and masks and hands back what the host reads. Small VAE tiles
// send the I2V image through the spatially tiled encode and the latents through the temporally and spatially
// tiled decode, whose blending happens on the host. Every pipeline intermediate the hook sees and every
// decoded frame is bit-identical to the CPU run's, streaming under the tightest budget.
TEST(DevicePipeline, TiledI2VOnTheDeviceMatchesTheCpuRunInEveryIntermediateAndFrame) {
    Scenario s = make_scenario(Task::I2V, {.heads = 4, .head_dim = 32, .dual_blocks = 2, .single_blocks = 2}, 32, 9, 2);
    VAETiling& t = s.req.params.vae_tiling;
    t.tile_sample_min_height = t.tile_sample_min_width = 16;  // 32x32 frames: 2x2 overlapping tiles of 16
    t.tile_sample_stride_height = t.tile_sample_stride_width = 8;
    t.tile_sample_min_num_frames = 8;  // 9 frames (3 latents): temporal tiles overlapping by 4 frames
    t.tile_sample_stride_num_frames = 4;
    struct Recorded {
        std::map<std::string, Tensor> values;
        std::vector<Tensor> frames;
    };
    auto hook_into = [](Recorded& r) {
        return [&r](std::string_view name, const Tensor& v) { r.values[std::string(name)] = v.contiguous().clone(); };
    };
    auto sink_into = [](Recorded& r) {
        return [&r](const Tensor& frames, int64_t) { r.frames.push_back(frames.contiguous().clone()); };
    };
    Recorded cpu, sim;
    s.pipe.generate(cpu_backend(), s.req, {}, sink_into(cpu), hook_into(cpu));

    MemoryOptions o{.offload = OffloadMode::Block};
    o.vram_budget = tightest_budget(s, o);
    SimulatedDevice dev({.memory_budget = o.vram_budget, .bandwidth_bytes_per_s = 0, .latency_s = 0});
    DeviceRunReport r;
    generate_on_device(s.pipe, dev, {.memory = o}, s.req, {}, sink_into(sim), hook_into(sim), &r);
    EXPECT_GT(r.plan.streamed_blocks, 0);
    expect_plan_matches(r, "tiled i2v");

    ASSERT_EQ(sim.values.size(), cpu.values.size());
    for (const auto& [name, value] : cpu.values) {
        ASSERT_TRUE(sim.values.count(name)) << name;
        EXPECT_TRUE(bit_identical(sim.values.at(name), value)) << name;
    }
    EXPECT_TRUE(cpu.values.count("image_latents") && cpu.values.count("step1.transformer_output"));
    ASSERT_EQ(sim.frames.size(), cpu.frames.size());
    ASSERT_GT(cpu.frames.size(), 1u) << "the decode must be temporally tiled";
    for (size_t i = 0; i < cpu.frames.size(); ++i) EXPECT_TRUE(bit_identical(sim.frames[i], cpu.frames[i])) << i;
}

// A backend's scratch bound (the CUDA backend's is a few hundred MiB) is reserved on top of the activations
// of every model: with model offload each stage's planned peak grows by exactly that much.
TEST(DevicePipeline, ThePlanReservesTheBackendsWorkspace) {
    const Scenario& s = t2v();
    const MemoryOptions o{.offload = OffloadMode::Model};
    const size_t ws = 3u << 20;
    const MemoryPlan a = plan_memory(s.pipe, s.req, o), b = plan_memory(s.pipe, s.req, o, {.workspace_bytes = ws});
    ASSERT_EQ(a.stages.size(), b.stages.size());
    for (size_t i = 0; i < a.stages.size(); ++i)
        EXPECT_EQ(b.stages[i].device_peak(), a.stages[i].device_peak() + ws) << a.stages[i].name;
    for (size_t m = 0; m < kPipelineModels; ++m) EXPECT_EQ(b.reserves[m], a.reserves[m] + (a.reserves[m] ? ws : 0));
}

// WeightBinder::shapes_only (bench_memory_plan plans the released models with it, without their files)
// binds what a checkpoint would: the same parameters, the same blocks to the byte, bf16 weights as views of a
// mapped file and norms/biases as owned f32, and a forward planned on it peaks exactly where one with real
// weights does.
TEST(DevicePipeline, AModelBoundShapesOnlyPlansLikeOneWithWeights) {
    const HunyuanVideoConfig c = small_transformer_config(2, 2, 48);
    WeightBinder random_binder = WeightBinder::random(1, DType::BF16);
    const HunyuanVideoTransformer real(c, random_binder);
    VirtualAllocator space("weights");
    WeightBinder shapes = WeightBinder::shapes_only(DType::BF16, space);
    const HunyuanVideoTransformer planned(c, shapes);
    EXPECT_EQ(shapes.parameter_count(), random_binder.parameter_count());
    const auto a = real.weight_blocks(), b = planned.weight_blocks();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].name, b[i].name);
        EXPECT_EQ(a[i].bytes(), b[i].bytes()) << a[i].name;
    }
    for (size_t i = 0; i < planned.weight_block_count(); ++i)
        for (const Tensor& t : planned.weight_block_tensors(i))
            if (t.defined()) {
                EXPECT_EQ(t.is_external_view(), t.dtype() == DType::BF16) << t.describe();
            }

    TransformerInputs in;
    in.hidden_states = Tensor::zeros({1, c.in_channels, 2, 8, 8}, DType::F32);
    in.timestep = Tensor::from_vector({500.0f}, {1});
    in.guidance = Tensor::from_vector({1000.0f}, {1});
    in.encoder_hidden_states = Tensor::zeros({1, 7, c.text_embed_dim}, DType::F32);
    in.encoder_attention_mask = Tensor::from_vector(std::vector<float>(7, 1.0f), {1, 7});
    in.pooled_projections = Tensor::zeros({1, c.pooled_projection_dim}, DType::F32);
    auto peak = [&](const HunyuanVideoTransformer& m) {
        VirtualAllocator act("plan", 0, Device{DeviceType::Simulated, 0});
        NullBackend be(act);
        m.forward(be, in);
        return act.peak_bytes();
    };
    EXPECT_EQ(peak(planned), peak(real));
}

// The transformer's activation peak, in units of one [B, S, D] f32 tensor: the single-stream block runs its
// attention before its MLP and the MLP a block of rows at a time, and the dual-stream block writes each
// projection straight into the joint q, k, v; so the peak is xs + norm + attention output + the fused
// [S, 5D] input (8 units) plus a 64 MiB row block and the RoPE tables. Computing the MLP first, as before,
// held its whole [S, 4D] hidden layer too: 11 units. Planned on the NullBackend (address space only) at
// 262,144 tokens, where the row block is a small part.
TEST(DevicePipeline, TransformerActivationPeakStaysNearEightJointSequences) {
    const HunyuanVideoConfig c = small_transformer_config(1, 8, 64);
    const auto model = HunyuanVideoTransformer::random(c, DType::BF16, 3);
    const int64_t B = 2, L = 256;
    TransformerInputs in;
    in.hidden_states = Tensor::zeros({B, c.in_channels, 16, 256, 256}, DType::F32);  // 16 x 128 x 128 patches
    in.timestep = Tensor::from_vector({500.0f, 500.0f}, {B});
    in.guidance = Tensor::from_vector({1000.0f, 1000.0f}, {B});
    in.encoder_hidden_states = Tensor::zeros({B, L, c.text_embed_dim}, DType::F32);
    in.encoder_attention_mask = Tensor::from_vector(std::vector<float>(size_t(B * L), 1.0f), {B, L});
    in.pooled_projections = Tensor::zeros({B, c.pooled_projection_dim}, DType::F32);
    VirtualAllocator act("plan", 0, Device{DeviceType::Simulated, 0});
    NullBackend be(act);
    model.forward(be, in);
    const double unit = double(B) * double(16 * 128 * 128 + L) * double(c.inner_dim()) * 4.0;
    const double units = double(act.peak_bytes()) / unit;
    std::printf("transformer activation peak: %.2f x [B, S, D] f32\n", units);
    EXPECT_LT(units, 9.0);
    EXPECT_GT(units, 8.0);  // xs, norm, attention output and the fused input are all needed at once
}

TEST(DevicePipeline, ABudgetTooSmallFailsBeforeRunningAndNamesTheShortfall) {
    const Scenario& s = t2v();
    MemoryOptions o{.offload = OffloadMode::Block};
    o.vram_budget = tightest_budget(s, o) - 64 * 1024;
    SimulatedDevice dev({.memory_budget = o.vram_budget, .bandwidth_bytes_per_s = 0, .latency_s = 0});
    try {
        Tensor latents;
        generate_on_device(s.pipe, dev, {.memory = o}, s.req, {}, [](const Tensor&, int64_t) {});
        FAIL() << "expected OutOfMemoryError";
    } catch (const OutOfMemoryError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("--vram-budget"), std::string::npos) << msg;
        EXPECT_TRUE(msg.find("short by") != std::string::npos || msg.find("too small") != std::string::npos) << msg;
        // The transformer is what does not fit here, with batched CFG: the error names the way to halve it.
        EXPECT_NE(msg.find("transformer"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--sequence-batch"), std::string::npos) << msg;
    }
    EXPECT_EQ(dev.memory().peak_bytes(), 0u) << "nothing may be placed before the plan says it fits";
}

TEST(DevicePipeline, PinnedModeHoldsStreamedBlocksOnceInPageLockedMemory) {
    const Scenario& s = t2v();
    MemoryOptions o{.offload = OffloadMode::Block, .host_memory = HostMemoryMode::Pinned};
    o.vram_budget = tightest_budget(s, o);
    Tensor latents;
    const DeviceRunReport r = run_on_sim(s, o, &latents);
    ASSERT_GT(r.plan.streamed_blocks, 0);
    // Pinned: the streamed blocks once (packed) + the staging ring used for resident uploads.
    EXPECT_EQ(r.pinned_peak, r.plan.pinned_bytes);
    // A pinned budget below the streamed bytes pins fewer blocks (the rest are staged), same latents. The
    // budget bounds all page-locked memory: the staging ring counts against it.
    o.pinned_budget = r.plan.staging_bytes + r.plan.pinned_weight_bytes / 3;
    Tensor capped;
    const DeviceRunReport rc = run_on_sim(s, o, &capped);
    EXPECT_LT(rc.pinned_peak, r.pinned_peak);
    EXPECT_LE(rc.pinned_peak, o.pinned_budget);
    EXPECT_EQ(rc.pinned_peak, rc.plan.pinned_bytes);
    EXPECT_TRUE(bit_identical(capped, s.reference));
}

TEST(DevicePipeline, DryRunPlanOfTheDemoAndAMediumModelIsWithinTenPercent) {
    // The demo model at its own defaults, and a medium transformer (512 wide, 4 + 4 blocks) at 64x64x9.
    struct Case {
        const char* name;
        DemoTransformerSize size;
        int64_t hw, frames;
    };
    for (const Case& c : {Case{"demo", {}, 128, 17},
                          Case{"medium", {.heads = 8, .head_dim = 64, .dual_blocks = 4, .single_blocks = 4}, 64, 9}}) {
        SkyReelsPipeline pipe = make_demo_pipeline(Task::T2V, 3, c.size);
        GenerationRequest req;
        req.params = demo_params(Task::T2V);
        req.params.height = req.params.width = c.hw;
        req.params.num_frames = c.frames;
        req.params.num_inference_steps = 2;
        req.prompt = "FPS-24, a river";
        for (OffloadMode offload : {OffloadMode::None, OffloadMode::Block}) {
            MemoryOptions o{.offload = offload};
            const MemoryPlan dry = plan_memory(pipe, req, o);  // what --dry-run prints
            SimulatedDevice dev({.bandwidth_bytes_per_s = 0, .latency_s = 0});
            DeviceRunReport r;
            generate_on_device(
                pipe, dev, {.memory = o}, req, {}, [](const Tensor&, int64_t) {}, {}, &r);
            ASSERT_EQ(r.stage_peaks.size(), dry.stages.size());
            for (size_t i = 0; i < dry.stages.size(); ++i)
                EXPECT_NEAR(double(r.stage_peaks[i].second), double(dry.stages[i].device_peak()),
                            0.10 * double(dry.stages[i].device_peak()))
                    << c.name << " " << dry.stages[i].name;
            EXPECT_NEAR(double(r.device_peak), double(dry.device_peak()), 0.10 * double(dry.device_peak())) << c.name;
        }
    }
}

// Every pipeline fixture folder: a --dry-run load (weights bound to address space, none read) plans exactly
// what a real load plans, and the real pipeline on the simulated device, streaming under the tightest
// budget, gives the CPU run's latents bit for bit.
TEST(DevicePipeline, FixturePipelinesPlanWithoutReadingAndRunBitIdentical) {
    const auto dirs = test::find_fixture_dirs([](const fs::path& d) {
        return fs::exists(d / "model_index.json") && fs::exists(d / "params.json") && fs::exists(d / "transformer");
    });
    ASSERT_FALSE(dirs.empty()) << "no pipeline fixture under " << test::fixtures_root();
    for (const fs::path& dir : dirs) {
        SCOPED_TRACE(dir.string());
        const Json params = load_json_file((dir / "params.json").string());
        PipelineLoadOptions load;
        load.model = dir.string();
        const SkyReelsPipeline real = SkyReelsPipeline::load(load);
        VirtualAllocator space("dry-run weights");
        load.planning_space = &space;
        const SkyReelsPipeline planned = SkyReelsPipeline::load(load);
        GenerationRequest req;
        req.params.task = params["task"].get<std::string>() == "i2v" ? Task::I2V : Task::T2V;
        req.params.height = params["height"].get<int64_t>();
        req.params.width = params["width"].get<int64_t>();
        req.params.num_frames = params["num_frames"].get<int64_t>();
        req.params.num_inference_steps = 2;
        if (req.params.task == Task::I2V)
            req.image = Tensor::zeros({3, req.params.height, req.params.width}, DType::F32);
        // Token ids steer values, not memory: zeros of the template's shapes (the fixtures have no tokenizer).
        const PromptTemplate& t = real.components().prompt_template;
        TextTokens tok;
        tok.llama_ids = Tensor::zeros({2, t.crop_start + t.max_sequence_length}, DType::I64);
        tok.llama_mask = Tensor::zeros({2, t.crop_start + t.max_sequence_length}, DType::I64);
        for (int64_t i = 0; i < tok.llama_mask.numel(); ++i) tok.llama_mask.data<int64_t>()[i] = i % 7 < 5;
        tok.clip_ids = Tensor::zeros({2, t.clip_max_length}, DType::I64);
        req.tokens = tok;
        for (OffloadMode offload : {OffloadMode::None, OffloadMode::Model, OffloadMode::Block}) {
            const MemoryOptions o{.offload = offload};
            const MemoryPlan a = plan_memory(real, req, o, {.staging_bytes = 1 << 20}),
                             b = plan_memory(planned, req, o, {.staging_bytes = 1 << 20});
            ASSERT_EQ(a.stages.size(), b.stages.size());
            for (size_t i = 0; i < a.stages.size(); ++i) {
                EXPECT_EQ(a.stages[i].weight_bytes, b.stages[i].weight_bytes) << a.stages[i].name;
                EXPECT_EQ(a.stages[i].activation_bytes, b.stages[i].activation_bytes) << a.stages[i].name;
            }
            EXPECT_EQ(a.owned_weight_bytes, b.owned_weight_bytes);
        }
        const Tensor reference = real.generate(cpu_backend(), req, {}, [](const Tensor&, int64_t) {});
        Scenario s{real, req, reference};
        MemoryOptions o{.offload = OffloadMode::Block};
        o.vram_budget = tightest_budget(s, o);
        Tensor latents;
        const DeviceRunReport r = run_on_sim(s, o, &latents);
        // (The fixtures' VAE activations outweigh their transformer, so the tightest budget may not stream it;
        // the demo-based tests above cover streaming.)
        EXPECT_TRUE(bit_identical(latents, reference));
        expect_plan_matches(r, "fixture, tightest block budget");
    }
}
