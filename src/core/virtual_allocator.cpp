#include "core/virtual_allocator.h"

namespace sr {

// MAP_NORESERVE: no commit charge, so a plan for a 13B model in f32 does not need 52 GB of swap. Pages that
// host-side loops touch (RoPE tables, masks) become real and go back at unmap.
void* VirtualAllocator::raw_allocate(size_t bytes) {
    return map_pages(bytes, PageMapping::NoReserve);
}

void VirtualAllocator::raw_deallocate(void* ptr, size_t bytes) {
    unmap_pages(ptr, bytes);
}

}  // namespace sr
