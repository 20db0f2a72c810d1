#include "pipeline/progress.h"

#include <unistd.h>

#include "core/allocator.h"
#include "core/memory_stats.h"

namespace sr {

ProgressTracker::ProgressTracker(const Allocator* device_memory)
    : device_(device_memory), start_(Clock::now()), stage_start_(start_) {}

ProgressEvent ProgressTracker::update(Stage stage, int done, int total) {
    const auto now = Clock::now();
    // A stage starts with done == 0 (pipeline.h); a change of stage starts one too.
    if (stage != stage_ || done == 0) {
        stage_ = stage;
        stage_start_ = now;
    }
    ProgressEvent e;
    e.stage = stage;
    e.done = done;
    e.total = total;
    e.stage_seconds = std::chrono::duration<double>(now - stage_start_).count();
    e.job_seconds = std::chrono::duration<double>(now - start_).count();
    if (done > 0) e.eta_seconds = e.stage_seconds / done * double(std::max(0, total - done));
    if (device_) {
        e.on_device = true;
        e.device_in_use = device_->in_use_bytes();
        e.device_peak = device_->peak_bytes();
    }
    const HostMemory m = read_host_memory();
    e.host_rss = m.rss;
    e.host_peak_rss = m.peak_rss;
    return e;
}

Progress::Progress(bool live, bool summary, std::FILE* out) : live_(live), summary_(summary), out_(out) {}

bool Progress::is_terminal(std::FILE* out) {
    return ::isatty(::fileno(out)) == 1;
}

ProgressListener Progress::listener() {
    return [this](const ProgressEvent& e) { update(e); };
}

void Progress::close_stage() {
    if (stages_.empty()) return;
    stages_.back().seconds += std::chrono::duration<double>(Clock::now() - stage_start_).count();
    stage_start_ = Clock::now();
}

void Progress::update(const ProgressEvent& e) {
    if (stages_.empty() || stages_.back().stage != e.stage) {
        close_stage();
        stages_.push_back({e.stage, 0.0, 0});
        stage_start_ = Clock::now();
    }
    StageTime& s = stages_.back();
    s.units = e.done;
    if (!live_) return;
    const char* name = stage_name(e.stage);
    std::fprintf(out_, "\r\033[K%s %d/%d", name, e.done, e.total);
    if (e.done > 0)
        std::fprintf(out_, " | %.2f s/%s | ETA %.1f s", e.stage_seconds / e.done,
                     e.stage == Stage::Denoising ? "step" : "unit", e.eta_seconds);
    std::fprintf(out_, " | RSS %s (peak %s)", format_bytes(double(e.host_rss)).c_str(),
                 format_bytes(double(e.host_peak_rss)).c_str());
    if (e.on_device)
        std::fprintf(out_, " | device %s (peak %s)", format_bytes(double(e.device_in_use)).c_str(),
                     format_bytes(double(e.device_peak)).c_str());
    std::fflush(out_);
    line_open_ = true;
}

std::string Progress::finish() {
    close_stage();
    if (line_open_) std::fprintf(out_, "\r\033[K");
    line_open_ = false;
    std::string text = "done:";
    double total = 0;
    for (const StageTime& s : stages_) {
        text += fmt::format(" {} {:.2f} s{} |", stage_name(s.stage), s.seconds,
                            s.stage == Stage::Denoising && s.units > 0
                                ? fmt::format(" ({:.2f} s/step)", s.seconds / s.units)
                                : std::string());
        total += s.seconds;
    }
    const HostMemory m = read_host_memory();
    text += fmt::format(" total {:.2f} s | peak RSS {}", total, format_bytes(double(m.peak_rss)));
    if (device_) text += fmt::format(" | device memory in use {}", format_bytes(double(device_->in_use_bytes())));
    if (summary_) std::fprintf(out_, "%s\n", text.c_str());
    return text;
}

}  // namespace sr
