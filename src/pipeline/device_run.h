// A generation on an accelerator: plans memory (pipeline/memory_plan.h), places weights by the plan
// (DevicePlacement), runs the pipeline on the device's backend, and measures what the plan predicted:
// device memory peak per stage (the device allocator's own counters, not sampling), host memory (anonymous
// vs file-backed, sampled at every progress report), page-locked bytes, bytes moved per step, and the share
// of copy time hidden behind compute.
//
//   sr::DeviceRunReport report;
//   sr::generate_on_device(pipe, device, {.memory = options}, request, progress, sink, {}, &report);
//   fmt::print("{}", report.format());
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/memory_plan.h"

namespace sr {

struct DeviceRunOptions {
    MemoryOptions memory;
    // The simulated device's memory is host memory: take it out of the host figures (it stands for VRAM).
    bool device_memory_is_host = false;
    size_t host_baseline_anon = 0;  // anonymous memory before the models were loaded (read_host_memory().anon)
    // Where a placement kept across jobs lives (a Session's): reused when it was made for this job's memory
    // options and planned reserves, so resident weights are not uploaded again; replaced otherwise. nullptr:
    // a placement for this job alone, every model taken off the device at its end.
    std::unique_ptr<DevicePlacement>* kept_placement = nullptr;
    // A parallel run: the groups this rank splits the job with (pipeline.h).
    ParallelGroups parallel = {};
};

struct DeviceRunReport {
    std::string device;
    MemoryPlan plan;
    std::vector<std::pair<Stage, size_t>> stage_peaks;  // measured device peak per stage
    size_t device_peak = 0;
    size_t pinned_peak = 0;              // page-locked bytes: residency managers (max at once) + the staging ring
    size_t bytes_moved = 0;              // host -> device over the whole run
    double streamed_bytes_per_step = 0;  // a resumed cached run's replayed calls included (pipeline.h)
    int steps = 0;
    double copy_seconds = 0, exposed_seconds = 0;
    size_t host_peak_rss = 0;                       // the kernel's high-water mark (VmHWM), whole process life
    size_t host_peak_anon = 0, host_peak_file = 0;  // sampled at every progress report
    bool device_memory_is_host = false;             // then RSS includes the simulated device's memory
    size_t host_nonreclaimable_peak = 0;            // anonymous memory above the baseline, less simulated device memory
    double hidden_fraction() const { return copy_seconds > 0 ? 1.0 - exposed_seconds / copy_seconds : 1.0; }
    std::string format(const MemoryOptions& options) const;
};

Tensor generate_on_device(const SkyReelsPipeline& pipe, Accelerator& device, const DeviceRunOptions& options,
                          const GenerationRequest& req, const ProgressCallback& progress, const FrameSink& sink,
                          const PipelineHook& hook = {}, DeviceRunReport* report = nullptr);

}  // namespace sr
