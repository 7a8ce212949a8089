// The per-path entry points of native_forward, one translation unit each (kernel_<isa>.cpp), each
// compiled with its own instruction-set flags. Only native_kernel.cpp calls them, after checking the
// CPU. They see the packed model as plain pointers, so no standard-library template is instantiated
// in a file compiled for an instruction set this CPU may not have.
#pragma once
#include <cstdint>

namespace moe::native_paths {

struct PackedView {
  int64_t I, D, E, K, C, GP, DP, CP;
  const float *embed_gate_w, *embed_gate_b, *fc1_w, *fc1_b, *out_w, *out_b_expert, *out_b;
};

void forward_scalar(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs);
void forward_avx2(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs);
void forward_avx512(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs);

}  // namespace moe::native_paths
