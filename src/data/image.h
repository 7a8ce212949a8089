// Loading user-supplied digit images and turning them into MNIST-style 28x28 inputs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct GreyImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height, width], row-major, 0..255
};

// Loads a PNG, JPEG, PGM (ASCII P2 or binary P5) or PPM (ASCII P3 or binary P6, 8 or 16 bits) of any
// size, grey or colour (colour is converted to luma; transparent pixels get the paper's shade, see
// composite_alpha). Throws InputError
// naming the file when it is missing or unreadable, empty, truncated (a PNG without its IEND chunk, a
// JPEG without its end-of-image marker, a PGM/PPM with fewer pixels than its header promises), not an
// image in one of those formats (BMP, GIF, TIFF, WebP, PBM and PAM are named as such), or implausibly
// large (over 64 Mpixel, judged from the header before decoding). A JPEG's EXIF Orientation is applied.
GreyImage load_grey_image(const std::string& path);
// The same from bytes already in memory (an HTTP body); `what` names the source in errors, and images
// over `max_pixels` (at most the 64 Mpixel limit) are refused before decoding.
GreyImage decode_grey_image(const std::string& bytes, const std::string& what, int64_t max_pixels = int64_t(64) << 20);

// Converts to a 28x28 MNIST-style input, white digit on black, prepared the way MNIST was:
//  - if `invert`, the source is dark ink on light paper and is inverted first;
//  - the background level (median of the border pixels) is subtracted and the contrast stretched, so
//    photos of grey paper work; pixels below a small threshold (15% of the contrast, or 4 sigma of the
//    border's noise if higher) and lone pixels with no inked neighbour are treated as background;
//  - the bounding box of the ink is scaled so its longer side is 20 px, keeping the aspect ratio (area
//    averaging when shrinking, linear interpolation when enlarging tiny images), peak normalised to 1;
//  - it is placed in the 28x28 frame so its centre of mass (in pixel-index coordinates) lands at (14,14),
//    shifted by whole pixels, but never so far that ink falls off the frame.
// An image with no ink gives all zeros. Output: 784 floats in [0,1], [28, 28] row-major.
std::vector<float> to_mnist_input(const GreyImage& img, bool invert);

// What `predict --image` and POST /v1/predict both do with a decoded image, so the two give the same
// answer: to_mnist_input, then a judgement. An image with no ink is refused with an InputError naming
// `what`; when the other polarity does show ink, the message says so and names `invert_option` (the CLI's
// "--invert", the service's "?invert=1"), since a dark digit on light paper read as MNIST's white on
// black is exactly such a blank. An image with ink whose paper (the border's median) looks like the
// other polarity is still classified (dim photos of white paper are darker than mid-grey), with a
// warning in `warning` for the caller to show.
struct DigitInput {
  std::vector<float> pixels;  // 784 values, as to_mnist_input
  std::string warning;        // empty, or why the answer may be wrong
};
DigitInput prepare_digit(const GreyImage& img, bool invert, const std::string& what, const std::string& invert_option);

// Renders 784 values in [0,1] ([28, 28] row-major) as 28 newline-terminated lines of ASCII art, two
// characters per pixel so it looks roughly square in a terminal.
std::string ascii_art(const float* pixels784);

}  // namespace moe
