#include "core/virtual_allocator.h"

namespace sr {

namespace {

// Non-canonical on x86-64 and AArch64 (bit 62 set, bit 63 clear): never a mapping, so a touch faults at once
// instead of reading some other allocation. Each address is unique while the plan runs.
constexpr uintptr_t kUnmappedBase = uintptr_t{1} << 62;

bool is_unmapped(const void* p) {
    return (reinterpret_cast<uintptr_t>(p) & kUnmappedBase) != 0;
}

}  // namespace

// MAP_NORESERVE: no commit charge, so a plan for a 13B model in f32 does not need 52 GB of swap. Pages that
// host-side loops touch (masks) become real; they stay with a cached mapping until it is unmapped.
void* VirtualAllocator::raw_allocate(size_t bytes) {
    const size_t extra = block_bytes(bytes) - bytes;  // the planned device allocator's rounding
    if (!charge_extra(extra)) return nullptr;
    if (bytes >= kUnmappedFromBytes) {
        // A plan at the largest allowed video size asks for tens of TiB in total, past the 128 TiB of user address
        // space. Host code touches only small tensors (masks, timesteps: a loop over a TiB would not finish), so
        // such requests need a unique address, not a mapping.
        std::lock_guard<std::mutex> lock(mutex_);
        void* p = reinterpret_cast<void*>(kUnmappedBase + next_unmapped_);
        next_unmapped_ += 4096;
        return p;
    }
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
    if (is_unmapped(ptr)) return;
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
