#!/usr/bin/env bash
# Set-up if needed, then three builds, each tested with CTest (extra arguments go to ctest):
#   main      build/       everything, the default build the README describes
#   runtime   build-rt/    -DMOE_MNIST_WITH_TORCH=OFF: must link no LibTorch and pass the tests that need none
#   asan      build-asan/  clang, ASan + UBSan: the service, data, checkpoint and native kernel tests, and
#                          the libFuzzer targets for MOE_MNIST_FUZZ_SECONDS each (default 25)
# Every stage runs even when an earlier one failed; the summary lists each stage's result and the
# script exits non-zero if any failed, so one failure does not hide the others.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=${MOE_MNIST_JOBS:-2}
results=()
failed=0

stage() {  # stage NAME COMMAND...: runs the command, records pass/fail and its time
  local name=$1 t0=$SECONDS rc; shift
  printf '\n==== stage %s ====\n' "$name" >&2
  "$@"; rc=$?
  if [ "$rc" = 0 ]; then results+=("PASS  $name ($((SECONDS - t0)) s)")
  else results+=("FAIL  $name (exit $rc, $((SECONDS - t0)) s)"); failed=$((failed + 1)); fi
  return 0
}

configure() {  # configure DIR CMAKE-ARGS...: once per build folder
  local dir=$1; shift
  [ -f "$dir/build.ninja" ] || cmake -S . -B "$dir" -G Ninja "$@" >&2
}

main_build() { scripts/build.sh; }
main_tests() { ctest --test-dir build --output-on-failure "$@"; }
rt_build() {
  configure build-rt -DMOE_MNIST_WITH_TORCH=OFF -DMOE_MNIST_BUILD_BENCH=OFF && cmake --build build-rt -j "$jobs" >&2 || return 1
  if ldd build-rt/bin/moe-mnist | grep -q libtorch; then
    echo "build-rt/bin/moe-mnist links LibTorch, but -DMOE_MNIST_WITH_TORCH=OFF must not" >&2
    return 1
  fi
}
rt_tests() { ctest --test-dir build-rt --output-on-failure "$@"; }
# `image` is left out under the sanitizers: its test encodes JPEGs with stb_image_write, which shifts negative ints.
asan_build() {
  CC=clang-14 CXX=clang++-14 configure build-asan -DMOE_MNIST_WITH_TORCH=OFF -DMOE_MNIST_WITH_ONNX=OFF \
    -DMOE_MNIST_SANITIZE=ON -DMOE_MNIST_FUZZ=ON -DMOE_MNIST_BUILD_BENCH=OFF && cmake --build build-asan -j "$jobs" >&2
}
asan_tests() { ctest --test-dir build-asan --output-on-failure -R '^(serve|serve_limits|serve_repository|data|checkpoint|native_parity|fuzz_.*|codegen_.*)$' "$@"; }

if ! scripts/setup.sh --fashion; then
  echo "test.sh: set-up failed; nothing can be built" >&2
  exit 1
fi
stage "main: build" main_build
if [ -x build/bin/moe-mnist ]; then stage "main: tests" main_tests "$@"; fi
stage "runtime-only: build" rt_build
if [ -x build-rt/bin/moe-mnist ]; then stage "runtime-only: tests" rt_tests "$@"; fi
stage "sanitizers: build" asan_build
if [ -f build-asan/build.ninja ]; then stage "sanitizers: tests" asan_tests "$@"; fi

printf '\n==== summary ====\n' >&2
printf '%s\n' "${results[@]}" >&2
if [ "$failed" -gt 0 ]; then
  echo "test.sh: $failed stage(s) failed" >&2
  exit 1
fi
echo "test.sh: every stage passed" >&2
