// The EXIF Orientation of a JPEG or PNG (how a camera or phone says the stored pixels must be turned
// to be seen upright), read from JPEG's APP1 "Exif" segment or PNG's eXIf chunk, and applying it to a
// decoded image.
#pragma once
#include <string>

#include "data/image.h"

namespace moe {

// The Orientation tag (1-8) of the first APP1 Exif segment of the JPEG in `bytes`, or 1 (as stored)
// when there is none: not a JPEG, no Exif segment before the first scan, no tag in IFD0, a value
// outside 1-8, or any malformed structure (a malformed EXIF block is ignored, never an error). Reads
// only inside `bytes` and follows no offset that leaves the segment.
int jpeg_exif_orientation(const std::string& bytes);

// The same from the eXIf chunk of the PNG in `bytes` (the EXIF TIFF structure without JPEG's
// "Exif\0\0" prefix, PNG 1.5 / third edition), or 1: not a PNG, no eXIf chunk before IEND, or malformed.
int png_exif_orientation(const std::string& bytes);

// jpeg_exif_orientation or png_exif_orientation by the file's signature; 1 for any other format.
int exif_orientation(const std::string& bytes);

// The image turned upright for EXIF `orientation` (1 as stored, 2 mirrored left-right, 3 rotated 180,
// 4 mirrored top-bottom, 5 transposed, 6 rotated 90 clockwise, 7 transverse, 8 rotated 90
// counter-clockwise); 5-8 swap width and height. Any other value returns the image unchanged.
GreyImage apply_exif_orientation(const GreyImage& img, int orientation);

}  // namespace moe
