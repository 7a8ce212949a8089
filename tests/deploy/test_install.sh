#!/usr/bin/env bash
# The installed tree is relocatable and self-contained: install into a temporary prefix, move the prefix,
# then run the moved binary from / with an empty environment (no LD_LIBRARY_PATH, no HOME, no MOE_MNIST_*).
#   tests/deploy/test_install.sh BUILD_DIR RANDOM_CHECKPOINT_TOOL DATA_DIR
set -euo pipefail
[ $# = 3 ] || { echo "usage: $0 BUILD_DIR RANDOM_CHECKPOINT_TOOL DATA_DIR" >&2; exit 2; }
build=$(realpath "$1") make_ck=$(realpath "$2") data=$(realpath "$3")
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/first" >/dev/null
mv "$tmp/first" "$tmp/moved"
p=$tmp/moved
for f in bin/moe-mnist lib/moe-mnist/libonnxruntime.so.1 lib/moe-mnist/libmoe_mnist_ops.so share/man/man1/moe-mnist.1; do
  [ -f "$p/$f" ] || fail "$f missing from the installed tree: $(cd "$p" && find . -type f | sort | tr '\n' ' ')"
done

runpath=$(readelf -d "$p/bin/moe-mnist" | sed -n 's/.*(\(RUNPATH\|RPATH\)).*\[\(.*\)\]/\2/p')
[ "$runpath" = '$ORIGIN/../lib/moe-mnist' ] || fail "bin/moe-mnist RUNPATH is '$runpath', expected '\$ORIGIN/../lib/moe-mnist'"
if readelf -d "$p/lib/moe-mnist/libmoe_mnist_ops.so" | grep -q 'onnxruntime'; then
  fail "libmoe_mnist_ops.so links ONNX Runtime; it must take the API from the runtime that loads it"
fi
# Every library each installed ELF file needs resolves, and ONNX Runtime from the moved prefix.
for f in "$p/bin/moe-mnist" "$p/lib/moe-mnist/libmoe_mnist_ops.so"; do
  missing=$(env -i ldd "$f" | grep 'not found' || true)
  [ -z "$missing" ] || fail "$f: unresolved libraries: $missing"
done
ort=$(realpath -m "$(env -i ldd "$p/bin/moe-mnist" | awk '/libonnxruntime/ { print $3 }')")
[ "$ort" = "$p/lib/moe-mnist/libonnxruntime.so.1" ] || fail "moe-mnist loads ONNX Runtime from '$ort', not the moved prefix"

cd /
run() { env -i PATH=/usr/bin:/bin "$p/bin/moe-mnist" "$@"; }
version=$(run --version)
case "$version" in "moe-mnist "[0-9]*) ;; *) fail "--version printed '$version'" ;; esac
grep -q '^\.SS "moe-mnist serve"' "$p/share/man/man1/moe-mnist.1" || fail "the man page has no 'moe-mnist serve' section"

"$make_ck" "$tmp/ck" 7
run export --checkpoint "$tmp/ck" --out "$tmp/model.onnx" >/dev/null 2>&1 || fail "installed export failed"
run export --checkpoint "$tmp/ck" --routing fused --out "$tmp/fused.onnx" >/dev/null 2>&1 || fail "installed export --routing fused failed"
for m in model fused; do
  out=$(run eval --model "$tmp/$m.onnx" --data "$data" --json 2>/dev/null) || fail "installed eval of $m.onnx failed"
  echo "$out" | grep -q '"accuracy"' || fail "eval of $m.onnx printed no accuracy: $out"
  pred=$(run predict --model "$tmp/$m.onnx" --data "$data" --index 0 2>&1) || fail "installed predict with $m.onnx failed: $pred"
done
# The same answers as the build tree's binary (the same code, found relative to itself).
a=$(run eval --model "$tmp/fused.onnx" --data "$data" --json 2>/dev/null | grep -o '"accuracy":[^,}]*')
b=$("$build/bin/moe-mnist" eval --model "$tmp/fused.onnx" --data "$data" --json 2>/dev/null | grep -o '"accuracy":[^,}]*')
[ "$a" = "$b" ] || fail "installed eval says $a, build tree says $b"
echo "install: relocatable prefix OK ($version; $a on a random-weights model)"
