// The simulated device's kernels: the CPU backend's, run only on tensors in the device's memory, as a GPU's
// would be. Every op first checks that each tensor it is given lives on the device (an op may copy between
// the host and the device, and, as on CUDA, take token ids from the host), then runs the CPU kernel inside
// a DeviceCodeScope, the only place host code may touch simulated device memory (core/tensor.h). So a model
// or pipeline step that hands a host tensor to a kernel, or reads a device tensor on the host, fails in CI
// with an error naming the tensor, instead of crashing on the first GPU it meets.
#pragma once

#include "backends/cpu/cpu_backend.h"

namespace sr {

class SimulatedKernels final : public Backend {
public:
    // `memory`: the device's memory (its tensors are tagged with the device); activations come from it.
    explicit SimulatedKernels(Allocator& memory) : cpu_(&memory), memory_(memory) {}
    std::string name() const override { return "sim"; }
    Device device() const override { return memory_.device(); }
    Allocator& allocator() override { return memory_; }
    // The CPU backend underneath (its GEMM precision is the simulated device's).
    CpuBackend& cpu() { return cpu_; }

    // Checks where every tensor argument lives (OpTensorArg::host_ok: also the host), then runs the CPU
    // kernel inside a DeviceCodeScope.
    void run(const OpCall& op) override;

private:
    CpuBackend cpu_;
    Allocator& memory_;
};

}  // namespace sr
