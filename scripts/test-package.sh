#!/usr/bin/env bash
# Installs the .deb the way a user does, into a clean Debian root, and serves its sample model:
#   scripts/test-package.sh DEB
# 1. a minimal Debian root (mmdebstrap --variant=apt, the host's suite and apt sources), cached as a tarball
#    in ${XDG_CACHE_HOME:-~/.cache}/moe-mnist/ (the first run downloads it, later runs only unpack it);
# 2. `apt-get install ./moe-mnist_*.deb` inside it (chroot): the dependencies come from Debian's archive;
# 3. as an unprivileged user in the chroot, `moe-mnist serve` of /usr/share/moe-mnist/model.onnx on a
#    loopback port; an inference request answered; SIGTERM stops it with exit 0; then apt-get purge.
# Needs root (chroot, mount) and network access to Debian's archive. Exit 77 (skipped) without root/mmdebstrap.
set -euo pipefail
[ $# = 1 ] || { echo "usage: $0 DEB" >&2; exit 2; }
deb=$(realpath "$1")
say() { printf '[test-package] %s\n' "$*" >&2; }
fail() { printf '[test-package] FAIL: %s\n' "$*" >&2; exit 1; }
[ -f "$deb" ] || fail "$deb: no such file"
[ "$(id -u)" = 0 ] || { say "skipped: needs root for chroot and mount"; exit 77; }
command -v mmdebstrap >/dev/null || { say "skipped: mmdebstrap not found (apt install mmdebstrap, or scripts/setup.sh)"; exit 77; }

. /etc/os-release
suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moe-mnist"
tarball="$cache/debian-$suite-apt-root.tar"
sources=(/etc/apt/sources.list.d/*.sources /etc/apt/sources.list)
mirrors=()
for s in "${sources[@]}"; do [ -s "$s" ] && mirrors+=("$s"); done
if [ ! -f "$tarball" ]; then
  mkdir -p "$cache"
  say "making a clean Debian $suite root (mmdebstrap --variant=apt; once, then cached in $tarball)"
  mmdebstrap --quiet --variant=apt --format=tar "$suite" "$tarball.partial" "${mirrors[@]}" </dev/null ||
    { rm -f "$tarball.partial"; fail "mmdebstrap could not make the root"; }
  mv "$tarball.partial" "$tarball"
fi

work=$(mktemp -d)
root="$work/root"
server="" ns=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  if [ -n "$ns" ]; then ip netns del "$ns" 2>/dev/null || true; fi
  for m in proc dev sys; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  rm -rf --one-file-system "$work"  # never into a mount that failed to go
}
trap cleanup EXIT
mkdir "$root"
tar -C "$root" -xf "$tarball"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind -o ro /sys "$root/sys" 2>/dev/null || true
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

cp "$deb" "$root/tmp/"
t0=$(date +%s)
in_root apt-get update -qq || fail "apt-get update in the root failed"
in_root apt-get install -y -q --no-install-recommends "./tmp/$(basename "$deb")" > "$work/apt.log" 2>&1 ||
  { tail -20 "$work/apt.log" >&2; fail "apt-get install ./$(basename "$deb") failed in a clean root"; }
say "apt-get install: $(sed -n 's/^\([0-9]*\) upgraded, \([0-9]*\) newly installed.*/\2/p' "$work/apt.log") packages newly installed in $(( $(date +%s) - t0 )) s"
in_root dpkg-query -W -f='${Status}\n' moe-mnist | grep -q 'install ok installed' || fail "dpkg does not list moe-mnist as installed"
version=$(in_root moe-mnist --version) || fail "moe-mnist --version failed in the root"
say "installed: $version"
[ -f "$root/usr/share/man/man1/moe-mnist.1.gz" ] || fail "no man page"
[ -f "$root/lib/systemd/system/moe-mnist.service" ] || fail "no systemd unit"
. "$root/etc/default/moe-mnist"
[ "$MOE_MNIST_MODEL" = /usr/share/moe-mnist/model.onnx ] && [ -f "$root$MOE_MNIST_MODEL" ] || fail "/etc/default/moe-mnist names no shipped model"
if command -v systemd-analyze >/dev/null; then
  # The installed unit, checked by the host's systemd (the minimal root has none), its binary the root's.
  sed "s|/usr/bin/moe-mnist|$root/usr/bin/moe-mnist|" "$root/lib/systemd/system/moe-mnist.service" > "$work/moe-mnist.service"
  systemd-analyze verify --man=no "$work/moe-mnist.service" > "$work/verify.log" 2>&1 || true
  ! grep . "$work/verify.log" >&2 || fail "systemd-analyze verify reports problems in moe-mnist.service"
  score=$(systemd-analyze security --offline=true "$work/moe-mnist.service" 2>/dev/null | sed -n 's/.*Overall exposure level for moe-mnist.service: //p' || true)
  [ -n "$score" ] && say "systemd-analyze security: exposure $score"
fi

# Serve as the service would: an unprivileged user, the settings from /etc/default, its default ports
# in a network namespace of its own (so no other program's port can be in the way: a random port on
# the host's loopback collided with tests running beside it). Without `ip netns`: any free port (0),
# read back from the server's "listening on" line, and no gRPC.
if ip netns add "moe-pkg-$$" 2>/dev/null; then
  ns="moe-pkg-$$"
  ip -n "$ns" link set lo up
  in_ns=(ip netns exec "$ns")
  ports=(--port 8000 --grpc-port 8001)
else
  in_ns=()
  ports=(--port 0 --grpc-port 0)
fi
# ip netns exec, chroot, env and setpriv each exec the next, so $! is the server itself.
"${in_ns[@]}" chroot "$root" env -i PATH=/usr/bin:/bin setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs \
  moe-mnist serve --model "$MOE_MNIST_MODEL" --host 127.0.0.1 "${ports[@]}" --drain-s 0.2 > "$work/serve.log" 2>&1 &
server=$!
port=""
for _ in $(seq 100); do
  [ -n "$port" ] || port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$work/serve.log")
  [ -n "$port" ] && "${in_ns[@]}" curl -fs "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; fail "serve exited at start"; }
  sleep 0.1
done
[ -n "$port" ] && "${in_ns[@]}" curl -fs "http://127.0.0.1:$port/v2/health/ready" >/dev/null || { cat "$work/serve.log" >&2; fail "serve never became ready"; }
python3 -c 'import json; print(json.dumps({"inputs": [{"name": "input", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 1568}]}))' > "$work/req.json"
reply=$("${in_ns[@]}" curl -fsS -H 'Content-Type: application/json' --data-binary "@$work/req.json" "http://127.0.0.1:$port/v2/models/moe-mnist/infer") ||
  fail "the inference request failed: $(cat "$work/serve.log")"
python3 - "$reply" <<'PY' || fail "unexpected inference reply: $reply"
import json, sys
r = json.loads(sys.argv[1])
out = {o["name"]: o for o in r["outputs"]}
assert out["logits"]["shape"] == [2, 10] and len(out["logits"]["data"]) == 20, out["logits"]["shape"]
assert abs(sum(out["gate_probs"]["data"]) - 2.0) < 1e-3  # each image's gate probabilities sum to 1
PY
kill -TERM "$server"
rc=0; wait "$server" || rc=$?
server=""
[ "$rc" = 0 ] || { cat "$work/serve.log" >&2; fail "serve exited $rc on SIGTERM, expected 0"; }
say "served the sample model in the chroot on 127.0.0.1:$port${ns:+ (network namespace $ns)}: 2 images answered, SIGTERM -> exit 0"
in_root apt-get purge -y -q moe-mnist > "$work/purge.log" 2>&1 || fail "apt-get purge moe-mnist failed"
[ ! -e "$root/usr/bin/moe-mnist" ] && [ ! -e "$root/etc/default/moe-mnist" ] || fail "purge left files behind"
say "PASS: $(basename "$deb") installs with apt-get into a clean $suite root, serves, and purges"
