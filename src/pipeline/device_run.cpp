#include "pipeline/device_run.h"

#include <algorithm>
#include <optional>

#include "core/memory_stats.h"

namespace sr {

Tensor generate_on_device(const SkyReelsPipeline& pipe, Accelerator& device, const DeviceRunOptions& options,
                          const GenerationRequest& req, const ProgressCallback& progress, const FrameSink& sink,
                          const PipelineHook& hook, DeviceRunReport* report) {
    DeviceRunReport local;
    DeviceRunReport& r = report ? *report : local;
    r = DeviceRunReport{};
    r.device = device.name();
    r.device_memory_is_host = options.device_memory_is_host;
    r.plan = plan_memory(pipe, req, options.memory, PlanTarget::of(device));
    device.pinned_memory().reset_peak();
    Allocator& mem = device.memory();
    SR_THROW_IF(options.memory.vram_budget && mem.budget_bytes() != options.memory.vram_budget,
                "the device's memory budget ({}) differs from --vram-budget ({})",
                format_bytes(double(mem.budget_bytes())), format_bytes(double(options.memory.vram_budget)));
    std::unique_ptr<DevicePlacement> local_placement;
    std::unique_ptr<DevicePlacement>& kept = options.kept_placement ? *options.kept_placement : local_placement;
    const MemoryOptions& m = options.memory;
    if (kept && !(kept->reserves() == r.plan.reserves && kept->options().offload == m.offload &&
                  kept->options().vram_budget == m.vram_budget && kept->options().host_memory == m.host_memory &&
                  kept->options().pinned_budget == m.pinned_budget && kept->options().prefetch == m.prefetch))
        kept.reset();  // made for another plan: its models leave the device first
    if (!kept) kept = std::make_unique<DevicePlacement>(device, pipe.components(), m, r.plan.reserves);
    DevicePlacement& placement = *kept;
    const CopyEngineStats copies_before = device.stats();

    auto sample_host = [&] {
        const HostMemory h = read_host_memory();
        r.host_peak_rss = std::max(r.host_peak_rss, h.peak_rss);  // the kernel's high-water mark
        r.host_peak_anon = std::max(r.host_peak_anon, h.anon);
        r.host_peak_file = std::max(r.host_peak_file, h.file);
        const size_t device_in_host = options.device_memory_is_host ? mem.in_use_bytes() : 0;
        const size_t anon = h.anon - std::min(h.anon, device_in_host);
        r.host_nonreclaimable_peak =
            std::max(r.host_nonreclaimable_peak, anon - std::min(anon, options.host_baseline_anon));
    };
    // Stages are told apart by the progress reports (each stage starts with a report of its own).
    std::optional<Stage> stage;
    auto close_stage = [&] {
        if (stage) r.stage_peaks.emplace_back(*stage, mem.peak_bytes());
        r.device_peak = std::max(r.device_peak, mem.peak_bytes());
    };
    auto on_progress = [&](Stage name, int done, int total) {
        if (name != stage) {
            close_stage();
            stage = name;
            mem.reset_peak();
        }
        sample_host();
        if (name == Stage::Denoising) r.steps = done - req.start_step;  // run here (a resumed loop ran fewer)
        if (progress) progress(name, done, total);
    };
    mem.reset_peak();
    Tensor latents = pipe.generate(device.backend(), req, on_progress, sink, hook, &placement, options.parallel);
    sample_host();
    close_stage();
    device.drain();
    const CopyEngineStats copies = device.stats();
    r.copy_seconds = copies.busy_seconds - copies_before.busy_seconds;
    r.exposed_seconds = copies.wait_seconds - copies_before.wait_seconds;
    const PlacementStats ps = options.kept_placement ? placement.take_job_stats() : placement.finish();
    r.bytes_moved = ps.bytes_moved;
    r.streamed_bytes_per_step = r.steps ? double(ps.transformer_streamed_bytes) / r.steps : 0;
    r.pinned_peak = device.pinned_memory().peak_bytes();  // the allocator's own count: managers + staging ring
    return latents;
}

std::string DeviceRunReport::format(const MemoryOptions& options) const {
    auto b = [](double n) { return format_bytes(n); };
    std::string s = fmt::format("memory report: device {}, --offload {}, --host-memory {}\n", device,
                                offload_mode_name(options.offload), host_memory_mode_name(options.host_memory));
    s += fmt::format("  {:<16} {:>12} {:>12}\n", "device peak", "planned", "measured");
    for (const auto& [name, peak] : stage_peaks) {
        size_t planned = 0;
        for (const auto& st : plan.stages)
            if (st.name == name) planned = st.device_peak();
        s += fmt::format("  {:<16} {:>12} {:>12}\n", stage_name(name), b(double(planned)), b(double(peak)));
    }
    s += fmt::format("  {:<16} {:>12} {:>12}\n", "whole run", b(double(plan.device_peak())), b(double(device_peak)));
    s += fmt::format("  page-locked host memory: planned {}, measured {}\n", b(double(plan.pinned_bytes)),
                     b(double(pinned_peak)));
    s += fmt::format(
        "  host: peak RSS {}{} (sampled peaks: anonymous {}, file-backed {}); non-reclaimable above baseline: "
        "planned {}, measured {}\n",
        b(double(host_peak_rss)), device_memory_is_host ? " with the simulated device memory" : "",
        b(double(host_peak_anon)), b(double(host_peak_file)), b(double(plan.host_nonreclaimable())),
        b(double(host_nonreclaimable_peak)));
    s += fmt::format("  host -> device: {} in all, {} per denoising step (planned {})\n", b(double(bytes_moved)),
                     b(streamed_bytes_per_step), b(double(plan.streamed_bytes_per_step)));
    if (plan.side_path_bytes > 0)
        s += fmt::format("  LoRA side paths: {} resident (uploaded once, not per step)\n",
                         b(double(plan.side_path_bytes)));
    s +=
        fmt::format("  copy time hidden behind compute: {:.0f}% (copy engine busy {:.3f} s, compute waited {:.3f} s)\n",
                    100.0 * hidden_fraction(), copy_seconds, exposed_seconds);
    return s;
}

}  // namespace sr
