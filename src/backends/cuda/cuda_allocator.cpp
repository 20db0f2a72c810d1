#include "backends/cuda/cuda_allocator.h"

#include "backends/cuda/cuda_check.h"

namespace sr {

namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;  // 1 MiB
constexpr size_t kSmallQuantum = 512;
constexpr size_t kLargeQuantum = size_t(2) << 20;  // 2 MiB

}  // namespace

CudaCachingAllocator::CudaCachingAllocator(std::string name, size_t budget_bytes, int device,
                                           cudaStream_t compute_stream)
    : Allocator(std::move(name), budget_bytes), device_(device), stream_(compute_stream) {}

CudaCachingAllocator::~CudaCachingAllocator() {
    // Errors are ignored here: at process exit the CUDA runtime may already be gone. Live blocks (tensors that
    // outlive their allocator, a bug of the caller) are left alone rather than freed under them.
    std::lock_guard<std::mutex> lock(mutex_);
    cudaSetDevice(device_);
    for (auto& [size, block] : free_) {
        cudaFree(block.ptr);
        if (block.freed) cudaEventDestroy(block.freed);
    }
    for (cudaEvent_t e : spare_events_) cudaEventDestroy(e);
    cudaGetLastError();
}

size_t CudaCachingAllocator::round_size(size_t bytes) {
    if (bytes == 0) bytes = 1;
    const size_t q = bytes <= kSmallLimit ? kSmallQuantum : kLargeQuantum;
    return (bytes + q - 1) / q * q;
}

size_t CudaCachingAllocator::reserved_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return reserved_;
}
size_t CudaCachingAllocator::cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
}
uint64_t CudaCachingAllocator::device_allocations() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return mallocs_;
}
uint64_t CudaCachingAllocator::cache_hits() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return hits_;
}

void CudaCachingAllocator::release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked();
}

void CudaCachingAllocator::release_cached_locked() {
    if (free_.empty()) return;
    cudaSetDevice(device_);
    for (auto& [size, block] : free_) {
        // cudaFree waits for the device, so work still reading the block (queued before its free) finishes first.
        cudaFree(block.ptr);
        reserved_ -= block.size;
        if (block.freed) spare_events_.push_back(block.freed);
    }
    free_.clear();
    cached_ = 0;
    cudaGetLastError();
}

cudaEvent_t CudaCachingAllocator::take_event_locked() {
    if (!spare_events_.empty()) {
        cudaEvent_t e = spare_events_.back();
        spare_events_.pop_back();
        return e;
    }
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return e;
}

void* CudaCachingAllocator::raw_allocate(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t size = round_size(bytes);
    // Best fit among cached blocks, accepting up to 1/8 more than asked so that sizes differing by a little
    // (e.g. the last tile of a VAE decode) still reuse the cache.
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= size + size / 8) {
        Block block = it->second;
        free_.erase(it);
        cached_ -= block.size;
        ++hits_;
        live_[reinterpret_cast<uintptr_t>(block.ptr)] = block;
        return block.ptr;
    }
    if (budget_bytes() != 0 && reserved_ + size > budget_bytes()) release_cached_locked();
    cudaSetDevice(device_);
    void* p = nullptr;
    if (cudaMalloc(&p, size) != cudaSuccess) {
        cudaGetLastError();  // out of memory is not sticky: clear it, drop the cache, try once more
        release_cached_locked();
        if (cudaMalloc(&p, size) != cudaSuccess) {
            cudaGetLastError();
            return nullptr;  // the base class throws OutOfMemoryError naming the request
        }
    }
    reserved_ += size;
    ++mallocs_;
    live_[reinterpret_cast<uintptr_t>(p)] = Block{p, size, nullptr};
    return p;
}

void CudaCachingAllocator::raw_deallocate(void* ptr, size_t) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(reinterpret_cast<uintptr_t>(ptr));
    SR_ASSERT(it != live_.end(), "{}: free of {} which it did not allocate", name(), ptr);
    Block block = it->second;
    live_.erase(it);
    if (!block.freed) block.freed = take_event_locked();
    if (block.freed && cudaEventRecord(block.freed, stream_) != cudaSuccess) cudaGetLastError();
    cached_ += block.size;
    free_.emplace(block.size, block);
}

void CudaCachingAllocator::order_before_use_on(const void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto addr = reinterpret_cast<uintptr_t>(ptr);
    auto it = live_.upper_bound(addr);
    if (it == live_.begin()) return;
    --it;
    const Block& block = it->second;
    if (addr >= it->first + block.size || !block.freed) return;
    // Waiting on an event that already completed costs nothing on the device.
    SR_CUDA_CHECK(cudaStreamWaitEvent(stream, block.freed, 0));
}

void* CudaPinnedAllocator::raw_allocate(size_t bytes) {
    void* p = nullptr;
    // Portable: usable by every device's streams, not only the current one's.
    if (cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return p;
}

void CudaPinnedAllocator::raw_deallocate(void* ptr, size_t) {
    if (cudaFreeHost(ptr) != cudaSuccess) cudaGetLastError();
}

}  // namespace sr
