// The CUDA accelerator: the residency manager's device on a real GPU (runtime/accelerator.h). Compute runs on
// the CUDA backend's stream; host-to-device copies run in submission order on a separate copy stream, so a
// block's weights upload while the previous block computes. Ordering is by events, never by host waits:
//   wait(ticket)      the compute stream waits for the event recorded after that copy (cudaStreamWaitEvent);
//   record_compute()  records an event on the compute stream; a copy given it as after_compute makes the copy
//                     stream wait for it first, so a ring buffer is refilled only after its last reader ran.
// A copy engine thread issues every copy (keeping submission order across paths): Pinned and Pageable are
// one cudaMemcpyAsync each (pageable memory makes the driver stage it, blocking the thread, not the caller);
// Staged goes through a ring of pinned chunks (default 2 x 32 MiB): the thread memcpys the next chunk of the
// source (e.g. mmap'd safetensors pages) into the next slot while the previous slot transfers, and reuses a
// slot once the event recorded after its transfer has completed. The ring's cursor runs on across copies
// (backends/cuda/staging_ring.h), so consecutive small copies overlap each other's DMA too.
//
//   sr::CudaAccelerator dev({.memory_budget = 12ull << 30});
//   uint64_t t = dev.copy_async(dst, src, bytes, sr::CopyPath::Staged);   // returns at once
//   dev.wait(t);                           // kernels queued after this see the bytes
//   uint64_t c = dev.record_compute();     // after the kernels that read dst
//   dev.copy_async(dst, next, bytes, sr::CopyPath::Pinned, c);   // overwrites dst only after them
//
// stats(): busy_seconds is the copy stream's time per copy (device events around it); wait_seconds is the
// time the compute stream stalled in wait(), measured by events recorded just before and after the wait, i.e.
// copy time not hidden behind compute. stats() waits for the work queued so far to read those events.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backends/cuda/cuda_allocator.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/staging_ring.h"
#include "runtime/accelerator.h"

namespace sr {

struct CudaAcceleratorOptions {
    int device = 0;
    size_t memory_budget = 0;                // device memory for weights and activations; 0 = unlimited
    size_t staging_chunk_bytes = 32u << 20;  // the pinned staging ring for CopyPath::Staged
    int staging_chunks = 2;
};

class CudaAccelerator final : public Accelerator {
public:
    explicit CudaAccelerator(const CudaAcceleratorOptions& options = {});
    ~CudaAccelerator() override;
    CudaAccelerator(const CudaAccelerator&) = delete;
    CudaAccelerator& operator=(const CudaAccelerator&) = delete;

    std::string name() const override;
    Allocator& memory() override { return backend_.memory(); }
    Allocator& pinned_memory() override { return pinned_; }
    Backend& backend() override { return backend_; }
    CudaBackend& cuda() { return backend_; }
    cudaStream_t copy_stream() const { return copy_stream_; }

    uint64_t copy_async(void* dst, const void* src, size_t bytes, CopyPath path = CopyPath::Pinned,
                        uint64_t after_compute = 0) override;
    void wait(uint64_t ticket) override;
    bool is_done(uint64_t ticket) override;
    void drain() override;
    uint64_t record_compute() override;
    CopyEngineStats stats() override;
    size_t staging_bytes() const override;
    // The pinned staging ring `options` make (what staging_bytes() returns once constructed; no GPU needed).
    static size_t staging_bytes(const CudaAcceleratorOptions& options);

private:
    struct Job {
        uint64_t ticket;
        void* dst;
        const void* src;
        size_t bytes;
        CopyPath path;
        uint64_t after_compute;
    };
    struct Submitted {
        cudaEvent_t start, end;  // timed, on the copy stream around the copy; `end` is the ticket's event
    };
    void run();
    void issue(const Job& job);
    void retire_locked(uint64_t up_to);  // tickets <= up_to are known complete
    void check_worker_error_locked();
    cudaEvent_t take_event_locked(bool timed);
    void give_event_locked(cudaEvent_t e, bool timed);

    CudaAcceleratorOptions options_;
    CudaPinnedAllocator pinned_;
    CudaBackend backend_;
    cudaStream_t copy_stream_ = nullptr;

    char* staging_ = nullptr;  // staging_chunks x staging_chunk_bytes of pinned memory
    std::vector<cudaEvent_t> slot_events_;
    StagingRing ring_;  // slot cursor, kept across copies (only the copy thread touches it after construction)

    std::mutex mutex_;
    std::condition_variable queued_, submitted_cv_;
    std::deque<Job> jobs_;
    uint64_t next_ticket_ = 1, submitted_ = 0, done_ = 0;
    std::map<uint64_t, Submitted> in_flight_;         // submitted, not known complete
    std::map<uint64_t, cudaEvent_t> compute_events_;  // record_compute markers not known complete
    uint64_t next_marker_ = 1;
    std::vector<std::pair<cudaEvent_t, cudaEvent_t>> waits_;  // (before, after) on the compute stream
    std::vector<cudaEvent_t> spare_timed_, spare_plain_;
    CopyEngineStats stats_;
    std::string worker_error_;
    bool stop_ = false;
    std::thread worker_;
};

}  // namespace sr
