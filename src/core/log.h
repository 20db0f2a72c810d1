// Leveled logging to stderr. The level comes from set_log_level() or SKYREELS_LOG=debug|info|warn|error.
//
//   SR_LOG_INFO("loaded {} tensors from {}", n, path);
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace sr {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Quiet = 4 };

LogLevel log_level();
void set_log_level(LogLevel level);
void log_message(LogLevel level, std::string_view message);

}  // namespace sr

#define SR_LOG_AT(level, ...)                                                                     \
    do {                                                                                          \
        if (::sr::log_level() <= (level)) ::sr::log_message((level), ::fmt::format(__VA_ARGS__)); \
    } while (0)
#define SR_LOG_DEBUG(...) SR_LOG_AT(::sr::LogLevel::Debug, __VA_ARGS__)
#define SR_LOG_INFO(...) SR_LOG_AT(::sr::LogLevel::Info, __VA_ARGS__)
#define SR_LOG_WARN(...) SR_LOG_AT(::sr::LogLevel::Warn, __VA_ARGS__)
#define SR_LOG_ERROR(...) SR_LOG_AT(::sr::LogLevel::Error, __VA_ARGS__)
