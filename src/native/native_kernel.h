// The `native` forward pass: the folded model (folded_model.h) in one pass per image, allocation-free.
// Per image: the embedding and the gate logits, then the gate softmax, top-k, and only the k chosen
// experts, each already folded with the classifier. The embedding (most of the work) has two
// formulations (kernel_impl.h): sparse, one sweep over each image's non-zero pixels (MNIST digits
// are ~80% background, and a zero pixel adds nothing), and dense, a register-blocked tile of images
// at once over all pixels; choose_embed() picks one per path and batch size, as measured faster.
// Images come as floats in [0, 1] or as the bytes 0..255 (1/255 folded into the weights).
// The vector code is compiled per file for AVX2+FMA and AVX-512 (not with -march=native) and picked
// at run time by CPU detection; the scalar path runs anywhere. Byte input has integer formulations:
// on the AVX2 path pixel-pair multiply-adds on int16 weights (kernel_int16.h); on the AVX-512 path
// dot products (kernel_int8.h), AVX-512 VNNI and AMX-INT8, where the CPU has them (and, for AMX,
// Linux grants the process the tile state).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "native/folded_model.h"

namespace moe {

enum class Isa { scalar, avx2, avx512 };
// How the embedding is computed: auto = choose_embed's rule; the others force one. int16, vnni and
// amx are integer embeddings of byte input (int16: AVX2 path, kernel_int16.h; vnni and amx: AVX-512
// path, kernel_int8.h); float input then takes the auto rule.
enum class Embed { auto_, sparse, dense, int16, vnni, amx };

// The integer dot-product instructions this process may use (besides the vector width).
struct Int8Support {
  bool vnni = false;  // AVX-512F + BW + VNNI
  bool amx = false;   // AMX-TILE + AMX-INT8 + AVX-512F, the OS saves tile state, and Linux granted it
};
// Detected once per process; the first call asks Linux for the AMX tile state (arch_prctl
// ARCH_REQ_XCOMP_PERM) when the CPU has AMX. A refusal (or an older kernel) leaves amx false.
Int8Support int8_support();
// The rule of int8_support() with the facts given: `request_amx` is asked only when the CPU has AMX,
// and its refusal means no AMX. Lets a test drive the refusal on any CPU.
Int8Support int8_support_with(bool cpu_vnni, bool cpu_amx, bool (*request_amx)());
// The CPU's own answers (cpuid, XCR0) and the permission request itself (true when granted).
bool cpu_has_avx512_vnni();
bool cpu_has_amx_int8();
bool request_amx_permission();

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
// $MOE_MNIST_NATIVE_EMBED (auto, sparse, dense, int16, vnni or amx) when set, else auto. InputError for
// another name.
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
  // The integer embedding of byte input (quantize_int8.h), where the model fits it (int8_fits).
  Int8Support int8;                 // what this process may run (AVX-512 path only, else none)
  int64_t GQ = 0;                   // D+E rounded up to 16; 0 = no integer embedding
  std::vector<int8_t> embed_gate_q;           // [I/4][hi, lo][GQ][4]
  std::vector<float> embed_gate_qscale;       // [GQ]
  std::vector<float> embed_gate_qbias;        // [GQ]
  // The AVX2 integer embedding of byte input (quantize_int16.h), where the model fits it (int16_fits).
  std::vector<int16_t> embed_gate_q16;        // [I/2][GP][2]
  std::vector<float> embed_gate_q16_scale;    // [GP]
};

// Throws InputError (via FoldedModel::check) for inconsistent sizes, UnavailableError when `embed`
// forces dense on a model it does not fit (input size other than 784, or D+E over 4 vectors), or
// vnni / amx where the model does not fit them, the path is not AVX-512 or `support` lacks them.
// `support` is int8_support() unless given (tests pass their own).
PackedModel pack_model(const FoldedModel& model, Isa isa, Embed embed = Embed::auto_);
PackedModel pack_model(const FoldedModel& model, Isa isa, Embed embed, Int8Support support);

// Whether the dense formulation fits this packed model.
bool dense_available(const PackedModel& model);
// Whether the AVX2 integer embedding fits it: the avx2 path, 784 inputs and D+E at most 32.
bool int16_fits(const PackedModel& model);
// Whether the AVX-512 integer embedding fits it: the avx512 path, 784 inputs and D+E at most 64 (its weights
// are packed then, whatever the CPU has, so tests can run them emulated).
bool int8_fits(const PackedModel& model);
// The formulation for a call of `batch` images (the whole batch, before any split between threads)
// of bytes (`bytes`) or floats: the forced one, else per path, input and batch size, the one measured
// (or, for VNNI and AMX, expected) faster (docs/benchmarks.md). Float input never gets int16, vnni
// or amx.
Embed choose_embed(const PackedModel& model, int64_t batch, bool bytes = false);

// images [n, I] -> logits [n, C] and, when not null, gate_probs [n, E]. On the calling thread, no
// allocation; rows are independent, so callers split a batch between threads by rows and pass
// the formulation chosen for the whole batch. Within one formulation an image's outputs do not
// depend on the batch it came in or the threads; the formulations differ in rounding only (vnni and
// amx: the same integer sums, so the same outputs; int16 quantizes the weights to 16 bits as they
// do). vnni or amx for float input, or for bytes where the model or this process does not allow
// them, run the dense formulation where it fits, else sparse; int16 there runs sparse.
void native_forward(const PackedModel& model, const float* images, int64_t n, float* logits, float* gate_probs,
                    Embed embed);
void native_forward(const PackedModel& model, const uint8_t* images, int64_t n, float* logits, float* gate_probs,
                    Embed embed);
inline void native_forward(const PackedModel& model, const float* images, int64_t n, float* logits, float* gate_probs) {
  native_forward(model, images, n, logits, gate_probs, choose_embed(model, n));
}

}  // namespace moe
