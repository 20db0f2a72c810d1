// Parity of the SkyReels-V1 pipeline with the reference run, step by step, on every pipeline fixture folder
// found by content (model_index.json + params.json): scheduler sigmas and timesteps, text conditioning,
// image latents (I2V), each step's latents, the final latents, the decoded video and frames; and the
// sequential-CFG run (SkyReels' cfg_for / our sequence_batch) against output_cfg_for.safetensors.
//
// The same file is built three times (tests/pipeline.cmake, tests/cuda.cmake): on the CPU backend; with
// SKYREELS_PIPELINE_PARITY_DEVICE=sim, the run goes through generate_on_device on the simulated device
// (model offload), whose memory host code may not touch; with =cuda, on the GPU in f32 (skipped without
// one). The fixture's tolerances apply unchanged: they bound f32 noise against the reference, whichever
// device computes in f32.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>

#include "backends/cpu/cpu_backend.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "pipeline/pipeline.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/pipeline_fixture.h"
#ifdef SKYREELS_PIPELINE_PARITY_DEVICE
#include "pipeline/device_run.h"
#include "runtime/simulated_device.h"
#if SKYREELS_PIPELINE_PARITY_DEVICE_CUDA
#include "backends/cuda/cuda_backend.h"
#include "runtime/cuda_accelerator.h"
#define PARITY_SUITE CudaPipelineParity
#else
#define PARITY_SUITE SimPipelineParity
#endif
#else
#define PARITY_SUITE PipelineParity
#endif

namespace fs = std::filesystem;
using namespace sr;

namespace {

using test::Fixture;
using test::load_pipeline;
using test::make_request;
using test::pipeline_fixtures;
using test::read_tolerances;
using test::Tolerances;

struct PipelineRun {
    std::map<std::string, Tensor> captured;
    Tensor video;  // [1, 3, F, H, W]
    int64_t frames_seen = 0;
};

PipelineRun run(const SkyReelsPipeline& pipe, const GenerationRequest& req) {
    PipelineRun out;
    const GenerationParams& p = req.params;
    out.video = Tensor::zeros({1, 3, p.num_frames, p.height, p.width}, DType::F32);
    const FrameSink sink = [&](const Tensor& frames, int64_t first) {
        EXPECT_EQ(first, out.frames_seen) << "frames must arrive in order";
        Tensor dst = out.video.slice(2, first, first + frames.dim(2));
        dst.copy_from(frames);
        out.frames_seen = first + frames.dim(2);
    };
    const PipelineHook hook = [&](std::string_view name, const Tensor& t) {
        out.captured[std::string(name)] = t.clone();
    };
#ifdef SKYREELS_PIPELINE_PARITY_DEVICE
#if SKYREELS_PIPELINE_PARITY_DEVICE_CUDA
    CudaAccelerator dev;
    dev.cuda().set_gemm_precision(GemmPrecision::F32);
    dev.cuda().set_attention_precision(GemmPrecision::F32);
#else
    SimulatedDevice dev({.bandwidth_bytes_per_s = 0, .latency_s = 0});
#endif
    generate_on_device(pipe, dev, {.memory = {.offload = OffloadMode::Model}}, req, {}, sink, hook);
    EXPECT_EQ(dev.memory().in_use_bytes(), 0u) << "device memory left allocated after the run";
#else
    cpu_backend().set_gemm_precision(GemmPrecision::F32);
    pipe.generate(cpu_backend(), req, {}, sink, hook);
#endif
    return out;
}

// The device variants skip where their device is missing.
#if SKYREELS_PIPELINE_PARITY_DEVICE_CUDA
#define SKIP_WITHOUT_DEVICE()                                          \
    do {                                                               \
        const std::string why_ = cuda_unavailable_reason();            \
        if (!why_.empty()) GTEST_SKIP() << "no CUDA device: " << why_; \
    } while (0)
#else
#define SKIP_WITHOUT_DEVICE() \
    do {                      \
    } while (0)
#endif

// postprocess_video(video, "pt"): (video/2 + 0.5).clamp(0, 1), permuted to [1, F, 3, H, W].
Tensor to_frames(const Tensor& video) {
    Tensor frames = video.permute({0, 2, 1, 3, 4}).contiguous();
    float* x = frames.data<float>();
    for (int64_t i = 0; i < frames.numel(); ++i) x[i] = std::min(1.0f, std::max(0.0f, x[i] / 2.0f + 0.5f));
    return frames;
}

// A [B, L] mask of any numeric dtype as f32.
Tensor mask_f32(const Tensor& mask) {
    std::vector<float> v;
    for (int32_t m : read_mask(mask)) v.push_back(float(m));
    return Tensor::from_vector(v, mask.shape());
}

void expect_close(const std::string& what, const Tensor& actual, const Tensor& expected, double tol) {
    const test::Diff d = test::compare(actual, expected);
    EXPECT_FALSE(d.shape_mismatch) << what << ": " << actual.describe() << " vs " << expected.describe();
    EXPECT_LE(d.max_abs, tol) << what << ": " << d.str();
    std::printf("  %-32s max_abs %.3g (tolerance %.3g)\n", what.c_str(), d.max_abs, tol);
}

}  // namespace

#ifndef SKYREELS_PIPELINE_PARITY_DEVICE  // the device variants run the two runs below
TEST(PipelineParity, FixturesExist) {
    // A parity test that finds nothing to compare must fail, not pass vacuously.
    EXPECT_FALSE(pipeline_fixtures().empty()) << "no pipeline fixture under " << test::fixtures_root();
}

TEST(PipelineParity, SchedulerMatchesReference) {
    for (const fs::path& dir : pipeline_fixtures()) {
        SCOPED_TRACE(dir.string());
        const Json params = load_json_file((dir / "params.json").string());
        const WeightStore inter = WeightStore::open((dir / "intermediates.safetensors").string());
        const fs::path sched = dir / "scheduler" / "scheduler_config.json";
        FlowMatchEulerScheduler s = FlowMatchEulerScheduler::from_json(load_json_file(sched.string()), sched.string());
        s.set_timesteps(params["num_inference_steps"].get<int>());
        const int64_t n = int64_t(s.timesteps().size());
        // float32 arithmetic in the reference's order: bit-exact is expected; 1 ulp of 1000 allowed.
        expect_close("sigmas", Tensor::from_vector(s.sigmas(), Shape{n + 1}), inter.get("sigmas"), 1e-7);
        expect_close("timesteps", Tensor::from_vector(s.timesteps(), Shape{n}), inter.get("timesteps"), 1e-4);
    }
}

#endif

TEST(PARITY_SUITE, StepByStep) {
    SKIP_WITHOUT_DEVICE();
    ASSERT_FALSE(pipeline_fixtures().empty()) << "no pipeline fixture under " << test::fixtures_root();
    for (const fs::path& dir : pipeline_fixtures()) {
        SCOPED_TRACE(dir.string());
        Fixture f = Fixture::open(dir);
        const Tolerances tol = read_tolerances(dir);
        const SkyReelsPipeline pipe = load_pipeline(f);
        const PipelineRun r = run(pipe, make_request(f, false));
        ASSERT_EQ(r.frames_seen, f.params["num_frames"].get<int64_t>());

        // Text conditioning: padded positions cannot influence any latent, so only valid rows are compared.
        const Tensor mask = f.intermediates.get("prompt_attention_mask");
        const test::Diff pe =
            test::compare_masked_rows(r.captured.at("prompt_embeds"), f.intermediates.get("prompt_embeds"), mask);
        EXPECT_LE(pe.max_abs, tol.of("prompt_embeds")) << "prompt_embeds: " << pe.str();
        expect_close("prompt_attention_mask", mask_f32(r.captured.at("prompt_attention_mask")), mask, 0.0);
        expect_close("pooled_prompt_embeds", r.captured.at("pooled_prompt_embeds"),
                     f.intermediates.get("pooled_prompt_embeds"), tol.of("pooled_prompt_embeds"));
        expect_close("guidance", r.captured.at("guidance"), f.intermediates.get("guidance"), 0.0);
        if (f.intermediates.contains("image_latents"))
            expect_close("image_latents", r.captured.at("image_latents"), f.intermediates.get("image_latents"),
                         tol.of("image_latents"));
        for (int i = 0; i < f.params["num_inference_steps"].get<int>(); ++i) {
            const std::string s = "step" + std::to_string(i) + ".";
            expect_close(s + "timestep", r.captured.at(s + "timestep"), f.intermediates.get(s + "timestep"), 1e-4);
            expect_close(s + "latents_after", r.captured.at(s + "latents_after"),
                         f.intermediates.get(s + "latents_after"), tol.of(s + "latents_after"));
        }
        expect_close("latents", r.captured.at("latents"), f.output.get("latents"), tol.of("latents"));
        expect_close("video", r.video, f.output.get("video"), tol.of("video"));
        expect_close("frames", to_frames(r.video), f.output.get("frames"), tol.of("frames"));
    }
}

TEST(PARITY_SUITE, SequenceBatchMatchesCfgFor) {
    SKIP_WITHOUT_DEVICE();
    for (const fs::path& dir : pipeline_fixtures()) {
        if (!fs::exists(dir / "output_cfg_for.safetensors")) continue;
        SCOPED_TRACE(dir.string());
        Fixture f{dir, load_json_file((dir / "params.json").string()),
                  WeightStore::open((dir / "inputs.safetensors").string()),
                  WeightStore::open((dir / "intermediates.safetensors").string()),
                  WeightStore::open((dir / "output_cfg_for.safetensors").string())};
        const Tolerances tol = read_tolerances(dir);
        const SkyReelsPipeline pipe = load_pipeline(f);
        const PipelineRun r = run(pipe, make_request(f, true));
        for (const std::string& name : f.output.names())
            if (name.rfind("step", 0) == 0)
                expect_close("cfg_for " + name, r.captured.at(name), f.output.get(name), tol.of(name));
        expect_close("cfg_for latents", r.captured.at("latents"), f.output.get("latents"), tol.of("latents"));
        expect_close("cfg_for video", r.video, f.output.get("video"), tol.of("video"));
        expect_close("cfg_for frames", to_frames(r.video), f.output.get("frames"), tol.of("frames"));
    }
}

#ifndef SKYREELS_PIPELINE_PARITY_DEVICE
// SkyReels' --quant (FP8 e4m3 weights, one bf16 scale per row: torchao's float8_weight_only) on the pipeline
// fixtures: the final latents' relative L2 distance from the unquantized run, printed (docs/BENCHMARKS.md
// records it). e4m3 keeps 3 mantissa bits, a relative rounding error of up to 2^-4 per weight (rms about
// 2^-6 over uniformly spread values); through the text encoder and every step it stays a few percent, so a
// quarter bounds it with room while a broken path (a lost scale, wrong rows) lands far above.
TEST(PipelineParity, QuantFp8StaysNearTheUnquantizedRun) {
    for (const fs::path& dir : pipeline_fixtures()) {
        SCOPED_TRACE(dir.string());
        Fixture f = Fixture::open(dir);
        const GenerationRequest req = make_request(f, false);
        const PipelineRun plain = run(load_pipeline(f), req);
        const PipelineRun quant = run(load_pipeline(f, LinearQuant::Float8WeightOnly), req);
        const Tensor& a = plain.captured.at("latents");
        const Tensor& b = quant.captured.at("latents");
        double diff = 0, norm = 0;
        for (int64_t i = 0; i < a.numel(); ++i) {
            const double d = double(b.item_as_float(i)) - a.item_as_float(i);
            diff += d * d;
            norm += double(a.item_as_float(i)) * a.item_as_float(i);
        }
        const double rel = std::sqrt(diff / norm);
        std::printf("%s --quant fp8: final latents relative L2 %.4f vs the unquantized run\n", dir.filename().c_str(),
                    rel);
        EXPECT_GT(rel, 0.0) << "nothing was quantized";
        EXPECT_LT(rel, 0.25);
    }
}

TEST(PipelineParity, BadRequestsAreInputErrors) {
    const auto dirs = pipeline_fixtures();
    ASSERT_FALSE(dirs.empty());
    const fs::path& dir = dirs.front();
    Fixture f = Fixture::open(dir);
    const SkyReelsPipeline pipe = load_pipeline(f);
    auto expect_error = [&](const char* what, auto mutate) {
        GenerationRequest r = make_request(f, false);
        mutate(r);
        EXPECT_THROW(pipe.generate(cpu_backend(), r, {}, [](const Tensor&, int64_t) {}), InputError) << what;
    };
    expect_error("frames not 4k+1", [](GenerationRequest& r) { r.params.num_frames = 10; });
    expect_error("height not a multiple of 16", [](GenerationRequest& r) { r.params.height = 40; });
    expect_error("width not a multiple of 16", [](GenerationRequest& r) { r.params.width = 50; });
    expect_error("zero steps", [](GenerationRequest& r) { r.params.num_inference_steps = 0; });
    expect_error("latents of the wrong shape", [](GenerationRequest& r) { r.params.num_frames = 13; });
    expect_error("wrong task",
                 [](GenerationRequest& r) { r.params.task = r.params.task == Task::I2V ? Task::T2V : Task::I2V; });
}
#endif
