#!/usr/bin/env bash
# Replicas behind HAProxy (scripts/replicas.sh) under load on loopback, bounded (about a minute):
#   (a) kill -9 one of 2 replicas under load: no failed request (HAProxy retries on another replica);
#   (b) rolling restart of every replica with a new model under load: no failed request, and afterwards
#       every replica answers with the new model;
#   (c) requests/s through the balancer with 1 and 2 replicas, and 1 replica direct: printed, not asserted.
#   tests/deploy/test_replicas.sh MOE_MNIST RANDOM_CHECKPOINT DATA_DIR [SECONDS]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 MOE_MNIST RANDOM_CHECKPOINT DATA_DIR [SECONDS]" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cli=$(realpath "$1") make_ck=$2 data=$3 secs=${4:-3}
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in haproxy wrk curl; do command -v $tool >/dev/null || { echo "skipped: $tool not found (scripts/setup.sh installs it)"; exit 77; }; done
tmp=$(mktemp -d)
# Every set started here (up runs in $(...), so the sets are found on disk, not in a variable).
cleanup() {
  for s in "$tmp"/*/; do
    if [ -f "$s/n" ]; then "$root/scripts/replicas.sh" down --dir "$s" 2>/dev/null || true; fi
  done
  if [ -n "${pid:-}" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

for v in 1 2; do
  "$make_ck" "$tmp/ck$v" "$v"
  "$cli" export --checkpoint "$tmp/ck$v" --out "$tmp/model-v$v.onnx" >/dev/null 2>&1 || fail "export of model v$v failed"
done
python3 "$root/bench/serve/make_bodies.py" "$data" "$tmp" > /dev/null
up() {  # up NAME N MODEL
  "$root/scripts/replicas.sh" up "$2" --dir "$tmp/$1" --model "$3" --drain-s 1 --cli "$cli" -- --http-threads 2 2> "$tmp/$1.log" ||
    { cat "$tmp/$1.log" >&2; fail "replicas.sh up $2 failed"; }
  echo "http://127.0.0.1:$(cat "$tmp/$1/port")"
}
load() {  # load URL SECONDS CONNECTIONS OUT: single-image JSON requests with wrk
  BODY="$tmp/json-fp32" HLEN="" CTYPE=application/json URLPATH=/v2/models/moe-mnist/infer \
    wrk -t1 -c"$3" -d"$2s" -s "$root/bench/serve/request.lua" "$1" > "$4"
}
requests() { awk '/requests in/ { print $1 }' "$1"; }
failures() {  # non-2xx responses + socket errors
  local bad sock
  bad=$(awk '/Non-2xx/ { print $NF }' "$1"); sock=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$1")
  echo $(( ${bad:-0} + ${sock:-0} ))
}
logits() { curl -fs -H 'Content-Type: application/json' --data-binary "@$tmp/json-fp32" "$1/v2/models/moe-mnist/infer" |
           python3 -c 'import json,sys; print(" ".join("%.5f" % x for x in next(o for o in json.load(sys.stdin)["outputs"] if o["name"] == "logits")["data"]))'; }

# The drain itself: after SIGTERM with --drain-s, /v2/health/ready answers 503 while inference still answers 200.
"$cli" serve --model "$tmp/model-v1.onnx" --host 127.0.0.1 --port 0 --grpc-port 0 --drain-s 30 2> "$tmp/drain.log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/drain.log" && break; sleep 0.05; done
direct=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/drain.log" | head -1)
[ -n "$direct" ] || fail "serve did not start: $(cat "$tmp/drain.log")"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code "$direct/v2/health/ready")" = 200 ] || fail "ready is not 200 before SIGTERM"
kill -TERM "$pid"
for _ in $(seq 100); do grep -q "not ready" "$tmp/drain.log" && break; sleep 0.02; done
[ "$(code "$direct/v2/health/ready")" = 503 ] || fail "ready is not 503 while draining"
[ "$(code "$direct/v2/health/live")" = 200 ] || fail "live is not 200 while draining"
[ "$(code -H 'Content-Type: application/json' --data-binary "@$tmp/json-fp32" "$direct/v2/models/moe-mnist/infer")" = 200 ] ||
  fail "inference is refused while draining"
kill -TERM "$pid"   # a second signal ends the drain early
rc=0; wait "$pid" || rc=$?
[ "$rc" = 0 ] || fail "serve exited $rc after the drain"
grep -q "drain cut short" "$tmp/drain.log" || fail "a second SIGTERM did not cut the drain short: $(cat "$tmp/drain.log")"
echo "drain: after SIGTERM ready 503, live and inference 200; a second SIGTERM stops it (exit 0)"

url=$(up pair 2 "$tmp/model-v1.onnx")
before=$(logits "$url")

# (a) kill -9 replica 1 a third into the load.
load "$url" $((secs * 2)) 16 "$tmp/a.txt" &
wrk_pid=$!
sleep "$(awk -v s="$secs" 'BEGIN { print s * 2 / 3 }')"
"$root/scripts/replicas.sh" kill --dir "$tmp/pair" 1
wait "$wrk_pid"
"$root/scripts/replicas.sh" status --dir "$tmp/pair" | grep -qx "r1 DOWN" || fail "HAProxy did not mark the killed replica DOWN"
a_req=$(requests "$tmp/a.txt") a_fail=$(failures "$tmp/a.txt")
echo "(a) kill -9 of 1 of 2 replicas under load: $a_req requests, $a_fail failed"
[ "$a_fail" = 0 ] || { cat "$tmp/a.txt"; fail "(a) $a_fail requests failed while a replica was killed"; }

# (b) rolling restart (the killed one comes back first) onto model v2, under load the whole time.
# The load outlasts the restart (about 2 s a replica: a 1 s drain, the start, two passed checks).
load "$url" $((secs * 4)) 16 "$tmp/b.txt" &
wrk_pid=$!
sleep 0.5
t0=$(date +%s.%N)
"$root/scripts/replicas.sh" restart --dir "$tmp/pair" --model "$tmp/model-v2.onnx" 2> "$tmp/restart.log" || { cat "$tmp/restart.log" >&2; fail "restart failed"; }
t1=$(date +%s.%N)
kill -0 "$wrk_pid" 2>/dev/null || fail "(b) the rolling restart outlasted the $((secs * 4)) s load; give a larger SECONDS"
wait "$wrk_pid"
b_req=$(requests "$tmp/b.txt") b_fail=$(failures "$tmp/b.txt")
echo "(b) rolling restart of 2 replicas onto a new model under load ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s): $b_req requests, $b_fail failed"
[ -n "$b_req" ] && [ "$b_req" -gt 0 ] || { cat "$tmp/b.txt"; fail "(b) wrk reported no requests"; }
[ "$b_fail" = 0 ] || { cat "$tmp/b.txt"; fail "(b) $b_fail requests failed during the rolling restart"; }
after1=$(logits "$url") after2=$(logits "$url")
[ "$after1" != "$before" ] || fail "(b) after the restart the balancer still answers with model v1"
[ "$after1" = "$after2" ] || fail "(b) the two replicas answer differently after the restart (one still on v1?)"
"$root/scripts/replicas.sh" down --dir "$tmp/pair"

# (c) throughput: 1 replica direct, 1 and 2 replicas through HAProxy (loopback, the same machine).
url1=$(up one 1 "$tmp/model-v1.onnx")
load "http://127.0.0.1:$(cat "$tmp/one/replica-1.port")" "$secs" 32 "$tmp/c0.txt"
load "$url1" "$secs" 32 "$tmp/c1.txt"
"$root/scripts/replicas.sh" down --dir "$tmp/one"
url2=$(up two 2 "$tmp/model-v1.onnx")
load "$url2" "$secs" 32 "$tmp/c2.txt"
"$root/scripts/replicas.sh" down --dir "$tmp/two"
rps() { awk '/Requests\/sec/ { printf "%.0f", $2 }' "$1"; }
echo "(c) requests/s, 32 connections, ${secs} s each: 1 replica direct $(rps "$tmp/c0.txt"), 1 replica via HAProxy $(rps "$tmp/c1.txt"), 2 replicas via HAProxy $(rps "$tmp/c2.txt") ($(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
for f in c0 c1 c2; do [ "$(failures "$tmp/$f.txt")" = 0 ] || { cat "$tmp/$f.txt"; fail "(c) failed requests in the throughput run $f"; }; done
echo "replicas: PASS"
