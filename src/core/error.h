// Errors in three tiers (see docs/ARCHITECTURE.md):
//  1. InputError: something a user can cause (a bad file, tensor, shape, flag, an out-of-memory under a
//     budget). It names the culprit, gains context as it unwinds (SR_WITH_CONTEXT / add_context), and is
//     caught once at the CLI/server edge, which exits non-zero.
//  2. SR_ASSERT: a broken invariant of our own code. Always on, prints the place and aborts.
//  3. Vendor checks (SR_DNNL_CHECK, later CUDA/NCCL/libav): report the call and the place as an Error.
//
//   SR_THROW_IF(n < 0, "tensor '{}': negative size {}", name, n);
//   SR_WITH_CONTEXT("loading " + path, load(path));
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sr {

class Error : public std::runtime_error {
public:
    explicit Error(std::string message) : std::runtime_error(message), message_(std::move(message)) {}
    const char* what() const noexcept override { return message_.c_str(); }
    const std::string& message() const { return message_; }
    // Prepends "context: " to the message; the caller rethrows with `throw;`.
    virtual void add_context(const std::string& context) {
        if (!context.empty()) message_ = context + ": " + message_;
    }

private:
    std::string message_;
};

// A user-causable problem: bad file, tensor, shape, flag or value.
class InputError : public Error {
public:
    using Error::Error;
};

// A request that does not fit the memory budget it was given.
class OutOfMemoryError : public InputError {
public:
    using InputError::InputError;
};

// A vendor library (oneDNN, CUDA, ...) reported a failure.
class VendorError : public Error {
public:
    using Error::Error;
};

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& message);

}  // namespace sr

#define SR_THROW(...) throw ::sr::InputError(::fmt::format(__VA_ARGS__))

#define SR_THROW_IF(cond, ...)           \
    do {                                 \
        if (cond) SR_THROW(__VA_ARGS__); \
    } while (0)

// Always-on invariant check: for bugs in our code, never for bad user input.
#define SR_ASSERT(cond, ...)                                                                      \
    do {                                                                                          \
        if (!(cond)) ::sr::assert_fail(#cond, __FILE__, __LINE__, ::fmt::format("" __VA_ARGS__)); \
    } while (0)

// Rethrows an sr::Error with "context: " prepended; other exceptions pass unchanged.
#define SR_WITH_CONTEXT(context_expr, ...)   \
    try {                                    \
        __VA_ARGS__;                         \
    } catch (::sr::Error & sr_error_) {      \
        sr_error_.add_context(context_expr); \
        throw;                               \
    }
