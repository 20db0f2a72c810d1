// EXIF orientation of the I2V conditioning image. The reference loads it with diffusers' load_image, which
// applies PIL.ImageOps.exif_transpose: a phone photo stored sideways with an Orientation tag is turned upright
// before anything else. Without this a rotated JPEG would condition the video sideways, silently.
//
//   const int o = sr::exif_orientation(bytes, size);        // 1..8 (1: as stored)
//   img = sr::apply_exif_orientation(std::move(img), o);    // 8-bit RGB -> upright
#pragma once

#include <cstddef>
#include <cstdint>

#include "media/image.h"

namespace sr {

// The Orientation tag (0x0112) of IFD0 in a JPEG's APP1 "Exif" segment or a PNG's eXIf chunk: 1..8, or 1 when
// there is none or the EXIF block is unreadable or holds another value (PIL ignores a broken EXIF block
// rather than failing the image, and so do we). Every read is bounds-checked: any bytes are safe input.
int exif_orientation(const uint8_t* data, size_t size);

// An image turned as PIL's exif_transpose turns it: 2 mirror left-right, 3 rotate 180, 4 mirror
// top-bottom, 5 transpose, 6 rotate 90 clockwise, 7 transverse (mirror over the anti-diagonal), 8 rotate 90
// counter-clockwise; 1 (or anything else) returns the image as it is.
Image8 apply_exif_orientation(Image8 image, int orientation);

}  // namespace sr
