#!/usr/bin/env bash
# Set-up if needed, build, then run every test with CTest. Extra arguments go to ctest.
# Then the same for the deployable runtime (-DMOE_MNIST_WITH_TORCH=OFF, in build-rt/): it must
# build, link no LibTorch, and pass the tests that need no LibTorch.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh --fashion
scripts/build.sh
ctest --test-dir build --output-on-failure "$@"

if [ ! -f build-rt/build.ninja ]; then
  cmake -S . -B build-rt -G Ninja -DMOE_MNIST_WITH_TORCH=OFF -DMOE_MNIST_BUILD_BENCH=OFF >&2
fi
cmake --build build-rt -j "${MOE_MNIST_JOBS:-2}" >&2
if ldd build-rt/bin/moe-mnist | grep -q libtorch; then
  echo "build-rt/bin/moe-mnist links LibTorch, but -DMOE_MNIST_WITH_TORCH=OFF must not" >&2
  exit 1
fi
ctest --test-dir build-rt --output-on-failure "$@"
