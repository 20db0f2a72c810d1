// The Session (pipeline/session.h): jobs on models loaded once. Two videos in a row on the simulated device
// load each model once (the checkpoint bytes the load opened, counted) and plan and measure the same memory;
// a cancelled job (at a denoising step, or while decoding) leaves no file on the cpu and on the simulated
// device and gives its device memory back; bad requests are refused before any work, naming the value; the
// progress events come in stage order with step counts and an ETA; a job's log level is its own.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "core/log.h"
#include "io/json.h"
#include "pipeline/demo_model.h"
#include "pipeline/session.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/pipeline_fixture.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

// The pipeline fixture folders: a diffusers pipeline folder with the reference run's parameters.
std::vector<fs::path> pipeline_fixtures() {
    return test::find_fixture_dirs([](const fs::path& d) {
        return fs::exists(d / "model_index.json") && fs::exists(d / "params.json") && fs::exists(d / "transformer");
    });
}

// The bytes of the checkpoint files a pipeline folder holds, read from the folder itself.
size_t checkpoint_bytes_of(const fs::path& dir, size_t* files) {
    size_t bytes = 0;
    for (const char* sub : {"transformer", "vae", "text_encoder", "text_encoder_2"})
        for (const auto& e : fs::directory_iterator(dir / sub))
            if (e.path().extension() == ".safetensors") {
                bytes += fs::file_size(e.path());
                ++*files;
            }
    return bytes;
}

void expect_same_plan(const MemoryPlan& a, const MemoryPlan& b) {
    ASSERT_EQ(a.stages.size(), b.stages.size());
    for (size_t i = 0; i < a.stages.size(); ++i) {
        EXPECT_EQ(a.stages[i].name, b.stages[i].name);
        EXPECT_EQ(a.stages[i].weight_bytes, b.stages[i].weight_bytes) << a.stages[i].name;
        EXPECT_EQ(a.stages[i].activation_bytes, b.stages[i].activation_bytes) << a.stages[i].name;
    }
    EXPECT_EQ(a.reserves, b.reserves);
    EXPECT_EQ(a.model_bytes, b.model_bytes);
    EXPECT_EQ(a.streamed_bytes_per_step, b.streamed_bytes_per_step);
    EXPECT_EQ(a.streamed_blocks, b.streamed_blocks);
    EXPECT_EQ(a.transformer_blocks, b.transformer_blocks);
    EXPECT_EQ(a.pinned_weight_bytes, b.pinned_weight_bytes);
    EXPECT_EQ(a.staging_bytes, b.staging_bytes);
    EXPECT_EQ(a.pinned_bytes, b.pinned_bytes);
    EXPECT_EQ(a.owned_weight_bytes, b.owned_weight_bytes);
    EXPECT_EQ(a.host_tensor_bytes, b.host_tensor_bytes);
}

// The demo model's small job (5 frames of 32x48, 3 steps).
Request demo_request(Task task = Task::T2V) {
    Request r;
    r.generation.params = demo_params(task);
    r.generation.params.height = 32;
    r.generation.params.width = 48;
    r.generation.params.num_frames = 5;
    r.generation.params.num_inference_steps = 3;
    r.generation.prompt = "FPS-24, a lighthouse at dusk";
    return r;
}

SessionOptions demo_options(const std::string& device, Task task = Task::T2V) {
    SessionOptions o;
    o.demo = true;
    o.demo_task = task;
    o.device = device;
    o.sim_bandwidth_gbs = 1000;  // the simulated copies' timing is not under test
    if (device == "sim") o.memory.offload = OffloadMode::Block;
    return o;
}

bool media() {
#ifdef SKYREELS_HAVE_MEDIA
    return true;
#else
    return false;
#endif
}

// The smallest device budget the plan accepts for `request` (bisection over plan_memory, which throws when
// too small), on a planning session's pipeline.
size_t tightest_budget(Session& planning, const Request& request, MemoryOptions m) {
    size_t hi = planning.plan(request).device_peak(), lo = 1;
    while (hi - lo > 4096) {
        m.vram_budget = lo + (hi - lo) / 2;
        try {
            plan_memory(planning.pipeline(), request.generation, m);
            hi = m.vram_budget;
        } catch (const OutOfMemoryError&) {
            lo = m.vram_budget;
        }
    }
    return hi;
}

// Two jobs on `session`, each to its own file: both finish, give their device memory back, and the second's
// memory plan, and what was measured against it, equal the first's. Returns the first job's report.
DeviceRunReport expect_two_jobs_alike(Session& session, const std::function<Request()>& make, const fs::path& out) {
    std::vector<JobResult> results;
    for (int i = 0; i < 2; ++i) {
        Request req = make();
        req.generation.params.seed = 7 + uint64_t(i);
        if (media()) req.output_path = (out / fmt::format("video{}.mp4", i)).string();
        results.push_back(session.generate(req));
        const JobResult& r = results.back();
        EXPECT_EQ(r.status, JobStatus::Ok);
        EXPECT_TRUE(r.device_report.has_value());
        if (!r.device_report) return {};
        EXPECT_EQ(session.device_memory()->in_use_bytes(), 0u) << "device memory held after job " << i;
        if (media()) {
            EXPECT_TRUE(fs::exists(req.output_path));
            EXPECT_EQ(r.frames_written, req.generation.params.num_frames);
        }
    }
    const DeviceRunReport &a = *results[0].device_report, &b = *results[1].device_report;
    expect_same_plan(a.plan, b.plan);
    EXPECT_EQ(a.stage_peaks.size(), b.stage_peaks.size());
    for (size_t i = 0; i < std::min(a.stage_peaks.size(), b.stage_peaks.size()); ++i) {
        EXPECT_EQ(a.stage_peaks[i], b.stage_peaks[i]) << a.stage_peaks[i].first;
        EXPECT_EQ(b.stage_peaks[i].second, b.plan.stages[i].device_peak()) << b.stage_peaks[i].first;
    }
    EXPECT_EQ(a.bytes_moved, b.bytes_moved);
    EXPECT_EQ(a.streamed_bytes_per_step, b.streamed_bytes_per_step);
    EXPECT_EQ(a.pinned_peak, b.pinned_peak);
    // The plan a session makes without running is the one its jobs ran by.
    expect_same_plan(session.plan(make()), a.plan);
    return a;
}

}  // namespace

// Two videos in a row on the simulated device, under the tightest budget the plan allows: the models are
// loaded once (the checkpoint bytes the load opened, summed from the fixture's own files, do not grow with
// the second job) and the second job's memory plan, and what was measured against it, equal the first's.
TEST(Session, TwoVideosLoadEachModelOnceAndPlanTheSameMemory) {
    const auto dirs = pipeline_fixtures();
    ASSERT_FALSE(dirs.empty()) << "no pipeline fixture under " << test::fixtures_root();
    for (const fs::path& dir : dirs) {
        SCOPED_TRACE(dir.string());
        size_t n_files = 0;
        const size_t bytes = checkpoint_bytes_of(dir, &n_files);
        ASSERT_GT(bytes, 0u);

        SessionOptions o;
        o.model = dir.string();
        o.device = "sim";
        o.memory = {.offload = OffloadMode::Block, .host_memory = HostMemoryMode::Pinned};
        {
            // The budget, found on a planning session (weights bound to address space, none read).
            SessionOptions po = o;
            po.planning_only = true;
            Session planning(po);
            EXPECT_EQ(planning.stats().pipeline_loads, 1);
            EXPECT_EQ(planning.stats().checkpoint_bytes, bytes);
            const Request req = test::fixture_session_request(dir, planning.pipeline());
            EXPECT_THROW(planning.generate(req), InputError);
            o.memory.vram_budget = tightest_budget(planning, req, o.memory);
        }
        Session session(o);
        EXPECT_EQ(session.stats().pipeline_loads, 1);
        EXPECT_EQ(session.stats().checkpoint_bytes, bytes);
        EXPECT_EQ(session.stats().checkpoint_files.size(), n_files);
        const DeviceRunReport first = expect_two_jobs_alike(
            session, [&] { return test::fixture_session_request(dir, session.pipeline()); },
            test::scratch_dir("session_two"));
        EXPECT_LE(first.plan.device_peak(), o.memory.vram_budget);
        // Loaded once: nothing more was opened for the jobs.
        EXPECT_EQ(session.stats().pipeline_loads, 1);
        EXPECT_EQ(session.stats().checkpoint_bytes, bytes);
        EXPECT_EQ(session.stats().jobs, 2);
    }
}

// The same with a demo model whose transformer dominates the weights, as at real size, so that the tightest
// budget streams it: the second video streams the same blocks, the same bytes per step.
TEST(Session, TwoStreamedVideosPlanAndMoveTheSame) {
    SessionOptions o = demo_options("sim");
    o.demo_transformer = {.heads = 4, .head_dim = 32, .dual_blocks = 3, .single_blocks = 3};
    o.memory.host_memory = HostMemoryMode::Pinned;
    const auto make = [] {
        Request r = demo_request();
        r.generation.params.height = r.generation.params.width = 32;
        r.generation.params.num_inference_steps = 2;
        return r;
    };
    {
        SessionOptions po = o;
        po.planning_only = true;
        Session planning(po);
        o.memory.vram_budget = tightest_budget(planning, make(), o.memory);
    }
    Session session(o);
    const DeviceRunReport first = expect_two_jobs_alike(session, make, test::scratch_dir("session_two_streamed"));
    EXPECT_GT(first.plan.streamed_blocks, 0);
    EXPECT_GT(first.plan.streamed_bytes_per_step, 0u);
    EXPECT_EQ(first.streamed_bytes_per_step, double(first.plan.streamed_bytes_per_step));
    EXPECT_EQ(session.stats().pipeline_loads, 0) << "the demo model is built, not loaded";
}

// With every model resident (--offload none) the placement outlives the job: the first video uploads the
// weights, the second finds them on the device and moves nothing, and both videos are the same.
TEST(Session, ResidentWeightsStayOnTheDeviceBetweenVideos) {
    SessionOptions o = demo_options("sim");
    o.memory.offload = OffloadMode::None;
    Session session(o);
    std::vector<JobResult> results;
    for (int i = 0; i < 2; ++i) {
        Request r = demo_request();
        r.output_path.clear();
        results.push_back(session.generate(r));
        ASSERT_EQ(results.back().status, JobStatus::Ok);
    }
    EXPECT_GT(results[0].device_report->bytes_moved, 0u);
    EXPECT_EQ(results[1].device_report->bytes_moved, 0u) << "the weights were uploaded again";
    EXPECT_EQ(test::compare(results[1].latents, results[0].latents).max_abs, 0.0);
    EXPECT_GT(session.device_memory()->in_use_bytes(), 0u) << "nothing stayed resident";
}

// Cancelled after the first denoising step, on the cpu and on the simulated device: the job stops there,
// leaves neither the video nor its partial file, gives back its device memory, and the session runs the next
// job to completion.
TEST(Session, CancelAtAStepLeavesNoFile) {
    for (const char* device : {"cpu", "sim"}) {
        SCOPED_TRACE(device);
        Session session(demo_options(device));
        const fs::path dir = test::scratch_dir(std::string("session_cancel_") + device);
        Request req = demo_request();
        if (media()) req.output_path = (dir / "cancelled.mp4").string();
        int last_step = -1;
        const JobCallbacks cb{.progress =
                                  [&](const ProgressEvent& e) {
                                      if (e.stage == Stage::Denoising) last_step = e.done;
                                  },
                              .cancel = [&] { return last_step >= 1; }};
        const JobResult r = session.generate(req, cb);
        EXPECT_EQ(r.status, JobStatus::Cancelled);
        EXPECT_EQ(last_step, 1) << "the job did not stop at the step it was cancelled at";
        EXPECT_FALSE(r.latents.defined());
        EXPECT_TRUE(fs::is_empty(dir)) << "a cancelled job left a file in " << dir;
        if (session.device_memory()) {
            EXPECT_EQ(session.device_memory()->in_use_bytes(), 0u);
        }
        EXPECT_EQ(session.stats().jobs_cancelled, 1);
        EXPECT_EQ(session.stats().jobs, 0);

        const JobResult again = session.generate(req);
        EXPECT_EQ(again.status, JobStatus::Ok);
        if (media()) {
            EXPECT_TRUE(fs::exists(req.output_path));
        }
        EXPECT_EQ(session.stats().jobs, 1);
    }
}

// Cancelled after the first decoded chunk, with frames already in the partial file: no file is left.
TEST(Session, CancelWhileDecodingLeavesNoFile) {
    for (const char* device : {"cpu", "sim"}) {
        SCOPED_TRACE(device);
        Session session(demo_options(device));
        const fs::path dir = test::scratch_dir(std::string("session_cancel_decode_") + device);
        Request req = demo_request();
        // 17 frames: the VAE decodes them in more than one temporal chunk.
        req.generation.params.num_frames = 17;
        req.generation.params.num_inference_steps = 1;
        if (media()) req.output_path = (dir / "cancelled.mp4").string();
        ProgressEvent last;
        bool partial_seen = false;
        const JobCallbacks cb{.progress = [&](const ProgressEvent& e) { last = e; },
                              .cancel =
                                  [&] {
                                      const bool mid = last.stage == Stage::Decoding && last.done > 0;
                                      if (mid && media()) partial_seen = test::partial_file_exists(req.output_path);
                                      return mid;
                                  }};
        const JobResult r = session.generate(req, cb);
        EXPECT_EQ(r.status, JobStatus::Cancelled);
        EXPECT_EQ(last.stage, Stage::Decoding);
        EXPECT_LT(last.done, last.total) << "the decode was not cancelled midway";
        if (media()) {
            EXPECT_TRUE(partial_seen) << "no frames were written before the cancel";
        }
        EXPECT_TRUE(fs::is_empty(dir)) << "a cancelled job left a file in " << dir;
        if (session.device_memory()) {
            EXPECT_EQ(session.device_memory()->in_use_bytes(), 0u);
        }
    }
}

// Every bad request is refused before any work (no progress report, no file) with an InputError naming the
// value at fault.
TEST(Session, BadRequestsAreRefusedNamingTheValue) {
    Session session(demo_options("cpu"));
    const fs::path dir = test::scratch_dir("session_bad");
    struct Case {
        const char* what;
        std::function<void(Request&)> change;
        const char* message;
    };
    const Case cases[] = {
        {"frames not 4k+1", [](Request& r) { r.generation.params.num_frames = 10; }, "--frames 10"},
        {"height not a multiple of 16", [](Request& r) { r.generation.params.height = 40; }, "--height 40"},
        {"no steps", [](Request& r) { r.generation.params.num_inference_steps = 0; }, "--steps 0"},
        {"negative guidance", [](Request& r) { r.generation.params.guidance_scale = -1; }, "--guidance -1"},
        {"fps", [](Request& r) { r.fps = 0; }, "--fps 0"},
        {"crf", [](Request& r) { r.crf = 60; }, "--crf 60"},
        {"an image for t2v", [](Request& r) { r.image_path = "x.png"; }, "--image"},
        {"i2v on a t2v model", [](Request& r) { r.generation.params.task = Task::I2V; }, "--task i2v"},
        {"bad output name", [&](Request& r) { r.output_path = (dir / "x.avi").string(); }, ".mp4"},
        {"output folder missing", [&](Request& r) { r.output_path = (dir / "no" / "x.mp4").string(); },
         "does not exist"},
    };
    for (const Case& c : cases) {
        Request req = demo_request();
        if (media()) req.output_path = (dir / "out.mp4").string();
        c.change(req);
        int events = 0;
        try {
            session.generate(req, {.progress = [&](const ProgressEvent&) { ++events; }});
            ADD_FAILURE() << c.what << ": accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << c.what << ": " << e.what();
        }
        EXPECT_EQ(events, 0) << c.what;
    }
    EXPECT_TRUE(fs::is_empty(dir)) << "a refused request left a file in " << dir;
    EXPECT_EQ(session.stats().jobs, 0);
    // Options too: each names what is wrong.
    SessionOptions o = demo_options("cpu");
    o.device = "gpu";
    EXPECT_THROW(Session::check(o), InputError);
    o = demo_options("sim");
    o.memory.prefetch = 99;
    EXPECT_THROW(Session{o}, InputError);
    o = demo_options("cpu");
    o.demo = false;
    try {
        Session{o};
        ADD_FAILURE() << "a session without a model";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("--model"), std::string::npos) << e.what();
    }
}

// The events of an I2V job on the simulated device: the stages in order, each starting at 0 and counting to
// its total (the steps while denoising), an ETA once a unit is done, device and host memory figures.
TEST(Session, ProgressEventsComeInStageOrderWithStepsAndEta) {
    Session session(demo_options("sim", Task::I2V));
    Request req = demo_request(Task::I2V);  // a demo session makes up the image
    std::vector<ProgressEvent> events;
    const JobResult r = session.generate(req, {.progress = [&](const ProgressEvent& e) { events.push_back(e); }});
    ASSERT_EQ(r.status, JobStatus::Ok);
    ASSERT_FALSE(events.empty());
    std::vector<Stage> order;
    double job_seconds = 0;
    for (const ProgressEvent& e : events) {
        if (order.empty() || order.back() != e.stage) {
            order.push_back(e.stage);
            EXPECT_EQ(e.done, 0) << e.stage << " starts at 0";
        }
        EXPECT_LE(e.done, e.total) << e.stage;
        if (e.done == 0) {
            EXPECT_EQ(e.eta_seconds, -1) << e.stage;
        }
        if (e.done > 0) {
            EXPECT_GE(e.eta_seconds, 0) << e.stage;
        }
        if (e.done == e.total) {
            EXPECT_EQ(e.eta_seconds, 0) << e.stage;
        }
        EXPECT_GE(e.job_seconds, job_seconds);
        job_seconds = e.job_seconds;
        EXPECT_TRUE(e.on_device);
        EXPECT_GT(e.host_rss, 0u);
        EXPECT_GT(e.host_peak_rss, 0u);
    }
    EXPECT_EQ(order,
              (std::vector<Stage>{Stage::TextEncoding, Stage::ImageEncoding, Stage::Denoising, Stage::Decoding}));
    int steps = 0;
    size_t device_peak = 0;
    for (const ProgressEvent& e : events)
        if (e.stage == Stage::Denoising) {
            EXPECT_EQ(e.total, req.generation.params.num_inference_steps);
            EXPECT_EQ(e.done, steps++) << "denoising reports each step once, in order";
            device_peak = std::max(device_peak, e.device_peak);
        }
    EXPECT_EQ(steps, req.generation.params.num_inference_steps + 1);  // 0, 1, ..., N
    EXPECT_GT(device_peak, 0u) << "the transformer's weights and activations are on the device";
    EXPECT_EQ(events.back().stage, Stage::Decoding);
    EXPECT_EQ(events.back().done, req.generation.params.num_frames);
}

// A LogScope sets the level of its thread only, nests, and ends with its scope; a job runs at its request's
// level (seen from its progress callback, on the job's thread) and leaves the caller's level as it was.
TEST(Session, LogLevelIsScopedToTheJob) {
    const LogLevel process = log_level();
    {
        LogScope outer(LogLevel::Error);
        EXPECT_EQ(log_level(), LogLevel::Error);
        {
            LogScope inner(LogLevel::Debug);
            EXPECT_EQ(log_level(), LogLevel::Debug);
            LogLevel other = LogLevel::Debug;
            std::thread([&] { other = log_level(); }).join();
            EXPECT_EQ(other, process) << "a scope leaked into another thread";
        }
        EXPECT_EQ(log_level(), LogLevel::Error);
    }
    EXPECT_EQ(log_level(), process);
    EXPECT_EQ(parse_log_level("warn", "log"), LogLevel::Warn);
    EXPECT_THROW(parse_log_level("loud", "log"), InputError);

    SessionOptions o = demo_options("cpu");
    o.log_level = LogLevel::Warn;
    Session session(o);
    Request req = demo_request();
    req.generation.params.num_inference_steps = 1;
    std::vector<LogLevel> seen;
    session.generate(req, {.progress = [&](const ProgressEvent&) { seen.push_back(log_level()); }});
    req.log_level = LogLevel::Quiet;
    session.generate(req, {.progress = [&](const ProgressEvent&) { seen.push_back(log_level()); }});
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.front(), LogLevel::Warn);
    EXPECT_EQ(seen.back(), LogLevel::Quiet);
    EXPECT_EQ(log_level(), process);
}

// Precision belongs to the session: a bf16 session leaves the process-wide CPU backend as it was.
TEST(Session, PrecisionIsTheSessions) {
    const GemmPrecision before = cpu_backend().gemm_precision();
    SessionOptions o = demo_options("cpu");
    o.precision = before == GemmPrecision::F32 ? GemmPrecision::BF16 : GemmPrecision::F32;
    Session session(o);
    Request req = demo_request();
    req.generation.params.num_inference_steps = 1;
    EXPECT_EQ(session.generate(req).status, JobStatus::Ok);
    EXPECT_EQ(cpu_backend().gemm_precision(), before);
}
