// The AVX2 + FMA path: 8 floats per vector. This file alone is compiled with -mavx2 -mfma (see
// CMakeLists.txt); native_kernel.cpp calls it only on a CPU that has both.
#include "native/kernel_paths.h"

#if defined(__x86_64__)
#include <immintrin.h>

namespace moe::native_paths {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static unsigned nonzero8(const float* x) {
    return unsigned(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x), _mm256_setzero_ps(), _CMP_NEQ_UQ)));
  }
};

}  // namespace
}  // namespace moe::native_paths

#include "native/kernel_impl.h"

namespace moe::native_paths {

void forward_avx2(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs) {
  forward_rows<Avx2>(m, images, n, logits, gate_probs);
}

}  // namespace moe::native_paths
#endif
