// Animated PNG (APNG): frames of one size played in a loop, shown by every current browser in an <img> and by
// most image viewers (those without APNG support show the first frame, a plain PNG). Each frame is encoded by
// libpng (media/image.h's encode_png) and its compressed data re-wrapped in APNG's chunks: acTL after IHDR,
// an fcTL before each frame, the first frame's data as IDAT (the default image), the others' as fdAT.
// ref: the APNG specification (https://wiki.mozilla.org/APNG_Specification), a PNG extension registered in
//      PNG Third Edition (W3C, 2025)
//
//   std::vector<uint8_t> bytes = sr::encode_apng(frames, 6);   // 6 frames a second, looping
#pragma once

#include <cstdint>
#include <vector>

#include "media/image.h"

namespace sr {

// `frames` (at least one, all of one size) shown `fps` frames a second (1..1000), looping for ever; `text` goes
// into the file once, as for encode_png. InputError for an empty list, frames of different sizes or a bad fps.
std::vector<uint8_t> encode_apng(const std::vector<Image8>& frames, int fps, const PngText& text = {});

}  // namespace sr
