#!/usr/bin/env bash
# Data-parallel training across two "hosts": two network namespaces joined by a veth pair, 10.77.0.1 and
# 10.77.0.2 (addresses that exist only inside them), rank 0 in one, rank 1 in the other, --master the first
# one's address. What loopback hides: the TCPStore rendezvous across hosts and Gloo's choice of interface
# (GLOO_SOCKET_IFNAME, as in PyTorch). The weights must equal a single process's run, as the loopback test
# (distributed) checks.
#   tests/deploy/test_netns_training.sh MOE_MNIST MNIST_DIR
# Needs root and `ip netns`; exit 77 (skipped) otherwise.
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 MOE_MNIST MNIST_DIR" >&2; exit 2; }
cli=$(realpath "$1") mnist=$(realpath "$2")
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (network namespaces)"; exit 77; }
command -v ip >/dev/null && ip netns list >/dev/null 2>&1 || { echo "skipped: no 'ip netns' (apt install iproute2)"; exit 77; }
tmp=$(mktemp -d)
ns0=moe-h0-$$ ns1=moe-h1-$$ v0=moe0-$$ v1=moe1-$$
cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  ip netns del "$ns0" 2>/dev/null || true   # deleting a namespace deletes its end of the veth pair, and so the pair
  ip netns del "$ns1" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$ns0" || { echo "skipped: cannot create a network namespace here"; exit 77; }
ip netns add "$ns1"
ip link add "$v0" type veth peer name "$v1"
ip link set "$v0" netns "$ns0"
ip link set "$v1" netns "$ns1"
ip -n "$ns0" addr add 10.77.0.1/24 dev "$v0"
ip -n "$ns1" addr add 10.77.0.2/24 dev "$v1"
for n in "$ns0" "$ns1"; do ip -n "$n" link set lo up; done
ip -n "$ns0" link set "$v0" up
ip -n "$ns1" link set "$v1" up

# 1280 training images (20 steps of a global batch of 64) and 500 test images, cut from MNIST.
python3 - "$mnist" "$tmp/data" <<'PY'
import os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
for name, n, row, header in (("train-images-idx3-ubyte", 1280, 784, 16), ("train-labels-idx1-ubyte", 1280, 1, 8),
                             ("t10k-images-idx3-ubyte", 500, 784, 16), ("t10k-labels-idx1-ubyte", 500, 1, 8)):
    b = bytearray(open(os.path.join(src, name), "rb").read(header + n * row))
    b[4:8] = struct.pack(">I", n)
    open(os.path.join(dst, name), "wb").write(b)
PY
common=(train --val 0 --keep last --no-noise --data "$tmp/data" --epochs 1 --batch 64 --threads 1 --json --force)
"$cli" "${common[@]}" --out "$tmp/one" > "$tmp/one.json" 2> "$tmp/one.err" || fail "single-process training failed: $(tail -3 "$tmp/one.err")"

# Twice: Gloo's interface chosen by moe-mnist (the one that routes to --master), then named (GLOO_SOCKET_IFNAME).
for how in route ifname; do
  port=$(( 20000 + RANDOM % 40000 ))
  dist=(--world-size 2 --master "10.77.0.1:$port" --dist-timeout 60 --out "$tmp/two-$how")
  e0=() e1=()
  [ "$how" = ifname ] && e0=(GLOO_SOCKET_IFNAME="$v0") e1=(GLOO_SOCKET_IFNAME="$v1")
  ip netns exec "$ns0" env "${e0[@]}" "$cli" "${common[@]}" --rank 0 "${dist[@]}" > "$tmp/r0.json" 2> "$tmp/r0.err" &
  r0=$!
  ip netns exec "$ns1" env "${e1[@]}" "$cli" "${common[@]}" --rank 1 "${dist[@]}" > "$tmp/r1.json" 2> "$tmp/r1.err" &
  r1=$!
  rc0=0; wait "$r0" || rc0=$?
  rc1=0; wait "$r1" || rc1=$?
  [ "$rc0" = 0 ] && [ "$rc1" = 0 ] || fail "($how) ranks exited $rc0 and $rc1: rank 0: $(tail -3 "$tmp/r0.err") / rank 1: $(tail -3 "$tmp/r1.err")"
  python3 - "$tmp/one" "$tmp/two-$how" "$tmp/one.json" "$tmp/r0.json" "$how" <<'PY'
import json, struct, sys
def weights(d):
    raw = open(d + "/weights.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n]); body = raw[8 + n:]
    out = {}
    for k, v in head.items():
        if k == "__metadata__": continue
        assert v["dtype"] == "F32", v
        a, b = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((b - a) // 4), body[a:b])
    return out
one, two = weights(sys.argv[1]), weights(sys.argv[2])
assert one.keys() == two.keys(), (sorted(one), sorted(two))
diff = max(abs(x - y) for k in one for x, y in zip(one[k], two[k]))
j1, j2 = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
print(f"two hosts (netns, 10.77.0.1 <-> 10.77.0.2, Gloo interface by {sys.argv[5]}): {j2['iterations']} steps; "
      f"max |weight difference| vs one process {diff:.2e}; test accuracy {j1['test_accuracy']:.4f} vs {j2['test_accuracy']:.4f}")
assert j2["iterations"] == 20, j2["iterations"]
assert diff <= 1e-5, f"weights differ by {diff} (> 1e-5) from the single-process run"
PY
done
grep -q "all-reduce" "$tmp/r0.err" || fail "rank 0 did not report an all-reduce run: $(cat "$tmp/r0.err")"
echo "netns training: PASS"
