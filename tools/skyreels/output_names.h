// Output file names: SkyReels' --outdir naming made safe for every filesystem, and --out's extension.
#pragma once

#include <cstdint>
#include <string>

namespace sr::cli {

// The first 100 characters (Unicode code points, as Python's prompt[:100] counts them; never cut inside a
// UTF-8 sequence, and at most 200 bytes, so that the file name fits the 255 bytes file systems allow) of `prompt`, with
// '/' removed as SkyReels does and the characters that common filesystems refuse or that break shells and listings (\ :
// * ? " < > | and control characters such as newlines) replaced by '_'; leading and trailing spaces and dots trimmed;
// "video" when nothing is left. Invalid UTF-8 bytes become '_'.
std::string prompt_file_stem(const std::string& prompt);

// SkyReels' --outdir file: "<stem>_<seed>_<index>.mp4" in `outdir`.
std::string outdir_file(const std::string& outdir, const std::string& prompt, uint64_t seed, int index);

// --out without an extension gets ".mp4"; an extension in any case is kept (".MP4" is fine).
std::string with_video_extension(const std::string& out);

}  // namespace sr::cli
