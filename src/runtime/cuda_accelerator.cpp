#include "runtime/cuda_accelerator.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "backends/cuda/cuda_check.h"

namespace sr {

CudaAccelerator::CudaAccelerator(const CudaAcceleratorOptions& options)
    : options_(options),
      pinned_(fmt::format("cuda:{} pinned host", options.device)),
      backend_(CudaBackendOptions{options.device, options.memory_budget}),
      ring_(options.staging_chunks, options.staging_chunk_bytes) {
    SR_THROW_IF(options.staging_chunk_bytes == 0 || options.staging_chunks < 2,
                "staging ring needs at least two chunks of nonzero size (got {} x {})", options.staging_chunks,
                options.staging_chunk_bytes);
    backend_.make_current();
    // Non-blocking: no implicit synchronization with the legacy default stream.
    SR_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    worker_ = std::thread([this] { run(); });
}

CudaAccelerator::~CudaAccelerator() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    queued_.notify_all();
    worker_.join();  // issues what is still queued first
    // Teardown: errors are ignored (nothing can be done about them here).
    cudaSetDevice(options_.device);
    cudaStreamSynchronize(copy_stream_);
    cudaStreamSynchronize(backend_.stream());
    for (auto& [t, s] : in_flight_) {
        cudaEventDestroy(s.start);
        cudaEventDestroy(s.end);
    }
    for (auto& [id, e] : compute_events_) cudaEventDestroy(e);
    for (auto& [a, b] : waits_) {
        cudaEventDestroy(a);
        cudaEventDestroy(b);
    }
    for (cudaEvent_t e : spare_timed_) cudaEventDestroy(e);
    for (cudaEvent_t e : spare_plain_) cudaEventDestroy(e);
    for (cudaEvent_t e : slot_events_) cudaEventDestroy(e);
    if (staging_) pinned_.deallocate(staging_, staging_bytes());
    cudaStreamDestroy(copy_stream_);
    cudaGetLastError();
}

std::string CudaAccelerator::name() const {
    cudaDeviceProp prop{};
    const bool ok = cudaGetDeviceProperties(&prop, options_.device) == cudaSuccess;
    if (!ok) cudaGetLastError();
    return fmt::format("{} ({})", backend_.name(), ok ? prop.name : "unknown");
}

// The ring's size whether or not the first staged copy has allocated it yet, as the simulated device reports
// it: the memory plan is made before the run and counts it (for host memory modes other than pageable).
size_t CudaAccelerator::staging_bytes() const {
    return staging_bytes(options_);
}

size_t CudaAccelerator::staging_bytes(const CudaAcceleratorOptions& options) {
    return options.staging_chunk_bytes * size_t(options.staging_chunks);
}

cudaEvent_t CudaAccelerator::take_event_locked(bool timed) {
    auto& spare = timed ? spare_timed_ : spare_plain_;
    if (!spare.empty()) {
        cudaEvent_t e = spare.back();
        spare.pop_back();
        return e;
    }
    cudaEvent_t e = nullptr;
    SR_CUDA_CHECK(cudaEventCreateWithFlags(&e, timed ? cudaEventDefault : cudaEventDisableTiming));
    return e;
}

void CudaAccelerator::give_event_locked(cudaEvent_t e, bool timed) {
    (timed ? spare_timed_ : spare_plain_).push_back(e);
}

void CudaAccelerator::check_worker_error_locked() {
    if (!worker_error_.empty()) throw VendorError("CUDA copy engine: " + worker_error_);
}

uint64_t CudaAccelerator::copy_async(void* dst, const void* src, size_t bytes, CopyPath path, uint64_t after_compute) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_worker_error_locked();
    if (path == CopyPath::Staged && !staging_) {
        staging_ = static_cast<char*>(pinned_.allocate(staging_bytes(), "pinned staging ring"));
        for (int i = 0; i < options_.staging_chunks; ++i) slot_events_.push_back(take_event_locked(false));
    }
    const uint64_t ticket = next_ticket_++;
    jobs_.push_back({ticket, dst, src, bytes, path, after_compute});
    queued_.notify_one();
    return ticket;
}

void CudaAccelerator::run() {
    if (cudaSetDevice(options_.device) != cudaSuccess) cudaGetLastError();
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            queued_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) return;  // stop requested and nothing left
            job = jobs_.front();
            jobs_.pop_front();
        }
        try {
            issue(job);
        } catch (const std::exception& e) {
            // Reported to the caller at its next copy_async / wait / drain; the ticket counts as submitted so
            // that waiters wake up and see the error.
            std::lock_guard<std::mutex> lock(mutex_);
            if (worker_error_.empty()) worker_error_ = e.what();
            submitted_ = job.ticket;
            submitted_cv_.notify_all();
        }
    }
}

void CudaAccelerator::issue(const Job& job) {
    cudaEvent_t start = nullptr, end = nullptr;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        start = take_event_locked(true);
        end = take_event_locked(true);
        // A marker no longer listed has completed (record_compute prunes only completed ones).
        if (job.after_compute != 0)
            if (auto it = compute_events_.find(job.after_compute); it != compute_events_.end())
                SR_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, it->second, 0));
    }
    // The destination may be a block the compute stream used before it was freed and handed out again.
    backend_.memory().order_before_use_on(job.dst, copy_stream_);
    SR_CUDA_CHECK(cudaEventRecord(start, copy_stream_));
    if (job.path != CopyPath::Staged) {
        SR_CUDA_CHECK(cudaMemcpyAsync(job.dst, job.src, job.bytes, cudaMemcpyHostToDevice, copy_stream_));
    } else {
        ring_.for_each_chunk(job.bytes, [&](size_t off, size_t len, int slot, bool wait) {
            char* buf = staging_ + size_t(slot) * ring_.slot_bytes();
            // The slot's previous transfer (of this copy or an earlier one) must have left it before the CPU
            // overwrites it.
            if (wait) SR_CUDA_CHECK(cudaEventSynchronize(slot_events_[size_t(slot)]));
            std::memcpy(buf, static_cast<const char*>(job.src) + off, len);
            SR_CUDA_CHECK(
                cudaMemcpyAsync(static_cast<char*>(job.dst) + off, buf, len, cudaMemcpyHostToDevice, copy_stream_));
            SR_CUDA_CHECK(cudaEventRecord(slot_events_[size_t(slot)], copy_stream_));
        });
    }
    SR_CUDA_CHECK(cudaEventRecord(end, copy_stream_));
    {
        std::lock_guard<std::mutex> lock(mutex_);
        in_flight_[job.ticket] = {start, end};
        submitted_ = job.ticket;
        stats_.copies += 1;
        stats_.bytes += job.bytes;
        if (job.path == CopyPath::Staged) stats_.staged_bytes += job.bytes;
    }
    submitted_cv_.notify_all();
}

void CudaAccelerator::retire_locked(uint64_t up_to) {
    // Copies complete in submission order, so every ticket up to a completed one is complete.
    for (auto it = in_flight_.begin(); it != in_flight_.end() && it->first <= up_to;) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, it->second.start, it->second.end) == cudaSuccess)
            stats_.busy_seconds += double(ms) * 1e-3;
        else
            cudaGetLastError();
        give_event_locked(it->second.start, true);
        give_event_locked(it->second.end, true);
        it = in_flight_.erase(it);
    }
    done_ = std::max(done_, up_to);
}

void CudaAccelerator::wait(uint64_t ticket) {
    if (ticket == 0) return;
    std::unique_lock<std::mutex> lock(mutex_);
    check_worker_error_locked();
    SR_ASSERT(ticket < next_ticket_, "wait for copy ticket {} that was never issued", ticket);
    if (ticket <= done_) return;
    // The host waits only until the copy engine thread has *issued* the copy (an event must be recorded before
    // a stream can wait on it); the compute stream then waits on the device.
    submitted_cv_.wait(lock, [&] { return submitted_ >= ticket || !worker_error_.empty(); });
    check_worker_error_locked();
    auto it = in_flight_.find(ticket);
    if (it == in_flight_.end()) return;  // retired meanwhile: complete
    const cudaStream_t compute = backend_.stream();
    cudaEvent_t before = take_event_locked(true), after = take_event_locked(true);
    SR_CUDA_CHECK(cudaEventRecord(before, compute));
    SR_CUDA_CHECK(cudaStreamWaitEvent(compute, it->second.end, 0));
    SR_CUDA_CHECK(cudaEventRecord(after, compute));
    waits_.emplace_back(before, after);
}

bool CudaAccelerator::is_done(uint64_t ticket) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_worker_error_locked();
    if (ticket <= done_) return true;
    if (submitted_ < ticket) return false;
    auto it = in_flight_.find(ticket);
    if (it == in_flight_.end()) return true;
    const cudaError_t e = cudaEventQuery(it->second.end);
    if (e == cudaErrorNotReady) {
        cudaGetLastError();  // "not ready" is recorded as this thread's last error: clear it
        return false;
    }
    SR_CUDA_CHECK(e);
    retire_locked(ticket);
    return true;
}

void CudaAccelerator::drain() {
    uint64_t target;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        target = next_ticket_ - 1;
        submitted_cv_.wait(lock, [&] { return submitted_ >= target || !worker_error_.empty(); });
        check_worker_error_locked();
    }
    SR_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
    std::lock_guard<std::mutex> lock(mutex_);
    retire_locked(target);
}

uint64_t CudaAccelerator::record_compute() {
    std::lock_guard<std::mutex> lock(mutex_);
    // Markers complete in order on the compute stream: drop the completed ones from the front.
    while (!compute_events_.empty()) {
        auto it = compute_events_.begin();
        const cudaError_t e = cudaEventQuery(it->second);
        if (e == cudaErrorNotReady) {
            cudaGetLastError();
            break;
        }
        SR_CUDA_CHECK(e);
        give_event_locked(it->second, false);
        compute_events_.erase(it);
    }
    cudaEvent_t e = take_event_locked(false);
    SR_CUDA_CHECK(cudaEventRecord(e, backend_.stream()));
    const uint64_t id = next_marker_++;
    compute_events_[id] = e;
    return id;
}

CopyEngineStats CudaAccelerator::stats() {
    drain();
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [before, after] : waits_) {
        float ms = 0;
        if (cudaEventSynchronize(after) == cudaSuccess && cudaEventElapsedTime(&ms, before, after) == cudaSuccess)
            stats_.wait_seconds += double(ms) * 1e-3;
        else
            cudaGetLastError();
        give_event_locked(before, true);
        give_event_locked(after, true);
    }
    waits_.clear();
    return stats_;
}

}  // namespace sr
