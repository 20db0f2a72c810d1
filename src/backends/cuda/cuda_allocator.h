// Device and pinned-host allocators for the CUDA backend.
//
// CudaCachingAllocator keeps freed device blocks in size-bucketed free lists and hands them out again, so a
// step loop whose shapes repeat calls cudaMalloc only in its first step (cudaMalloc and cudaFree cost
// milliseconds and cudaFree synchronizes the device). The byte budget is the base class's: a request that
// would take the bytes in use past it throws OutOfMemoryError. The memory actually held (reserved_bytes) is
// the bytes in use plus rounding (at most 2 MiB per block above 1 MiB, 511 bytes below) plus cached free
// blocks; the cache is released whenever a new cudaMalloc would take reserved past the budget, or when
// cudaMalloc fails.
//
// Blocks are stream-ordered on the compute stream: a block freed while kernels queued on that stream still
// use it may be handed out at once to work queued later on the same stream. Another stream (the copy stream)
// must first call order_before_use_on(ptr, stream), which makes it wait for the compute work queued before
// the block's last free (an event recorded at every free).
//
//   sr::CudaCachingAllocator mem("cuda:0", 12ull << 30, 0, compute_stream);
//   void* p = mem.allocate(bytes, "activations");  mem.deallocate(p, bytes);   // back to the cache
//   mem.device_allocations();   // cudaMalloc calls so far
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "core/allocator.h"

namespace sr {

class CudaCachingAllocator final : public Allocator {
public:
    CudaCachingAllocator(std::string name, size_t budget_bytes, int device, cudaStream_t compute_stream);
    ~CudaCachingAllocator() override;

    Device device() const override { return {DeviceType::CUDA, device_}; }

    // The block size a request of `bytes` is served with.
    static size_t round_size(size_t bytes);

    size_t reserved_bytes() const;  // held from the driver: live blocks and the cache
    size_t cached_bytes() const;    // free blocks kept for reuse
    uint64_t device_allocations() const;
    uint64_t cache_hits() const;
    // Returns every cached block to the driver (cudaFree, which synchronizes the device).
    void release_cached();
    // Makes `stream` wait for the compute work queued before the last free of the block holding `ptr`
    // (nothing when the block is fresh from cudaMalloc or that work is done). Call before using freshly
    // allocated memory on a stream other than the compute stream.
    void order_before_use_on(const void* ptr, cudaStream_t stream);

protected:
    void* raw_allocate(size_t bytes) override;
    void raw_deallocate(void* ptr, size_t bytes) override;

private:
    struct Block {
        void* ptr = nullptr;
        size_t size = 0;
        cudaEvent_t freed = nullptr;  // recorded on the compute stream at the block's last free
    };
    void release_cached_locked();
    cudaEvent_t take_event_locked();

    int device_;
    cudaStream_t stream_;
    mutable std::mutex mutex_;
    std::multimap<size_t, Block> free_;  // by block size
    std::map<uintptr_t, Block> live_;    // by address
    std::vector<cudaEvent_t> spare_events_;
    size_t reserved_ = 0, cached_ = 0;
    uint64_t mallocs_ = 0, hits_ = 0;
};

// Page-locked host memory (cudaHostAlloc), counted like any allocator so the memory report shows it.
class CudaPinnedAllocator final : public Allocator {
public:
    explicit CudaPinnedAllocator(std::string name = "pinned host", size_t budget_bytes = 0)
        : Allocator(std::move(name), budget_bytes) {}
    Device device() const override { return Device::cpu(); }

protected:
    void* raw_allocate(size_t bytes) override;
    void raw_deallocate(void* ptr, size_t bytes) override;
};

}  // namespace sr
