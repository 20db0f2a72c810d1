// The denoising loop's levers (issue 20). CFG per resident block: with sequence_batch the two guidance rows
// run one after the other through each transformer block while it is held (HunyuanVideoTransformer::
// forward_rows), which must give the numbers of the whole-pass run (SkyReels' cfg_for, cfg_whole_passes)
// bit for bit, stay within the fixtures' tolerances of the batched run, be bit-identical in every residency
// mode on the simulated device, and stream the weights once per step instead of twice.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <thread>

#include "backends/cpu/cpu_backend.h"
#include "core/log.h"
#include "core/virtual_allocator.h"
#include "pipeline/checkpoint.h"
#include "pipeline/demo_model.h"
#include "pipeline/device_run.h"
#include "pipeline/memory_plan.h"
#include "pipeline/session.h"
#include "runtime/simulated_device.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/memory_planning.h"
#include "support/pipeline_fixture.h"
#include "support/run_command.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

using test::bit_identical;

struct CpuRun {
    std::map<std::string, Tensor> captured;
    Tensor video;
};

CpuRun run_cpu(const SkyReelsPipeline& pipe, const GenerationRequest& req) {
    CpuRun out;
    const GenerationParams& p = req.params;
    out.video = Tensor::zeros({1, 3, p.num_frames, p.height, p.width}, DType::F32);
    const FrameSink sink = [&](const Tensor& frames, int64_t first) {
        Tensor dst = out.video.slice(2, first, first + frames.dim(2));
        dst.copy_from(frames);
    };
    const PipelineHook hook = [&](std::string_view name, const Tensor& t) {
        out.captured[std::string(name)] = t.clone();
    };
    cpu_backend().set_gemm_precision(GemmPrecision::F32);
    pipe.generate(cpu_backend(), req, {}, sink, hook);
    return out;
}

// A demo model whose transformer dominates the weights (as at real size), CFG on, sequence_batch on.
struct Scenario {
    SkyReelsPipeline pipe;
    GenerationRequest req;
};

const Scenario& scenario() {
    static const Scenario s = [] {
        Scenario r{make_demo_pipeline(Task::T2V, 7, {.heads = 4, .head_dim = 32, .dual_blocks = 3, .single_blocks = 3}),
                   {}};
        r.req.params = demo_params(Task::T2V);
        r.req.params.height = r.req.params.width = 32;
        r.req.params.num_frames = 5;
        r.req.params.num_inference_steps = 2;
        r.req.params.seed = 11;
        r.req.params.sequence_batch = true;
        r.req.prompt = "FPS-24, a lighthouse at dusk";
        return r;
    }();
    return s;
}

using test::tightest_budget;

DeviceRunReport run_on_sim(const Scenario& s, const GenerationRequest& req, const MemoryOptions& o, Tensor* latents) {
    SimulatedDevice dev({.memory_budget = o.vram_budget, .bandwidth_bytes_per_s = 0, .latency_s = 0});
    DeviceRunReport report;
    *latents = generate_on_device(
        s.pipe, dev, {.memory = o, .device_memory_is_host = true}, req, {}, [](const Tensor&, int64_t) {}, {}, &report);
    EXPECT_LE(dev.memory().peak_bytes(), o.vram_budget ? o.vram_budget : SIZE_MAX);
    EXPECT_EQ(dev.memory().in_use_bytes(), 0u) << "device memory left allocated after the run";
    return report;
}

}  // namespace

// On every pipeline fixture with CFG: per block == whole passes, bit for bit, in every step's transformer
// output, the final latents and the video; and within the fixture's tolerances of the reference's batched
// run (the tolerances of test_pipeline's StepByStep, for the same reason: f32 sums in another order).
TEST(Denoise, CfgPerBlockIsTheWholePassRunBitForBitOnEveryFixture) {
    int checked = 0;
    for (const fs::path& dir : test::pipeline_fixtures()) {
        SCOPED_TRACE(dir.string());
        const test::Fixture f = test::Fixture::open(dir);
        GenerationRequest per_block = test::make_request(f, true);
        if (!per_block.params.do_cfg()) continue;
        const test::Tolerances tol = test::read_tolerances(dir);
        const SkyReelsPipeline pipe = test::load_pipeline(f);
        GenerationRequest whole = per_block;
        whole.params.cfg_whole_passes = true;
        const CpuRun a = run_cpu(pipe, per_block), b = run_cpu(pipe, whole);
        for (const auto& [name, t] : b.captured) {
            ASSERT_TRUE(a.captured.count(name)) << name;
            EXPECT_TRUE(bit_identical(a.captured.at(name), t)) << name << " differs from the whole-pass run";
        }
        EXPECT_TRUE(bit_identical(a.video, b.video)) << "video";
        for (const std::string& name : f.output.names()) {
            if (!a.captured.count(name)) continue;
            const test::Diff d = test::compare(a.captured.at(name), f.output.get(name));
            EXPECT_LE(d.max_abs, tol.of(name)) << name << ": " << d.str();
        }
        const test::Diff dv = test::compare(a.video, f.output.get("video"));
        EXPECT_LE(dv.max_abs, tol.of("video")) << "video: " << dv.str();
        std::printf("  %s: per block == whole passes; latents vs batched reference %s\n",
                    dir.filename().string().c_str(),
                    test::compare(a.captured.at("latents"), f.output.get("latents")).str().c_str());
        ++checked;
    }
    EXPECT_GT(checked, 0) << "no pipeline fixture with CFG";
}

// One row at a time through each resident block on the simulated device: bit-identical to the CPU run with
// no offload, model offload and block streaming at the tightest budget (prefetch 0 and 1); the measured
// peaks equal the plan's; a streamed step moves the weights once, half of what whole passes move.
TEST(Denoise, CfgPerBlockIsBitIdenticalInEveryResidencyModeAndStreamsOncePerStep) {
    const Scenario& s = scenario();
    const Tensor reference = s.pipe.generate(cpu_backend(), s.req, {}, [](const Tensor&, int64_t) {});
    GenerationRequest whole = s.req;
    whole.params.cfg_whole_passes = true;
    EXPECT_TRUE(bit_identical(reference, s.pipe.generate(cpu_backend(), whole, {}, [](const Tensor&, int64_t) {})));
    for (OffloadMode offload : {OffloadMode::None, OffloadMode::Model, OffloadMode::Block})
        for (int prefetch : {0, 1}) {
            if (offload != OffloadMode::Block && prefetch != 1) continue;
            MemoryOptions o{
                .offload = offload, .vram_budget = 0, .host_memory = HostMemoryMode::Pageable, .prefetch = prefetch};
            if (offload == OffloadMode::Block) o.vram_budget = tightest_budget(s.pipe, s.req, o);
            const std::string what = fmt::format("offload {} prefetch {}", offload_mode_name(offload), prefetch);
            Tensor latents;
            const DeviceRunReport r = run_on_sim(s, s.req, o, &latents);
            EXPECT_TRUE(bit_identical(latents, reference)) << what;
            ASSERT_EQ(r.stage_peaks.size(), r.plan.stages.size()) << what;
            for (size_t i = 0; i < r.stage_peaks.size(); ++i)
                EXPECT_EQ(double(r.stage_peaks[i].second), double(r.plan.stages[i].device_peak()))
                    << what << ", stage " << r.stage_peaks[i].first;
            EXPECT_EQ(r.plan.transformer_passes_per_step, 1) << what;
            if (offload != OffloadMode::Block) continue;
            ASSERT_GT(r.plan.streamed_blocks, 0) << what;
            EXPECT_EQ(r.streamed_bytes_per_step, double(r.plan.streamed_bytes_per_step)) << what;
            // The same budget, whole passes: the same blocks streamed twice per step.
            Tensor whole_latents;
            const DeviceRunReport w = run_on_sim(s, whole, o, &whole_latents);
            EXPECT_TRUE(bit_identical(whole_latents, reference)) << what;
            EXPECT_EQ(w.plan.transformer_passes_per_step, 2) << what;
            EXPECT_EQ(w.streamed_bytes_per_step, double(w.plan.streamed_bytes_per_step)) << what;
            if (w.plan.streamed_blocks == r.plan.streamed_blocks) {
                EXPECT_EQ(w.streamed_bytes_per_step, 2.0 * r.streamed_bytes_per_step) << what;
            }
            EXPECT_LT(r.streamed_bytes_per_step, w.streamed_bytes_per_step) << what;
            std::printf("  %s: streamed per step %.0f bytes per block vs %.0f in whole passes\n", what.c_str(),
                        r.streamed_bytes_per_step, w.streamed_bytes_per_step);
        }
}

// The released model (13B transformer in bf16, shapes only) at 544x960x97 with CFG under an 8 GiB budget, as
// bench_memory_plan plans it on the simulated device: one row at a time through each block fits and moves
// at most 22.95 GiB per step (issue 20), where whole passes move twice what one pass does.
TEST(Denoise, ReleasedModelAt8GiBStreamsOncePerStep) {
    VirtualAllocator weights("planned weights");
    const SkyReelsPipeline pipe = test::released_model_shapes(weights);
    GenerationRequest req;  // 544x960x97, 30 steps, CFG 6
    req.params.sequence_batch = true;
    SimulatedDevice sim;
    const PlanTarget target = PlanTarget::of(sim);
    const MemoryOptions o{.offload = OffloadMode::Block, .vram_budget = size_t(8) << 30};
    const MemoryPlan plan = plan_memory(pipe, req, o, target);
    const double gib = double(1ull << 30);
    std::printf("  8G, per block: peak %.2f GiB, %d/%d blocks streamed, %.2f GiB per step\n",
                double(plan.device_peak()) / gib, plan.streamed_blocks, plan.transformer_blocks,
                double(plan.streamed_bytes_per_step) / gib);
    EXPECT_EQ(plan.transformer_passes_per_step, 1);
    EXPECT_LE(double(plan.streamed_bytes_per_step), 22.95 * gib);
    req.params.cfg_whole_passes = true;
    const MemoryPlan whole = plan_memory(pipe, req, o, target);
    std::printf("  8G, whole passes: %.2f GiB per step\n", double(whole.streamed_bytes_per_step) / gib);
    EXPECT_EQ(whole.transformer_passes_per_step, 2);
    EXPECT_LT(plan.streamed_bytes_per_step, whole.streamed_bytes_per_step);
}

// A session whose budget holds one guidance row but not both side by side runs the rows one at a time
// through each block on its own (the plan fits, and says so in the log), and the video is the one an
// explicit --sequence-batch gives.
TEST(Denoise, SessionTurnsOnCfgPerBlockWhereBatchedRowsDoNotFit) {
    SessionOptions o;
    o.demo = true;
    o.device = "sim";
    o.demo_transformer = {.heads = 4, .head_dim = 32, .dual_blocks = 3, .single_blocks = 3};
    o.memory.offload = OffloadMode::Block;
    Request batched;
    batched.generation.params = demo_params(Task::T2V);
    batched.generation.params.height = batched.generation.params.width = 64;
    batched.generation.params.num_frames = 5;
    batched.generation.params.num_inference_steps = 2;
    batched.generation.prompt = "FPS-24, a lighthouse at dusk";
    Request rows = batched;
    rows.generation.params.sequence_batch = true;

    // The tightest budgets of each, planned on the device the session makes.
    size_t tight_batched = 0, tight_rows = 0;
    {
        Session planner(o);
        SimulatedDeviceOptions so;
        so.bandwidth_bytes_per_s = o.sim_bandwidth_gbs * 1e9;
        so.pageable_bandwidth_bytes_per_s = so.bandwidth_bytes_per_s / 2;
        SimulatedDevice sim(so);
        const PlanTarget target = PlanTarget::of(sim);
        tight_batched = tightest_budget(planner.pipeline(), batched.generation, o.memory, target);
        tight_rows = tightest_budget(planner.pipeline(), rows.generation, o.memory, target);
    }
    ASSERT_LT(tight_rows + 8192, tight_batched) << "one row at a time must need less memory";
    o.memory.vram_budget = (tight_rows + tight_batched) / 2;

    std::string log;
    const LogSinkScope capture([&](LogLevel, std::string_view line) { log += line; });
    Session session(o);
    const MemoryPlan plan = session.plan(batched);
    EXPECT_TRUE(plan.fits()) << plan.format(o.memory, "sim");
    EXPECT_NE(log.find("one after the other through each transformer block"), std::string::npos) << log;
    const JobResult a = session.generate(batched), b = session.generate(rows);
    EXPECT_TRUE(bit_identical(a.latents, b.latents));
}

namespace {

// A small demo text-to-video job that saves a checkpoint to `ckpt` after every step.
Request checkpointed_job(const std::string& ckpt, int steps) {
    Request r;
    r.generation.params = demo_params(Task::T2V);
    r.generation.params.height = r.generation.params.width = 32;
    r.generation.params.num_frames = 5;
    r.generation.params.num_inference_steps = steps;
    r.generation.prompt = "FPS-24, a lighthouse at dusk";
    r.checkpoint_every = 1;
    r.checkpoint_path = ckpt;
    return r;
}

// Runs `r` until `stop` steps are done and cancels it there (so its checkpoint stays); returns the request
// that resumes it from that checkpoint.
Request stopped_after(Session& session, const Request& r, int stop) {
    JobCallbacks cb;
    bool stopping = false;
    cb.progress = [&](const ProgressEvent& e) { stopping = e.stage == Stage::Denoising && e.done == stop; };
    cb.cancel = [&] { return stopping; };
    EXPECT_EQ(session.generate(r, cb).status, JobStatus::Cancelled);
    Request resumed = r;
    resumed.checkpoint_every = 0;
    resumed.resume_path = r.checkpoint_path;
    return resumed;
}

}  // namespace

// --checkpoint-every and --resume on a Session: a job stopped after step k (cancelled, so its checkpoint
// stays) and resumed from its checkpoint ends with the latents of an uninterrupted job, bit for bit, for
// every k, its progress starting at step k (done before it, so its ETA is timed from its own steps); the
// uninterrupted job's checkpoint is gone at its end; a checkpoint is refused, naming the reason, by a job with
// another seed or prompt, or a session with other model files.
TEST(Denoise, ResumedJobIsBitIdenticalToAnUninterruptedOne) {
    SessionOptions o;
    o.demo = true;
    Session session(o);
    const fs::path dir = test::scratch_dir("denoise_resume");
    const std::string ckpt = (dir / "job.ckpt").string();
    Request r = checkpointed_job(ckpt, 4);
    const JobResult full = session.generate(r);
    ASSERT_EQ(full.status, JobStatus::Ok);
    EXPECT_FALSE(fs::exists(ckpt)) << "a complete job's checkpoint is removed";
    for (int stop = 1; stop < 4; ++stop) {
        const Request resumed = stopped_after(session, r, stop);
        const DenoiseCheckpoint c = read_checkpoint(ckpt);
        EXPECT_EQ(c.steps_done, stop);
        std::vector<ProgressEvent> steps;  // the resumed loop's: from `stop`, timed from there
        const JobResult rest = session.generate(resumed, {.progress = [&](const ProgressEvent& e) {
                                                    if (e.stage == Stage::Denoising) steps.push_back(e);
                                                }});
        EXPECT_TRUE(bit_identical(rest.latents, full.latents)) << "resumed after step " << stop;
        ASSERT_EQ(steps.size(), size_t(4 - stop + 1));
        EXPECT_EQ(steps.front().done, stop);
        EXPECT_EQ(steps.front().eta_seconds, -1) << "nothing timed yet";
        for (const ProgressEvent& e : steps) EXPECT_EQ(e.done_before, stop);
        EXPECT_GE(steps[1].eta_seconds, 0);
        EXPECT_EQ(steps.back().done, 4);
    }
    Request other = r;
    other.checkpoint_every = 0;
    other.resume_path = ckpt;
    other.generation.params.seed += 1;
    try {
        session.generate(other);
        ADD_FAILURE() << "a checkpoint of another seed was accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
    }
    o.demo_transformer.dual_blocks += 1;
    Session other_model(o);
    try {
        Request same = r;
        same.checkpoint_every = 0;
        same.resume_path = ckpt;
        other_model.generate(same);
        ADD_FAILURE() << "a checkpoint of other model files was accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("other model files"), std::string::npos) << e.what();
    }
}

// With a step cache the checkpoint holds what rebuilds the cache's state (its counts, and the latents of the
// calls the resumed run replays), never the state's activations, so it stays the size of a few latents: a
// cached job stopped after step k and resumed ends with the uninterrupted job's latents bit for bit and the
// same skip counts and accumulated estimate, for every k, for both caches and both CFG row layouts (the
// thresholds skip some steps and compute others on the demo model). A checkpoint whose cache counts contradict
// each other, whose replayed calls are not the ones its counts imply, or whose replay latents have another
// shape is refused, naming what is wrong.
TEST(Denoise, ResumedCachedJobSkipsAsTheUninterruptedOne) {
    SessionOptions o;
    o.demo = true;
    Session session(o);
    const fs::path dir = test::scratch_dir("denoise_resume_cached");
    const std::string ckpt = (dir / "job.ckpt").string();
    const int steps = 8;
    Request r = checkpointed_job(ckpt, steps);
    for (const char* cache : {"teacache:0.3", "fbcache:0.03"})
        for (const bool rows : {false, true}) {
            SCOPED_TRACE(fmt::format("{}{}", cache, rows ? ", rows one at a time" : ", rows batched"));
            r.generation.params.cache = parse_step_cache(cache, "--cache");
            r.generation.params.sequence_batch = rows;
            const JobResult full = session.generate(r);
            ASSERT_EQ(full.status, JobStatus::Ok);
            std::printf("  %s: %s\n", cache, full.step_cache.c_str());
            ASSERT_GT(full.passes_skipped, 0) << full.step_cache << ": the threshold must skip something";
            ASSERT_LT(full.passes_skipped, steps - 2) << full.step_cache << ": and compute more than it must";
            for (int stop = 1; stop < steps; ++stop) {
                const Request resumed = stopped_after(session, r, stop);
                const DenoiseCheckpoint c = read_checkpoint(ckpt);
                ASSERT_TRUE(c.cache) << "the checkpoint of a cached run holds what rebuilds the cache";
                ASSERT_FALSE(c.cache->calls.empty());
                // The latents, the text conditioning and the replays' latents, f32, plus the header.
                size_t tensors = (1 + c.cache->calls.size()) * size_t(c.latents.numel()) * sizeof(float);
                for (const Tensor* t :
                     {&c.text.prompt_embeds, &c.text.prompt_attention_mask, &c.text.pooled_prompt_embeds})
                    tensors += t->nbytes();
                EXPECT_LE(fs::file_size(ckpt), tensors + 16384) << "after step " << stop;
                const JobResult rest = session.generate(resumed);
                EXPECT_TRUE(bit_identical(rest.latents, full.latents)) << "resumed after step " << stop;
                EXPECT_EQ(rest.step_cache, full.step_cache) << "resumed after step " << stop;
            }
            // A resumed run's own checkpoints (its last computed step may be a replayed one) resume too: stopped
            // after step 2, resumed and stopped again after step 5, resumed once more.
            Request middle = stopped_after(session, r, 2);
            middle.checkpoint_every = 1;
            const JobResult last = session.generate(stopped_after(session, middle, 5));
            EXPECT_TRUE(bit_identical(last.latents, full.latents)) << "resumed twice";
            EXPECT_EQ(last.step_cache, full.step_cache) << "resumed twice";
        }
    // Damaged checkpoints are refused, naming what is wrong.
    const DenoiseCheckpoint good = read_checkpoint(ckpt);
    Request resumed = r;
    resumed.checkpoint_every = 0;
    resumed.resume_path = ckpt;
    auto refused = [&](const std::function<void(StepCacheReplay&)>& damage, const std::string& expected) {
        StepCacheReplay bad = *good.cache;
        damage(bad);
        DenoiseCheckpoint c = good;
        c.cache = std::make_shared<const StepCacheReplay>(bad);
        write_checkpoint(ckpt, c);
        try {
            session.generate(resumed);
            ADD_FAILURE() << "a damaged checkpoint was accepted; expected: " << expected;
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
        }
    };
    refused([](StepCacheReplay& s) { s.counts.skipped = s.counts.passes + 1; }, "step_cache_replay metadata");
    refused([](StepCacheReplay& s) { s.calls.front().step = s.calls.front().step == 0 ? 1 : 0; },
            "do not match its counts");
    refused([](StepCacheReplay& s) { s.calls.front().compute = !s.calls.front().compute; }, "do not match its counts");
    refused(
        [](StepCacheReplay& s) {
            s.calls.front().latents = Tensor::zeros({1, 3}, DType::F32);
        },
        "step_cache.call0.latents f32[1,3]");
    // NaN in a checkpoint's tensors is damage, refused naming the tensor (a run never saves non-finite values;
    // resumed, they would be blamed on the model).
    for (const bool in_replay : {false, true}) {
        DenoiseCheckpoint c = good;
        auto replay = std::make_shared<StepCacheReplay>(*good.cache);
        Tensor& target = in_replay ? replay->calls.front().latents : c.latents;
        target = target.clone();
        target.data<float>()[1] = std::numeric_limits<float>::quiet_NaN();
        c.cache = replay;
        write_checkpoint(ckpt, c);
        const std::string name = in_replay ? "step_cache.call0.latents" : "latents";
        try {
            (void)read_checkpoint(ckpt);
            ADD_FAILURE() << "a NaN in " << name << " was accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("--resume " + ckpt + ": " + name + " f32["), std::string::npos)
                << e.what();
            EXPECT_NE(std::string(e.what()).find("1 non-finite values"), std::string::npos) << e.what();
        }
    }
}

// The fingerprint of model files changes with a file's header, its size or its name, and not with nothing.
TEST(Denoise, ModelFingerprintSeesHeadersSizesAndNames) {
    const fs::path dir = test::scratch_dir("denoise_fingerprint");
    auto write = [&](const std::string& name, const std::string& text) { std::ofstream(dir / name) << text; };
    write("config.json", "{\"a\": 1}");
    write("w.safetensors", std::string(200000, 'x'));
    const std::string a = model_fingerprint({dir.string()});
    EXPECT_EQ(a, model_fingerprint({dir.string()}));
    write("config.json", "{\"a\": 2}");
    const std::string b = model_fingerprint({dir.string()});
    EXPECT_NE(a, b);
    write("w.safetensors", std::string(200001, 'x'));
    const std::string c = model_fingerprint({dir.string()});
    EXPECT_NE(b, c);
    fs::rename(dir / "w.safetensors", dir / "v.safetensors");
    EXPECT_NE(c, model_fingerprint({dir.string()}));
}

namespace {

// One kill-and-resume of KilledRunResumesToTheSameFrames, with `flags` added to every command.
void kill_and_resume(const std::string& name, const std::string& flags) {
    const fs::path dir = test::scratch_dir(name);
    const std::string bin = std::string(SKYREELS_BINARY_DIR) + "/skyreels";
    const int steps = 8;
    const std::string common = fmt::format(
        "generate --demo --num_frames 9 --height 64 --width 64 --num_inference_steps {} --seed 5 {}", steps, flags);
    const test::CommandResult full = test::run_command(fmt::format(
        "{} {} --out '{}' --png-dir '{}'", bin, common, (dir / "full.mp4").string(), (dir / "full").string()));
    ASSERT_EQ(full.code, 0) << full.output;
    if (flags.find("--cache") != std::string::npos) {  // the cached run must skip something, or it tests nothing
        ASSERT_NE(full.output.find("transformer passes"), std::string::npos) << full.output;
        EXPECT_EQ(full.output.find("skipped 0 of"), std::string::npos) << full.output;
    }

    std::mt19937 rng(std::random_device{}());
    const int kill_after = 1 + int(rng() % (steps - 2));  // 1 .. steps - 2
    const std::string killed_out = (dir / "killed.mp4").string(), ckpt = killed_out + ".ckpt";
    const std::string cmd = fmt::format("exec {} {} --quiet --out '{}' --checkpoint-every 1 > '{}' 2>&1", bin, common,
                                        killed_out, (dir / "killed.log").string());
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    // Wait for a checkpoint at or past the chosen step, keep a copy (the run removes its checkpoint if it
    // finishes first), then kill it.
    int seen = -1;
    const std::string saved = (dir / "saved.ckpt").string();
    for (int i = 0; i < 120000 && seen < kill_after; ++i) {
        std::error_code ec;
        if (fs::exists(ckpt, ec)) {
            try {
                fs::copy_file(ckpt, saved, fs::copy_options::overwrite_existing);
                seen = read_checkpoint(saved).steps_done;
            } catch (const std::exception&) {
                // renamed away between the check and the copy: look again
            }
        }
        int status = 0;
        if (seen < kill_after && waitpid(pid, &status, WNOHANG) == pid)
            FAIL() << flags << ": the run ended before step " << kill_after;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_GE(seen, kill_after) << "no checkpoint at step " << kill_after;
    std::printf("  killed after a checkpoint at step %d of %d (chosen: %d)\n", seen, steps, kill_after);

    const test::CommandResult resumed =
        test::run_command(fmt::format("{} {} --quiet --out '{}' --png-dir '{}' --resume '{}'", bin, common,
                                      (dir / "resumed.mp4").string(), (dir / "resumed").string(), saved));
    ASSERT_EQ(resumed.code, 0) << resumed.output;
    int frames = 0;
    for (const auto& e : fs::directory_iterator(dir / "full")) {
        const fs::path other = dir / "resumed" / e.path().filename();
        ASSERT_TRUE(fs::exists(other)) << other;
        std::ifstream a(e.path(), std::ios::binary), b(other, std::ios::binary);
        const std::string sa((std::istreambuf_iterator<char>(a)), {}), sb((std::istreambuf_iterator<char>(b)), {});
        EXPECT_TRUE(sa == sb) << e.path().filename() << " differs after resuming";
        ++frames;
    }
    EXPECT_EQ(frames, 9);

    const test::CommandResult refused = test::run_command(fmt::format(
        "{} {} --quiet --guidance_scale 5 --out '{}' --resume '{}'", bin, common, (dir / "no.mp4").string(), saved));
    EXPECT_NE(refused.code, 0) << refused.output;
    EXPECT_NE(refused.output.find("guidance_scale"), std::string::npos) << refused.output;
}

}  // namespace

// The command line, killed: `generate --checkpoint-every 1` is killed with SIGKILL once it has saved a
// checkpoint at a random step; `--resume` from that checkpoint writes PNG frames bit-identical to an
// uninterrupted run's; a resume with other parameters is refused, naming them.
TEST(Denoise, KilledRunResumesToTheSameFrames) {
    kill_and_resume("denoise_kill", "");
    // With a step cache the checkpoint holds what rebuilds its state: the resumed run replays the calls it came
    // from, then skips what the killed one would have.
    kill_and_resume("denoise_kill_cached", "--cache teacache:0.3");
}
