// --prompt-file: many videos from one load of the models. One job per line: the line is the prompt, or a
// JSON object (JSON lines) with "prompt" and any of "negative_prompt", "seed", "height", "width", "frames",
// "steps", "guidance", "image", "out". Empty lines and lines starting with '#' are skipped. Errors name the
// file and the line.
//
//   FPS-24, A cat walks on the grass
//   {"prompt": "FPS-24, A dog runs", "seed": 7, "frames": 33, "out": "dog.mp4"}
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sr::cli {

struct PromptLine {
    int line = 0;  // 1-based, for messages
    std::string prompt;
    std::optional<std::string> negative_prompt, image, out;
    std::optional<int64_t> seed, height, width, frames, steps;
    std::optional<double> guidance;
};

std::vector<PromptLine> read_prompt_file(const std::string& path);

}  // namespace sr::cli
