#include "runtime/gpu_probe.h"

#include <fmt/format.h>

#include <algorithm>

#ifdef SKYREELS_HAVE_CUDA
#include <cuda_runtime.h>
#include <dlfcn.h>
#endif

namespace sr {

size_t default_device_budget(size_t total_bytes, size_t free_bytes) {
    const size_t margin = std::max<size_t>(size_t(512) << 20, total_bytes / 20);
    return free_bytes > margin ? free_bytes - margin : 0;
}

std::string default_budget_rule() {
    return "free memory less 5% of the device's memory (at least 512 MiB)";
}

#ifndef SKYREELS_HAVE_CUDA

GpuProbe probe_gpus() {
    GpuProbe p;
    p.why_none = "this build has no CUDA backend (configure with -DSKYREELS_CUDA=ON where nvcc is installed)";
    return p;
}

#else

namespace {

std::string cuda_version_text(int v) {
    return fmt::format("CUDA {}.{}", v / 1000, (v % 1000) / 10);
}

}  // namespace

GpuProbe probe_gpus() {
    GpuProbe p;
    p.runtime = cuda_version_text(CUDART_VERSION);
    // The runtime loads the driver library itself and reports a missing one and an old one alike
    // (cudaErrorInsufficientDriver): look for the library first to tell them apart.
    void* driver = ::dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!driver) {
        p.why_none = "no NVIDIA driver installed (libcuda.so.1 not found)";
        return p;
    }
    ::dlclose(driver);
    int driver_version = 0;
    cudaDriverGetVersion(&driver_version);
    if (driver_version > 0) p.driver = cuda_version_text(driver_version);
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error
        if (err == cudaErrorInsufficientDriver)
            p.why_none =
                fmt::format("the NVIDIA driver is too old: it supports {}, this build needs {}; update the driver",
                            p.driver.empty() ? "an older CUDA" : p.driver, p.runtime);
        else if (err == cudaErrorNoDevice)
            p.why_none = "no CUDA GPU found (the driver is installed)";
        else
            p.why_none = fmt::format("the CUDA runtime cannot use the GPUs: {}", cudaGetErrorString(err));
        return p;
    }
    for (int i = 0; i < n; ++i) {
        GpuInfo g;
        g.index = i;
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        g.name = prop.name;
        g.cc_major = prop.major;
        g.cc_minor = prop.minor;
        g.total_bytes = prop.totalGlobalMem;
        size_t free_b = 0, total_b = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
            g.free_bytes = free_b;
        else
            cudaGetLastError();
        g.usable = prop.major >= 8;
        if (!g.usable)
            g.why_not_usable =
                fmt::format("compute capability {}.{}: skyreels needs 8.0 or newer (bf16)", prop.major, prop.minor);
        p.gpus.push_back(std::move(g));
    }
    if (p.gpus.empty()) p.why_none = "no CUDA GPU found";
    return p;
}

#endif

}  // namespace sr
