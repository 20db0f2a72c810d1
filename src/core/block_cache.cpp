#include "core/block_cache.h"

#include <algorithm>

#include "core/error.h"

namespace sr {

size_t BlockCache::round_size(size_t bytes) {
    if (bytes == 0) bytes = 1;
    const size_t q = bytes <= kSmallLimit ? kSmallQuantum : kLargeQuantum;
    return (bytes + q - 1) / q * q;
}

size_t BlockCache::max_slack(size_t size) {
    return std::min(size / 8, kMaxSlackBytes);
}

std::optional<BlockCache::Block> BlockCache::take_cached(size_t size, size_t requested) {
    auto it = free_.lower_bound(size);
    if (it == free_.end() || it->first > size + max_slack(size)) return std::nullopt;
    Block b = it->second;
    free_.erase(it);
    cached_ -= b.size;
    b.requested = requested;
    live_[reinterpret_cast<uintptr_t>(b.ptr)] = b;
    live_bytes_ += b.size;
    return b;
}

std::vector<BlockCache::Block> BlockCache::make_room(size_t size, size_t budget) {
    std::vector<Block> out;
    if (budget == 0 || reserved_ + size <= budget) return out;
    size_t shortfall = reserved_ + size - budget;
    auto release = [&](std::multimap<size_t, Block>::iterator it) {
        out.push_back(it->second);
        cached_ -= it->first;
        reserved_ -= it->first;
        shortfall -= std::min(shortfall, it->first);
        free_.erase(it);
    };
    // One block that covers it alone: the smallest such.
    if (auto it = free_.lower_bound(shortfall); it != free_.end()) {
        release(it);
        return out;
    }
    // Else the largest first (fewest cudaFree calls).
    while (shortfall > 0 && !free_.empty()) release(std::prev(free_.end()));
    return out;
}

std::vector<BlockCache::Block> BlockCache::take_all_cached() {
    std::vector<Block> out;
    for (auto& [size, b] : free_) out.push_back(b);
    reserved_ -= cached_;
    cached_ = 0;
    free_.clear();
    return out;
}

void BlockCache::add_live(const Block& b) {
    live_[reinterpret_cast<uintptr_t>(b.ptr)] = b;
    reserved_ += b.size;
    live_bytes_ += b.size;
}

BlockCache::Block BlockCache::remove_live(const void* ptr) {
    auto it = live_.find(reinterpret_cast<uintptr_t>(ptr));
    SR_ASSERT(it != live_.end(), "free of {} which this allocator did not hand out", ptr);
    Block b = it->second;
    live_.erase(it);
    live_bytes_ -= b.size;
    return b;
}

void BlockCache::put_cached(Block b) {
    b.requested = 0;
    cached_ += b.size;
    free_.emplace(b.size, b);
}

const BlockCache::Block* BlockCache::live_containing(const void* ptr) const {
    const auto addr = reinterpret_cast<uintptr_t>(ptr);
    auto it = live_.upper_bound(addr);
    if (it == live_.begin()) return nullptr;
    --it;
    return addr < it->first + it->second.size ? &it->second : nullptr;
}

}  // namespace sr
