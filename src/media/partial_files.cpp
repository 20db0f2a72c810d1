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

// The PNG frame folder being written (one at a time): its frames are frame_00000.png .. frame_<n-1>.png.
std::array<char, kPathBytes> g_frames_dir;
std::atomic<int> g_frames_state{0};  // 0 none, 1 being written, 2 registered
std::atomic<long> g_frames_written{0};

void say(const char* text) {
    [[maybe_unused]] const ssize_t n = write(STDERR_FILENO, text, std::strlen(text));
}

// "<dir>/frame_NNNNN.png" into `out` without allocating (a signal handler may not).
void frame_path(char* out, size_t cap, const char* dir, long index) {
    size_t n = 0;
    for (const char* p = dir; *p && n + 1 < cap; ++p) out[n++] = *p;
    const char* name = "/frame_";
    for (const char* p = name; *p && n + 1 < cap; ++p) out[n++] = *p;
    char digits[24];
    int d = 0;
    do {
        digits[d++] = char('0' + index % 10);
        index /= 10;
    } while (index > 0 || d < 5);
    while (d > 0 && n + 1 < cap) out[n++] = digits[--d];
    for (const char* p = ".png"; *p && n + 1 < cap; ++p) out[n++] = *p;
    out[n] = '\0';
}

// Removes what a run was writing and says so (async-signal-safe: write, unlink, rmdir).
void remove_registered() {
    bool any = false;
    for (size_t i = 0; i < kSlots; ++i)
        if (g_state[i].load() == 2 && unlink(g_paths[i].data()) == 0) {
            say("skyreels: removed the unfinished ");
            say(g_paths[i].data());
            say("\n");
            any = true;
        }
    if (g_frames_state.load() == 2) {
        static char path[kPathBytes + 32];
        for (long i = 0; i < g_frames_written.load(); ++i) {
            frame_path(path, sizeof(path), g_frames_dir.data(), i);
            unlink(path);
        }
        if (rmdir(g_frames_dir.data()) == 0) {
            say("skyreels: removed the unfinished PNG folder ");
            say(g_frames_dir.data());
            say("\n");
            any = true;
        }
    }
    if (!any) say("skyreels: nothing unfinished to remove\n");
}

void die_by(int sig) {
    signal(sig, SIG_DFL);  // then die as the signal says (exit status, core dumps, the shell's "^C")
    raise(sig);
}

void on_signal(int sig) {
    say(sig == SIGINT   ? "\nskyreels: interrupted (Ctrl-C): stopping\n"
        : sig == SIGHUP ? "\nskyreels: the terminal closed (SIGHUP): stopping\n"
                        : "\nskyreels: terminated (SIGTERM): stopping\n");
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

bool register_partial_frames(const std::string& dir) {
    int expected = 0;
    if (dir.size() >= kPathBytes || !g_frames_state.compare_exchange_strong(expected, 1)) return false;
    std::memcpy(g_frames_dir.data(), dir.c_str(), dir.size() + 1);
    g_frames_written.store(0);
    g_frames_state.store(2);
    return true;
}

void partial_frames_written(long count) {
    g_frames_written.store(count);
}

void unregister_partial_frames() {
    g_frames_state.store(0);
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
