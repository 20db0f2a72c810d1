// Step caching (opt-in, `--cache KIND:THRESH`): a denoising step whose transformer input barely moved since
// the last computed step skips the transformer's blocks and adds the residual those blocks produced at the
// last computed step (video tokens after all dual and single blocks minus before them); the output head
// runs as usual. It trades accuracy for passes: the threshold sets how far the skipped steps may drift.
//
//   teacache:THRESH  TeaCache (ref: ali-vilab/TeaCache, TeaCache4HunyuanVideo). The metric is the first dual
//                    block's modulated video input (layer norm of the video tokens, shifted and scaled by that
//                    block's shift_msa/scale_msa: what its attention projections see). Each call accumulates
//                    teacache_rescale(rel_l1(m, m_prev)); a step computes when the sum reaches THRESH (and
//                    resets it), else skips. m_prev follows every call. The first and the last step always
//                    compute (and reset the sum). The cached residual spans every block.
//   fbcache:THRESH   First-block cache (ref: ParaAttention, para_attn/first_block_cache). The first dual block
//                    always runs; its residual r1 (output minus input, video tokens) is the metric: the step
//                    skips the remaining blocks when rel_l1(r1, r1_prev) < THRESH. As in ParaAttention, r1_prev
//                    is updated only on computed steps (a run of skips is measured against the last computed
//                    step, so drift cannot creep through in small increments), and no step is forced: the
//                    first computes because there is nothing to compare with. The residual spans blocks 2..
//
// rel_l1(a, b) = mean|a - b| / mean|b|. The guidance rows are decided together: one decision per step from
// the sums over every row, and over every rank of a parallel run (the partial sums are gathered and added in
// rank order, so every rank decides the same). The sums are taken per row, in one fixed order, so rows run
// batched, one at a time through each block, or as whole passes give one decision from the same values.
// A threshold of 0 never skips.
//
//   sr::StepCache cache(sr::parse_step_cache("teacache:0.15", "--cache"), steps);
//   for (int i = 0; i < steps; ++i) {
//       cache.begin_step(i);
//       transformer.forward_rows(be, rows, {}, weights, {.cache = &cache});
//   }
//   SR_LOG_INFO("{}", cache.summary());
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "backends/communicator.h"

namespace sr {

enum class StepCacheKind : uint8_t { None, TeaCache, FirstBlock };

struct StepCacheOptions {
    StepCacheKind kind = StepCacheKind::None;
    double threshold = 0.0;
    bool enabled() const { return kind != StepCacheKind::None; }
    // "teacache:0.15", "fbcache:0.1", "none": what parse_step_cache reads back.
    std::string str() const;
};
// "none" | "teacache:THRESH" | "fbcache:THRESH" (THRESH a finite number >= 0); InputError naming `what`
// (the flag or field) otherwise.
StepCacheOptions parse_step_cache(std::string_view text, std::string_view what);

// TeaCache's rescale of a relative L1 distance of the modulated input into an estimate of the relative L1
// distance of the output: HunyuanVideo's published polynomial (fitted by TeaCache's authors), highest degree
// first 7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02.
double teacache_rescale(double rel_l1);

// A StepCache's counts after a step: with the replayed steps (StepCache::begin_replay), what a denoising
// checkpoint keeps so that a resumed loop decides and skips exactly as the uninterrupted one would
// (pipeline/checkpoint.h). The state's activations are not kept: replaying the transformer calls they came
// from rebuilds them bit for bit, for one transformer pass, where keeping them would cost two activations of the
// video tokens per row in every checkpoint (2.5 GB at 544x960x97 with CFG).
struct StepCacheCounts {
    double accumulated = 0.0;  // TeaCache: the estimates summed since the last computed step
    double total_estimate = 0.0;
    int passes = 0, skipped = 0;
    std::vector<int> skipped_steps;  // ascending
    // InputError naming `source` and what contradicts: negative or inconsistent counts, sums that are not
    // finite and >= 0, skipped steps out of order or outside 1..steps_done - 1, more passes than steps_done.
    void check(int steps_done, const std::string& source) const;
};

// The state of one denoising loop: the previous metric input and the cached residual of every row (a row of
// the CFG batch, or the whole batch when it runs as one), and the counts. Device memory: one residual per
// row, [B, tokens of this rank, D] f32 also in a bf16 run (where the reference keeps it in bf16: on the t2v
// pipeline fixture a bf16 residual took the bf16 cached run from 1.6% to 2.9% of max away from the f32 one,
// DenoiseBf16.CachedRunsStayWithinBf16Rounding), alive for the whole loop (the memory plan counts it: it runs the
// cached forward).
class StepCache {
public:
    StepCache(StepCacheOptions options, int steps);
    const StepCacheOptions& options() const { return options_; }
    // Every rank of these groups decides from the sums of all (the CFG pair, the sequence-parallel group);
    // groups of one rank and nulls are ignored. Every rank must make the same calls (one gather per group
    // per decision).
    void set_groups(std::vector<Communicator*> groups) { groups_ = std::move(groups); }
    // Before each step's transformer call: which step of `steps` it is (a resumed loop starts past 0; its
    // first call computes unless restore() and the replays rebuilt the state the loop had there).
    void begin_step(int step);

    // ---- Checkpoints. A resumed loop restores the saved counts, then rebuilds the saved cache's state by
    // replaying the calls it came from, with the inputs they had (replays() lists them): begin_replay(c, true)
    // before the transformer call of the last step that computed (c: its residual, and the first-block cache's
    // previous metric), then, for TeaCache when the last step done (s) skipped, begin_replay(s, false) before
    // that step's call (its metric is the previous one). A replayed call decides as told, gathers nothing and
    // counts nothing.
    void begin_replay(int step, bool compute);
    StepCacheCounts counts() const;
    // InputError (StepCacheCounts::check against `steps_done`), with the cache left as it was.
    void restore(const StepCacheCounts& counts, int steps_done);
    // Whether the decision of the current step (begin_step) was to skip.
    bool last_skipped() const { return !skipped_steps_.empty() && skipped_steps_.back() == step_; }
    // The replays a loop stopped after `steps_done` steps needs, in order (step, compute), from its counts: the
    // last computed step, then (TeaCache) the last step when it skipped.
    std::vector<std::pair<int, bool>> replays(int steps_done) const;

    // ---- The transformer's side, in this order per call: observe each row, decide, then for a computed
    // step keep_input / keep_output per row, for a skipped one apply per row.
    // The metric input of row `row` (TeaCache: the modulated input; first-block cache: the first block's
    // residual, either sign): its first `valid` tokens (the rest are a sequence shard's padding).
    void observe(Backend& be, size_t row, const Tensor& value, int64_t valid);
    // observe() of before - after (the first block's residual, negated), computed in `before` itself.
    void observe_change(Backend& be, size_t row, Tensor& before, const Tensor& after, int64_t valid);
    // The step's decision from every observed row (and rank): true = skip the cached blocks.
    bool decide(Backend& be);
    // A computed step: the row's video tokens before the cached blocks, then after them (the residual
    // after - before is kept, in the backend's memory).
    void keep_input(Backend& be, size_t row, const Tensor& x);
    void keep_output(Backend& be, size_t row, const Tensor& x);
    // A skipped step: x += the row's cached residual.
    void apply(Backend& be, size_t row, Tensor& x) const;

    // ---- Counts.
    int passes() const { return passes_; }    // decisions made (transformer calls of the loop, rows together)
    int skipped() const { return skipped_; }  // of them, skipped
    const std::vector<int>& skipped_steps() const { return skipped_steps_; }
    // TeaCache: the sum of the rescaled distances over the loop (what the threshold was compared with,
    // accumulated); first-block cache: the sum of the distances measured.
    double accumulated_estimate() const { return total_estimate_; }
    // "step cache teacache:0.15: skipped 11 of 30 transformer passes (accumulated estimate 1.234)"
    std::string summary() const;

private:
    struct Row {
        Tensor prev;                // the previous metric input: host, the value's f32 or bf16, [B * valid * D]
        Tensor pending;             // this call's, kept by decide() per the kind's rule
        double diff = 0, base = 0;  // this call's sums against prev
        bool observed = false;
        Tensor residual;   // before - after of the cached blocks (negated: one gated residual builds and applies it)
        Tensor minus_one;  // [B, D] of -1: the gate that subtracts
    };
    Row& row(size_t r);
    // Row r's gate of -1 for activations like `x` [B, tokens, D].
    const Tensor& minus_one(Backend& be, size_t r, const Tensor& x);

    StepCacheOptions options_;
    int steps_ = 0;
    int step_ = -1;
    std::vector<Row> rows_;
    std::vector<Communicator*> groups_;
    double accumulated_ = 0.0;  // TeaCache: since the last computed step
    double total_estimate_ = 0.0;
    int passes_ = 0, skipped_ = 0;
    std::vector<int> skipped_steps_;
    std::optional<bool> replay_compute_;  // set by begin_replay: the next decision, made as told
};

}  // namespace sr
