#include "backends/cuda/cuda_allocator.h"

#include "backends/cuda/cuda_check.h"

namespace sr {

CudaCachingAllocator::CudaCachingAllocator(std::string name, size_t budget_bytes, int device,
                                           cudaStream_t compute_stream)
    : Allocator(std::move(name), budget_bytes), device_(device), stream_(compute_stream) {}

CudaCachingAllocator::~CudaCachingAllocator() {
    // Errors are ignored here: at process exit the CUDA runtime may already be gone. Live blocks (tensors that
    // outlive their allocator, a bug of the caller) are left alone rather than freed under them.
    std::lock_guard<std::mutex> lock(mutex_);
    cudaSetDevice(device_);
    for (const BlockCache::Block& b : cache_.take_all_cached()) {
        cudaFree(b.ptr);
        if (b.event) cudaEventDestroy(static_cast<cudaEvent_t>(b.event));
    }
    for (cudaEvent_t e : spare_events_) cudaEventDestroy(e);
    cudaGetLastError();
}

size_t CudaCachingAllocator::reserved_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.reserved_bytes();
}
size_t CudaCachingAllocator::cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.cached_bytes();
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
    free_blocks_locked(cache_.take_all_cached());
}

void CudaCachingAllocator::free_blocks_locked(const std::vector<BlockCache::Block>& blocks) {
    if (blocks.empty()) return;
    cudaSetDevice(device_);
    for (const BlockCache::Block& b : blocks) {
        // cudaFree waits for the device, so work still reading the block (queued before its free) finishes first.
        cudaFree(b.ptr);
        if (b.event) spare_events_.push_back(static_cast<cudaEvent_t>(b.event));
    }
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
    // The base class has charged `bytes`; the block's bytes beyond them are charged here, so in_use_bytes() is
    // real device memory. A cached block within the slack is reused when its extra bytes fit the budget.
    const size_t size = round_size(bytes);
    if (auto b = cache_.take_cached(size, bytes)) {
        if (charge_extra(b->size - bytes)) {
            ++hits_;
            return b->ptr;
        }
        cache_.put_cached(cache_.remove_live(b->ptr));  // its slack does not fit: a fresh block below
    }
    if (!charge_extra(size - bytes)) return nullptr;  // the rounding alone passes the budget
    free_blocks_locked(cache_.make_room(size, budget_bytes()));
    cudaSetDevice(device_);
    void* p = nullptr;
    if (cudaMalloc(&p, size) != cudaSuccess) {
        cudaGetLastError();  // out of memory is not sticky: clear it, drop the whole cache, try once more
        free_blocks_locked(cache_.take_all_cached());
        if (cudaMalloc(&p, size) != cudaSuccess) {
            cudaGetLastError();
            uncharge_extra(size - bytes);
            return nullptr;  // the base class throws OutOfMemoryError naming the request
        }
    }
    ++mallocs_;
    cache_.add_live(BlockCache::Block{p, size, bytes, nullptr});
    return p;
}

void CudaCachingAllocator::raw_deallocate(void* ptr, size_t) {
    std::lock_guard<std::mutex> lock(mutex_);
    BlockCache::Block b = cache_.remove_live(ptr);
    uncharge_extra(b.size - b.requested);
    auto event = static_cast<cudaEvent_t>(b.event);
    if (!event) event = take_event_locked();
    if (event && cudaEventRecord(event, stream_) != cudaSuccess) {
        cudaGetLastError();
        spare_events_.push_back(event);
        event = nullptr;
    }
    if (!event) {
        // No event to order other streams after the compute work that used the block: wait for that work here
        // instead (rare: event creation failed), so order_before_use_on never has to guess.
        if (cudaStreamSynchronize(stream_) != cudaSuccess) cudaGetLastError();
    }
    b.event = event;
    cache_.put_cached(b);
}

void CudaCachingAllocator::order_before_use_on(const void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    const BlockCache::Block* b = cache_.live_containing(ptr);
    if (!b || !b->event) return;
    // Waiting on an event that already completed costs nothing on the device.
    SR_CUDA_CHECK(cudaStreamWaitEvent(stream, static_cast<cudaEvent_t>(b->event), 0));
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
