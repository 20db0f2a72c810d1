// Pillow's LANCZOS resize of an 8-bit RGB image, reproduced integer for integer, so that the I2V
// conditioning image holds exactly the bytes the reference's `PIL.Image.resize(..., LANCZOS)` gives.
//
//   sr::Image8 small = sr::pil_resize_lanczos(crop, 960, 544);   // out width, out height
//
// Matches Pillow 7.0 .. 11 (src/libImaging/Resample.c; checked against Pillow 9.4.0, the reference's);
// the only platform dependence is libm's sin() in the filter weights.
#pragma once

#include "media/image.h"

namespace sr {

// PIL's Image.resize((out_w, out_h), Image.LANCZOS) of the whole image (the default box, reducing_gap None).
Image8 pil_resize_lanczos(const Image8& in, int64_t out_w, int64_t out_h);

}  // namespace sr
