// "Did you mean" for the command line: the closest of a set of names to what the user typed.
#pragma once

#include <string>
#include <vector>

namespace sr::cli {

// The candidate nearest to `typed` by edit distance (case-insensitive; '-' and '_' count as equal, so
// --num-frames finds --num_frames), when it is close enough to be a typo: at most a third of its length
// away, or `typed` is a prefix of it. "" when none is.
std::string closest_name(const std::string& typed, const std::vector<std::string>& candidates);

}  // namespace sr::cli
