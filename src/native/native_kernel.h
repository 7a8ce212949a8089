// The `native` forward pass: the folded model (folded_model.h) in one pass per image, allocation-free.
// Per image: the embedding and the gate logits, then the gate softmax, top-k, and only the k chosen
// experts, each already folded with the classifier. The embedding (most of the work) has two
// formulations (kernel_impl.h): sparse, one sweep over each image's non-zero pixels (MNIST digits
// are ~80% background, and a zero pixel adds nothing), and dense, a register-blocked tile of images
// at once over all pixels; choose_embed() picks one per path and batch size, as measured faster.
// Images come as floats in [0, 1] or as the bytes 0..255 (1/255 folded into the weights).
// The vector code is compiled per file for AVX2+FMA and AVX-512 (not with -march=native) and picked
// at run time by CPU detection; the scalar path runs anywhere.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "native/folded_model.h"

namespace moe {

enum class Isa { scalar, avx2, avx512 };
// How the embedding is computed: auto = choose_embed's rule; sparse and dense force one.
enum class Embed { auto_, sparse, dense };

std::string to_string(Isa isa);
// Whether this CPU (and this build) can run the path.
bool cpu_supports(Isa isa);
// The widest path this CPU supports.
Isa best_isa();
// $MOE_MNIST_NATIVE_ISA (scalar, avx2 or avx512) when set, so the scalar and AVX2 paths can be run
// and tested on a CPU that would pick a wider one; otherwise best_isa(). InputError for an unknown
// name or a path this CPU cannot run.
Isa isa_from_env();

std::string to_string(Embed embed);
// $MOE_MNIST_NATIVE_EMBED (auto, sparse or dense) when set, else auto. InputError for another name.
Embed embed_from_env();

// The folded model laid out for one path: every row padded to a whole number of vectors.
struct PackedModel {
  Isa isa = Isa::scalar;
  Embed embed = Embed::auto_;  // forced formulation, or auto
  int64_t I = 0, D = 0, E = 0, K = 0, C = 0;
  int64_t GP = 0, DP = 0, CP = 0;  // D+E, D and C rounded up to the vector width
  std::vector<float> embed_gate_w;  // [I, GP]
  std::vector<float> embed_gate_w_u8;  // [I, GP] embed_gate_w / 255: the same map applied to bytes
  std::vector<float> embed_gate_b;  // [GP]
  std::vector<float> fc1_w;         // [E, D, DP]
  std::vector<float> fc1_b;         // [E, DP]
  std::vector<float> out_w;         // [E, D, CP]
  std::vector<float> out_b_expert;  // [E, CP]
  std::vector<float> out_b;         // [CP]
};

// Throws InputError (via FoldedModel::check) for inconsistent sizes, UnavailableError when `embed`
// forces dense on a model it does not fit (input size other than 784, or D+E over 4 vectors).
PackedModel pack_model(const FoldedModel& model, Isa isa, Embed embed = Embed::auto_);

// Whether the dense formulation fits this packed model.
bool dense_available(const PackedModel& model);
// The formulation for a call of `batch` images (the whole batch, before any split between threads):
// the forced one, else per path and batch size, the one measured faster (docs/benchmarks.md).
Embed choose_embed(const PackedModel& model, int64_t batch);

// images [n, I] -> logits [n, C] and, when not null, gate_probs [n, E]. On the calling thread, no
// allocation; rows are independent, so callers split a batch between threads by rows and pass
// the formulation chosen for the whole batch. Within one formulation an image's outputs do not
// depend on the batch it came in or the threads; the two formulations differ in rounding only.
void native_forward(const PackedModel& model, const float* images, int64_t n, float* logits, float* gate_probs,
                    Embed embed);
void native_forward(const PackedModel& model, const uint8_t* images, int64_t n, float* logits, float* gate_probs,
                    Embed embed);
inline void native_forward(const PackedModel& model, const float* images, int64_t n, float* logits, float* gate_probs) {
  native_forward(model, images, n, logits, gate_probs, choose_embed(model, n));
}

}  // namespace moe
