// A backend whose kernels do nothing: for memory planning (see core/virtual_allocator.h). Models allocate
// their outputs through new_activation() as usual, from the allocator given here, so running a forward on
// it measures the exact activation peak of that forward without computing anything.
#pragma once

#include "backends/backend.h"

namespace sr {

class NullBackend final : public Backend {
public:
    explicit NullBackend(Allocator& activations) : activations_(activations) {}
    std::string name() const override { return "plan"; }
    Device device() const override { return activations_.device(); }
    Allocator& allocator() override { return activations_; }

    void linear(const Tensor&, const Tensor&, const Tensor*, Tensor&) override {}
    void attention(const Tensor&, const Tensor&, const Tensor&, Tensor&, const AttentionMask&, float) override {}
    void layer_norm(const Tensor&, const Tensor*, const Tensor*, float, Tensor&) override {}
    void rms_norm(const Tensor&, const Tensor*, float, Tensor&) override {}
    void rope_interleaved(Tensor&, const Tensor&, const Tensor&) override {}
    void gelu_tanh(const Tensor&, Tensor&) override {}
    void silu(const Tensor&, Tensor&) override {}
    void modulate(const Tensor&, const Tensor&, const Tensor&, Tensor&) override {}
    void gated_residual(Tensor&, const Tensor&, const Tensor&) override {}
    void add(Tensor&, const Tensor&) override {}
    void patch_embed_3d(const Tensor&, const Tensor&, const Tensor*, Tensor&) override {}
    void timestep_embedding(const Tensor&, int, bool, float, float, Tensor&) override {}
    void copy(const Tensor&, Tensor&) override {}
    void conv3d(const Tensor&, const Tensor&, const Tensor*, std::array<int64_t, 3>, std::array<int64_t, 3>,
                Tensor&) override {}
    void pad3d_replicate(const Tensor&, std::array<int64_t, 6>, Tensor&) override {}
    void group_norm(const Tensor&, int64_t, const Tensor*, const Tensor*, float, Tensor&) override {}
    void upsample_nearest3d(const Tensor&, std::array<int64_t, 3>, Tensor&) override {}
    void embedding(const Tensor&, const Tensor&, Tensor&) override {}
    void rope_half(Tensor&, const Tensor&, const Tensor&) override {}
    void quick_gelu(const Tensor&, Tensor&) override {}
    void mul(Tensor&, const Tensor&) override {}

private:
    Allocator& activations_;
};

}  // namespace sr
