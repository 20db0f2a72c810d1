#include "core/allocator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <new>

#include "core/block_cache.h"
#include "core/error.h"

namespace sr {

std::string Device::name() const {
    switch (type) {
        case DeviceType::CPU:
            return "cpu";
        case DeviceType::CUDA:
            return fmt::format("cuda:{}", index);
        case DeviceType::Simulated:
            return fmt::format("sim:{}", index);
    }
    return "unknown device";
}

Allocator::Allocator(std::string name, size_t budget_bytes) : name_(std::move(name)), budget_(budget_bytes) {}

void* Allocator::allocate(size_t bytes, std::string_view what) {
    if (bytes == 0) bytes = 1;
    size_t now = in_use_.fetch_add(bytes) + bytes;
    if (budget_ != 0 && now > budget_) {
        in_use_.fetch_sub(bytes);
        throw OutOfMemoryError(fmt::format("{} memory budget exceeded: {} needs {} but {} of the {} budget is in use",
                                           name_, what.empty() ? "allocation" : what, format_bytes(double(bytes)),
                                           format_bytes(double(now - bytes)), format_bytes(double(budget_))));
    }
    void* p = nullptr;
    try {
        p = raw_allocate(bytes);
    } catch (...) {
        in_use_.fetch_sub(bytes);
        throw;
    }
    if (!p) {
        in_use_.fetch_sub(bytes);
        throw OutOfMemoryError(fmt::format("{}: out of memory allocating {} for {} ({} in use, budget {})", name_,
                                           format_bytes(double(bytes)), what.empty() ? "allocation" : what,
                                           format_bytes(double(in_use_.load())),
                                           budget_ ? format_bytes(double(budget_)) : std::string("unlimited")));
    }
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return p;
}

void Allocator::note_peak(size_t bytes) {
    size_t peak = peak_.load();
    while (bytes > peak && !peak_.compare_exchange_weak(peak, bytes)) {
    }
}

bool Allocator::charge_extra(size_t extra) {
    if (extra == 0) return true;
    const size_t now = in_use_.fetch_add(extra) + extra;
    if (budget_ != 0 && now > budget_) {
        in_use_.fetch_sub(extra);
        return false;
    }
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return true;
}

void Allocator::uncharge_extra(size_t extra) {
    in_use_.fetch_sub(extra);
}

void Allocator::deallocate(void* ptr, size_t bytes) {
    if (!ptr) return;
    if (bytes == 0) bytes = 1;
    raw_deallocate(ptr, bytes);
    in_use_.fetch_sub(bytes);
}

namespace {
// Tensors of a megabyte or more come straight from the kernel, and go back to it when release_cached() runs
// or a miss needs the room (allocator.h). Through malloc they would not: glibc raises its mmap threshold
// after each large free (up to 32 MiB), keeping freed activations in the heap with no bound, so the resident
// set (and the memory report) would show memory no tensor holds any more.
constexpr size_t kDirectMapBytes = size_t(1) << 20;
constexpr size_t kHugePageBytes = size_t(2) << 20;
constexpr size_t kPageBytes = 4096;
// Kept blocks may take the mapped bytes past the high-water mark by half of it, at most this. With no
// headroom, the allocations made near the peak (the attention's packed operands, the fused MLP input) found
// the kept blocks of other sizes given back and mapped afresh: the medium bf16 forward still took 11k page
// faults (24k with no reuse); with it, about 1k (perf stat's count, the small mallocs' included).
constexpr size_t kKeptHeadroomBytes = size_t(64) << 20;
}  // namespace

void* map_pages(size_t bytes, PageMapping how) {
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS | (how == PageMapping::NoReserve ? MAP_NORESERVE : 0) |
                      (how == PageMapping::Populate ? MAP_POPULATE : 0);
    void* p = mmap(nullptr, bytes ? bytes : 1, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    // Transparent huge pages where the system leaves them to the program (the "madvise" setting): a fresh
    // tensor's first write faults in every page, and with 4 KiB pages that cost more than the write itself
    // (a 62 MB linear output: 46 ms to first touch, 9 ms to write again, 13 ms with 2 MiB pages, on the
    // 2-core Xeon of docs/BENCHMARKS.md). Every op writes a fresh output, so this is paid op after op.
    // Advice only: where huge pages are off or unavailable the mapping keeps 4 KiB pages.
    if (how == PageMapping::Lazy && bytes >= kHugePageBytes) madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

void unmap_pages(void* ptr, size_t bytes) {
    munmap(ptr, bytes ? bytes : 1);
}

HostAllocator::HostAllocator(std::string name, size_t budget_bytes, Device device)
    : Allocator(std::move(name), budget_bytes), device_(device), blocks_(std::make_unique<BlockCache>()) {}

HostAllocator::~HostAllocator() {
    release_cached();  // a block still live here belongs to a tensor that outlived its allocator: left mapped
}

void* HostAllocator::raw_allocate(size_t bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded < kDirectMapBytes) return std::aligned_alloc(64, rounded);
    const size_t size = (rounded + kPageBytes - 1) / kPageBytes * kPageBytes;  // what the kernel maps
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto b = blocks_->take_cached(size, bytes)) {
        ++reused_;
        high_water_ = std::max(high_water_, blocks_->live_bytes());
        return b->ptr;
    }
    // A new block: first unmap what kept blocks would take past the high-water mark it sets plus the headroom.
    high_water_ = std::max(high_water_, blocks_->live_bytes() + size);
    const size_t limit = high_water_ + std::min(high_water_ / 2, kKeptHeadroomBytes);
    for (const BlockCache::Block& b : blocks_->make_room(size, limit)) unmap_pages(b.ptr, b.size);
    void* p = map_pages(size, PageMapping::Lazy);
    if (!p) {  // the kernel refused: kept blocks are the first thing to give back
        for (const BlockCache::Block& b : blocks_->take_all_cached()) unmap_pages(b.ptr, b.size);
        p = map_pages(size, PageMapping::Lazy);
        if (!p) return nullptr;
    }
    blocks_->add_live({p, size, bytes, nullptr});
    return p;
}

void HostAllocator::raw_deallocate(void* ptr, size_t bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded < kDirectMapBytes) return std::free(ptr);
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_->put_cached(blocks_->remove_live(ptr));
}

void HostAllocator::release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const BlockCache::Block& b : blocks_->take_all_cached()) unmap_pages(b.ptr, b.size);
    high_water_ = blocks_->live_bytes();
}

size_t HostAllocator::cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return blocks_->cached_bytes();
}

size_t HostAllocator::mapped_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return blocks_->reserved_bytes();
}

uint64_t HostAllocator::reused_blocks() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return reused_;
}

namespace {
thread_local Allocator* t_planning_space = nullptr;
}  // namespace

Allocator& host_allocator() {
    // Never destroyed: a tensor in some other static freed during exit still finds it (its block bookkeeping
    // would be gone with a static's destructor); the kernel takes its mappings back with the process.
    static HostAllocator* const allocator = new HostAllocator("host", 0);
    return t_planning_space ? *t_planning_space : *allocator;
}

HostPlanningScope::HostPlanningScope(Allocator& space) : outer_(t_planning_space) {
    t_planning_space = &space;
}

HostPlanningScope::~HostPlanningScope() {
    t_planning_space = outer_;
}

bool host_values_skipped() {
    return t_planning_space != nullptr;
}

std::string format_bytes(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (std::fabs(bytes) >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        ++u;
    }
    return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.2f} {}", bytes, units[u]);
}

size_t parse_bytes(std::string_view text, std::string_view what) {
    std::string s(text);
    size_t pos = 0;
    double value = 0;
    // Decimal only: std::stod alone would also take hex ("0x10") and leading spaces.
    const bool decimal = !s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.') &&
                         s.find_first_of("xX") == std::string::npos;
    try {
        if (decimal) value = std::stod(s, &pos);
    } catch (...) {
        pos = 0;
    }
    SR_THROW_IF(!decimal || pos == 0, "{}: '{}' is not a size (expected e.g. 12G, 512M, 4096)", what, text);
    std::string unit = s.substr(pos);
    for (auto& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
    double mult = 1;
    if (unit.empty() || unit == "B")
        mult = 1;
    else if (unit == "K" || unit == "KB" || unit == "KIB")
        mult = 1024.0;
    else if (unit == "M" || unit == "MB" || unit == "MIB")
        mult = 1024.0 * 1024;
    else if (unit == "G" || unit == "GB" || unit == "GIB")
        mult = 1024.0 * 1024 * 1024;
    else if (unit == "T" || unit == "TB" || unit == "TIB")
        mult = 1024.0 * 1024 * 1024 * 1024;
    else
        SR_THROW("{}: unknown size unit '{}' in '{}' (use K, M, G or T)", what, unit, text);
    SR_THROW_IF(!(value >= 0) || value * mult > 1.8e19, "{}: size '{}' is out of range", what, text);
    return size_t(value * mult);
}

}  // namespace sr
