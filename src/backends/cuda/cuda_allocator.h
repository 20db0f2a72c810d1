// Device and pinned-host allocators for the CUDA backend.
//
// CudaCachingAllocator keeps freed device blocks in size-bucketed free lists and hands them out again, so a
// step loop whose shapes repeat calls cudaMalloc only in its first step (cudaMalloc and cudaFree cost
// milliseconds and cudaFree synchronizes the device). The byte budget is the base class's, counted in real
// block bytes (block_cache.h): a request is charged the whole block that serves it (rounded to 512 bytes up to
// 1 MiB and to 2 MiB above, or a reused cached block at most 1/8 and at most 8 MiB larger), so in_use_bytes()
// is what live tensors hold on the device and a request that would take it past the budget throws
// OutOfMemoryError. Cached free blocks come on top (reserved_bytes); when a new block would take reserved past
// the budget, only enough cached blocks to make room are freed; when cudaMalloc itself fails, the whole cache is.
//
// Blocks are stream-ordered on the compute stream: a block freed while kernels queued on that stream still
// use it may be handed out at once to work queued later on the same stream. Another stream (the copy stream)
// must first call order_before_use_on(ptr, stream), which makes it wait for the compute work queued before
// the block's last free (an event recorded at every free; should no event be available, the free waits for
// the compute stream instead, so the ordering is never lost).
//
//   sr::CudaCachingAllocator mem("cuda:0", 12ull << 30, 0, compute_stream);
//   void* p = mem.allocate(bytes, "activations");  mem.deallocate(p, bytes);   // back to the cache
//   mem.device_allocations();   // cudaMalloc calls so far
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "core/allocator.h"
#include "core/block_cache.h"

namespace sr {

class CudaCachingAllocator final : public Allocator {
public:
    CudaCachingAllocator(std::string name, size_t budget_bytes, int device, cudaStream_t compute_stream);
    ~CudaCachingAllocator() override;

    Device device() const override { return {DeviceType::CUDA, device_}; }
    size_t block_bytes(size_t bytes) const override { return round_size(bytes); }

    // The block size a request of `bytes` is served with (when no cached block is reused).
    static size_t round_size(size_t bytes) { return BlockCache::round_size(bytes); }

    size_t reserved_bytes() const;  // held from the driver: live blocks and the cache
    size_t cached_bytes() const;    // free blocks kept for reuse
    uint64_t device_allocations() const;
    uint64_t cache_hits() const;
    // Returns every cached block to the driver (cudaFree, which synchronizes the device).
    void release_cached() override;
    // Makes `stream` wait for the compute work queued before the last free of the block holding `ptr`
    // (nothing when the block is fresh from cudaMalloc or that work is done). Call before using freshly
    // allocated memory on a stream other than the compute stream.
    void order_before_use_on(const void* ptr, cudaStream_t stream);

protected:
    void* raw_allocate(size_t bytes) override;
    void raw_deallocate(void* ptr, size_t bytes) override;

private:
    // Blocks' `event`: a cudaEvent_t recorded on the compute stream at the block's last free (null when fresh).
    void free_blocks_locked(const std::vector<BlockCache::Block>& blocks);
    cudaEvent_t take_event_locked();

    int device_;
    cudaStream_t stream_;
    mutable std::mutex mutex_;
    BlockCache cache_;
    std::vector<cudaEvent_t> spare_events_;
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
