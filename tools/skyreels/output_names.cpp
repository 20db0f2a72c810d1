#include "tools/skyreels/output_names.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

namespace sr::cli {
namespace {

// 100 CJK characters are 300 bytes, past the 255 bytes a file name may have on Linux and macOS: the stem keeps
// room for "_<seed>_<i>.mp4" and the writer's ".XXXXXX.partial" suffix.
constexpr size_t kMaxStemBytes = 200;

// Length of the UTF-8 sequence starting at s[i] when it is valid (1..4), else 0.
size_t utf8_sequence(const std::string& s, size_t i) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return 0;
    for (size_t k = 1; k < n; ++k)
        if ((b(i + k) & 0xc0) != 0x80) return 0;
    return n;
}

}  // namespace

std::string prompt_file_stem(const std::string& prompt) {
    std::string out;
    size_t chars = 0;
    for (size_t i = 0; i < prompt.size() && chars < 100;) {
        const size_t n = utf8_sequence(prompt, i);
        if (out.size() + std::max<size_t>(n, 1) > kMaxStemBytes) break;  // file systems allow 255 bytes a name
        ++chars;  // Python counts code points; an invalid byte counts as one (it was one surrogate-escaped char)
        if (n == 0) {
            out += '_';
            ++i;
            continue;
        }
        const char c = prompt[i];
        if (n == 1) {
            if (c == '/') {
            } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\' || c == ':' || c == '*' ||
                       c == '?' || c == '"' || c == '<' || c == '>' || c == '|') {
                out += '_';
            } else {
                out += c;
            }
        } else {
            out.append(prompt, i, n);
        }
        i += n;
    }
    const size_t first = out.find_first_not_of(" .");
    if (first == std::string::npos) return "video";
    out = out.substr(first, out.find_last_not_of(" .") - first + 1);
    return out;
}

std::string outdir_file(const std::string& outdir, const std::string& prompt, uint64_t seed, int index) {
    return (std::filesystem::path(outdir) / fmt::format("{}_{}_{}.mp4", prompt_file_stem(prompt), seed, index))
        .string();
}

std::string with_video_extension(const std::string& out) {
    return std::filesystem::path(out).extension().empty() ? out + ".mp4" : out;
}

}  // namespace sr::cli
