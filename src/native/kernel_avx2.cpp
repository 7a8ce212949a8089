// The AVX2 + FMA path: 8 floats per vector. This file alone is compiled with -mavx2 -mfma (see
// CMakeLists.txt); native_kernel.cpp calls it only on a CPU that has both.
#include "native/kernel_paths.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "native/pack8_avx2.h"

namespace moe::native_paths {
namespace {

struct Avx2 : Pack8Avx2 {
  using V = __m256;
  static constexpr int kRegs = 16;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};

}  // namespace
}  // namespace moe::native_paths

#include "native/kernel_impl.h"
#include "native/kernel_int16.h"

namespace moe::native_paths {

void forward_avx2(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Avx2>(m, images, n, logits, gate_probs, dense);
}

void forward_avx2(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Avx2>(m, images, n, logits, gate_probs, dense);
}

void forward_avx2_int16(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  forward_int16(m, images, n, logits, gate_probs);
}

}  // namespace moe::native_paths
#endif
