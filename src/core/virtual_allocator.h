// Address space without memory: allocations are reserved but never backed until touched (mmap with
// MAP_NORESERVE), counted and peak-tracked like any Allocator. Memory planning runs a model's real control
// flow on it with a backend whose kernels do nothing (backends/null_backend.h): every activation and weight
// is "allocated" at its true size, so the peak is exact, yet nothing is computed, read or resident.
//
//   sr::VirtualAllocator space("plan");
//   sr::NullBackend be(space);
//   model.forward(be, inputs);          // runs in milliseconds
//   space.peak_bytes();                  // the activations' peak, to the byte
#pragma once

#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/allocator.h"

namespace sr {

class VirtualAllocator final : public Allocator {
public:
    // `device`: the device whose memory this space plans (tensors are tagged with it).
    explicit VirtualAllocator(std::string name = "virtual", size_t budget_bytes = 0, Device device = Device::cpu())
        : Allocator(std::move(name), budget_bytes), device_(device) {}
    ~VirtualAllocator() override;
    Device device() const override { return device_; }

protected:
    void* raw_allocate(size_t bytes) override;
    void raw_deallocate(void* ptr, size_t bytes) override;

private:
    static constexpr size_t kMaxCachedMappings = 1024;  // freed mappings kept for reuse, by size
    Device device_;
    std::mutex mutex_;
    std::unordered_map<size_t, std::vector<void*>> free_;
    size_t n_free_ = 0;
};

}  // namespace sr
