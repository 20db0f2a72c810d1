#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

}  // namespace

LogLevel log_level() {
    return level_ref().load(std::memory_order_relaxed);
}
void set_log_level(LogLevel level) {
    level_ref().store(level);
}

void log_message(LogLevel level, std::string_view message) {
    static const char* names[] = {"debug", "info", "warn", "error", ""};
    std::fprintf(stderr, "[%s] %.*s\n", names[int(level)], int(message.size()), message.data());
}

}  // namespace sr
