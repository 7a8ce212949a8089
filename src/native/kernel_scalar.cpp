// The portable path: one float per "vector", for any CPU.
#include "native/kernel_paths.h"

#include "native/vec_scalar.h"
#include "native/kernel_impl.h"

namespace moe::native_paths {

void forward_scalar(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Scalar>(m, images, n, logits, gate_probs, dense);
}

void forward_scalar(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Scalar>(m, images, n, logits, gate_probs, dense);
}

}  // namespace moe::native_paths
