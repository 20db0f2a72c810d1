#include "pipeline/preview_files.h"

#include <unistd.h>

#include <cctype>
#include <filesystem>

#include "core/error.h"
#include "core/files.h"
#ifdef SKYREELS_HAVE_MEDIA
#include "media/apng.h"
#include "media/image.h"
#include "media/png_frames.h"
#endif

namespace fs = std::filesystem;

namespace sr {

namespace {

// The extension in lower case: ".png", ".apng", "".
std::string extension(const std::string& path) {
    std::string s = fs::path(path).extension().string();
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

#ifdef SKYREELS_HAVE_MEDIA
// The animation's speed: a latent frame stands for 4 frames of a 24 fps video.
constexpr int kPreviewFps = 6;

// What the files say about themselves (PNG text chunks).
PngText preview_text(const PreviewFrames& p) {
    return {{"Comment", fmt::format("skyreels.cpp denoising preview after step {} of {} (latent to RGB, no VAE)",
                                    p.step, p.total_steps)}};
}
#endif

}  // namespace

bool preview_is_file(const std::string& path) {
    return extension(path) == ".png" || extension(path) == ".apng";
}

void check_preview_path(const std::string& path) {
    SR_THROW_IF(path.empty(), "--preview: empty path");
#ifndef SKYREELS_HAVE_MEDIA
    SR_THROW("--preview {}: this build has no PNG writer (skyreels_media was not built)", path);
#else
    std::string target = path;
    while (target.size() > 1 && target.back() == '/') target.pop_back();
    std::error_code ec;
    const fs::path p(target);
    const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    SR_THROW_IF(!fs::is_directory(dir, ec), "--preview {}: folder {} does not exist", path, dir.string());
    SR_THROW_IF(::access(dir.c_str(), W_OK) != 0, "--preview {}: folder {} is not writable", path, dir.string());
    if (preview_is_file(target)) {
        SR_THROW_IF(fs::is_directory(p, ec), "--preview {}: is a folder, not a {} file name", path, extension(target));
        return;
    }
    SR_WITH_CONTEXT("--preview " + path, PngFrameSet::check_target(target, PngFolder::Replace));
#endif
}

void write_preview(const std::string& path, const PreviewFrames& preview) {
#ifndef SKYREELS_HAVE_MEDIA
    SR_THROW("--preview {}: this build has no PNG writer (skyreels_media was not built)", path);
#else
    SR_WITH_CONTEXT("--preview " + path, {
        if (preview_is_file(path)) {
            std::vector<uint8_t> png;
            if (extension(path) == ".png") {
                png = encode_png(contact_sheet(preview), preview_text(preview));
            } else {
                std::vector<Image8> frames;
                for (int64_t t = 0; t < preview.frames; ++t) frames.push_back(preview.frame_image(t));
                png = encode_apng(frames, kPreviewFps, preview_text(preview));
            }
            TemporaryFile tmp = create_temporary_file(path, ".partial");
            write_all(tmp.fd(), png.data(), png.size(), path);
            tmp.commit(path);
        } else {
            PngFrameSet frames(path, preview_text(preview), PngFolder::Replace);
            for (int64_t t = 0; t < preview.frames; ++t) frames.write(t, preview.frame_image(t));
            frames.commit();
        }
    });
#endif
}

}  // namespace sr
