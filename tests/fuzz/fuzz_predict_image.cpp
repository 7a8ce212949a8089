// libFuzzer target: the /v1/predict image path (PNG/JPEG/PGM decoding, then the MNIST-style
// preparation). Any input must give a 28x28 input in [0, 1] or an InputError, and decoding the same
// bytes twice must give the same pixels (no pixel comes from memory the decoder did not write). The
// seeds cover PNG, JPEG (one with a malformed EXIF block: IFD0 claims 40 entries and has 2, a value
// offset points far past the segment; the orientation (6) before the damage still applies), PGM (P2,
// P5) and PPM (P3, P6, 16-bit).
#include <cmath>
#include <cstdint>
#include <string>

#include "base/errors.h"
#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const moe::GreyImage img = moe::decode_grey_image(bytes, "fuzz input", int64_t(1) << 20);
    if (img.pixels.size() != size_t(img.width) * size_t(img.height)) __builtin_trap();
    if (moe::decode_grey_image(bytes, "fuzz input", int64_t(1) << 20).pixels != img.pixels) __builtin_trap();
    for (bool invert : {false, true}) {
      const auto x = moe::to_mnist_input(img, invert);
      if (x.size() != 784) __builtin_trap();
      for (float v : x)
        if (!(v >= 0.0f && v <= 1.0f)) __builtin_trap();
      try {  // the judgement /v1/predict and `predict --image` share: the same pixels, or a refusal
        if (moe::prepare_digit(img, invert, "fuzz input", "--invert").pixels != x) __builtin_trap();
      } catch (const moe::InputError&) {
      }
    }
  } catch (const moe::InputError&) {
  }
  return 0;
}
