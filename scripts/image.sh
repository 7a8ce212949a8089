#!/usr/bin/env bash
# Builds the serving image from the .deb without any container registry or container runtime:
#   scripts/image.sh DEB [--out FILE.tar]    (root; default FILE: moe-mnist-<version>.image.tar beside DEB)
# The base is the clean Debian root scripts/test-package.sh caches (mmdebstrap --variant=apt); the .deb is
# installed into it with apt-get in a chroot, apt's lists and caches, docs, man pages and locales removed,
# then buildah (vfs storage, no daemon) makes a docker-format image from the folder: user 65534 (nobody),
# ENTRYPOINT moe-mnist serve, the sample model on 0.0.0.0:8000 with a 5 s drain, STOPSIGNAL SIGTERM, and a
# HEALTHCHECK on /v2/health/ready (bash's /dev/tcp: the image has no HTTP client). Written as a docker-archive
# (`podman load -i`, `docker load -i`) and as an OCI layout folder FILE.oci (umoci, skopeo).
set -euo pipefail
root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: scripts/image.sh DEB [--out FILE.tar]"
deb=$(realpath "$1"); shift
out=""
[ "${1:-}" = --out ] && { out=$(realpath -m "$2"); shift 2; }
[ -f "$deb" ] || die "$deb: no such file"
[ "$(id -u)" = 0 ] || die "needs root (chroot, buildah's vfs storage)"
command -v buildah >/dev/null || die "buildah not found (apt install buildah)"
version=$(dpkg-deb -f "$deb" Version)
out=${out:-$(dirname "$deb")/moe-mnist-$version.image.tar}

. /etc/os-release
tarball="${XDG_CACHE_HOME:-$HOME/.cache}/moe-mnist/debian-$VERSION_CODENAME-apt-root.tar"
[ -f "$tarball" ] || die "no cached Debian root $tarball: run scripts/test-package.sh $deb once (it makes it)"

work=$(mktemp -d)
rootfs="$work/rootfs"
cleanup() { for m in proc dev; do mountpoint -q "$rootfs/$m" && umount -l "$rootfs/$m"; done; rm -rf --one-file-system "$work"; }  # never into a mount that failed to go
trap cleanup EXIT
mkdir "$rootfs"
tar -C "$rootfs" -xf "$tarball"
mount -t proc proc "$rootfs/proc"
mount --bind /dev "$rootfs/dev"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
cp "$deb" "$rootfs/tmp/moe-mnist.deb"
in_root() { chroot "$rootfs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get update -qq
in_root apt-get install -y -q --no-install-recommends /tmp/moe-mnist.deb > "$work/apt.log" 2>&1 || { tail "$work/apt.log" >&2; die "apt-get install failed"; }
in_root apt-get clean
umount -l "$rootfs/proc" "$rootfs/dev"
rm -rf "$rootfs"/tmp/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
       "$rootfs"/usr/share/doc/*/changelog* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
: > "$rootfs/etc/resolv.conf"
say "root: $(du -sh "$rootfs" | cut -f1) after cleaning"

B=(env BUILDAH_FORMAT=docker buildah --storage-driver vfs)  # docker format: OCI has no HEALTHCHECK
name=moe-mnist-build-$$
"${B[@]}" from --name "$name" scratch >/dev/null
trap '"${B[@]}" rm "$name" >/dev/null 2>&1 || true; cleanup' EXIT
mnt=$("${B[@]}" mount "$name")
tar -C "$rootfs" -cf - . | tar -C "$mnt" -xf -
"${B[@]}" umount "$name" >/dev/null
"${B[@]}" config --os linux --arch amd64 --user 65534:65534 --workingdir / --port 8000 --stop-signal SIGTERM \
  --entrypoint '["/usr/bin/moe-mnist", "serve"]' \
  --cmd '["--model", "/usr/share/moe-mnist/model.onnx", "--host", "0.0.0.0", "--port", "8000", "--drain-s", "5"]' \
  --healthcheck 'CMD /bin/bash -c "exec 3<>/dev/tcp/127.0.0.1/8000 && printf \"GET /v2/health/ready HTTP/1.0\\r\\n\\r\\n\" >&3 && head -1 <&3 | grep -q \" 200 \""' \
  --healthcheck-interval 5s --healthcheck-timeout 2s --healthcheck-retries 2 \
  --label org.opencontainers.image.title=moe-mnist --label "org.opencontainers.image.version=$version" \
  "$name"
"${B[@]}" commit --quiet --format docker --rm "$name" "localhost/moe-mnist:$version" >/dev/null
trap cleanup EXIT
rm -rf "$out" "${out%.tar}.oci"
"${B[@]}" push --quiet "localhost/moe-mnist:$version" "docker-archive:$out:moe-mnist:$version"
"${B[@]}" push --quiet "localhost/moe-mnist:$version" "oci:${out%.tar}.oci:$version"
"${B[@]}" rmi "localhost/moe-mnist:$version" >/dev/null
say "image moe-mnist:$version: $out ($(du -h "$out" | cut -f1)), OCI layout ${out%.tar}.oci"
echo "$out"
