// A simulated accelerator, so that weight residency (budgets, prefetch order, copy/compute overlap, host
// memory modes) runs and is tested on the CPU. Its memory is its own budgeted arena (exceeding the budget
// throws OutOfMemoryError), tagged as a device of its own (DeviceType::Simulated) so that host code cannot
// touch it; its kernels are the CPU backend's, run only on tensors in that arena (simulated_kernels.h), with
// activations from it, so they count against the budget like on a GPU; host-to-device copies are queued on a copy
// engine thread that executes them in order, taking as long as the configured bandwidth and latency say:
//   Pinned   latency + bytes / bandwidth                        (default 25 GB/s: PCIe 4.0 x16, pinned)
//   Pageable latency + bytes / pageable bandwidth               (default half of that, as measured on PCIe 4)
//   Staged   per chunk of the pinned staging ring: max(the real CPU copy into the chunk,
//            latency + chunk / bandwidth), i.e. two chunks in flight, filling one while the other transfers.
//
//   sr::SimulatedDevice dev({.memory_budget = 2ull << 30});
//   uint64_t ticket = dev.copy_async(dst, src, bytes, sr::CopyPath::Pinned);   // returns at once
//   dev.wait(ticket);                                                          // until that copy is done
//
// Kernels run on the calling thread, so compute is synchronous and wait() blocks the host. The copy thread
// shares the CPU with the backend's OpenMP workers; on a machine with few cores, OpenMP's default
// spin-waiting starves it (measured: 3 s instead of 0.2 s for the residency tests on 2 cores): run with
// OMP_WAIT_POLICY=passive (the CLI sets it for --device sim).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "core/allocator.h"
#include "runtime/accelerator.h"
#include "runtime/simulated_kernels.h"

namespace sr {

struct SimulatedDeviceOptions {
    size_t memory_budget = 0;             // bytes of "device memory"; 0 = unlimited
    double bandwidth_bytes_per_s = 25e9;  // host-to-device from pinned memory; 0 = as fast as memcpy
    double pageable_bandwidth_bytes_per_s = 12.5e9;
    double latency_s = 10e-6;                // per copy (per chunk when staged)
    size_t staging_chunk_bytes = 16u << 20;  // the pinned staging ring: two chunks of this
};

// Page-locked host memory is resident from the moment it is allocated (cudaHostAlloc faults in and locks
// every page): the simulation maps it with MAP_POPULATE, so host memory figures count it whole.
class SimulatedPinnedAllocator final : public Allocator {
public:
    SimulatedPinnedAllocator() : Allocator("pinned host", 0) {}
    Device device() const override { return Device::cpu(); }

protected:
    void* raw_allocate(size_t bytes) override;
    void raw_deallocate(void* ptr, size_t bytes) override;
};

class SimulatedDevice final : public Accelerator {
public:
    explicit SimulatedDevice(const SimulatedDeviceOptions& options = {});
    ~SimulatedDevice() override;
    SimulatedDevice(const SimulatedDevice&) = delete;
    SimulatedDevice& operator=(const SimulatedDevice&) = delete;

    std::string name() const override { return "sim"; }
    Allocator& memory() override { return memory_; }
    Allocator& pinned_memory() override { return pinned_; }
    Backend& backend() override { return backend_; }
    SimulatedKernels& kernels() { return backend_; }
    uint64_t copy_async(void* dst, const void* src, size_t bytes, CopyPath path = CopyPath::Pinned,
                        uint64_t after_compute = 0) override;
    void wait(uint64_t ticket) override;
    bool is_done(uint64_t ticket) override;
    void drain() override;
    uint64_t record_compute() override { return 0; }  // compute is synchronous with the host
    CopyEngineStats stats() override;
    size_t staging_bytes() const override;
    const SimulatedDeviceOptions& options() const { return options_; }

private:
    struct Job {
        uint64_t ticket;
        void* dst;
        const void* src;
        size_t bytes;
        CopyPath path;
    };
    void run();
    void transfer(const Job& job);

    SimulatedDeviceOptions options_;
    HostAllocator memory_;
    SimulatedPinnedAllocator pinned_;
    SimulatedKernels backend_;
    void* staging_ = nullptr;  // 2 x staging_chunk_bytes of pinned memory, allocated at the first staged copy
    std::mutex mutex_;
    std::condition_variable queued_, finished_;
    std::deque<Job> jobs_;
    uint64_t next_ticket_ = 1, done_ticket_ = 0;
    bool stop_ = false;
    CopyEngineStats stats_;
    std::thread worker_;
};

}  // namespace sr
