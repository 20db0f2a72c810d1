#include "media/png_frames.h"

#include <fcntl.h>  // AT_FDCWD
#include <fmt/format.h>
#include <stdio.h>     // renameat2, RENAME_EXCHANGE
#include <stdlib.h>    // mkdtemp
#include <sys/stat.h>  // chmod

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "media/partial_files.h"

namespace sr {

namespace fs = std::filesystem;

namespace {

// frame_ followed by at least five digits and .png: what write() names its files.
bool is_frame_name(const std::string& name) {
    constexpr std::string_view prefix = "frame_", suffix = ".png";
    if (name.size() < prefix.size() + 5 + suffix.size() || name.rfind(prefix, 0) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        return false;
    for (size_t i = prefix.size(); i < name.size() - suffix.size(); ++i)
        if (name[i] < '0' || name[i] > '9') return false;
    return true;
}

// The process's umask, read without changing it (umask(2) sets it too, for every thread); 077 when unknown.
mode_t current_umask() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("Umask:", 0) == 0) return mode_t(std::strtoul(line.c_str() + 6, nullptr, 8));
    return 077;
}

// A folder that holds an earlier frame set and nothing else: regular frame_NNNNN.png files only.
bool holds_only_frames(const std::string& dir) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::error_code kind;
        if (!e.is_regular_file(kind) || e.is_symlink(kind) || !is_frame_name(e.path().filename().string()))
            return false;
    }
    return !ec;
}

}  // namespace

void PngFrameSet::check_target(const std::string& dir, PngFolder mode) {
    SR_THROW_IF(dir.empty(), "PNG folder: empty path");
    std::error_code ec;
    const fs::file_status st = fs::status(dir, ec);
    if (!fs::exists(st)) return;
    SR_THROW_IF(!fs::is_directory(st), "PNG folder '{}' exists and is not a folder", dir);
    if (mode == PngFolder::Replace) {
        SR_THROW_IF(!holds_only_frames(dir),
                    "PNG folder '{}' holds other files than frame_NNNNN.png: give a new folder, an empty one, or one "
                    "that holds only an earlier set of frames (it is replaced)",
                    dir);
        return;
    }
    SR_THROW_IF(!fs::is_empty(dir, ec) || ec,
                "PNG folder '{}' is not empty: give a new or an empty folder (frames of another run are never "
                "mixed with this one's)",
                dir);
}

PngFrameSet::PngFrameSet(std::string dir, std::vector<std::pair<std::string, std::string>> text, PngFolder mode)
    : dir_(std::move(dir)), text_(std::move(text)), mode_(mode) {
    SR_THROW_IF(dir_.empty(), "PNG folder: empty path");
    while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
    check_target(dir_, mode_);
    std::error_code ec;
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
    // mkdtemp makes 0700; the frames' folder gets the mode a plain mkdir would give, so whatever may read the
    // folder beside it (a web server showing the preview, a colleague) may read this one.
    ::chmod(temp_.c_str(), 0777 & ~current_umask());
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
    if (mode_ == PngFolder::Replace && fs::is_directory(dir_, ec) && !fs::is_empty(dir_, ec)) {
        // Checked again: files put there since the start are not ours to remove.
        check_target(dir_, mode_);
        replace_folder();
    } else {
        if (fs::is_directory(dir_, ec)) fs::remove(dir_, ec);  // empty (checked at the start); rename needs it gone
        fs::rename(temp_, dir_, ec);
        SR_THROW_IF(ec, "cannot move the PNG frames from '{}' to '{}': {}", temp_, dir_, ec.message());
    }
    committed_ = true;
    if (registered_) unregister_partial_frames();
    registered_ = false;
}

void PngFrameSet::replace_folder() {
    // One rename that swaps the two folders (Linux 3.15+): readers see the old set or the new one, never a mix
    // and never no folder. The old set then sits at the temporary name, and goes.
    if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) == 0) {
        std::error_code ec;
        fs::remove_all(temp_, ec);
        return;
    }
    SR_THROW_IF(errno != EINVAL && errno != ENOSYS && errno != ENOTSUP, "cannot swap the PNG frames '{}' into '{}': {}",
                temp_, dir_, std::strerror(errno));
    // A file system without the exchange: the old set steps aside (onto an empty folder of our own: rename
    // replaces an empty folder), the new one moves in, the old one goes. For a moment there is no folder.
    std::string pattern = dir_ + ".old-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    SR_THROW_IF(::mkdtemp(buf.data()) == nullptr, "cannot create a folder beside the PNG folder '{}': {}", dir_,
                std::strerror(errno));
    const std::string old = buf.data();
    std::error_code ec;
    fs::rename(dir_, old, ec);
    if (ec) fs::remove(old, ec);
    SR_THROW_IF(ec, "cannot move the earlier PNG frames '{}' aside: {}", dir_, ec.message());
    fs::rename(temp_, dir_, ec);
    SR_THROW_IF(ec, "cannot move the PNG frames from '{}' to '{}': {}", temp_, dir_, ec.message());
    fs::remove_all(old, ec);
}

}  // namespace sr
