// Step caching (--cache teacache:THRESH | fbcache:THRESH, models/step_cache.h): the accumulator and the
// rescale polynomial on hand-computed numbers; on every pipeline fixture, a threshold of 0 is the uncached
// run bit for bit, a huge threshold skips exactly what the rules leave to skip, the first step (and for
// TeaCache the last) is never skipped, and the guidance rows batched, one at a time per block and as whole
// passes make the same decisions; a skipped step moves none of the skipped blocks' weights; the plan counts
// the cached residual; a bad --cache exits 1 naming the flag.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "backends/cpu/cpu_backend.h"
#include "pipeline/demo_model.h"
#include "pipeline/memory_plan.h"
#include "runtime/residency.h"
#include "runtime/simulated_device.h"
#include "support/cached_run.h"
#include "support/compare.h"
#include "support/pipeline_fixture.h"
#include "support/run_command.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

using test::bit_identical;
using test::CachedRun;

// [1, 2, 2] of `v` (one batch row, two tokens, width 2).
Tensor filled(float v) {
    return Tensor::from_vector({v, v, v, v}, {1, 2, 2});
}

std::vector<int> range(int from, int to) {  // [from, to)
    std::vector<int> v;
    for (int i = from; i < to; ++i) v.push_back(i);
    return v;
}

// More steps than the fixtures ran (a cache needs steps to skip), few enough for a test.
constexpr int kSteps = 10;

}  // namespace

TEST(StepCache, ParsesTheFlagStrictly) {
    EXPECT_FALSE(parse_step_cache("none", "--cache").enabled());
    const StepCacheOptions t = parse_step_cache("teacache:0.15", "--cache");
    EXPECT_EQ(t.kind, StepCacheKind::TeaCache);
    EXPECT_EQ(t.threshold, 0.15);
    EXPECT_EQ(t.str(), "teacache:0.15");
    EXPECT_EQ(parse_step_cache("fbcache:0", "--cache").kind, StepCacheKind::FirstBlock);
    for (const char* bad : {"teacache", "teacache:", "fbcache:-0.1", "fbcache:nan", "teacache:inf", "teacache:0.1x",
                            "magcache:0.1", ":0.1", ""}) {
        try {
            parse_step_cache(bad, "--cache");
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("--cache"), std::string::npos) << e.what();
        }
    }
}

// The polynomial, by hand: at 0 the constant term; at 0.1, 733.226126e-4 - 401.131952e-3 + 67.5869174e-2 -
// 3.149878e-1 + 0.0961237896 = 0.1291958242.
TEST(StepCache, TeaCacheRescaleIsHunyuanVideosPolynomial) {
    EXPECT_DOUBLE_EQ(teacache_rescale(0.0), 9.61237896e-02);
    EXPECT_NEAR(teacache_rescale(0.1), 0.1291958242, 1e-10);
    EXPECT_NEAR(teacache_rescale(1.0), 733.226126 - 401.131952 + 67.5869174 - 3.149878 + 0.0961237896, 1e-9);
}

// The accumulator over 5 steps at threshold 0.3, each input 1.1 times the last (rel L1 0.1, rescaled to
// 0.1292): step 0 is forced; steps 1 and 2 accumulate 0.129, 0.258 < 0.3 and skip; step 3 reaches 0.388,
// computes and resets; step 4 is the last, forced. The estimate sums the three rescaled distances. A skipped
// step adds the residual (after - before) of the last computed one.
TEST(StepCache, TeaCacheAccumulatesRescaledDistancesAndResetsOnCompute) {
    Backend& be = cpu_backend();
    StepCache cache(parse_step_cache("teacache:0.3", "--cache"), 5);
    float m = 1.0f;
    std::vector<bool> skips;
    for (int step = 0; step < 5; ++step, m *= 1.1f) {
        cache.begin_step(step);
        cache.observe(be, 0, filled(m), 2);
        const bool skip = cache.decide(be);
        skips.push_back(skip);
        if (!skip) {
            cache.keep_input(be, 0, filled(2.0f));
            cache.keep_output(be, 0, filled(5.5f));  // residual 3.5
        }
    }
    EXPECT_EQ(skips, (std::vector<bool>{false, true, true, false, false}));
    EXPECT_EQ(cache.skipped_steps(), (std::vector<int>{1, 2}));
    EXPECT_EQ(cache.passes(), 5);
    EXPECT_NEAR(cache.accumulated_estimate(), 3 * 0.1291958242, 1e-5);  // the f32 inputs: 1.1^k to ~1e-7
    Tensor x = filled(1.0f);
    cache.apply(be, 0, x);
    EXPECT_EQ(x.data<float>()[3], 4.5f);
    // A threshold of 0 never skips, whatever the distances.
    StepCache never(parse_step_cache("teacache:0", "--cache"), 5);
    for (int step = 0; step < 5; ++step) {
        never.begin_step(step);
        never.observe(be, 0, filled(1.0f), 2);
        EXPECT_FALSE(never.decide(be));
        never.keep_input(be, 0, filled(1.0f));
        never.keep_output(be, 0, filled(1.0f));
    }
}

// Metric inputs in bf16 (the activations of a bf16 run) are kept in bf16 (half the host memory of f32) and
// summed from their exact values: the same decisions, counts and accumulated estimate as the same values in
// f32, over a metric large enough to be summed in several blocks.
TEST(StepCache, Bf16MetricInputsDecideAsTheirF32Values) {
    Backend& be = cpu_backend();
    const StepCacheOptions tea = parse_step_cache("teacache:0.3", "--cache");
    StepCache f32(tea, 5), bf16(tea, 5);
    const int64_t tokens = 3000, width = 16;  // 48000 values: three blocks of the sums
    for (int step = 0; step < 5; ++step) {
        Tensor m = Tensor::empty({1, tokens, width}, DType::F32);
        for (int64_t i = 0; i < m.numel(); ++i)  // values bf16 holds exactly, ~1.1^step apart
            m.data<float>()[i] = bf16_to_f32(f32_to_bf16(std::pow(1.1f, float(step)) * (1.0f + float(i % 7) / 8.0f)));
        bool skips[2];
        size_t held[2];  // host bytes the step left held (at step 0: the metric input and the f32 residual)
        int k = 0;
        for (StepCache* c : {&f32, &bf16}) {
            const Tensor value = c == &f32 ? m : m.to(DType::BF16);
            const size_t before = host_allocator().in_use_bytes();
            c->begin_step(step);
            c->observe(be, 0, value, tokens);
            skips[k] = c->decide(be);
            if (!skips[k]) c->keep_input(be, 0, m), c->keep_output(be, 0, m);
            held[k++] = host_allocator().in_use_bytes() - before;
        }
        EXPECT_EQ(skips[0], skips[1]) << "step " << step;
        if (step == 0) {
            EXPECT_EQ(held[0] - held[1], size_t(m.numel()) * 2) << "bf16 keeps 2 bytes a value, f32 4";
        }
    }
    EXPECT_GT(f32.skipped(), 0);
    EXPECT_EQ(bf16.summary(), f32.summary());
    EXPECT_EQ(bf16.accumulated_estimate(), f32.accumulated_estimate());
}

// First-block cache at 0.05, first-block residuals 1.0, 1.01, 1.04, 1.06, 1.07: step 0 computes (nothing to
// compare with); steps 1 and 2 are within 1% and 4% of the last computed step (1.0) and skip; step 3 is 6%
// from it and computes; step 4 is 0.9% from 1.06 and skips (the last step is not forced, as in ParaAttention).
// Were r1_prev updated on skipped steps, step 3 (1.9% from 1.04) would have skipped.
TEST(StepCache, FirstBlockCacheComparesWithTheLastComputedStep) {
    Backend& be = cpu_backend();
    StepCache cache(parse_step_cache("fbcache:0.05", "--cache"), 5);
    std::vector<bool> skips;
    for (float r1 : {1.0f, 1.01f, 1.04f, 1.06f, 1.07f}) {
        cache.begin_step(int(skips.size()));
        cache.observe(be, 0, filled(r1), 2);
        skips.push_back(cache.decide(be));
        if (!skips.back()) cache.keep_input(be, 0, filled(0.0f)), cache.keep_output(be, 0, filled(1.0f));
    }
    EXPECT_EQ(skips, (std::vector<bool>{false, true, true, false, true}));
    EXPECT_EQ(cache.skipped(), 3);
}

// A cache rebuilt after each step k of the TeaCache and first-block sequences above, as a resumed loop rebuilds
// it (the saved counts restored, then the calls replays(k) lists replayed with their steps' inputs), makes the
// remaining decisions, counts and skipped steps of the uninterrupted cache and applies the same residual (each
// step's residual differs, so a replay of the wrong step shows). The replays are the last computed step, and
// for TeaCache the last step when it skipped. Contradicting counts are refused, naming them, and leave the
// cache as it was.
TEST(StepCache, ReplayedCallsRebuildTheSavedState) {
    Backend& be = cpu_backend();
    const std::map<std::string, std::vector<float>> metrics = {
        {"teacache:0.3", {1.0f, 1.1f, 1.21f, 1.331f, 1.4641f}},  // the TeaCache test's inputs: F, T, T, F, F
        {"fbcache:0.05", {1.0f, 1.01f, 1.04f, 1.06f, 1.07f}}};   // the first-block test's: F, T, T, F, T
    for (const auto& [kind, metric] : metrics) {
        SCOPED_TRACE(kind);
        const StepCacheOptions options = parse_step_cache(kind, "--cache");
        const int steps = int(metric.size());
        // Step i's call: its metric, and when it computes the residual -3.5 - i (before 2 + i, after 5.5 + 2i).
        auto call = [&](StepCache& c, int i) {
            c.observe(be, 0, filled(metric[size_t(i)]), 2);
            const bool skip = c.decide(be);
            if (!skip)
                c.keep_input(be, 0, filled(2.0f + float(i))), c.keep_output(be, 0, filled(5.5f + 2.0f * float(i)));
            return skip;
        };
        auto step = [&](StepCache& c, int i) {
            c.begin_step(i);
            return call(c, i);
        };
        StepCache whole(options, steps);
        std::vector<bool> all;
        for (int i = 0; i < steps; ++i) all.push_back(step(whole, i));
        ASSERT_GT(whole.skipped(), 0);
        for (int stop = 1; stop < steps; ++stop) {
            SCOPED_TRACE(fmt::format("rebuilt after step {}", stop));
            StepCache first(options, steps);
            for (int i = 0; i < stop; ++i) step(first, i);
            StepCache rest(options, steps);
            rest.restore(first.counts(), stop);
            const auto replays = first.replays(stop);
            // Expected from the decisions: the last computed step, then (TeaCache) the last step if it skipped.
            int computed = stop - 1;
            while (all[size_t(computed)]) --computed;
            std::vector<std::pair<int, bool>> expected{{computed, true}};
            if (options.kind == StepCacheKind::TeaCache && computed < stop - 1) expected.emplace_back(stop - 1, false);
            EXPECT_EQ(replays, expected);
            for (const auto& [at, compute] : replays) {
                rest.begin_replay(at, compute);
                EXPECT_EQ(call(rest, at), !compute) << "a replayed call decides as told";
            }
            EXPECT_EQ(rest.passes(), first.passes()) << "replays count nothing";
            std::vector<bool> skips;
            for (int i = stop; i < steps; ++i) skips.push_back(step(rest, i));
            EXPECT_EQ(skips, std::vector<bool>(all.begin() + stop, all.end()));
            EXPECT_EQ(rest.skipped_steps(), whole.skipped_steps());
            EXPECT_EQ(rest.summary(), whole.summary());
            Tensor x = filled(1.0f), y = filled(1.0f);
            rest.apply(be, 0, x);
            whole.apply(be, 0, y);
            EXPECT_EQ(x.data<float>()[3], y.data<float>()[3]);
        }
    }
    StepCache saved(parse_step_cache("teacache:0.3", "--cache"), 5);
    for (int i = 0; i < 3; ++i) {
        saved.begin_step(i);
        saved.observe(be, 0, filled(std::pow(1.1f, float(i))), 2);
        if (!saved.decide(be)) saved.keep_input(be, 0, filled(2.0f)), saved.keep_output(be, 0, filled(5.5f));
    }
    auto refused = [&](const StepCacheCounts& bad, int steps_done, const std::string& expected) {
        StepCache fresh(parse_step_cache("teacache:0.3", "--cache"), 5);
        try {
            fresh.restore(bad, steps_done);
            ADD_FAILURE() << "restored; expected: " << expected;
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
        }
        EXPECT_EQ(fresh.passes(), 0) << "a refused state leaves the cache as it was";
    };
    StepCacheCounts counts = saved.counts();
    counts.skipped_steps.push_back(3);
    refused(counts, 3, "skipped steps listed");
    refused(saved.counts(), 2, "3 passes after 2 steps");
    counts = saved.counts();
    counts.skipped_steps = {2, 1};
    refused(counts, 3, "skipped step 1 is out of order");
    counts = saved.counts();
    counts.total_estimate = -1.0;
    refused(counts, 3, "not finite sums >= 0");
}

// On every pipeline fixture, over kSteps steps: threshold 0 gives the uncached latents and video bit for
// bit with no skip; a huge threshold skips every step the rules do not force (TeaCache: all but the first
// and last; first-block cache: all but the first); batched rows, rows per block and whole passes decide the
// same steps at a moderate threshold, per block and whole passes bit for bit (whole passes run per block
// with a cache: one decision needs both rows' first block), batched within the fixture's tolerance of per
// block (the sums of the batched GEMMs run in another order).
TEST(StepCache, SkipsWhatTheRulesSayOnEveryPipelineFixture) {
    int checked = 0;
    for (const fs::path& dir : test::pipeline_fixtures()) {
        SCOPED_TRACE(dir.string());
        const test::Fixture f = test::Fixture::open(dir);
        const SkyReelsPipeline pipe = test::load_pipeline(f);
        GenerationRequest base = test::make_request(f, false);
        base.params.num_inference_steps = kSteps;
        const CachedRun plain = test::run_cached(pipe, base);
        for (const char* zero : {"teacache:0", "fbcache:0"}) {
            GenerationRequest r = base;
            r.params.cache = parse_step_cache(zero, "--cache");
            const CachedRun c = test::run_cached(pipe, r);
            EXPECT_EQ(c.passes, kSteps) << zero;
            EXPECT_EQ(c.skipped, 0) << zero;
            EXPECT_TRUE(bit_identical(c.latents, plain.latents)) << zero;
            EXPECT_TRUE(bit_identical(c.video, plain.video)) << zero;
        }
        {
            GenerationRequest r = base;
            r.params.cache = parse_step_cache("teacache:1e9", "--cache");
            EXPECT_EQ(test::run_cached(pipe, r).skipped_steps, range(1, kSteps - 1))
                << "teacache: all but the first and last";
            r.params.cache = parse_step_cache("fbcache:1e9", "--cache");
            EXPECT_EQ(test::run_cached(pipe, r).skipped_steps, range(1, kSteps)) << "fbcache: all but the first";
        }
        if (base.params.do_cfg()) {
            const test::Tolerances tol = test::read_tolerances(dir);
            for (const char* moderate : {"teacache:0.15", "fbcache:0.05"}) {
                GenerationRequest batched = base;
                batched.params.cache = parse_step_cache(moderate, "--cache");
                GenerationRequest per_block = batched, whole = batched;
                per_block.params.sequence_batch = true;
                whole.params.sequence_batch = whole.params.cfg_whole_passes = true;
                const CachedRun a = test::run_cached(pipe, batched), b = test::run_cached(pipe, per_block),
                                c = test::run_cached(pipe, whole);
                EXPECT_EQ(a.skipped_steps, b.skipped_steps) << moderate << ": batched vs per block";
                EXPECT_EQ(b.skipped_steps, c.skipped_steps) << moderate << ": per block vs whole passes";
                EXPECT_TRUE(bit_identical(b.latents, c.latents)) << moderate;
                const test::Diff d = test::compare(a.latents, b.latents);
                EXPECT_LE(d.max_abs, tol.of("latents")) << moderate << ": " << d.str();
                const double rel = test::compare(b.latents, plain.latents).max_abs;
                std::printf("  %s %s: skipped %d of %d (steps", dir.filename().string().c_str(), moderate, b.skipped,
                            b.passes);
                for (int s : b.skipped_steps) std::printf(" %d", s);
                std::printf("), latents max |diff| vs uncached %.3g\n", rel);
            }
        }
        ++checked;
    }
    EXPECT_GT(checked, 0) << "no pipeline fixture";
}

// A skipped step moves none of the skipped blocks: the transformer streamed through a ring (every block
// streamed, prefetch 1 and 2) over 6 steps at a huge TeaCache threshold (steps 1..4 skipped) copies each block
// of 2..n-2 exactly twice (the two computed steps; the prefetch never runs past block 1 before a decision, nor
// past the next pass's block 1 after a pass), blocks 0, 1 and the head every step (plus, for the next pass's
// prefetch, at most one more each); and the outputs are those of the same cached loop on the CPU, bit for
// bit. The first-block cache the same (steps 1..5 skipped: one copy each).
TEST(StepCache, SkippedStepsMoveNoSkippedBlock) {
    const SkyReelsPipeline pipe =
        make_demo_pipeline(Task::T2V, 3, {.heads = 2, .head_dim = 16, .dual_blocks = 2, .single_blocks = 2});
    const HunyuanVideoTransformer& model = *pipe.components().transformer;
    const HunyuanVideoConfig& cfg = model.config();
    auto inputs = [&](int step) {
        TransformerInputs in;
        in.hidden_states = Tensor::empty({1, cfg.in_channels, 1, 4, 4}, DType::F32);
        for (int64_t i = 0; i < in.hidden_states.numel(); ++i)
            in.hidden_states.data<float>()[i] = 0.1f * float(1 + i % 7) * (1.0f + 0.02f * float(step));
        in.timestep = Tensor::from_vector({1000.0f - 150.0f * float(step)}, {1});
        in.encoder_hidden_states = Tensor::zeros({1, 4, cfg.text_embed_dim}, DType::F32);
        for (int64_t i = 0; i < in.encoder_hidden_states.numel(); ++i)
            in.encoder_hidden_states.data<float>()[i] = 0.01f * float(i % 5);
        in.encoder_attention_mask = Tensor::from_vector({1, 1, 1, 0}, {1, 4});
        in.pooled_projections = Tensor::from_vector(std::vector<float>(size_t(cfg.pooled_projection_dim), 0.3f),
                                                    {1, cfg.pooled_projection_dim});
        in.guidance = Tensor::from_vector({1000.0f}, {1});
        return in;
    };
    const auto blocks = model.weight_blocks();
    size_t largest = 0;
    for (const WeightBlock& b : blocks) largest = std::max(largest, device_block_bytes(b));
    const int steps = 6;
    for (const char* kind : {"teacache:1e9", "fbcache:1e9"}) {
        SCOPED_TRACE(kind);
        const StepCacheOptions o = parse_step_cache(kind, "--cache");
        std::vector<Tensor> expected;
        {
            StepCache cache(o, steps);
            for (int s = 0; s < steps; ++s) {
                cache.begin_step(s);
                expected.push_back(model.forward(cpu_backend(), inputs(s), {}, nullptr, {.skip = {}, .cache = &cache}));
            }
        }
        for (int prefetch : {1, 2}) {
            SCOPED_TRACE(::testing::Message() << "prefetch " << prefetch);
            SimulatedDevice device({.memory_budget = 0, .bandwidth_bytes_per_s = 0, .latency_s = 0});
            const size_t weights = size_t(prefetch + 1) * largest;  // the ring alone: nothing fits resident
            ResidencyManager mgr(device, blocks, {.budget_bytes = weights, .prefetch = prefetch});
            ASSERT_EQ(size_t(mgr.plan().streamed_blocks()), blocks.size());
            StepCache cache(o, steps);
            for (int s = 0; s < steps; ++s) {
                cache.begin_step(s);
                const Tensor got = to_host(device.backend(), model.forward(device.backend(), inputs(s), {}, &mgr,
                                                                           {.skip = {}, .cache = &cache}));
                EXPECT_TRUE(bit_identical(got, expected[size_t(s)])) << "step " << s;
            }
            const int computed = cache.passes() - cache.skipped();
            EXPECT_EQ(computed, o.kind == StepCacheKind::TeaCache ? 2 : 1);
            std::map<std::string, int> copies;
            for (const std::string& name : mgr.copy_log()) ++copies[name];
            for (size_t b = 0; b < blocks.size(); ++b) {
                const bool always = b <= 1 || b + 1 == blocks.size();
                const int n = copies[blocks[b].name];
                if (always) {
                    EXPECT_GE(n, steps) << blocks[b].name;
                    EXPECT_LE(n, steps + 1) << blocks[b].name;
                } else {
                    // Once per computed step, and once more for a block the manager prefetched at its
                    // construction (the first prefetch + 1 blocks, before any pass was announced).
                    EXPECT_EQ(n, computed + (b <= size_t(prefetch) ? 1 : 0))
                        << blocks[b].name << " was moved on a skipped step";
                }
            }
        }
    }
}

// The plan runs the cached forward, so the residual the loop keeps on the device is in the denoising
// stage's peak: more than the uncached plan's, and what the simulated device measures.
TEST(StepCache, MemoryPlanCountsTheCachedResidual) {
    const SkyReelsPipeline pipe =
        make_demo_pipeline(Task::T2V, 7, {.heads = 4, .head_dim = 32, .dual_blocks = 3, .single_blocks = 3});
    GenerationRequest req;
    req.params = demo_params(Task::T2V);
    req.params.height = req.params.width = 256;  // 768 video tokens: the blocks' activations make the peak
    req.params.num_frames = 9;
    req.params.num_inference_steps = 3;
    req.prompt = "FPS-24, a lighthouse at dusk";
    const MemoryOptions o{.offload = OffloadMode::None};
    auto denoise_peak = [&](const MemoryPlan& plan) {
        for (const StagePlan& s : plan.stages)
            if (s.name == Stage::Denoising) return s.activation_bytes;
        return size_t(0);
    };
    const size_t plain = denoise_peak(plan_memory(pipe, req, o));
    for (const char* kind : {"teacache:0.1", "fbcache:0.1"}) {
        GenerationRequest r = req;
        r.params.cache = parse_step_cache(kind, "--cache");
        const size_t cached = denoise_peak(plan_memory(pipe, r, o));
        // At least the [B, N, D] f32 residual: B = 2 (CFG), N = 3 x 16 x 16 tokens, D = 128.
        EXPECT_GE(cached, plain + size_t(2 * 768 * 128 * 4)) << kind;
        std::printf("  %s: denoising activations %zu bytes, %zu without the cache\n", kind, cached, plain);
    }
}

TEST(StepCache, BadCacheFlagExitsOneNamingIt) {
    const std::string bin = std::string(SKYREELS_BINARY_DIR) + "/skyreels";
    for (const char* bad : {"teacache", "fbcache:-1", "teacache:nan", "easycache:0.1"}) {
        const test::CommandResult r =
            test::run_command(fmt::format("{} generate --demo --quiet --dry-run --cache '{}'", bin, bad));
        EXPECT_EQ(r.code, 1) << bad << ": " << r.output;
        EXPECT_NE(r.output.find("--cache"), std::string::npos) << r.output;
    }
}
