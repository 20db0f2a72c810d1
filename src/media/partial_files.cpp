#include "media/partial_files.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>

#include "core/mapped_files.h"

namespace sr {

namespace {

// Fixed storage: a signal handler may not allocate or take locks, only read these and call unlink().
constexpr size_t kSlots = 16, kPathBytes = 4096;
std::array<std::array<char, kPathBytes>, kSlots> g_paths;
std::array<std::atomic<int>, kSlots> g_state;  // 0 free, 1 being written, 2 registered

void remove_registered() {
    for (size_t i = 0; i < kSlots; ++i)
        if (g_state[i].load() == 2) unlink(g_paths[i].data());
}

void say(const char* text) {
    [[maybe_unused]] const ssize_t n = write(STDERR_FILENO, text, std::strlen(text));
}

void die_by(int sig) {
    signal(sig, SIG_DFL);  // then die as the signal says (exit status, core dumps, the shell's "^C")
    raise(sig);
}

void on_signal(int sig) {
    remove_registered();
    die_by(sig);
}

// A read of a memory-mapped page whose file was cut short. Only async-signal-safe calls: write, unlink.
void on_bus_error(int sig, siginfo_t* info, void*) {
    remove_registered();
    const char* file = info ? mapped_file_at(info->si_addr) : nullptr;
    if (file) {
        say("skyreels: error: ");
        say(file);
        say(" changed while it was being read (truncated or rewritten by another program?)\n");
    } else {
        say("skyreels: error: bus error (SIGBUS): a memory-mapped file changed while it was being read?\n");
    }
    die_by(sig);
}

// Installs `handler` for `sig` unless the signal was ignored when we started (nohup, `cmd &` in a script):
// whoever ignored it meant the process to run on through it.
void install_unless_ignored(int sig, void (*handler)(int)) {
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) return;
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
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
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) install_unless_ignored(sig, on_signal);
    struct sigaction sa {};
    sa.sa_sigaction = on_bus_error;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, nullptr);
}

}  // namespace sr
