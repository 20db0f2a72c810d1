// CPU ops of the causal 3-D VAE: convolution (oneDNN), replicate padding, group norm, nearest upsampling.
#include "backends/cpu/cpu_backend.h"

namespace sr {

void CpuBackend::conv3d(const Tensor&, const Tensor&, const Tensor*, std::array<int64_t, 3>, std::array<int64_t, 3>,
                        Tensor&) {
    throw VendorError("conv3d: not implemented on the CPU backend yet");
}

void CpuBackend::pad3d_replicate(const Tensor&, std::array<int64_t, 6>, Tensor&) {
    throw VendorError("pad3d_replicate: not implemented on the CPU backend yet");
}

void CpuBackend::group_norm(const Tensor&, int64_t, const Tensor*, const Tensor*, float, Tensor&) {
    throw VendorError("group_norm: not implemented on the CPU backend yet");
}

void CpuBackend::upsample_nearest3d(const Tensor&, std::array<int64_t, 3>, Tensor&) {
    throw VendorError("upsample_nearest3d: not implemented on the CPU backend yet");
}

}  // namespace sr
