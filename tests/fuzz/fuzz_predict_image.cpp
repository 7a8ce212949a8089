// libFuzzer target: the /v1/predict image path (PNG/JPEG/PGM decoding, then the MNIST-style
// preparation). Any input must give a 28x28 input in [0, 1] or an InputError.
#include <cmath>
#include <cstdint>
#include <string>

#include "base/errors.h"
#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const moe::GreyImage img = moe::decode_grey_image(bytes, "fuzz input", int64_t(1) << 20);
    for (bool invert : {false, true}) {
      const auto x = moe::to_mnist_input(img, invert);
      if (x.size() != 784) __builtin_trap();
      for (float v : x)
        if (!(v >= 0.0f && v <= 1.0f)) __builtin_trap();
    }
  } catch (const moe::InputError&) {
  }
  return 0;
}
