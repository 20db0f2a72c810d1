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

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/allocator.h"

namespace sr {

class VirtualAllocator final : public Allocator {
public:
    // `device`: the device whose memory this space plans (tensors are tagged with it). `block_bytes`: that
    // device's allocator's rounding (Allocator::block_bytes), charged as the real allocator charges it; null:
    // none.
    explicit VirtualAllocator(std::string name = "virtual", size_t budget_bytes = 0, Device device = Device::cpu(),
                              size_t (*block_bytes)(size_t) = nullptr)
        : Allocator(std::move(name), budget_bytes), device_(device), block_bytes_(block_bytes) {}
    ~VirtualAllocator() override;
    Device device() const override { return device_; }
    size_t block_bytes(size_t bytes) const override { return block_bytes_ ? block_bytes_(bytes) : bytes; }

protected:
    void* raw_allocate(size_t bytes) override;
    void raw_deallocate(void* ptr, size_t bytes) override;

    // Requests at least this large get an address that maps nothing (see raw_allocate).
    static constexpr size_t kUnmappedFromBytes = size_t{1} << 40;  // 1 TiB

private:
    static constexpr size_t kMaxCachedMappings = 1024;  // freed mappings kept for reuse, by size
    Device device_;
    size_t (*block_bytes_)(size_t);
    std::mutex mutex_;
    std::unordered_map<size_t, std::vector<void*>> free_;
    size_t n_free_ = 0;
    uintptr_t next_unmapped_ = 0;  // offset of the next unmapped address in its range
};

}  // namespace sr
