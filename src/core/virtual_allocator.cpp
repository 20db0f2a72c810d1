#include "core/virtual_allocator.h"

#include <sys/mman.h>

namespace sr {

void* VirtualAllocator::raw_allocate(size_t bytes) {
    // MAP_NORESERVE: no commit charge, so a plan for a 13B model in f32 does not need 52 GB of swap. Pages that
    // host-side loops touch (RoPE tables, masks) become real and go back at munmap.
    void* p =
        mmap(nullptr, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

void VirtualAllocator::raw_deallocate(void* ptr, size_t bytes) {
    munmap(ptr, bytes ? bytes : 1);
}

}  // namespace sr
