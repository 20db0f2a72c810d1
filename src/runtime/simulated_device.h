// A simulated accelerator, so that weight residency (budgets, prefetch order, copy/compute overlap) runs and
// is tested on the CPU. Its memory is its own budgeted arena (an Allocator: exceeding the budget throws
// OutOfMemoryError); host-to-device copies are queued on a copy engine thread that executes them in order at
// a configured bandwidth and latency; kernels run on the CPU backend, on the calling thread.
//
//   sr::SimulatedDevice dev({.memory_budget = 2ull << 30, .bandwidth_bytes_per_s = 25e9});
//   uint64_t ticket = dev.copy_async(dst, src, bytes);   // returns at once
//   dev.wait(ticket);                                     // blocks until that copy (and all before) is done
//
// The copy thread shares the CPU with the backend's OpenMP workers. On a machine with few cores, OpenMP's
// default spin-waiting between parallel regions starves it (measured: 3 s instead of 0.2 s for the
// residency tests on 2 cores); run with OMP_WAIT_POLICY=passive.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "core/allocator.h"

namespace sr {

struct SimulatedDeviceOptions {
    size_t memory_budget = 0;             // bytes of "device memory"; 0 = unlimited
    double bandwidth_bytes_per_s = 25e9;  // PCIe 4.0 x16 from pinned memory; pageable is about half
    double latency_s = 10e-6;             // per copy
};

struct CopyEngineStats {
    uint64_t copies = 0;
    size_t bytes = 0;
    double busy_seconds = 0;  // time the engine spent copying (including simulated transfer time)
    double wait_seconds = 0;  // time callers spent blocked in wait(): copy time NOT hidden behind compute
};

class SimulatedDevice {
public:
    explicit SimulatedDevice(const SimulatedDeviceOptions& options);
    ~SimulatedDevice();
    SimulatedDevice(const SimulatedDevice&) = delete;
    SimulatedDevice& operator=(const SimulatedDevice&) = delete;

    Allocator& memory() { return memory_; }
    // Queues a copy of `bytes` from host `src` to device `dst`; copies run in submission order. The ticket
    // orders later work after it (an event).
    uint64_t copy_async(void* dst, const void* src, size_t bytes);
    void wait(uint64_t ticket);
    bool is_done(uint64_t ticket);
    CopyEngineStats stats();

private:
    struct Job {
        uint64_t ticket;
        void* dst;
        const void* src;
        size_t bytes;
    };
    void run();

    SimulatedDeviceOptions options_;
    HostAllocator memory_;
    std::mutex mutex_;
    std::condition_variable queued_, finished_;
    std::deque<Job> jobs_;
    uint64_t next_ticket_ = 1, done_ticket_ = 0;
    bool stop_ = false;
    CopyEngineStats stats_;
    std::thread worker_;
};

}  // namespace sr
