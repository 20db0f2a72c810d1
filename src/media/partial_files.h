// Files being written that must not outlive an interrupted run (a video's "<name>.partial"). On SIGINT or
// SIGTERM the handler unlinks every registered file and then dies by the same signal, so Ctrl-C never
// leaves something that looks like a half-finished output; errors and normal exits are handled by the
// writers themselves (VideoWriter removes its partial file when destroyed unfinished).
//
//   sr::remove_partial_files_on_signal();        // once, in main()
//   sr::register_partial_file(path + ".partial");
//   ... rename(partial, path); sr::unregister_partial_file(path + ".partial");
#pragma once

#include <string>

namespace sr {

// Paths longer than 4095 bytes, or more than 16 at once, are not tracked (returns false); the writer's
// own cleanup still runs on errors.
bool register_partial_file(const std::string& path);
void unregister_partial_file(const std::string& path);
void remove_partial_files_on_signal();

}  // namespace sr
