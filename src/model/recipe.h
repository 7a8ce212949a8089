// The parts of a training recipe that need no LibTorch: the learning-rate schedule and the random
// translation that `train --augment shift:N` applies to each training batch.
#pragma once
#include <cstdint>
#include <string>

#include "base/choices.h"

namespace moe {

// The learning rate at step `step` (0-based) of `n_steps`, for peak rate `lr`.
// constant: `lr`, after `n_warmup` steps rising linearly to it.
// cosine:   the same warm-up, then half a cosine from `lr` down to 0 at the last step.
// onecycle: PyTorch's OneCycleLR (cosine annealing): from lr/25 up to `lr` over `n_warmup` steps
//           (0 = 30% of the run), then down to lr/25/1e4.
double lr_at(LrSchedule schedule, double lr, int64_t step, int64_t n_steps, int64_t n_warmup);

// Translates each 28x28 image of `images` ([n, 784], row-major) in place by (dx, dy), each drawn
// uniformly from [-max_shift, max_shift] by a generator seeded with `seed`; pixels that come in from
// outside are 0 (the background). Deterministic for a given seed.
void shift_images(float* images, int64_t n, int64_t max_shift, uint64_t seed);

// --augment: "none" -> 0, "shift:N" with N in 1..8 -> N; InputError naming the flag otherwise.
int64_t parse_augment(const std::string& s);
std::string augment_string(int64_t max_shift);  // the inverse: 0 -> "none", N -> "shift:N"

}  // namespace moe
