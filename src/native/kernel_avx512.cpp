// The AVX-512 path: 16 floats per vector. This file alone is compiled with -mavx512f (see
// CMakeLists.txt); native_kernel.cpp calls it only on a CPU that has AVX-512F.
#include "native/kernel_paths.h"

#if defined(__x86_64__)
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

#include "native/kernel_impl.h"

namespace moe::native_paths {

void forward_avx512(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Avx512>(m, images, n, logits, gate_probs, dense);
}

void forward_avx512(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Avx512>(m, images, n, logits, gate_probs, dense);
}

}  // namespace moe::native_paths
#endif
