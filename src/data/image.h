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
// size, grey or colour (colour is converted to luma, alpha composited over white). Throws InputError
// naming the file when it is missing or unreadable, empty, truncated (a PNG without its IEND chunk, a
// JPEG without its end-of-image marker, a PGM/PPM with fewer pixels than its header promises), not an
// image in one of those formats (BMP, GIF, TIFF, WebP, PBM and PAM are named as such), or implausibly
// large (over 64 Mpixel, judged from the header before decoding).
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

// Renders 784 values in [0,1] ([28, 28] row-major) as 28 newline-terminated lines of ASCII art, two
// characters per pixel so it looks roughly square in a terminal.
std::string ascii_art(const float* pixels784);

}  // namespace moe
