#include "pipeline/progress.h"

#include <unistd.h>

#include "core/allocator.h"
#include "core/memory_stats.h"

namespace sr {

Progress::Progress(bool live, bool summary, std::FILE* out) : live_(live), summary_(summary), out_(out) {}

bool Progress::is_terminal(std::FILE* out) {
    return ::isatty(::fileno(out)) == 1;
}

ProgressCallback Progress::callback() {
    return [this](Stage stage, int done, int total) { update(stage, done, total); };
}

void Progress::close_stage() {
    if (stages_.empty()) return;
    stages_.back().seconds += std::chrono::duration<double>(Clock::now() - stage_start_).count();
    stage_start_ = Clock::now();
}

void Progress::update(Stage stage, int done, int total) {
    const auto now = Clock::now();
    if (stages_.empty() || stages_.back().stage != stage) {
        close_stage();
        stages_.push_back({stage, 0.0, 0});
        stage_start_ = now;
        last_done_ = 0;
    }
    StageTime& s = stages_.back();
    s.units = done;
    if (!live_) return;
    const double elapsed = std::chrono::duration<double>(now - stage_start_).count();
    const double per_unit = done > 0 ? elapsed / done : 0.0;
    const double eta = per_unit * double(total - done);
    const HostMemory m = read_host_memory();
    std::fprintf(out_, "\r\033[K%s %d/%d", stage_name(stage), done, total);
    if (done > 0)
        std::fprintf(out_, " | %.2f s/%s | ETA %.1f s", per_unit, stage == Stage::Denoising ? "step" : "unit", eta);
    std::fprintf(out_, " | RSS %s (peak %s)", format_bytes(double(m.rss)).c_str(),
                 format_bytes(double(m.peak_rss)).c_str());
    if (device_)
        std::fprintf(out_, " | device %s (peak %s)", format_bytes(double(device_->in_use_bytes())).c_str(),
                     format_bytes(double(device_->peak_bytes())).c_str());
    std::fflush(out_);
    line_open_ = true;
    last_done_ = done;
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
