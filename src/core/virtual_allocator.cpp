#include "core/virtual_allocator.h"

namespace sr {

// MAP_NORESERVE: no commit charge, so a plan for a 13B model in f32 does not need 52 GB of swap. Pages that
// host-side loops touch (masks) become real; they stay with a cached mapping until it is unmapped.
void* VirtualAllocator::raw_allocate(size_t bytes) {
    const size_t extra = block_bytes(bytes) - bytes;  // the planned device allocator's rounding
    if (!charge_extra(extra)) return nullptr;
    {
        // A plan at a large video size makes hundreds of thousands of allocations of a few recurring sizes (a
        // VAE tile's activations, a chunk of the MLP): reuse freed mappings instead of a mmap/munmap pair each.
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = free_.find(bytes);
        if (it != free_.end() && !it->second.empty()) {
            void* p = it->second.back();
            it->second.pop_back();
            --n_free_;
            return p;
        }
    }
    void* p = map_pages(bytes, PageMapping::NoReserve);
    if (!p) uncharge_extra(extra);
    return p;
}

void VirtualAllocator::raw_deallocate(void* ptr, size_t bytes) {
    uncharge_extra(block_bytes(bytes) - bytes);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (n_free_ < kMaxCachedMappings) {
            free_[bytes].push_back(ptr);
            ++n_free_;
            return;
        }
    }
    unmap_pages(ptr, bytes);
}

VirtualAllocator::~VirtualAllocator() {
    for (auto& [bytes, ptrs] : free_)
        for (void* p : ptrs) unmap_pages(p, bytes);
}

}  // namespace sr
