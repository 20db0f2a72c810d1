// `skyreels devices`: the GPUs this machine offers (name, memory, compute capability, driver), or why there
// is none, and the default --vram-budget each would get.
#include <cstdio>

#include "core/allocator.h"
#include "runtime/gpu_probe.h"
#include "tools/skyreels/commands.h"

namespace sr::cli {

Command add_devices_command(CLI::App& app) {
    app.add_subcommand("devices", "List the GPUs skyreels can use (or why none), with memory and the default budget");
    return [] {
        const GpuProbe p = probe_gpus();
        if (!p.runtime.empty())
            std::printf("CUDA runtime: %s; driver: %s\n", p.runtime.c_str(),
                        p.driver.empty() ? "none" : p.driver.c_str());
        if (p.gpus.empty()) {
            std::printf("no usable GPU: %s\n", p.why_none.c_str());
            std::printf("--device cpu runs everything on the CPU; --device sim simulates an accelerator there\n");
            return 0;
        }
        for (const GpuInfo& g : p.gpus) {
            std::printf("cuda:%d  %s  compute capability %d.%d  %s total, %s free, default --vram-budget %s%s%s\n",
                        g.index, g.name.c_str(), g.cc_major, g.cc_minor, format_bytes(double(g.total_bytes)).c_str(),
                        format_bytes(double(g.free_bytes)).c_str(),
                        format_bytes(double(default_device_budget(g.total_bytes, g.free_bytes))).c_str(),
                        g.usable ? "" : "  NOT USABLE: ", g.usable ? "" : g.why_not_usable.c_str());
        }
        return 0;
    };
}

}  // namespace sr::cli
