// Where `generate --preview PATH` puts the preview of the video while it forms (pipeline/latent_preview.h),
// replaced at each update so that a viewer (an image viewer, a browser, `watch`) always finds a whole preview:
//  - PATH ending in .png (any case): one PNG, the frames tiled as a contact sheet, written under a temporary
//    name and renamed over the last one (core/files.h);
//  - PATH ending in .apng: the frames as an animated PNG looping at 6 frames a second (a latent frame stands for
//    4 frames of a 24 fps video), written the same way (media/apng.h);
//  - any other PATH: a folder of frame_00000.png, frame_00001.png, ... (one per latent frame), written into a
//    fresh folder beside it and swapped in whole (media/png_frames.h, PngFolder::Replace). An existing folder
//    must be empty or hold only such frames (an earlier preview): a folder of anything else is refused, never
//    replaced.
// The folder PATH is in must exist: a mistyped path is an error, not a tree of new folders.
//
//   sr::check_preview_path("previews/cat");                  // InputError naming --preview, before any work
//   sr::write_preview("previews/cat", sr::latent_preview(x0, 5, 30));
#pragma once

#include <string>

#include "pipeline/latent_preview.h"

namespace sr {

// One file (.png: a contact sheet, .apng: an animation), not a folder of frames.
bool preview_is_file(const std::string& path);
// InputError naming --preview and the problem; creates nothing.
void check_preview_path(const std::string& path);
// Replaces the preview at `path` with `preview` (InputError naming --preview when it cannot be written).
void write_preview(const std::string& path, const PreviewFrames& preview);

}  // namespace sr
