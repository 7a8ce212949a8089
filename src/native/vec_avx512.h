// The AVX-512 vector of 16 floats for kernel_impl.h, shared by the files compiled with AVX-512
// enabled (kernel_avx512.cpp, kernel_vnni.cpp, kernel_amx.cpp). Include only from such a file.
#pragma once
#include <immintrin.h>

#include "native/pack8_avx2.h"

namespace moe::native_paths {
namespace {

struct Avx512 : Pack8Avx2 {
  using V = __m512;
  static constexpr int kRegs = 32;
  static constexpr int kLanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
};

}  // namespace
}  // namespace moe::native_paths
