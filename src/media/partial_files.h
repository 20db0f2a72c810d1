// Files being written that must not outlive an interrupted run (a video's "<name>.XXXXXX.partial"). On
// SIGINT, SIGTERM or SIGHUP the handler says that it stops and what it removes, unlinks every registered file
// and then dies by the same signal, so
// Ctrl-C (or a closed terminal) never leaves something that looks like a half-finished output; errors and
// normal exits are handled by the writers themselves (VideoWriter removes its partial file when destroyed
// unfinished). SIGBUS, which a memory-mapped checkpoint raises when it is truncated or rewritten while a run
// reads it, is handled the same way, and the message names the file (core/mapped_files.h) instead of the
// shell's bare "Bus error". A signal that was ignored when the process started (SIGINT and SIGHUP under
// nohup or in a background job) stays ignored.
//
//   sr::remove_partial_files_on_signal();        // once, in main()
//   sr::register_partial_file(tmp.path());
//   ... rename(tmp, path); sr::unregister_partial_file(tmp.path());
#pragma once

#include <string>

namespace sr {

// Paths longer than 4095 bytes, or more than 16 at once, are not tracked (returns false); the writer's
// own cleanup still runs on errors.
bool register_partial_file(const std::string& path);
void unregister_partial_file(const std::string& path);
// A folder of PNG frames being written (one at a time): on a signal its frame_NNNNN.png files (the first
// `count` given to partial_frames_written) and then the folder are removed.
bool register_partial_frames(const std::string& dir);
void partial_frames_written(long count);
void unregister_partial_frames();
void remove_partial_files_on_signal();

}  // namespace sr
