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

# The service and the native SIMD kernel under AddressSanitizer + UndefinedBehaviorSanitizer (clang, runtime-only, no ONNX
# exporter), and its libFuzzer targets for a bounded time (MOE_MNIST_FUZZ_SECONDS each, default 25).
# `image` is left out here: its test encodes JPEGs with stb_image_write, which shifts negative ints.
if [ ! -f build-asan/build.ninja ]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B build-asan -G Ninja -DMOE_MNIST_WITH_TORCH=OFF -DMOE_MNIST_WITH_ONNX=OFF \
    -DMOE_MNIST_SANITIZE=ON -DMOE_MNIST_FUZZ=ON -DMOE_MNIST_BUILD_BENCH=OFF >&2
fi
cmake --build build-asan -j "${MOE_MNIST_JOBS:-2}" >&2
ctest --test-dir build-asan --output-on-failure -R '^(serve|data|checkpoint|native_parity|fuzz_.*)$' "$@"
