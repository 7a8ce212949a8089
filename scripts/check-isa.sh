#!/usr/bin/env bash
# Proves a portable build portable: no object file of BUILD_DIR outside the run-time-dispatched kernel
# files holds a VEX (AVX/AVX2; AMX is VEX-encoded too) or EVEX (AVX-512) instruction, and the AVX2
# kernel holds no EVEX one.
# In 64-bit code the first opcode byte 0xc4/0xc5 is always a VEX prefix and 0x62 always EVEX, so
# this reads objdump's bytes rather than guessing from mnemonics.
#
#   scripts/check-isa.sh BUILD_DIR      exit 0: clean; 1: the offending files and a sample instruction
set -euo pipefail
build=${1:?usage: scripts/check-isa.sh BUILD_DIR}
[ -d "$build/CMakeFiles" ] || { echo "check-isa: $build is not a CMake build folder" >&2; exit 2; }
if grep -q '^MOE_MNIST_NATIVE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "check-isa: $build was configured with -DMOE_MNIST_NATIVE=ON (a build for this CPU only); nothing to check"
  exit 0
fi

# Prints "VEX|EVEX <instruction>" for the first such instruction of an object, or nothing.
first_vector_insn() {  # first_vector_insn OBJECT KINDS(regex of VEX|EVEX)
  objdump -d --no-addresses "$1" 2>/dev/null | awk -v kinds="$2" -F'\t' '
    NF >= 3 {
      n = split($2, b, " "); i = 1
      while (i <= n && b[i] ~ /^(66|67|f2|f3|2e|3e|26|36|64|65|f0)$/) i++   # legacy prefixes
      kind = (b[i] == "62") ? "EVEX" : (b[i] == "c4" || b[i] == "c5") ? "VEX" : ""
      if (kind != "" && kind ~ kinds) { print kind " " $3; exit }
    }' || true   # awk stops at the first hit: objdump's SIGPIPE is expected
}

n_objects=0; bad=0
while IFS= read -r -d '' obj; do
  n_objects=$((n_objects + 1))
  case "$obj" in
    */kernel_avx512.cpp.o) continue ;;           # AVX-512 by design, entered only after cpuid
    */kernel_vnni.cpp.o) continue ;;             # AVX-512 VNNI by design, entered only after cpuid
    */kernel_amx.cpp.o) continue ;;              # AMX (VEX-encoded) + AVX-512, only after cpuid and Linux's permission
    */kernel_avx2.cpp.o) kinds='^EVEX$' ;;        # AVX2 by design; AVX-512 would be a bug
    */codegen-check/*|*/init_list_constant.cpp.o) continue ;;  # the compiler checks, per target
    *) kinds='^(VEX|EVEX)$' ;;
  esac
  hit=$(first_vector_insn "$obj" "$kinds")
  if [ -n "$hit" ]; then
    echo "check-isa: ${obj#"$build"/} has $hit" >&2
    bad=$((bad + 1))
  fi
done < <(find "$build" -name '*.o' -print0)
[ "$n_objects" -gt 0 ] || { echo "check-isa: no object files under $build (build it first)" >&2; exit 2; }
if [ "$bad" -gt 0 ]; then
  echo "check-isa: $bad of $n_objects objects carry vector instructions outside the run-time-dispatched kernels" >&2
  exit 1
fi
echo "check-isa: $n_objects objects in $build: no AVX/AVX-512/AMX outside the kernel files (kernel_avx2: no AVX-512)"
