#!/usr/bin/env bash
# CI's smoke of the Debian package: scripts/package.sh from this runtime-only build (a random-weights model
# as the sample; lintian left out: it takes minutes, package.sh runs it by default), then
# scripts/test-package.sh: apt-get install into a clean Debian root (cached tarball; the first run makes it
# with mmdebstrap, about 3 minutes), serve, answer, purge.
#   tests/deploy/test_package.sh BUILD_DIR RANDOM_CHECKPOINT
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 BUILD_DIR RANDOM_CHECKPOINT" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(realpath "$1") make_ck=$(realpath "$2")
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (chroot)"; exit 77; }
for tool in mmdebstrap dpkg-shlibdeps; do command -v $tool >/dev/null || { echo "skipped: $tool not found (scripts/setup.sh installs it)"; exit 77; }; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$make_ck" "$tmp/ck" 11
"$build/bin/moe-mnist" export --checkpoint "$tmp/ck" --out "$tmp/model.onnx" >/dev/null 2>&1
deb=$("$root/scripts/package.sh" --build "$build" --no-build --no-lintian --model "$tmp/model.onnx" --out "$tmp")
dpkg-deb --info "$deb" | grep -E '^ (Package|Version|Depends):'
dpkg-deb --contents "$deb" | awk '{ print $NF }' | grep -qx './lib/systemd/system/moe-mnist.service' || { echo "FAIL: no systemd unit in $deb"; exit 1; }
"$root/scripts/test-package.sh" "$deb"
# The serving image from the same .deb, built and run without a container runtime (buildah, umoci, chroot).
if command -v buildah >/dev/null && command -v umoci >/dev/null; then
  image=$("$root/scripts/image.sh" "$deb" --out "$tmp/moe-mnist.image.tar")
  "$root/scripts/test-image.sh" "$image"
else
  echo "image: skipped (buildah/umoci not installed; scripts/setup.sh installs them)"
fi
