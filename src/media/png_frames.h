// A video's frames as numbered PNGs in a folder (generate --png-dir), written so that a run that fails, is
// cancelled or fills the disk never leaves a folder that looks complete: the frames go into a fresh
// temporary folder beside the target (mkdtemp), every write is checked, and commit() renames the set into
// place. The target must not exist or be empty: frames of an earlier, longer run are never mixed in. A set made
// to replace (the denoising preview's, rewritten every few steps) may find an earlier set there, and only
// that: commit() swaps the new folder in with one atomic rename (a reader sees the old set or the new one,
// never a mix) and removes the old one.
//
//   sr::PngFrameSet pngs("out/frames");        // InputError if out/frames holds files
//   pngs.write(0, frame0);                      // out/frames.partial-XXXXXX/frame_00000.png
//   pngs.commit();                              // -> out/frames/; a set destroyed uncommitted is removed
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "media/image.h"

namespace sr {

// New: the target must not exist or be empty. Replace: it may also hold an earlier set (frame_NNNNN.png files
// and nothing else), which commit() replaces; a folder with anything else in it is refused all the same.
enum class PngFolder { New, Replace };

class PngFrameSet {
public:
    // `text`: tEXt chunks every frame carries (key, value; Latin-1 keys of 1..79 characters; values UTF-8 are
    // written as iTXt).
    explicit PngFrameSet(std::string dir, std::vector<std::pair<std::string, std::string>> text = {},
                         PngFolder mode = PngFolder::New);
    // The checks the constructor makes on `dir`, without creating anything (InputError naming the folder).
    static void check_target(const std::string& dir, PngFolder mode);
    ~PngFrameSet();
    PngFrameSet(const PngFrameSet&) = delete;
    PngFrameSet& operator=(const PngFrameSet&) = delete;

    // Writes frame `index` as frame_NNNNN.png (encoded in memory, written with checked calls).
    void write(int64_t index, const Image8& frame);
    // Moves the finished set to the target folder.
    void commit();
    const std::string& dir() const { return dir_; }

private:
    void replace_folder();  // Replace: the new set in place of an earlier one
    std::string dir_, temp_;
    std::vector<std::pair<std::string, std::string>> text_;
    PngFolder mode_;
    bool committed_ = false, registered_ = false;
    int64_t written_ = 0;
};

}  // namespace sr
