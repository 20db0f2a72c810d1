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
#include <optional>
#include <string>
#include <vector>

#include "pipeline/pipeline.h"

namespace sr {

struct ProgressEvent {
    Stage stage = Stage::Loading;
    int done = 0, total = 0;   // units of the stage: steps while denoising, frames while decoding
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
};

class Progress {
public:
    // live: redraw a progress line; summary: print the summary at finish().
    Progress(bool live, bool summary, std::FILE* out = stderr);
    // live when `out` is a terminal and not quiet.
    static bool is_terminal(std::FILE* out = stderr);

    ProgressListener listener();
    void update(const ProgressEvent& event);
    // Also name this device's memory in use in the summary (the line takes it from the events).
    void show_device_memory(const Allocator* device_memory) { device_ = device_memory; }
    // Ends the current stage; prints the summary. Returns it (also when not printed).
    std::string finish();

    struct StageTime {
        Stage stage;
        double seconds = 0;
        int units = 0;
    };
    const std::vector<StageTime>& stages() const { return stages_; }

private:
    using Clock = std::chrono::steady_clock;
    void close_stage();
    bool live_, summary_;
    std::FILE* out_;
    std::vector<StageTime> stages_;
    Clock::time_point stage_start_;
    bool line_open_ = false;
    const Allocator* device_ = nullptr;
};

}  // namespace sr
