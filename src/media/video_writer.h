// Video output: H.264 (libx264, yuv420p) in MP4 through FFmpeg's libraries, fed with decoded VAE frames.
//
//   sr::VideoWriter writer("out.mp4", 960, 544, {.fps = 24, .crf = 18});
//   writer.write(frames_0_to_40);   // f32 [3,F,H,W] in [-1,1]; may be called once per VAE tile
//   writer.write(frames_41_to_96);
//   writer.finish();                // out.mp4 appears only now
//
// The file is written under a temporary name of its own, "<path>.XXXXXX.partial" (created exclusively with
// O_EXCL | O_NOFOLLOW in the target's folder: two runs with the same output never share it, and a symlink
// planted there is never followed), and renamed to `path` by finish(); a writer destroyed without finish()
// (an error, an interrupted run) deletes it, so nothing that looks like a finished video is ever left behind. Bad
// sizes, options, tensors and unwritable paths are sr::InputError; failures inside FFmpeg are sr::VendorError naming
// the call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace sr {

struct VideoWriterOptions {
    int fps = 24;
    int crf = 18;  // x264 constant rate factor, 0 (lossless) .. 51
    // When set, every frame is also written there as frame_00000.png, frame_00001.png, ...: into a temporary
    // folder beside it, moved into place by finish() (media/png_frames.h). The folder must not exist or be
    // empty.
    std::string png_dir;
    // Written into the container's metadata (MP4: "comment", "description", ...) and each PNG's tEXt chunks:
    // what made the video (prompt, seed, steps, model, engine version), so it can be reproduced.
    std::vector<std::pair<std::string, std::string>> metadata;
};

// The FFmpeg libraries' version (av_version_info), for --version.
std::string ffmpeg_version();

class VideoWriter {
public:
    // width and height must be even (yuv420p); the container is chosen from the extension (.mp4, .mov, .mkv).
    VideoWriter(const std::string& path, int64_t width, int64_t height, const VideoWriterOptions& options = {});
    ~VideoWriter();
    VideoWriter(const VideoWriter&) = delete;
    VideoWriter& operator=(const VideoWriter&) = delete;

    // Appends frames f32 [3,F,H,W] (any strides, F >= 1) with values in [-1,1], converted like diffusers'
    // postprocess_video: round((x / 2 + 0.5).clamp(0, 1) * 255).
    void write(const Tensor& frames);
    // Flushes the encoder, writes the trailer and renames the partial file to the target. At least one frame
    // must have been written. Nothing may be written after it.
    void finish();
    int64_t frames_written() const;
    const std::string& path() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sr
