// CUDA device discovery through the runtime API (never the driver library, so binaries still start on
// machines without a GPU). The CUDA backend's ops build on this file's helpers.
#include <cuda_runtime.h>

#include "backends/cuda/cuda_device.h"

namespace sr {

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return n;
}

std::string cuda_device_name(int index) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) return "unknown";
    return prop.name;
}

}  // namespace sr
