#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

#include "core/error.h"
#include "core/files.h"

namespace sr {
namespace {

LogLevel level_from_env() {
    const char* v = std::getenv("SKYREELS_LOG");
    if (!v) return LogLevel::Info;
    if (!std::strcmp(v, "debug")) return LogLevel::Debug;
    if (!std::strcmp(v, "warn")) return LogLevel::Warn;
    if (!std::strcmp(v, "error")) return LogLevel::Error;
    if (!std::strcmp(v, "quiet")) return LogLevel::Quiet;
    return LogLevel::Info;
}

std::atomic<LogLevel>& level_ref() {
    static std::atomic<LogLevel> level{level_from_env()};
    return level;
}

thread_local const LogScope* t_scope = nullptr;

// The innermost LogSinkScope (any thread's): where log lines go instead of stderr.
std::mutex& sink_mutex() {
    static std::mutex m;
    return m;
}
const LogSinkScope* g_sink = nullptr;

}  // namespace

LogScope::LogScope(LogLevel level) : level_(level), outer_(t_scope) {
    t_scope = this;
}

LogScope::~LogScope() {
    t_scope = outer_;
}

LogLevel log_level() {
    if (t_scope) return t_scope->level_;
    return level_ref().load(std::memory_order_relaxed);
}

LogLevel parse_log_level(std::string_view text, std::string_view what) {
    static constexpr std::pair<std::string_view, LogLevel> kNames[] = {{"debug", LogLevel::Debug},
                                                                       {"info", LogLevel::Info},
                                                                       {"warn", LogLevel::Warn},
                                                                       {"error", LogLevel::Error},
                                                                       {"quiet", LogLevel::Quiet}};
    for (const auto& [name, level] : kNames)
        if (text == name) return level;
    SR_THROW("{} '{}': expected debug, info, warn, error or quiet", what, text);
}
void set_log_level(LogLevel level) {
    level_ref().store(level);
}

void log_message(LogLevel level, std::string_view message) {
    static const char* names[] = {"debug", "info", "warn", "error", ""};
    // Messages carry names read from files: control characters are escaped (core/files.h).
    const std::string line = fmt::format("[{}] {}\n", names[int(level)], terminal_safe(message));
    std::lock_guard<std::mutex> lock(sink_mutex());
    if (g_sink)
        g_sink->sink_(level, line);
    else
        std::fputs(line.c_str(), stderr);
}

LogSinkScope::LogSinkScope(LogSink sink) : sink_(std::move(sink)) {
    std::lock_guard<std::mutex> lock(sink_mutex());
    outer_ = g_sink;
    g_sink = this;
}

LogSinkScope::~LogSinkScope() {
    std::lock_guard<std::mutex> lock(sink_mutex());
    g_sink = outer_;
}

}  // namespace sr
