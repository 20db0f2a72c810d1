// Devices and budgeted allocators.
//
// Every tensor's memory comes from an Allocator, which enforces a byte budget (an allocation past it throws
// OutOfMemoryError naming what was asked for, the budget and what is in use) and records the peak. The
// residency manager and the memory report read these counters.
//
//   sr::HostAllocator arena("activations", 2ull << 30);   // 2 GiB budget
//   void* p = arena.allocate(bytes, "attention scratch");
//   arena.deallocate(p, bytes);  arena.peak_bytes();
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace sr {

class BlockCache;

// Simulated: host memory that stands for an accelerator's (runtime/simulated_device.h). Host code may not
// touch it outside a backend's kernels (core/tensor.h, DeviceCodeScope), so CI catches host reads and writes
// of device tensors that would crash, or silently read garbage, on a GPU.
enum class DeviceType : uint8_t { CPU, CUDA, Simulated };

struct Device {
    DeviceType type = DeviceType::CPU;
    int index = 0;
    bool operator==(const Device&) const = default;
    std::string name() const;
    static Device cpu() { return {}; }
};

class Allocator {
public:
    explicit Allocator(std::string name, size_t budget_bytes);
    virtual ~Allocator() = default;
    Allocator(const Allocator&) = delete;
    Allocator& operator=(const Allocator&) = delete;

    virtual Device device() const = 0;
    // The bytes a request of `bytes` holds (and is charged) when served by a new block: more than `bytes` where
    // the allocator rounds (the CUDA caching allocator's blocks). Plans size their buffers with it.
    virtual size_t block_bytes(size_t bytes) const { return bytes; }
    // Throws OutOfMemoryError when the budget would be exceeded. `what` names the request in that error.
    void* allocate(size_t bytes, std::string_view what);
    void deallocate(void* ptr, size_t bytes);

    const std::string& name() const { return name_; }
    size_t budget_bytes() const { return budget_; }  // 0 = unlimited
    void set_budget_bytes(size_t b) { budget_ = b; }
    size_t in_use_bytes() const { return in_use_.load(); }
    size_t peak_bytes() const { return peak_.load(); }
    void reset_peak() { peak_.store(in_use_.load()); }
    // Raises the peak to `bytes` (if below): where a plan counts a run it knows the peak of instead of
    // repeating it.
    void note_peak(size_t bytes);
    // Gives the free blocks an allocator keeps for reuse back to the system (nothing where it keeps none).
    virtual void release_cached() {}

protected:
    virtual void* raw_allocate(size_t bytes) = 0;  // nullptr on failure
    virtual void raw_deallocate(void* ptr, size_t bytes) = 0;
    // For allocators that serve a request with a larger block (rounding, a reused cached block): raw_allocate
    // charges the block's bytes beyond the request to the budget and the in-use count (false, nothing counted,
    // when that would pass the budget), and raw_deallocate gives them back.
    bool charge_extra(size_t extra);
    void uncharge_extra(size_t extra);

private:
    std::string name_;
    size_t budget_;
    std::atomic<size_t> in_use_{0};
    std::atomic<size_t> peak_{0};
};

// Host memory, 64-byte aligned (AVX-512 lines). Requests under 1 MiB come from malloc. Larger ones are
// blocks of whole pages mapped from the kernel (map_pages), and a freed block is kept for the next request
// of its size (core/block_cache.h's bookkeeping: a reused block at most 1/8 larger). A forward allocates
// the same shapes block after block and step after step, and a fresh mapping faults in and zeroes every page
// on its first write: on the medium bf16 forward, 24k page faults a forward without reuse, about 1k with it
// (docs/BENCHMARKS.md). What is kept is bounded by the resident set's high-water mark: live and kept block
// bytes together stay within the most block bytes live at once since the last release_cached(), plus half
// of that and at most 64 MiB of headroom (without any, the requests made near the peak kept finding the
// other sizes' blocks given back: 11k faults a forward); a miss first unmaps the kept blocks that would pass
// it. release_cached() unmaps them all and resets the mark (the pipeline calls it after each stage).
class HostAllocator final : public Allocator {
public:
    // `device`: the device its tensors are tagged with (the simulated device's arena is host memory too).
    explicit HostAllocator(std::string name = "host", size_t budget_bytes = 0, Device device = Device::cpu());
    ~HostAllocator() override;
    Device device() const override { return device_; }

    void release_cached() override;
    size_t cached_bytes() const;     // kept free blocks
    size_t mapped_bytes() const;     // live and kept blocks
    uint64_t reused_blocks() const;  // requests served by a kept block

protected:
    void* raw_allocate(size_t bytes) override;
    void raw_deallocate(void* ptr, size_t bytes) override;

private:
    Device device_;
    mutable std::mutex mutex_;
    std::unique_ptr<BlockCache> blocks_;  // the mapped blocks, live and kept
    size_t high_water_ = 0;               // most block bytes live at once since the last release_cached()
    uint64_t reused_ = 0;
};

// Anonymous memory straight from the kernel (page-aligned), for allocators whose frees must give memory
// back at once: Lazy pages are backed when first touched; NoReserve also skips the commit charge (address
// space for planning); Populate faults every page in at once (what page-locked memory is). nullptr on failure.
enum class PageMapping { Lazy, NoReserve, Populate };
void* map_pages(size_t bytes, PageMapping how);
void unmap_pages(void* ptr, size_t bytes);

// The process-wide host allocator used when none is given (unlimited budget, peak tracked); while a
// HostPlanningScope lives on the calling thread, that scope's allocator instead.
Allocator& host_allocator();

// Memory planning (pipeline/memory_plan.h) runs the real control flow on a backend that computes nothing.
// While a HostPlanningScope lives on a thread, host tensors made there come from `space` (address space
// only: core/virtual_allocator.h), and the host loops whose values steer no size (noise, RoPE tables, tile
// blending, CFG and scheduler arithmetic) skip their arithmetic: they ask host_values_skipped(). A plan then
// takes the same time and touches the same little memory at any video size. Small host values that the
// control flow does read (token masks) are still computed. Scopes nest; OpenMP workers are not affected.
class HostPlanningScope {
public:
    explicit HostPlanningScope(Allocator& space);
    ~HostPlanningScope();
    HostPlanningScope(const HostPlanningScope&) = delete;
    HostPlanningScope& operator=(const HostPlanningScope&) = delete;

private:
    Allocator* outer_;
};
bool host_values_skipped();

// "1.50 GiB", "512 B": for reports and error messages.
std::string format_bytes(double bytes);
// Parses "12G", "512M", "1.5GiB", "4096" (bytes). Throws InputError naming `what` on bad input.
size_t parse_bytes(std::string_view text, std::string_view what);

}  // namespace sr
