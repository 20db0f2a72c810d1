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
    void run(const OpCall&) override {}

private:
    Allocator& activations_;
};

}  // namespace sr
