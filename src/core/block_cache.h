// A caching allocator's bookkeeping, with no memory calls of its own: the size a request is served with, which
// cached block a request reuses, which cached blocks to give back so that a new block fits a limit, and the
// byte counters. Two allocators hold one under their mutex and make the calls it decides on: the CUDA caching
// allocator (cuda_allocator.h: cudaMalloc / cudaFree / events) and the host allocator's recycling of its
// mapped blocks (allocator.h: mmap / munmap). Having no CUDA in it, CI tests it on the CPU.
//
// Accounting is in real block bytes: a request of r bytes is served by a block of round_size(r) bytes, or by a
// cached block at most max_slack(round_size(r)) larger, and a budget is charged the whole block (the bytes the
// driver or the kernel really holds for it), not r.
//
//   sr::BlockCache cache;
//   if (auto b = cache.take_cached(size)) { ... reuse *b ... }
//   else { for (auto& f : cache.make_room(size, budget)) cudaFree(f.ptr); cudaMalloc(&p, size); cache.add_live(...); }
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace sr {

class BlockCache {
public:
    struct Block {
        void* ptr = nullptr;
        size_t size = 0;        // bytes held from the driver
        size_t requested = 0;   // bytes the live user asked for (0 while cached)
        void* event = nullptr;  // opaque to the cache: the CUDA allocator's "freed" event
    };

    static constexpr size_t kSmallLimit = size_t(1) << 20;  // up to 1 MiB: 512-byte quantum
    static constexpr size_t kSmallQuantum = 512;
    static constexpr size_t kLargeQuantum = size_t(2) << 20;  // above: 2 MiB, the driver's page for large blocks
    static constexpr size_t kMaxSlackBytes = size_t(8) << 20;

    // The block size a request of `bytes` is served with when a new block is made.
    static size_t round_size(size_t bytes);
    // How much larger than `size` (a rounded size) a reused cached block may be: 1/8 of it, at most 8 MiB, so a
    // reused block wastes at most that (and the budget, which counts block bytes, sees the waste).
    static size_t max_slack(size_t size);

    // The smallest cached block in [size, size + max_slack(size)], moved to the live set for a user that asked
    // for `requested` bytes; nullopt on a miss.
    std::optional<Block> take_cached(size_t size, size_t requested);
    // On a miss: the cached blocks to give back (removed from the cache and from reserved_bytes) so that a new
    // block of `size` bytes keeps reserved_bytes() within `budget` (0 = no budget: nothing). Only what is
    // needed: the smallest single cached block that covers the shortfall if there is one, else the largest
    // blocks first until it is covered. The caller frees them.
    std::vector<Block> make_room(size_t size, size_t budget);
    // Every cached block (removed), e.g. after the driver itself ran out of memory.
    std::vector<Block> take_all_cached();

    // A new block from the driver, now live.
    void add_live(const Block& b);
    // The live block at `ptr` (asserts it exists), removed from the live set.
    Block remove_live(const void* ptr);
    // A block back into the cache (its event already recorded by the caller).
    void put_cached(Block b);
    // The live block whose bytes contain `ptr`, if any.
    const Block* live_containing(const void* ptr) const;

    size_t reserved_bytes() const { return reserved_; }  // live + cached block bytes
    size_t cached_bytes() const { return cached_; }
    size_t live_bytes() const { return live_bytes_; }  // block bytes of live blocks
    size_t cached_blocks() const { return free_.size(); }
    // Every cached block's event (for the destructor).
    template <class F>
    void for_each_cached(F&& f) const {
        for (const auto& [size, b] : free_) f(b);
    }

private:
    std::multimap<size_t, Block> free_;  // by block size
    std::map<uintptr_t, Block> live_;    // by address
    size_t reserved_ = 0, cached_ = 0, live_bytes_ = 0;
};

}  // namespace sr
