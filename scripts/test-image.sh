#!/usr/bin/env bash
# Runs the image scripts/image.sh built without a container runtime (podman cannot start containers on
# every machine): its OCI layout unpacked with umoci, the image's own ENTRYPOINT + CMD started as its USER in a
# chroot of that root file system inside a fresh network namespace (so 0.0.0.0:8000 is private to the test),
# the image's HEALTHCHECK command run there, an inference request answered, SIGTERM: drain, exit 0.
#   scripts/test-image.sh IMAGE.tar        (root; IMAGE.oci beside it)
set -euo pipefail
img=$(realpath "$1")
say() { printf '[test-image] %s\n' "$*" >&2; }
fail() { printf '[test-image] FAIL: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { say "skipped: needs root"; exit 77; }
command -v umoci >/dev/null && ip netns list >/dev/null 2>&1 || { say "skipped: needs umoci and ip netns"; exit 77; }
work=$(mktemp -d)
ns=moe-img-$$ server=""
cleanup() {
  if [ -n "$server" ]; then kill -9 "$server" 2>/dev/null || true; fi
  if mountpoint -q "$work/bundle/rootfs/proc"; then umount -l "$work/bundle/rootfs/proc"; fi
  ip netns del "$ns" 2>/dev/null || true
  rm -rf --one-file-system "$work"  # never into a mount that failed to go
}
trap cleanup EXIT
# The image's configuration, from the docker archive (the OCI format has no HEALTHCHECK).
tar -C "$work" -xf "$img" manifest.json
tar -C "$work" -xf "$img" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["Config"])' "$work/manifest.json")"
python3 - "$work" > "$work/config.sh" <<'PY'
import glob, json, os, shlex, sys
m = json.load(open(os.path.join(sys.argv[1], "manifest.json")))[0]
c = json.load(open(os.path.join(sys.argv[1], m["Config"])))["config"]
print("user=" + shlex.quote(c["User"]))
print("run=(" + " ".join(shlex.quote(a) for a in c["Entrypoint"] + c["Cmd"]) + ")")
hc = c["Healthcheck"]["Test"]
assert hc[0] == "CMD", hc
print("health=(" + " ".join(shlex.quote(a) for a in hc[1:]) + ")")
print("stopsignal=" + shlex.quote(c.get("StopSignal", "")))
PY
. "$work/config.sh"
[ "$user" = 65534:65534 ] || fail "the image runs as '$user', expected 65534:65534 (non-root)"
[ "$stopsignal" = SIGTERM ] || fail "STOPSIGNAL is '$stopsignal', expected SIGTERM"
oci=${img%.tar}.oci
tag=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$oci/index.json")
umoci unpack --image "$oci:$tag" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs
[ ! -e "$rootfs/usr/bin/gcc" ] && [ -z "$(find "$rootfs/usr/lib" -name 'libtorch*' -print -quit)" ] || fail "the image holds a compiler or LibTorch"
say "image $(basename "$img"): $(du -h "$img" | cut -f1) archive, root file system $(du -sh "$rootfs" | cut -f1); user $user; ${run[*]}"

# What any container runtime gives the container: /proc (the loader finds $ORIGIN through /proc/self/exe).
mount -t proc proc "$rootfs/proc"
ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { ip netns exec "$ns" "$@"; }
ip netns exec "$ns" chroot --userspec="$user" "$rootfs" env -i PATH=/usr/bin:/bin "${run[@]}" > "$work/serve.log" 2>&1 &  # each execs the next: $! is the server
server=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.log" && break; kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
grep -q "listening on" "$work/serve.log" || fail "the image's command did not start: $(cat "$work/serve.log")"
in_ns timeout 10 chroot --userspec="$user" "$rootfs" env -i PATH=/usr/bin:/bin "${health[@]}" || fail "the image's HEALTHCHECK fails on a ready server"
python3 -c 'import json; print(json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}))' > "$work/req.json"
code=$(in_ns curl -s -o "$work/reply.json" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "@$work/req.json" \
  http://127.0.0.1:8000/v2/models/moe-mnist/infer)
[ "$code" = 200 ] && grep -q '"logits"' "$work/reply.json" || fail "inference answered $code: $(head -c 300 "$work/reply.json")"
kill -TERM "$server"
for _ in $(seq 50); do grep -q "not ready" "$work/serve.log" && break; sleep 0.05; done
! in_ns timeout 10 chroot --userspec="$user" "$rootfs" env -i PATH=/usr/bin:/bin "${health[@]}" || fail "the HEALTHCHECK still passes while the server drains"
rc=0; wait "$server" || rc=$?
server=""
[ "$rc" = 0 ] || fail "the server exited $rc after SIGTERM: $(cat "$work/serve.log")"
say "PASS: the image's command serves as $user, HEALTHCHECK passes (fails while draining), inference 200, SIGTERM -> drain -> exit 0"
