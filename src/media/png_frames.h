// A video's frames as numbered PNGs in a folder (generate --png-dir), written so that a run that fails, is
// cancelled or fills the disk never leaves a folder that looks complete: the frames go into a fresh
// temporary folder beside the target (mkdtemp), every write is checked, and commit() renames the set into
// place. The target must not exist or be empty: frames of an earlier, longer run are never mixed in.
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

class PngFrameSet {
public:
    // `text`: tEXt chunks every frame carries (key, value; Latin-1 keys of 1..79 characters; values UTF-8 are
    // written as iTXt).
    explicit PngFrameSet(std::string dir, std::vector<std::pair<std::string, std::string>> text = {});
    ~PngFrameSet();
    PngFrameSet(const PngFrameSet&) = delete;
    PngFrameSet& operator=(const PngFrameSet&) = delete;

    // Writes frame `index` as frame_NNNNN.png (encoded in memory, written with checked calls).
    void write(int64_t index, const Image8& frame);
    // Moves the finished set to the target folder.
    void commit();
    const std::string& dir() const { return dir_; }

private:
    std::string dir_, temp_;
    std::vector<std::pair<std::string, std::string>> text_;
    bool committed_ = false, registered_ = false;
    int64_t written_ = 0;
};

}  // namespace sr
