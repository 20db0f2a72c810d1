#include "core/virtual_allocator.h"

namespace sr {

// MAP_NORESERVE: no commit charge, so a plan for a 13B model in f32 does not need 52 GB of swap. Pages that
// host-side loops touch (RoPE tables, masks) become real and go back at unmap.
void* VirtualAllocator::raw_allocate(size_t bytes) {
    const size_t extra = block_bytes(bytes) - bytes;
    if (!charge_extra(extra)) return nullptr;
    void* p = map_pages(bytes, PageMapping::NoReserve);
    if (!p) uncharge_extra(extra);
    return p;
}

void VirtualAllocator::raw_deallocate(void* ptr, size_t bytes) {
    unmap_pages(ptr, bytes);
    uncharge_extra(block_bytes(bytes) - bytes);
}

}  // namespace sr
