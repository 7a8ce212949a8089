// The integer embeddings of the `native` kernel (src/native/kernel_int8.h) run on any CPU: the same
// algorithm source as kernel_vnni.cpp and kernel_amx.cpp, over a plain C++ emulation of the
// instructions they use (VPDPBUSD; LDTILECFG, TILEZERO, TILELOADD, TDPBUSD, TILESTORED, TILERELEASE),
// with the rest of the pass on the scalar path. Test-only; compiled without instruction-set flags.
#pragma once
#include <cstdint>

#include "native/native_kernel.h"

namespace moe::test {

// `m` must have the integer embedding (int8_fits). The AMX emulation checks what the hardware would
// fault on: a tile instruction before LDTILECFG or after TILERELEASE, and operand shapes that do not
// match (std::logic_error).
void forward_vnni_emulated(const PackedModel& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs);
void forward_amx_emulated(const PackedModel& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs);

}  // namespace moe::test
