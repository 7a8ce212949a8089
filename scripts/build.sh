#!/usr/bin/env bash
# Configures (once) and builds moe-mnist into build/ with Ninja, Release by default.
# Extra arguments go to CMake's configure step, e.g. -DCMAKE_BUILD_TYPE=Debug.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ ! -f build/build.ninja ] || [ "$#" -gt 0 ]; then
  cmake -S . -B build -G Ninja "$@" >&2
fi
# Two jobs: each LibTorch translation unit needs ~1.5 GB and a core to itself.
cmake --build build -j "${MOE_MNIST_JOBS:-2}" >&2
