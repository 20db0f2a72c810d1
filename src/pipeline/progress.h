// A one-line terminal progress display for the pipeline: the stage, step i/N, seconds per step, ETA and
// memory (resident and peak), redrawn in place on stderr. Quiet when stderr is not a terminal or when asked
// to be; the closing summary (time per stage, peak memory) is printed either way unless quiet.
//
//   sr::Progress progress(sr::Progress::auto_enabled(quiet));
//   pipe.generate(be, req, progress.callback(), sink);
//   progress.finish();   // "text encoding 0.1 s | denoising 2.3 s | decoding 0.4 s | peak RSS 412 MiB"
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/pipeline.h"

namespace sr {

class Progress {
public:
    // live: redraw a progress line; summary: print the summary at finish().
    Progress(bool live, bool summary, std::FILE* out = stderr);
    // live when `out` is a terminal and not quiet.
    static bool is_terminal(std::FILE* out = stderr);

    ProgressCallback callback();
    // Also show this device's memory (in use and peak) on the line and in the summary.
    void show_device_memory(const Allocator* device_memory) { device_ = device_memory; }
    void update(Stage stage, int done, int total);
    // Ends the current stage; prints the summary. Returns it (also when not printed).
    std::string finish();

    struct StageTime {
        sr::Stage stage;
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
    Clock::time_point stage_start_, last_unit_;
    int last_done_ = 0;
    bool line_open_ = false;
    const Allocator* device_ = nullptr;
};

}  // namespace sr
