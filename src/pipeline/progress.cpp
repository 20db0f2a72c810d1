#include "pipeline/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/allocator.h"
#include "core/memory_stats.h"

namespace sr {

ProgressTracker::ProgressTracker(const Allocator* device_memory)
    : device_(device_memory), start_(Clock::now()), stage_start_(start_) {}

ProgressEvent ProgressTracker::update(Stage stage, int done, int total) {
    const auto now = Clock::now();
    // A stage starts with done == 0, or with the units done before this run (pipeline.h); a change of stage
    // starts one too.
    if (stage != stage_ || done == 0) {
        stage_ = stage;
        stage_start_ = now;
        stage_first_ = done;
    }
    ProgressEvent e;
    e.stage = stage;
    e.done = done;
    e.done_before = stage_first_;
    e.total = total;
    e.stage_seconds = std::chrono::duration<double>(now - stage_start_).count();
    e.job_seconds = std::chrono::duration<double>(now - start_).count();
    if (done > stage_first_)
        e.eta_seconds = e.stage_seconds / (done - stage_first_) * double(std::max(0, total - done));
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

const char* stage_unit(Stage stage) {
    switch (stage) {
        case Stage::Loading:
            return "models";
        case Stage::TextEncoding:
            return "prompts";
        case Stage::ImageEncoding:
            return "images";
        case Stage::Denoising:
            return "steps";
        case Stage::Decoding:
            return "frames";
    }
    return "units";
}

namespace {

std::string duration_text(double s) {
    if (s < 0) return "?";
    if (s < 90) return fmt::format("{:.0f} s", s);
    if (s < 5400) return fmt::format("{:.0f} min {:02.0f} s", std::floor(s / 60), std::fmod(s, 60));
    return fmt::format("{:.0f} h {:02.0f} min", std::floor(s / 3600), std::floor(std::fmod(s, 3600) / 60));
}

}  // namespace

Progress::Progress(Mode mode, std::FILE* out, double plain_interval_seconds)
    : mode_(mode), out_(out), plain_interval_(plain_interval_seconds) {}

Progress::Mode Progress::mode_for(std::FILE* out, bool quiet) {
    if (quiet) return Mode::Quiet;
    return is_terminal(out) ? Mode::Live : Mode::Plain;
}

bool Progress::is_terminal(std::FILE* out) {
    return ::isatty(::fileno(out)) == 1;
}

ProgressListener Progress::listener() {
    return [this](const ProgressEvent& e) { update(e); };
}

int Progress::terminal_width() const {
    struct winsize ws {};
    if (::ioctl(::fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    if (const char* c = std::getenv("COLUMNS")) return std::max(20, std::atoi(c));
    return 80;
}

void Progress::close_stage() {
    if (stages_.empty()) return;
    stages_.back().seconds += std::chrono::duration<double>(Clock::now() - stage_start_).count();
    stage_start_ = Clock::now();
}

void Progress::start_video(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = Clock::now();
    if (index > 1) {
        finished_videos_seconds_ += std::chrono::duration<double>(now - video_start_).count();
        finished_videos_ = index - 1;
    }
    video_ = index;
    video_start_ = now;
}

std::string Progress::line_for(const ProgressEvent& e, int width) const {
    std::string s;
    if (videos_ > 1) s += fmt::format("video {}/{} | ", video_, videos_);
    s += fmt::format("{} {}/{} {}", stage_name(e.stage), e.done, e.total, stage_unit(e.stage));
    if (e.done > e.done_before && e.stage != Stage::Loading)
        s += fmt::format(" | {:.2f} s/{} | ETA {}", e.stage_seconds / (e.done - e.done_before),
                         e.stage == Stage::Denoising  ? "step"
                         : e.stage == Stage::Decoding ? "frame"
                                                      : "unit",
                         duration_text(e.eta_seconds));
    if (finished_videos_ > 0 && videos_ > video_) {
        const double per_video = finished_videos_seconds_ / finished_videos_;
        const double this_left =
            std::max(0.0, per_video - std::chrono::duration<double>(Clock::now() - video_start_).count());
        s += fmt::format(" | all videos ETA {}", duration_text(this_left + per_video * (videos_ - video_)));
    }
    s += fmt::format(" | RSS {}", format_bytes(double(e.host_rss)));
    if (e.on_device)
        s += fmt::format(" | device {} (peak {})", format_bytes(double(e.device_in_use)),
                         format_bytes(double(e.device_peak)));
    // Cut to the terminal: a line that wraps cannot be redrawn in place (the stale half stays behind).
    if (width > 0 && int(s.size()) > width - 1) s = s.substr(0, size_t(std::max(0, width - 1)));
    return s;
}

void Progress::clear_locked() {
    if (line_open_) std::fputs("\r\033[K", out_);
    line_open_ = false;
}

void Progress::draw_locked() {
    if (mode_ != Mode::Live || !last_) return;
    std::fprintf(out_, "\r\033[K%s", line_for(*last_, terminal_width()).c_str());
    std::fflush(out_);
    line_open_ = true;
}

void Progress::update(const ProgressEvent& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool new_stage = stages_.empty() || stages_.back().stage != e.stage || e.done == 0;
    if (stages_.empty() || stages_.back().stage != e.stage) {
        close_stage();
        stages_.push_back({e.stage, 0.0, 0});
        stage_start_ = Clock::now();
    }
    stages_.back().units = e.done - e.done_before;
    last_ = e;
    if (mode_ == Mode::Live) {
        draw_locked();
    } else if (mode_ == Mode::Plain) {
        // A line per stage start and end, and every few seconds between: logs stay short and still show life.
        const auto now = Clock::now();
        const bool due = std::chrono::duration<double>(now - last_plain_).count() >= plain_interval_;
        if (new_stage || e.done == e.total || due) {
            std::fprintf(out_, "skyreels: %s\n", line_for(e, 0).c_str());
            std::fflush(out_);
            last_plain_ = now;
        }
    }
}

void Progress::print(const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (mode_ == Mode::Quiet) {
        std::fputs(text.c_str(), out_);
        return;
    }
    clear_locked();
    std::fputs(text.c_str(), out_);
    draw_locked();
}

LogSink Progress::log_sink() {
    return [this](LogLevel, std::string_view line) { print(std::string(line)); };
}

size_t Progress::peak_rss() const {
    return read_host_memory().peak_rss;
}

std::string Progress::finish() {
    std::lock_guard<std::mutex> lock(mutex_);
    close_stage();
    clear_locked();
    last_.reset();
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
    if (mode_ != Mode::Quiet) std::fprintf(out_, "%s\n", text.c_str());
    return text;
}

}  // namespace sr
