// Progress of a job, as events for callbacks, and a one-line terminal display that is one consumer of them.
//
// ProgressTracker turns the pipeline's (stage, done, total) reports into ProgressEvents: the stage's elapsed
// time and ETA (from its mean time per unit so far), the job's elapsed time, device memory in use and peak
// when the job runs on an accelerator, and host RSS. Progress draws them on stderr as one line redrawn in
// place (quiet when stderr is not a terminal or when asked to be) and prints a closing summary (time per
// stage, peak memory) unless quiet.
//
//   sr::ProgressTracker tracker(device ? &device->memory() : nullptr);
//   sr::Progress line(sr::Progress::is_terminal(), true);
//   pipe.generate(be, req, [&](sr::Stage s, int done, int total) { line.update(tracker.update(s, done, total)); },
//                 sink);
//   line.finish();   // "done: text encoding 0.10 s | denoising 2.30 s (0.38 s/step) | ... | peak RSS 412 MiB"
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/log.h"
#include "pipeline/pipeline.h"

namespace sr {

struct ProgressEvent {
    Stage stage = Stage::Loading;
    int done = 0, total = 0;   // units of the stage: steps while denoising, frames while decoding
    int done_before = 0;       // of them, done before this run (a resumed loop's steps): not timed here
    double stage_seconds = 0;  // since the stage began
    double eta_seconds = -1;   // the stage's remaining time at its mean time per unit; -1 before the first unit
    double job_seconds = 0;    // since the tracker was made (the job's, or the load's, start)
    bool on_device = false;    // the job runs on an accelerator: the device figures are set
    size_t device_in_use = 0;  // device memory now
    size_t device_peak = 0;    // the device allocator's peak (a device run resets it at each stage)
    size_t host_rss = 0, host_peak_rss = 0;
};
using ProgressListener = std::function<void(const ProgressEvent&)>;

class ProgressTracker {
public:
    // `device_memory`: the accelerator's memory, whose figures go into every event (nullptr: none).
    explicit ProgressTracker(const Allocator* device_memory = nullptr);
    ProgressEvent update(Stage stage, int done, int total);

private:
    using Clock = std::chrono::steady_clock;
    const Allocator* device_;
    Clock::time_point start_, stage_start_;
    std::optional<Stage> stage_;
    int stage_first_ = 0;  // the stage's first report's done: the units done before it began
};

// The progress display of a front end. On a terminal (Live) one line is redrawn in place, cut to the
// terminal's width; elsewhere (Plain: logs, nohup, Slurm) a plain line is printed when a stage starts or ends
// and every few seconds between; Quiet prints nothing. Messages go through print() (and log lines through
// log_sink()), which clear the live line first and redraw it after, so nothing is ever glued onto it.
//
//   sr::Progress progress(sr::Progress::mode_for(stderr, quiet));
//   sr::LogSinkScope logs(progress.log_sink());
//   progress.set_videos(2); progress.start_video(1);
//   ... session.generate(req, {.progress = progress.listener()});
//   progress.print("wrote a.mp4\n");
//   progress.finish();   // "done: text encoding 0.10 s | denoising 2.30 s (0.38 s/step) | ... | peak RSS 412 MiB"
class Progress {
public:
    enum class Mode { Quiet, Live, Plain };
    explicit Progress(Mode mode, std::FILE* out = stderr, double plain_interval_seconds = 5.0);
    // Live on a terminal, Plain elsewhere, Quiet when asked.
    static Mode mode_for(std::FILE* out, bool quiet);
    static bool is_terminal(std::FILE* out = stderr);

    ProgressListener listener();
    void update(const ProgressEvent& event);
    // Videos in this run and the one starting (1-based): shown as "video i/N", and the overall ETA counts the
    // videos still to come at the time the finished ones took.
    void set_videos(int total) { videos_ = total; }
    void start_video(int index);
    // Prints `text` (whole lines) above the progress line, never onto it.
    void print(const std::string& text);
    LogSink log_sink();
    // Also name this device's memory in use in the summary (the line takes it from the events).
    void show_device_memory(const Allocator* device_memory) { device_ = device_memory; }
    // Ends the current stage; prints the summary unless Quiet. Returns it.
    std::string finish();
    size_t peak_rss() const;

    struct StageTime {
        Stage stage;
        double seconds = 0;
        int units = 0;  // done in this run
    };
    const std::vector<StageTime>& stages() const { return stages_; }

    // The text of the progress line for `e` (tests check it), cut to `width` columns when width > 0.
    std::string line_for(const ProgressEvent& e, int width) const;

private:
    using Clock = std::chrono::steady_clock;
    void close_stage();
    void draw_locked();
    void clear_locked();
    int terminal_width() const;
    Mode mode_;
    std::FILE* out_;
    double plain_interval_;
    std::vector<StageTime> stages_;
    Clock::time_point stage_start_, last_plain_{};
    std::optional<ProgressEvent> last_;
    bool line_open_ = false;
    const Allocator* device_ = nullptr;
    int videos_ = 1, video_ = 1;
    Clock::time_point video_start_ = Clock::now();
    double finished_videos_seconds_ = 0;  // the videos done so far, for the overall ETA
    int finished_videos_ = 0;
    mutable std::mutex mutex_;
};

// What a stage counts: "models", "prompts", "images", "steps", "frames".
const char* stage_unit(Stage stage);

}  // namespace sr
