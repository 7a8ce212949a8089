// The `native` forward pass: the folded model (folded_model.h) in one pass per image, allocation-free.
// Per image: the embedding and the gate logits come from one sweep over the image's non-zero pixels
// (MNIST digits are ~80% background, and a zero pixel adds nothing), then the gate softmax, top-k,
// and only the k chosen experts, each already folded with the classifier.
// The vector code is compiled per file for AVX2+FMA and AVX-512 (not with -march=native) and picked
// at run time by CPU detection; the scalar path runs anywhere.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "native/folded_model.h"

namespace moe {

enum class Isa { scalar, avx2, avx512 };

std::string to_string(Isa isa);
// Whether this CPU (and this build) can run the path.
bool cpu_supports(Isa isa);
// The widest path this CPU supports.
Isa best_isa();
// $MOE_MNIST_NATIVE_ISA (scalar, avx2 or avx512) when set, so the scalar and AVX2 paths can be run
// and tested on a CPU that would pick a wider one; otherwise best_isa(). InputError for an unknown
// name or a path this CPU cannot run.
Isa isa_from_env();

// The folded model laid out for one path: every row padded to a whole number of vectors.
struct PackedModel {
  Isa isa = Isa::scalar;
  int64_t I = 0, D = 0, E = 0, K = 0, C = 0;
  int64_t GP = 0, DP = 0, CP = 0;  // D+E, D and C rounded up to the vector width
  std::vector<float> embed_gate_w;  // [I, GP]
  std::vector<float> embed_gate_b;  // [GP]
  std::vector<float> fc1_w;         // [E, D, DP]
  std::vector<float> fc1_b;         // [E, DP]
  std::vector<float> out_w;         // [E, D, CP]
  std::vector<float> out_b_expert;  // [E, CP]
  std::vector<float> out_b;         // [CP]
};

// Throws InputError (via FoldedModel::check) for inconsistent sizes.
PackedModel pack_model(const FoldedModel& model, Isa isa);

// images [n, I] -> logits [n, C] and, when not null, gate_probs [n, E]. On the calling thread, no
// allocation; rows are independent, so callers split a batch between threads by rows.
void native_forward(const PackedModel& model, const float* images, int64_t n, float* logits, float* gate_probs);

}  // namespace moe
