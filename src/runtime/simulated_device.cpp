#include "runtime/simulated_device.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace sr {

const char* copy_path_name(CopyPath path) {
    switch (path) {
        case CopyPath::Pinned:
            return "pinned";
        case CopyPath::Pageable:
            return "pageable";
        case CopyPath::Staged:
            return "staged";
    }
    return "?";
}

namespace {
double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// Sleeps until `t0 + seconds` (a transfer's simulated duration; the memcpy already spent part of it).
void hold_until(double t0, double seconds) {
    while (now_s() - t0 < seconds) std::this_thread::sleep_for(std::chrono::microseconds(20));
}
}  // namespace

void* SimulatedPinnedAllocator::raw_allocate(size_t bytes) {
    return map_pages(bytes, PageMapping::Populate);
}

void SimulatedPinnedAllocator::raw_deallocate(void* ptr, size_t bytes) {
    unmap_pages(ptr, bytes);
}

SimulatedDevice::SimulatedDevice(const SimulatedDeviceOptions& options)
    : options_(options),
      memory_("simulated device", options.memory_budget, Device{DeviceType::Simulated, 0}),
      backend_(memory_),
      worker_([this] { run(); }) {
    SR_THROW_IF(options.staging_chunk_bytes == 0, "staging chunk size must be positive");
}

SimulatedDevice::~SimulatedDevice() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    queued_.notify_all();
    worker_.join();
    if (staging_) pinned_.deallocate(staging_, 2 * options_.staging_chunk_bytes);
}

uint64_t SimulatedDevice::copy_async(void* dst, const void* src, size_t bytes, CopyPath path, uint64_t) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (path == CopyPath::Staged && !staging_)
        staging_ = pinned_.allocate(2 * options_.staging_chunk_bytes, "pinned staging ring");
    const uint64_t ticket = next_ticket_++;
    jobs_.push_back({ticket, dst, src, bytes, path});
    queued_.notify_one();
    return ticket;
}

void SimulatedDevice::wait(uint64_t ticket) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (done_ticket_ >= ticket) return;
    const double t0 = now_s();
    finished_.wait(lock, [&] { return done_ticket_ >= ticket; });
    stats_.wait_seconds += now_s() - t0;
}

void SimulatedDevice::drain() {
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return done_ticket_ + 1 >= next_ticket_; });
}

bool SimulatedDevice::is_done(uint64_t ticket) {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_ticket_ >= ticket;
}

CopyEngineStats SimulatedDevice::stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

size_t SimulatedDevice::staging_bytes() const {
    return 2 * options_.staging_chunk_bytes;
}

void SimulatedDevice::transfer(const Job& job) {
    const double bw =
        job.path == CopyPath::Pageable ? options_.pageable_bandwidth_bytes_per_s : options_.bandwidth_bytes_per_s;
    auto wire_time = [&](size_t n) { return options_.latency_s + (bw > 0 ? double(n) / bw : 0); };
    if (job.path != CopyPath::Staged) {
        const double t0 = now_s();
        std::memcpy(job.dst, job.src, job.bytes);
        hold_until(t0, wire_time(job.bytes));
        return;
    }
    // Through the pinned ring, chunk by chunk: the CPU copy into a chunk overlaps the previous chunk's
    // transfer on real hardware, so each chunk costs the longer of the two.
    const size_t chunk = options_.staging_chunk_bytes;
    char* ring = static_cast<char*>(staging_);
    for (size_t off = 0, k = 0; off < job.bytes; off += chunk, ++k) {
        const size_t n = std::min(chunk, job.bytes - off);
        char* slot = ring + (k % 2) * chunk;
        const double t0 = now_s();
        std::memcpy(slot, static_cast<const char*>(job.src) + off, n);
        const double staged = now_s() - t0;
        std::memcpy(static_cast<char*>(job.dst) + off, slot, n);
        hold_until(t0, std::max(staged, wire_time(n)));
    }
}

void SimulatedDevice::run() {
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            queued_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) return;  // stop requested and nothing left
            job = jobs_.front();
            jobs_.pop_front();
        }
        const double t0 = now_s();
        transfer(job);
        const double busy = now_s() - t0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            done_ticket_ = job.ticket;
            stats_.copies += 1;
            stats_.bytes += job.bytes;
            if (job.path == CopyPath::Staged) stats_.staged_bytes += job.bytes;
            stats_.busy_seconds += busy;
        }
        finished_.notify_all();
    }
}

}  // namespace sr
