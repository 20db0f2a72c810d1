// Runs a shell command line for the tests of the command-line tools, capturing stdout and stderr together.
//
//   const sr::test::CommandResult r = sr::test::run_command("build/skyreels generate --demo");
//   EXPECT_EQ(r.code, 0) << r.output;
#pragma once

#include <string>

namespace sr::test {

struct CommandResult {
    int code = -1;       // the exit status; -1 when the command did not exit normally
    std::string output;  // stdout and stderr
};

CommandResult run_command(const std::string& command);

}  // namespace sr::test
