// Leveled logging to stderr. The process-wide level comes from set_log_level() or
// SKYREELS_LOG=debug|info|warn|error|quiet; a LogScope overrides it on one thread for as long as it lives, so
// a session's or a job's level applies to its work without changing what other threads log.
//
//   SR_LOG_INFO("loaded {} tensors from {}", n, path);
//   { sr::LogScope quiet(sr::LogLevel::Error); run_job(); }   // this thread logs errors only, then as before
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string_view>

namespace sr {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Quiet = 4 };

// The innermost LogScope's level on this thread, else the process-wide level.
LogLevel log_level();
void set_log_level(LogLevel level);
void log_message(LogLevel level, std::string_view message);
// "debug" | "info" | "warn" | "error" | "quiet"; InputError naming `what` otherwise.
LogLevel parse_log_level(std::string_view text, std::string_view what);

// Overrides the log level on the calling thread until destroyed; scopes nest (the innermost wins). Threads
// the scope's owner starts (OpenMP workers) keep the process-wide level.
class LogScope {
public:
    explicit LogScope(LogLevel level);
    ~LogScope();
    LogScope(const LogScope&) = delete;
    LogScope& operator=(const LogScope&) = delete;

private:
    LogLevel level_;
    const LogScope* outer_;
    friend LogLevel log_level();
};

// Where log lines go while it lives, for every thread (default: stderr): a front end that draws a live
// progress line installs one that clears the line, prints the message and redraws, so warnings never glue onto
// it. The sink gets the whole line ("[warn] ...\n"); calls are serialised. Scopes nest.
using LogSink = std::function<void(LogLevel level, std::string_view line)>;
class LogSinkScope {
public:
    explicit LogSinkScope(LogSink sink);
    ~LogSinkScope();
    LogSinkScope(const LogSinkScope&) = delete;
    LogSinkScope& operator=(const LogSinkScope&) = delete;

private:
    LogSink sink_;
    const LogSinkScope* outer_ = nullptr;
    friend void log_message(LogLevel level, std::string_view message);
};

}  // namespace sr

#define SR_LOG_AT(level, ...)                                                                     \
    do {                                                                                          \
        if (::sr::log_level() <= (level)) ::sr::log_message((level), ::fmt::format(__VA_ARGS__)); \
    } while (0)
#define SR_LOG_DEBUG(...) SR_LOG_AT(::sr::LogLevel::Debug, __VA_ARGS__)
#define SR_LOG_INFO(...) SR_LOG_AT(::sr::LogLevel::Info, __VA_ARGS__)
#define SR_LOG_WARN(...) SR_LOG_AT(::sr::LogLevel::Warn, __VA_ARGS__)
#define SR_LOG_ERROR(...) SR_LOG_AT(::sr::LogLevel::Error, __VA_ARGS__)
