// The per-path entry points of native_forward, one translation unit each (kernel_<isa>.cpp), each
// compiled with its own instruction-set flags. Only native_kernel.cpp calls them, after checking the
// CPU. They see the packed model as plain pointers, so no standard-library template is instantiated
// in a file compiled for an instruction set this CPU may not have.
#pragma once
#include <cstdint>

namespace moe {
struct PackedModel;
}

namespace moe::native_paths {

struct PackedView {
  int64_t I, D, E, K, C, GP, DP, CP;
  const float *embed_gate_w, *embed_gate_b, *fc1_w, *fc1_b, *out_w, *out_b_expert, *out_b;
  const float* embed_gate_w_u8;  // embed_gate_w / 255, for byte input
  // The integer embedding of byte input (kernel_int8.h), GQ = 0 where the model has none.
  int64_t GQ;
  const int8_t* embed_gate_q;
  const float *embed_gate_qscale, *embed_gate_qbias;
  // The AVX2 integer embedding of byte input (kernel_int16.h), empty where the model has none.
  const int16_t* embed_gate_q16;
  const float* embed_gate_q16_scale;
};

// The view of a packed model (defined in native_kernel.cpp).
PackedView view_of(const PackedModel& m);

// images [n, I] as floats in [0, 1] or as bytes 0..255; `dense`: the tile-of-images embedding
// (kernel_impl.h) where the model allows it, else the per-image sparse one.
#define MOE_NATIVE_PATH(name)                                                                                       \
  void name(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs, bool dense);   \
  void name(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs, bool dense);
MOE_NATIVE_PATH(forward_scalar)
MOE_NATIVE_PATH(forward_avx2)
MOE_NATIVE_PATH(forward_avx512)
#undef MOE_NATIVE_PATH

// Byte input through the AVX2 integer embedding (kernel_int16.h, in kernel_avx2.cpp): needs
// I = 784 and GP at most 32, packed for the AVX2 path.
void forward_avx2_int16(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs);
// Byte input through the AVX-512 integer embedding (kernel_int8.h): VNNI (kernel_vnni.cpp) and
// AMX-INT8 (kernel_amx.cpp, only after the process was granted the tile state). Both need GQ > 0
// and a model packed for the AVX-512 path.
void forward_vnni(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs);
void forward_amx(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs);

}  // namespace moe::native_paths
