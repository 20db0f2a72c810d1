#include "media/partial_files.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>

namespace sr {

namespace {

// Fixed storage: a signal handler may not allocate or take locks, only read these and call unlink().
constexpr size_t kSlots = 16, kPathBytes = 4096;
std::array<std::array<char, kPathBytes>, kSlots> g_paths;
std::array<std::atomic<int>, kSlots> g_state;  // 0 free, 1 being written, 2 registered

void on_signal(int sig) {
    for (size_t i = 0; i < kSlots; ++i)
        if (g_state[i].load() == 2) unlink(g_paths[i].data());
    signal(sig, SIG_DFL);  // then die as the signal says (exit status, core dumps, the shell's "^C")
    raise(sig);
}

}  // namespace

bool register_partial_file(const std::string& path) {
    if (path.size() >= kPathBytes) return false;
    for (size_t i = 0; i < kSlots; ++i) {
        int expected = 0;
        if (!g_state[i].compare_exchange_strong(expected, 1)) continue;
        std::memcpy(g_paths[i].data(), path.c_str(), path.size() + 1);
        g_state[i].store(2);
        return true;
    }
    return false;
}

void unregister_partial_file(const std::string& path) {
    for (size_t i = 0; i < kSlots; ++i)
        if (g_state[i].load() == 2 && path == g_paths[i].data()) g_state[i].store(0);
}

void remove_partial_files_on_signal() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace sr
