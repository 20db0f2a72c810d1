// What GPUs this machine offers skyreels, and when none, why: for `skyreels devices`, the default device
// (cuda when a usable GPU is present) and the default device budget (free memory less a margin).
//
//   sr::GpuProbe p = sr::probe_gpus();
//   for (auto& g : p.gpus) printf("%s %d.%d %zu free\n", g.name.c_str(), g.cc_major, g.cc_minor, g.free_bytes);
//   if (p.gpus.empty()) puts(p.why_none.c_str());   // "no NVIDIA driver installed (libcuda.so.1 not found)"
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace sr {

struct GpuInfo {
    int index = 0;
    std::string name;
    int cc_major = 0, cc_minor = 0;  // compute capability
    size_t total_bytes = 0, free_bytes = 0;
    bool usable = false;  // compute capability 8.0 or newer (bf16 tensor cores), and this build's archs run it
    std::string why_not_usable;
};

struct GpuProbe {
    std::vector<GpuInfo> gpus;
    std::string driver;   // "CUDA 12.4" (what the installed driver supports), "" when none
    std::string runtime;  // "CUDA 13.0" (this build's runtime), "" without the CUDA backend
    // When gpus is empty: the reason, telling "no driver installed" from "driver too old" from "no GPU" from
    // "this build has no CUDA backend".
    std::string why_none;
};

GpuProbe probe_gpus();

// The device budget used when none is given: free memory less a margin for the CUDA context, libraries'
// workspaces and fragmentation: 5% of the device's memory, at least 512 MiB.
size_t default_device_budget(size_t total_bytes, size_t free_bytes);
std::string default_budget_rule();  // the rule above, in words, for the plan's header

}  // namespace sr
