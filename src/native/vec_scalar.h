// The portable "vector" of one float for kernel_impl.h: used by the scalar path (kernel_scalar.cpp)
// and by the tests' emulation of the integer kernels (tests/native_emulated.cpp). Compiled for
// baseline x86-64 wherever it is included.
#pragma once
#include <cstdint>

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
  static bool nonzero32(const X* x) {
    for (int i = 0; i < 32; ++i)
      if (x[i] != 0) return true;  // NaN included
    return false;
  }
  template <class X>
  static int64_t compress8(const X* x, int32_t base, int32_t stride, float* values, int32_t* offset) {
    int64_t n = 0;
    for (int i = 0; i < 8; ++i) {
      values[n] = float(x[i]);
      offset[n] = (base + i) * stride;
      n += values[n] != 0.f;
    }
    return n;
  }
};

}  // namespace
}  // namespace moe::native_paths
