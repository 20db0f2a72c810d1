// Step caching's trade-off (--cache, models/step_cache.h): on every pipeline fixture (found as the tests find
// them, under $SKYREELS_FIXTURES or the shared fixtures folder) and on the demo model (small, and with
// --demo-size large's transformer), a run of --steps
// denoising steps (default 30, more than the fixtures' 4) uncached, then with each cache setting: per row the
// transformer passes skipped of all, the seconds, and the relative L2 error of the final latents and of the
// decoded video against the uncached run (||cached - uncached|| / ||uncached||).
//
//   build/bench/bench_step_cache [--steps 30] [--cache teacache:0.05,teacache:0.1,...] [--no-demo]
//
// The fixtures and the demo are tiny random-weight models: their inputs move differently from step to step
// than the released model's, so the error/skip trade-off here is only indicative. Human lines on stderr, one
// JSON object per row on stdout.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <vector>

#include "io/json.h"
#include "pipeline/demo_model.h"
#include "support/cached_run.h"
#include "support/pipeline_fixture.h"

using namespace sr;

namespace {

double relative_l2(const Tensor& a, const Tensor& b) {
    const Tensor x = a.contiguous(), y = b.contiguous();
    double d = 0, n = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
        const double u = x.data<float>()[i], v = y.data<float>()[i];
        d += (u - v) * (u - v), n += v * v;
    }
    return n > 0 ? std::sqrt(d / n) : 0.0;
}

void table(const std::string& name, const SkyReelsPipeline& pipe, GenerationRequest req,
           const std::vector<StepCacheOptions>& caches) {
    req.params.cache = {};
    const test::CachedRun plain = test::run_cached(pipe, req);
    std::fprintf(stderr, "\n%s: %ldx%ldx%ld, %d steps, guidance %g\n", name.c_str(), long(req.params.width),
                 long(req.params.height), long(req.params.num_frames), req.params.num_inference_steps,
                 req.params.guidance_scale);
    std::fprintf(stderr, "  %-16s %9s %8s %8s %12s %12s\n", "cache", "skipped", "skip %", "seconds", "latents rL2",
                 "video rL2");
    auto row = [&](const StepCacheOptions& c, const test::CachedRun& r) {
        const double lat = relative_l2(r.latents, plain.latents), vid = relative_l2(r.video, plain.video);
        std::fprintf(stderr, "  %-16s %4d/%-4d %7.1f%% %8.3f %12.3g %12.3g\n", c.str().c_str(), r.skipped, r.passes,
                     100.0 * r.skipped / std::max(1, r.passes), r.seconds, lat, vid);
        Json j;
        j["bench"] = "step_cache";
        j["model"] = name;
        j["cache"] = c.str();
        j["steps"] = req.params.num_inference_steps;
        j["passes"] = r.passes;
        j["skipped"] = r.skipped;
        j["seconds"] = r.seconds;
        j["accumulated_estimate"] = r.estimate;
        j["latents_rel_l2"] = lat;
        j["video_rel_l2"] = vid;
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
    };
    row(StepCacheOptions{}, plain);
    for (const StepCacheOptions& c : caches) {
        req.params.cache = c;
        row(c, test::run_cached(pipe, req));
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("Step caching: passes skipped and error vs the uncached run, per threshold");
    int steps = 30;
    std::string list = "teacache:0.05,teacache:0.1,teacache:0.15,teacache:0.25,fbcache:0.05,fbcache:0.1,fbcache:0.2";
    bool no_demo = false;
    app.add_option("--steps", steps, "Denoising steps")->capture_default_str();
    app.add_option("--cache", list, "Comma-separated cache settings")->capture_default_str();
    app.add_flag("--no-demo", no_demo, "Only the pipeline fixtures");
    CLI11_PARSE(app, argc, argv);
    try {
        std::vector<StepCacheOptions> caches;
        std::stringstream ss(list);
        for (std::string item; std::getline(ss, item, ',');) caches.push_back(parse_step_cache(item, "--cache"));
        for (const auto& dir : test::pipeline_fixtures()) {
            const test::Fixture f = test::Fixture::open(dir);
            GenerationRequest req = test::make_request(f, false);
            req.params.num_inference_steps = steps;
            table(dir.filename().string(), test::load_pipeline(f), req, caches);
        }
        if (!no_demo) {
            GenerationRequest req;
            req.params = demo_params(Task::T2V);
            req.params.num_inference_steps = steps;
            req.prompt = "FPS-24, A 3D model of a 1800s victorian house.";
            req.negative_prompt = "low quality";  // within CLIP's 77 tokens: no truncation warning per row
            table("demo (small)", make_demo_pipeline(Task::T2V), req, caches);
            // --demo-size large's transformer (73 MiB): the transformer is most of a step's time.
            table("demo (large)",
                  make_demo_pipeline(Task::T2V, 0, {.heads = 6, .head_dim = 64, .dual_blocks = 2, .single_blocks = 4}),
                  req, caches);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_step_cache: %s\n", e.what());
        return 1;
    }
    return 0;
}
