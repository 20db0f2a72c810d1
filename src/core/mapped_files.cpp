#include "core/mapped_files.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>

namespace sr {

namespace {

constexpr size_t kSlots = 256, kPathBytes = 4096;

struct Slot {
    std::atomic<int> state{0};  // 0 free, 1 being written, 2 in use
    uintptr_t begin = 0, end = 0;
    std::array<char, kPathBytes> path{};
};

// Static storage (the pages are touched only when used): the handler may not allocate.
std::array<Slot, kSlots> g_slots;

}  // namespace

void register_mapped_file(const std::string& path, const void* data, size_t size) {
    if (path.size() >= kPathBytes || !data) return;
    for (Slot& s : g_slots) {
        int expected = 0;
        if (!s.state.compare_exchange_strong(expected, 1)) continue;
        s.begin = uintptr_t(data);
        s.end = uintptr_t(data) + size;
        std::memcpy(s.path.data(), path.c_str(), path.size() + 1);
        s.state.store(2);
        return;
    }
}

void unregister_mapped_file(const void* data) {
    for (Slot& s : g_slots)
        if (s.state.load() == 2 && s.begin == uintptr_t(data)) {
            s.state.store(0);
            return;
        }
}

const char* mapped_file_at(const void* address) {
    const auto a = uintptr_t(address);
    for (const Slot& s : g_slots)
        if (s.state.load() == 2 && a >= s.begin && a < s.end) return s.path.data();
    return nullptr;
}

}  // namespace sr
