#include "runtime/simulated_device.h"

#include <chrono>
#include <cstring>

namespace sr {

namespace {
double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

SimulatedDevice::SimulatedDevice(const SimulatedDeviceOptions& options)
    : options_(options), memory_("simulated device", options.memory_budget), worker_([this] { run(); }) {}

SimulatedDevice::~SimulatedDevice() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    queued_.notify_all();
    worker_.join();
}

uint64_t SimulatedDevice::copy_async(void* dst, const void* src, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t ticket = next_ticket_++;
    jobs_.push_back({ticket, dst, src, bytes});
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

bool SimulatedDevice::is_done(uint64_t ticket) {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_ticket_ >= ticket;
}

CopyEngineStats SimulatedDevice::stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
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
        std::memcpy(job.dst, job.src, job.bytes);
        // The transfer takes latency + bytes / bandwidth; memcpy already spent part of that.
        const double target =
            options_.latency_s +
            (options_.bandwidth_bytes_per_s > 0 ? double(job.bytes) / options_.bandwidth_bytes_per_s : 0);
        while (now_s() - t0 < target) std::this_thread::sleep_for(std::chrono::microseconds(20));
        const double busy = now_s() - t0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            done_ticket_ = job.ticket;
            stats_.copies += 1;
            stats_.bytes += job.bytes;
            stats_.busy_seconds += busy;
        }
        finished_.notify_all();
    }
}

}  // namespace sr
