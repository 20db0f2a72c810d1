// The `skyreels` command line: each subcommand registers its flags on a CLI11 app and returns the
// function that runs it. Errors propagate as sr::Error to main(), the one place that reports them.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace sr::cli {

using Command = std::function<int()>;

// Each registers its subcommand on `app` (as the app's last subcommand) and returns its runner. A new
// command is a new cmd_*.cpp, a declaration here and one entry in main.cpp's list.
Command add_info_command(CLI::App& app);
Command add_tokenize_command(CLI::App& app);
Command add_generate_command(CLI::App& app);
Command add_convert_command(CLI::App& app);
Command add_devices_command(CLI::App& app);
Command add_serve_command(CLI::App& app);

}  // namespace sr::cli
