// An 8-bit RGB image in memory: what the image reader returns (media/image.h), the PNG writers take, and the
// denoising preview (pipeline/latent_preview.h) draws. Here, below both, so that they share one type.
#pragma once

#include <cstdint>
#include <vector>

namespace sr {

// Rows top to bottom, pixels interleaved: rgb[(y * width + x) * 3 + c].
struct Image8 {
    int64_t width = 0, height = 0;
    std::vector<uint8_t> rgb;
};

}  // namespace sr
