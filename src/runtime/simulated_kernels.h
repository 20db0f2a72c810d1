// The simulated device's kernels: the CPU backend's, run only on tensors in the device's memory, as a GPU's
// would be. Every op first checks that each tensor it is given lives on the device (an op may copy between
// the host and the device, and, as on CUDA, take token ids from the host), then runs the CPU kernel inside
// a DeviceCodeScope, the only place host code may touch simulated device memory (core/tensor.h). So a model
// or pipeline step that hands a host tensor to a kernel, or reads a device tensor on the host, fails in CI
// with an error naming the tensor, instead of crashing on the first GPU it meets.
#pragma once

#include <initializer_list>

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

    void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) override;
    void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionMask& mask,
                   float scale) override;
    void layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps, Tensor& y) override;
    void rms_norm(const Tensor& x, const Tensor* weight, float eps, Tensor& y) override;
    void rope_interleaved(Tensor& x, const Tensor& cos, const Tensor& sin) override;
    void gelu_tanh(const Tensor& x, Tensor& y) override;
    void silu(const Tensor& x, Tensor& y) override;
    void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) override;
    void gated_residual(Tensor& x, const Tensor& y, const Tensor& gate) override;
    void add(Tensor& x, const Tensor& y) override;
    void patch_embed_3d(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) override;
    void timestep_embedding(const Tensor& t, int dim, bool flip_sin_to_cos, float downscale_freq_shift,
                            float max_period, Tensor& y) override;
    void copy(const Tensor& src, Tensor& dst) override;
    void conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, std::array<int64_t, 3> stride,
                std::array<int64_t, 3> padding, Tensor& y) override;
    void pad3d_replicate(const Tensor& x, std::array<int64_t, 6> pads, Tensor& y) override;
    void group_norm(const Tensor& x, int64_t groups, const Tensor* weight, const Tensor* bias, float eps,
                    Tensor& y) override;
    void upsample_nearest3d(const Tensor& x, std::array<int64_t, 3> scale, Tensor& y) override;
    void embedding(const Tensor& ids, const Tensor& table, Tensor& y) override;
    void rope_half(Tensor& x, const Tensor& cos, const Tensor& sin) override;
    void quick_gelu(const Tensor& x, Tensor& y) override;
    void mul(Tensor& x, const Tensor& y) override;

private:
    // A tensor argument of `op`, by name; null pointers and undefined tensors are absent optional arguments.
    struct Arg {
        const char* name;
        const Tensor* tensor;
    };
    void check_on_device(const char* op, std::initializer_list<Arg> args) const;

    CpuBackend cpu_;
    Allocator& memory_;
};

}  // namespace sr
