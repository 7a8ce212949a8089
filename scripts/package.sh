#!/usr/bin/env bash
# Builds the Debian package moe-mnist_<version>_amd64.deb from the runtime-only build (no LibTorch):
#   scripts/package.sh [--build DIR] [--model FILE.onnx] [--out DIR] [--no-lintian] [--no-build]
#
#   --build DIR   the runtime-only build folder (default build-pkg: configured here with
#                 -DMOE_MNIST_WITH_TORCH=OFF, tests and benchmarks off, if it does not exist)
#   --model FILE  the sample model shipped as /usr/share/moe-mnist/model.onnx (default: the model CI's
#                 trained checkpoint exports, build/test-run/model.fp32.onnx)
#   --out DIR     where the .deb goes (default: the build folder)
#   --no-build    package what the build folder holds (CTest: it is built already)
# Depends is computed by dpkg-shlibdeps; the package is checked with lintian (errors fail the build).
# Prints the .deb's path on stdout.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-pkg" model="$root/build/test-run/model.fp32.onnx" out="" lint=1 make=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$(realpath -m "$2"); shift 2 ;;
    --model) model=$(realpath -m "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --no-lintian) lint=0; shift ;;
    --no-build) make=0; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
say() { printf '[package] %s\n' "$*" >&2; }
die() { printf '[package] error: %s\n' "$*" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps lintian help2man; do
  command -v "$tool" >/dev/null || die "$tool not found (apt install dpkg-dev lintian help2man, or run scripts/setup.sh)"
done
[ -f "$model" ] || die "sample model '$model' not found: pass --model FILE.onnx (an exported model, e.g. from moe-mnist export)"
out=${out:-$build}
# The Maintainer field: $DEBFULLNAME <$DEBEMAIL> (Debian's convention), else the git identity of the tree.
name=${DEBFULLNAME:-$(git -C "$root" config user.name || true)}
email=${DEBEMAIL:-$(git -C "$root" config user.email || true)}
[ -n "$name" ] && [ -n "$email" ] || die "no maintainer: set DEBFULLNAME and DEBEMAIL (or git's user.name and user.email)"
maintainer="$name <$email>"

if [ ! -f "$build/CMakeCache.txt" ]; then
  say "configuring the runtime-only build in $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_MNIST_WITH_TORCH=OFF \
    -DMOE_MNIST_BUILD_TESTS=OFF -DMOE_MNIST_BUILD_BENCH=OFF >&2
fi
grep -q '^MOE_MNIST_WITH_TORCH:BOOL=OFF' "$build/CMakeCache.txt" ||
  die "$build is not a runtime-only build (configure it with -DMOE_MNIST_WITH_TORCH=OFF): the package leaves LibTorch out"
[ "$make" = 0 ] || cmake --build "$build" --target moe-mnist moe_mnist_ops man_page >&2
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
[ -n "$version" ] || die "no CMAKE_PROJECT_VERSION in $build/CMakeCache.txt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg="$work/debian/moe-mnist"  # dpkg-shlibdeps treats libraries under debian/<package> as the package's own
DESTDIR="$pkg" cmake --install "$build" --prefix /usr --strip >/dev/null
d="$root/deploy/debian" doc="$pkg/usr/share/doc/moe-mnist"
install -D -m 0644 "$model" "$pkg/usr/share/moe-mnist/model.onnx"
install -D -m 0644 "$d/moe-mnist.service" "$pkg/lib/systemd/system/moe-mnist.service"
install -D -m 0644 "$d/default" "$pkg/etc/default/moe-mnist"
install -D -m 0644 "$d/lintian-overrides" "$pkg/usr/share/lintian/overrides/moe-mnist"
{ cat "$d/copyright"; sed -e 's/^$/./' -e 's/^/ /' "$root/third_party/onnxruntime/LICENSE"; } > "$doc/copyright"
sed -e "s/@VERSION@/$version/" -e "s/@MAINTAINER@/$maintainer/" -e "s/@DATE@/$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}")/" \
  "$d/changelog" | gzip -9n > "$doc/changelog.gz"
gzip -9n -c "$root/third_party/onnxruntime/ThirdPartyNotices.txt" > "$doc/onnxruntime-ThirdPartyNotices.txt"
gzip -9n "$doc/deployment.md" "$pkg/usr/share/man/man1/moe-mnist.1"
chmod 0644 "$doc"/*
find "$pkg" -type d -exec chmod 0755 {} +

# Depends: what the ELF files need, from the shlibs/symbols files of the packages that provide it.
mkdir -p "$pkg/DEBIAN"
cat > "$work/debian/control" <<CONTROL
Source: moe-mnist

Package: moe-mnist
Architecture: amd64
CONTROL
elfs=("$pkg/usr/bin/moe-mnist" "$pkg"/usr/lib/moe-mnist/*.so*)
(cd "$work" && dpkg-shlibdeps -O -l"$pkg/usr/lib/moe-mnist" "${elfs[@]}") > "$work/substvars" 2> "$work/shlibdeps.log" ||
  { cat "$work/shlibdeps.log" >&2; die "dpkg-shlibdeps failed"; }
depends=$(sed -n 's/^shlibs:Depends=//p' "$work/substvars")
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies"

cat > "$pkg/DEBIAN/control" <<CONTROL
Package: moe-mnist
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: $depends
Section: science
Priority: optional
Description: Mixture-of-Experts MNIST classifier: inference service and tools
 moe-mnist runs an exported Mixture-of-Experts MNIST model with ONNX Runtime
 or its own fused kernel, from the command line (eval, predict, bench) or as a
 KServe v2 HTTP inference service with dynamic batching, Prometheus metrics and
 a drawing page (moe-mnist serve; the systemd unit moe-mnist.service).
 .
 This build leaves out training (LibTorch). A sample model is in
 /usr/share/moe-mnist/model.onnx.
CONTROL
echo "/etc/default/moe-mnist" > "$pkg/DEBIAN/conffiles"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/moe-mnist_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
if [ "$lint" = 1 ]; then
  say "lintian $deb"
  rc=0; lintian --fail-on error "$deb" > "$work/lintian.log" 2>&1 || rc=$?
  grep -v 'running with root privileges' "$work/lintian.log" >&2 || true
  [ "$rc" = 0 ] || die "lintian reports errors in $deb"
fi
say "built $deb ($(du -h "$deb" | cut -f1); Depends: $depends)"
echo "$deb"
