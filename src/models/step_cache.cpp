#include "models/step_cache.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/log.h"
#include "core/parallel.h"

namespace sr {

namespace {

// The metric input comes to the host in blocks of tokens of at most this many bytes (64 MiB).
constexpr int64_t kHostChunkBytes = int64_t(64) << 20;
// The distances are summed in blocks of this many values, added in block order: the same bits whatever the
// thread count.
constexpr int64_t kSumBlock = 16384;

// (sum |cur - prev|, sum |prev|) over n values of `dtype` (f32 or bf16), in double.
std::pair<double, double> abs_sums(const void* cur, const void* prev, DType dtype, int64_t n) {
    const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
    std::vector<double> diff(static_cast<size_t>(blocks)), base(static_cast<size_t>(blocks));
    auto sum_block = [&](const auto* c, const auto* p, int64_t k, auto value) {
        const int64_t i0 = k * kSumBlock, i1 = std::min(n, i0 + kSumBlock);
        double d = 0.0, b = 0.0;
        for (int64_t i = i0; i < i1; ++i) {
            const double x = value(c[i]), y = value(p[i]);
            d += std::fabs(x - y);
            b += std::fabs(y);
        }
        diff[size_t(k)] = d, base[size_t(k)] = b;
    };
    parallel_for(blocks, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k)
            if (dtype == DType::BF16)
                sum_block(static_cast<const uint16_t*>(cur), static_cast<const uint16_t*>(prev), k,
                          [](uint16_t v) { return double(bf16_to_f32(v)); });
            else
                sum_block(static_cast<const float*>(cur), static_cast<const float*>(prev), k,
                          [](float v) { return double(v); });
    });
    double d = 0.0, b = 0.0;
    for (int64_t k = 0; k < blocks; ++k) d += diff[size_t(k)], b += base[size_t(k)];
    return {d, b};
}

}  // namespace

std::string StepCacheOptions::str() const {
    switch (kind) {
        case StepCacheKind::None:
            return "none";
        case StepCacheKind::TeaCache:
            return fmt::format("teacache:{}", threshold);
        case StepCacheKind::FirstBlock:
            return fmt::format("fbcache:{}", threshold);
    }
    return "?";
}

StepCacheOptions parse_step_cache(std::string_view text, std::string_view what) {
    StepCacheOptions o;
    if (text == "none" || text == "off") return o;
    const size_t colon = text.find(':');
    const std::string_view kind = text.substr(0, colon);
    if (kind == "teacache")
        o.kind = StepCacheKind::TeaCache;
    else if (kind == "fbcache")
        o.kind = StepCacheKind::FirstBlock;
    else
        SR_THROW("{} '{}': unknown step cache '{}' (expected teacache:THRESH, fbcache:THRESH or none)", what, text,
                 kind);
    SR_THROW_IF(colon == std::string_view::npos || colon + 1 == text.size(),
                "{} '{}': missing threshold (e.g. {}:0.15)", what, text, kind);
    const std::string_view number = text.substr(colon + 1);
    double value = 0.0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    SR_THROW_IF(ec != std::errc() || end != number.data() + number.size() || !std::isfinite(value) || value < 0.0,
                "{} '{}': the threshold must be a finite number >= 0, got '{}'", what, text, number);
    o.threshold = value;
    return o;
}

double teacache_rescale(double x) {
    // Horner's rule on HunyuanVideo's coefficients, highest degree first (numpy.poly1d order).
    constexpr double kCoefficients[] = {7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00,
                                        9.61237896e-02};
    double y = 0.0;
    for (double c : kCoefficients) y = y * x + c;
    return y;
}

StepCache::StepCache(StepCacheOptions options, int steps) : options_(options), steps_(steps) {
    SR_ASSERT(options_.enabled(), "a StepCache needs a cache kind");
}

void StepCache::begin_step(int step) {
    step_ = step;
}

void StepCacheCounts::check(int steps_done, const std::string& source) const {
    SR_THROW_IF(
        passes < 0 || skipped < 0 || skipped > passes || size_t(skipped) != skipped_steps.size() || passes > steps_done,
        "{}: {} skipped of {} passes after {} steps, {} skipped steps listed", source, skipped, passes, steps_done,
        skipped_steps.size());
    SR_THROW_IF(
        !std::isfinite(accumulated) || !std::isfinite(total_estimate) || accumulated < 0.0 || total_estimate < 0.0,
        "{}: estimates {} and {} are not finite sums >= 0", source, accumulated, total_estimate);
    for (size_t i = 0; i < skipped_steps.size(); ++i)
        SR_THROW_IF(skipped_steps[i] < 1 || skipped_steps[i] >= steps_done ||
                        (i > 0 && skipped_steps[i] <= skipped_steps[i - 1]),
                    "{}: skipped step {} is out of order or outside 1..{}", source, skipped_steps[i], steps_done - 1);
}

void StepCache::begin_replay(int step, bool compute) {
    step_ = step;
    replay_compute_ = compute;
}

StepCacheCounts StepCache::counts() const {
    return {.accumulated = accumulated_,
            .total_estimate = total_estimate_,
            .passes = passes_,
            .skipped = skipped_,
            .skipped_steps = skipped_steps_};
}

void StepCache::restore(const StepCacheCounts& c, int steps_done) {
    c.check(steps_done, "step cache counts");
    accumulated_ = c.accumulated;
    total_estimate_ = c.total_estimate;
    passes_ = c.passes, skipped_ = c.skipped;
    skipped_steps_ = c.skipped_steps;
}

std::vector<std::pair<int, bool>> StepCache::replays(int steps_done) const {
    std::vector<std::pair<int, bool>> out;
    int computed = steps_done - 1;  // the last step not listed as skipped (the loop's first step computes)
    for (auto it = skipped_steps_.rbegin(); it != skipped_steps_.rend() && *it == computed; ++it) --computed;
    if (computed >= 0) out.emplace_back(computed, true);
    if (options_.kind == StepCacheKind::TeaCache && computed < steps_done - 1) out.emplace_back(steps_done - 1, false);
    return out;
}

StepCache::Row& StepCache::row(size_t r) {
    if (rows_.size() <= r) rows_.resize(r + 1);
    return rows_[r];
}

void StepCache::observe(Backend& be, size_t r, const Tensor& value, int64_t valid) {
    Row& rw = row(r);
    rw.observed = true;
    rw.diff = rw.base = 0.0;
    const int64_t B = value.dim(0), D = value.dim(2);
    // Host memory, so that the plan counts it (a plan allocates, and reads nothing). Kept in the activations'
    // dtype when it is bf16 (what the reference's bf16 run compares; half the memory of f32, and exact).
    const DType kept = value.dtype() == DType::BF16 ? DType::BF16 : DType::F32;
    const size_t esize = dtype_size(kept);
    rw.pending = Tensor::empty({B * valid * D}, kept, host_allocator(), "step cache metric input");
    // The value comes to the host a block of tokens at a time (a bounded copy, not a second whole input).
    const int64_t chunk = std::max<int64_t>(1, kHostChunkBytes / (D * int64_t(esize)));
    if (host_values_skipped()) {
        (void)to_host(be, value.select(0, 0).slice(0, 0, std::min(chunk, valid)));  // the copy's size, counted
        // A plan (shapes only; every step computes) runs one step: the previous step's input, which every later
        // step holds next to this one, is counted too.
        if (!rw.prev.defined())
            rw.prev = Tensor::empty({B * valid * D}, kept, host_allocator(), "step cache previous input");
        return;
    }
    auto* keep = static_cast<char*>(rw.pending.raw_data());
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t0 = 0; t0 < valid; t0 += chunk) {
            const int64_t t1 = std::min(valid, t0 + chunk);
            const Tensor part = to_host(be, value.select(0, b).slice(0, t0, t1)).contiguous();
            convert_elements(part.raw_data(), part.dtype(), keep + size_t((b * valid + t0) * D) * esize, kept,
                             size_t((t1 - t0) * D));
        }
    if (!rw.prev.defined() || rw.prev.numel() != rw.pending.numel() || rw.prev.dtype() != kept)
        return;  // nothing to compare with
    // Each batch row's sums start from 0 and are added in row order: the same sums whether the rows run batched
    // (one Row of B) or one at a time (B Rows, added in decide()).
    const auto* p = static_cast<const char*>(rw.prev.raw_data());
    const size_t row_bytes = size_t(valid * D) * esize;
    for (int64_t b = 0; b < B; ++b) {
        const auto [diff, base] = abs_sums(keep + size_t(b) * row_bytes, p + size_t(b) * row_bytes, kept, valid * D);
        rw.diff += diff, rw.base += base;
    }
}

bool StepCache::decide(Backend& be) {
    if (replay_compute_) {  // a replayed call (begin_replay): as told, with the kind's rule for the metric
        const bool skip = !*replay_compute_;
        replay_compute_.reset();
        for (Row& rw : rows_) {
            if (options_.kind == StepCacheKind::TeaCache || !skip) rw.prev = rw.pending;
            rw.observed = false, rw.pending = Tensor();
        }
        return skip;
    }
    const bool plan = host_values_skipped();
    // This rank's rows in row order, then each group's ranks in rank order: the same sum on every rank.
    bool comparable = !rows_.empty();
    double sums[3] = {0.0, 0.0, 0.0};  // diff, base, rows without a previous input or residual
    for (const Row& rw : rows_) {
        if (!rw.observed) continue;
        sums[0] += rw.diff, sums[1] += rw.base;
        if (!rw.prev.defined() || rw.prev.numel() != rw.pending.numel() || !rw.residual.defined()) sums[2] += 1.0;
    }
    for (Communicator* g : groups_) {
        if (!g || g->size() < 2) continue;
        // Doubles travel as 64-bit integers (bit for bit): every communicator moves those.
        Tensor mine = Tensor::empty({3}, DType::I64, host_allocator(), "step cache sums");
        std::memcpy(mine.raw_data(), sums, sizeof(sums));
        Tensor all = Tensor::empty({int64_t(3 * g->size())}, DType::I64, host_allocator(), "step cache sums");
        if (g->moves(mine.device())) {
            g->all_gather(mine, all);
        } else {  // a communicator of device memory (NCCL): through the backend's memory
            Tensor all_dev = Tensor::empty(all.shape(), DType::I64, be.allocator(), "step cache sums");
            g->all_gather(to_device(be, mine, "step cache sums"), all_dev);
            all = to_host(be, all_dev);
        }
        if (plan) continue;
        double gathered[3] = {0.0, 0.0, 0.0};
        for (int p = 0; p < g->size(); ++p) {
            double part[3];
            std::memcpy(part, static_cast<const char*>(all.raw_data()) + size_t(p) * sizeof(part), sizeof(part));
            for (int k = 0; k < 3; ++k) gathered[k] += part[k];
        }
        std::memcpy(sums, gathered, sizeof(sums));
    }
    comparable = comparable && sums[2] == 0.0 && sums[1] > 0.0 && !plan;
    const double rel_l1 = comparable ? sums[0] / sums[1] : 0.0;

    bool skip = false;
    if (options_.kind == StepCacheKind::TeaCache) {
        const bool forced = step_ <= 0 || step_ >= steps_ - 1 || !comparable;
        if (forced) {
            accumulated_ = 0.0;
        } else {
            const double estimate = teacache_rescale(rel_l1);
            accumulated_ += estimate;
            total_estimate_ += estimate;
            skip = options_.threshold > 0.0 && accumulated_ < options_.threshold;
            if (!skip) accumulated_ = 0.0;
        }
        for (Row& rw : rows_) rw.prev = rw.pending;  // m_prev follows every call
    } else {
        if (comparable) total_estimate_ += rel_l1;
        skip = comparable && options_.threshold > 0.0 && rel_l1 < options_.threshold;
        if (!skip)
            for (Row& rw : rows_) rw.prev = rw.pending;  // r1_prev: computed steps only (ParaAttention)
    }
    for (Row& rw : rows_) rw.observed = false, rw.pending = Tensor();
    ++passes_;
    if (skip) ++skipped_, skipped_steps_.push_back(step_);
    return skip;
}

const Tensor& StepCache::minus_one(Backend& be, size_t r, const Tensor& x) {
    Row& rw = row(r);
    if (!rw.minus_one.defined() || rw.minus_one.dim(0) != x.dim(0) || rw.minus_one.dim(1) != x.dim(2)) {
        const int64_t n = x.dim(0) * x.dim(2);
        rw.minus_one = to_device(be, Tensor::from_vector(std::vector<float>(size_t(n), -1.0f), {x.dim(0), x.dim(2)}),
                                 "step cache gate");
    }
    return rw.minus_one;
}

void StepCache::observe_change(Backend& be, size_t r, Tensor& before, const Tensor& after, int64_t valid) {
    be.gated_residual(before, after, minus_one(be, r, after));
    observe(be, r, before, valid);
}

void StepCache::keep_input(Backend& be, size_t r, const Tensor& x) {
    minus_one(be, r, x);
    Row& rw = row(r);
    if (!rw.residual.defined() || !(rw.residual.shape() == x.shape()))
        rw.residual = new_activation(be, x.shape(), "step cache residual");
    be.copy(x, rw.residual);
}

void StepCache::keep_output(Backend& be, size_t r, const Tensor& x) {
    Row& rw = row(r);
    SR_ASSERT(rw.residual.defined(), "step cache row {}: keep_output without keep_input", r);
    be.gated_residual(rw.residual, x, rw.minus_one);  // before - after
}

void StepCache::apply(Backend& be, size_t r, Tensor& x) const {
    SR_ASSERT(r < rows_.size() && rows_[r].residual.defined(), "step cache row {}: nothing cached to apply", r);
    const Row& rw = rows_[r];
    be.gated_residual(x, rw.residual, rw.minus_one);  // x - (before - after)
}

std::string StepCache::summary() const {
    return fmt::format("step cache {}: skipped {} of {} transformer passes (accumulated estimate {:.4g})",
                       options_.str(), skipped_, passes_, total_estimate_);
}

}  // namespace sr
