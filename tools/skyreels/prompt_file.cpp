#include "tools/skyreels/prompt_file.h"

#include <fstream>
#include <set>

#include "core/error.h"
#include "io/json.h"

namespace sr::cli {

std::vector<PromptLine> read_prompt_file(const std::string& path) {
    std::ifstream f(path);
    SR_THROW_IF(!f, "--prompt-file {}: cannot open the file", path);
    std::vector<PromptLine> out;
    std::string text;
    int n = 0;
    while (std::getline(f, text)) {
        ++n;
        if (!text.empty() && text.back() == '\r') text.pop_back();  // CRLF files
        const size_t first = text.find_first_not_of(" \t");
        if (first == std::string::npos || text[first] == '#') continue;
        PromptLine p;
        p.line = n;
        const std::string where = fmt::format("--prompt-file {}, line {}", path, n);
        if (text[first] != '{') {
            p.prompt = text;
            out.push_back(std::move(p));
            continue;
        }
        SR_WITH_CONTEXT(where, {
            const Json j = parse_json(text, "the line");
            SR_THROW_IF(!j.is_object(), "expected a JSON object");
            static const std::set<std::string> known = {"prompt", "negative_prompt", "seed",     "height", "width",
                                                        "frames", "steps",           "guidance", "image",  "out"};
            for (const auto& [key, value] : j.items())
                SR_THROW_IF(!known.count(key),
                            "unknown key \"{}\" (known: prompt, negative_prompt, seed, height, width, frames, steps, "
                            "guidance, image, out)",
                            key);
            auto str = [&](const char* key) -> std::optional<std::string> {
                if (!j.contains(key)) return std::nullopt;
                SR_THROW_IF(!j[key].is_string(), "\"{}\" must be a string", key);
                return j[key].get<std::string>();
            };
            auto integer = [&](const char* key) -> std::optional<int64_t> {
                if (!j.contains(key)) return std::nullopt;
                SR_THROW_IF(!j[key].is_number_integer(), "\"{}\" must be an integer", key);
                return j[key].get<int64_t>();
            };
            const auto prompt = str("prompt");
            SR_THROW_IF(!prompt, "\"prompt\" is missing");
            p.prompt = *prompt;
            p.negative_prompt = str("negative_prompt");
            p.image = str("image");
            p.out = str("out");
            p.seed = integer("seed");
            p.height = integer("height");
            p.width = integer("width");
            p.frames = integer("frames");
            p.steps = integer("steps");
            if (j.contains("guidance")) {
                SR_THROW_IF(!j["guidance"].is_number(), "\"guidance\" must be a number");
                p.guidance = j["guidance"].get<double>();
            }
        });
        out.push_back(std::move(p));
    }
    SR_THROW_IF(out.empty(), "--prompt-file {}: no prompts in the file", path);
    return out;
}

}  // namespace sr::cli
