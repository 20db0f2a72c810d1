#include "media/png_frames.h"

#include <fmt/format.h>
#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "media/partial_files.h"

namespace sr {

namespace fs = std::filesystem;

PngFrameSet::PngFrameSet(std::string dir, std::vector<std::pair<std::string, std::string>> text)
    : dir_(std::move(dir)), text_(std::move(text)) {
    SR_THROW_IF(dir_.empty(), "PNG folder: empty path");
    while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
    std::error_code ec;
    const fs::file_status st = fs::status(dir_, ec);
    if (fs::exists(st)) {
        SR_THROW_IF(!fs::is_directory(st), "PNG folder '{}' exists and is not a folder", dir_);
        SR_THROW_IF(!fs::is_empty(dir_, ec) || ec,
                    "PNG folder '{}' is not empty: give a new or an empty folder (frames of another run are never "
                    "mixed with this one's)",
                    dir_);
    }
    const fs::path parent = fs::path(dir_).parent_path();
    if (!parent.empty()) {
        fs::create_directories(parent, ec);
        SR_THROW_IF(ec, "cannot create the PNG folder's parent '{}': {}", parent.string(), ec.message());
    }
    std::string pattern = dir_ + ".partial-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    SR_THROW_IF(::mkdtemp(buf.data()) == nullptr, "cannot create a folder beside the PNG folder '{}': {}", dir_,
                std::strerror(errno));
    temp_ = buf.data();
    registered_ = register_partial_frames(temp_);  // Ctrl-C removes the frames written so far
}

PngFrameSet::~PngFrameSet() {
    if (registered_) unregister_partial_frames();
    if (committed_ || temp_.empty()) return;
    std::error_code ec;
    fs::remove_all(temp_, ec);
    SR_LOG_DEBUG("PNG folder '{}': not finished, removed '{}'", dir_, temp_);
}

void PngFrameSet::write(int64_t index, const Image8& frame) {
    SR_THROW_IF(committed_, "PNG folder '{}': write after commit", dir_);
    const std::string name = fmt::format("frame_{:05d}.png", index);
    written_ = std::max(written_, index + 1);
    if (registered_) partial_frames_written(long(written_));  // before the file exists: a signal removes it too
    SR_WITH_CONTEXT("PNG folder '" + dir_ + "', " + name, { save_png(temp_ + "/" + name, frame, text_); });
}

void PngFrameSet::commit() {
    SR_THROW_IF(committed_, "PNG folder '{}': committed twice", dir_);
    std::error_code ec;
    if (fs::is_directory(dir_, ec)) fs::remove(dir_, ec);  // empty (checked at the start); rename needs it gone
    fs::rename(temp_, dir_, ec);
    SR_THROW_IF(ec, "cannot move the PNG frames from '{}' to '{}': {}", temp_, dir_, ec.message());
    committed_ = true;
    if (registered_) unregister_partial_frames();
    registered_ = false;
}

}  // namespace sr
