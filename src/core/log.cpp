#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
    const std::string safe = terminal_safe(message);
    std::fprintf(stderr, "[%s] %s\n", names[int(level)], safe.c_str());
}

}  // namespace sr
