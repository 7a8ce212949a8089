// The portable path: one float per "vector", for any CPU.
#include "native/kernel_paths.h"

namespace moe::native_paths {
namespace {

struct Scalar {
  using V = float;
  static constexpr int kLanes = 1;
  static constexpr int kRegs = 16;
  static V zero() { return 0.f; }
  static V set1(float v) { return v; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V add(V a, V b) { return a + b; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  template <class X>
  static int64_t compress8(const X* x, int32_t base, float* values, int32_t* index) {
    int64_t n = 0;
    for (int i = 0; i < 8; ++i) {
      values[n] = float(x[i]);
      index[n] = base + i;
      n += values[n] != 0.f;
    }
    return n;
  }
};

}  // namespace
}  // namespace moe::native_paths

#include "native/kernel_impl.h"

namespace moe::native_paths {

void forward_scalar(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Scalar>(m, images, n, logits, gate_probs, dense);
}

void forward_scalar(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Scalar>(m, images, n, logits, gate_probs, dense);
}

}  // namespace moe::native_paths
