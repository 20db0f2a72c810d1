#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace sr {

void assert_fail(const char* expr, const char* file, int line, const std::string& message) {
    std::fprintf(stderr, "skyreels: internal error at %s:%d: assertion `%s` failed%s%s\n", file, line, expr,
                 message.empty() ? "" : ": ", message.c_str());
    std::fflush(stderr);
    std::abort();
}

}  // namespace sr
