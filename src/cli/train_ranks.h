// `train`'s data-parallel flags and the single-machine launcher behind --nproc (LibTorch builds only).
#pragma once
#include <CLI/CLI.hpp>

#include "libtorch/torch_api.h"

namespace moe {

// --nproc, --rank, --world-size, --master, --dist-timeout.
void add_distributed_options(CLI::App* cmd, DistOptions& d);

// Checks the combination of the flags (--nproc or --rank/--world-size/--master, not both); throws
// InputError naming the flag.
void check_distributed_options(const DistOptions& d);

// Runs d.nproc ranks of this very program (/proc/self/exe) with this process's arguments, minus
// --nproc, plus --rank i --world-size N --master 127.0.0.1:<free port>, and waits for all of them.
// A rank that fails (non-zero exit other than 130, or killed) gets the others terminated; Ctrl-C
// (SIGINT/SIGTERM) is forwarded so every rank stops at the same step and rank 0 saves. Throws
// InputError naming the rank that failed, Interrupted when the ranks were interrupted.
void launch_local_ranks(const DistOptions& d);

}  // namespace moe
