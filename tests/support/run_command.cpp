#include "support/run_command.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>

namespace sr::test {

CommandResult run_command(const std::string& command) {
    const std::string cmd = command + " 2>&1";
    CommandResult r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
    const int status = pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

}  // namespace sr::test
