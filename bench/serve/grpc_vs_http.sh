#!/usr/bin/env bash
# gRPC against binary HTTP on one `moe-mnist serve`, single FP32 images, CONC concurrent calls each,
# in rounds so both protocols see the same machine load: per round wrk (HTTP, CONC keep-alive
# connections), grpc_load (CONC unary calls, then CONC streams) and, when PA is set, perf_analyzer
# (-i http, -i grpc, -i grpc --streaming) at the same concurrency. For each cell: requests/s, p50/p99
# and the server's CPU time per request (from /proc, so the client's own cost is left out).
#   bench/serve/grpc_vs_http.sh MODEL.onnx [ROUNDS=3] [SECONDS=3] [CONC=64]
#   env: MOE_MNIST_CLI (default build-rt/bin/moe-mnist), GRPC_LOAD (default build-rt/bin/grpc_load),
#        PA (perf_analyzer binary, optional), SERVE_FLAGS (extra serve flags),
#        SERVER_CPUS / CLIENT_CPUS (taskset CPU lists: the server and the clients on separate cores, so
#        a client that costs more CPU per request does not take it from the server)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
model=${1:?usage: grpc_vs_http.sh MODEL.onnx [ROUNDS] [SECONDS] [CONC]}
rounds=${2:-3} secs=${3:-3} conc=${4:-64}
cli=${MOE_MNIST_CLI:-$root/build-rt/bin/moe-mnist}
load=${GRPC_LOAD:-$root/build-rt/bin/grpc_load}
pa=${PA:-}
server_pin=(); [ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
client_pin=(); [ -n "${CLIENT_CPUS:-}" ] && client_pin=(taskset -c "$CLIENT_CPUS")
command -v wrk >/dev/null || { echo "grpc_vs_http.sh: wrk not found (apt install wrk)" >&2; exit 3; }
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
python3 "$root/bench/serve/make_bodies.py" "${MOE_MNIST_DATA:-$root/data/mnist}" "$tmp" > "$tmp/bodies"
hlen=$(awk '$1 == "binary-fp32" {print $2}' "$tmp/bodies")
for _ in 1 2 3 4 5; do  # a random port may be taken (other servers, or a client's ephemeral port): try another
  port=$((20000 + RANDOM % 30000))
  # shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags
  "${server_pin[@]}" "$cli" serve --model "$model" --port "$port" --grpc-port $((port + 1)) ${SERVE_FLAGS:-} 2> "$tmp/server.log" &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$tmp/server.log" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  grep -q "listening on" "$tmp/server.log" && break
  wait "$pid" 2>/dev/null; pid=""
done
[ -n "$pid" ] || { cat "$tmp/server.log" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# CPU seconds (user + system) of this shell's finished children: the client's, around one command.
# (`times` must run in this shell, not in a command substitution's subshell.)
child_cpu() { times > "$tmp/times"; awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$tmp/times"; }
# Images served, summed over the model series (they carry model and version labels).
images() { curl -s "127.0.0.1:$port/metrics" | awk '/^moe_mnist_images_total[{ ]/ {n += $2} END {printf "%d\n", n}' || true; }
hz=$(getconf CLK_TCK)
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC'); ${secs}s per cell, concurrency $conc${SERVER_CPUS:+; server on CPUs $SERVER_CPUS}${CLIENT_CPUS:+, clients on CPUs $CLIENT_CPUS}"
echo "| round | client | protocol | req/s | p50 ms | p99 ms | server CPU us/req | client CPU us/req | errors |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|"
cell() {  # cell ROUND CLIENT PROTOCOL COMMAND...: runs the command, parses its output into a row
  local r=$1 client=$2 proto=$3; shift 3
  local c0 i0 c1 i1 out
  c0=$(cpu_ticks); i0=$(images)
  child_cpu > "$tmp/k0"
  out=$("${client_pin[@]}" "$@" 2>&1) || true
  child_cpu > "$tmp/k1"
  k0=$(cat "$tmp/k0") k1=$(cat "$tmp/k1")
  c1=$(cpu_ticks); i1=$(images)
  local rps p50 p99 err
  case $client in
    wrk)
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1 == "50%" {print $2}' <<<"$out"); p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
      err=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
      p50=$(awk -v x="$p50" 'BEGIN { if (x ~ /us$/) print x / 1000; else if (x ~ /ms$/) print x + 0; else print x * 1000 }')
      p99=$(awk -v x="$p99" 'BEGIN { if (x ~ /us$/) print x / 1000; else if (x ~ /ms$/) print x + 0; else print x * 1000 }') ;;
    grpc_load)
      rps=$(sed -nE 's/.*: ([0-9]+) req\/s.*/\1/p' <<<"$out")
      p50=$(sed -nE 's/.*p50 ([0-9.]+) ms.*/\1/p' <<<"$out"); p99=$(sed -nE 's/.*p99 ([0-9.]+) ms.*/\1/p' <<<"$out")
      err=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$out") ;;
    perf_analyzer)
      rps=$(awk -F, 'NR == 2 {print $2}' "$tmp/pa.csv" 2>/dev/null || true)
      p50=$(awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "p50 latency") c = i} NR == 2 {print $c / 1000}' "$tmp/pa.csv" 2>/dev/null || true)
      p99=$(awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "p99 latency") c = i} NR == 2 {print $c / 1000}' "$tmp/pa.csv" 2>/dev/null || true)
      err=$(grep -c -i "error" <<<"$out" || true); [ -n "$rps" ] || err="no result: $(tail -1 <<<"$out" | cut -c1-60)"
      rm -f "$tmp/pa.csv" ;;
  esac
  awk -v r="$r" -v cl="$client" -v p="$proto" -v rps="${rps:-0}" -v p50="${p50:-0}" -v p99="${p99:-0}" -v e="${err:-?}" \
      -v ticks=$((c1 - c0)) -v imgs=$((${i1%.*} - ${i0%.*})) -v hz="$hz" -v k="$k1 - $k0" \
      'BEGIN { split(k, ka, " - "); server = imgs > 0 ? ticks / hz * 1e6 / imgs : 0; client = imgs > 0 ? (ka[1] - ka[2]) * 1e6 / imgs : 0
               printf "| %s | %s | %s | %.0f | %.2f | %.2f | %.0f | %.0f | %s |\n", r, cl, p, rps, p50, p99, server, client, e }'
}
for r in $(seq "$rounds"); do
  cell "$r" wrk "HTTP binary" env BODY="$tmp/binary-fp32" HLEN="$hlen" CTYPE=application/octet-stream URLPATH=/v2/models/moe-mnist/infer \
    wrk -t1 -c"$conc" -d"${secs}s" --latency -s "$root/bench/serve/request.lua" "http://127.0.0.1:$port"
  cell "$r" grpc_load "gRPC unary" "$load" "127.0.0.1:$((port + 1))" "$conc" "$secs"
  cell "$r" grpc_load "gRPC streams" "$load" "127.0.0.1:$((port + 1))" "$conc" "$secs" --streaming
  if [ -n "$pa" ]; then
    for mode in "http 0" "grpc 1" "grpc-stream 1"; do
      # shellcheck disable=SC2086  # two words: protocol and port offset
      set -- $mode
      flags=(-i "${1%-stream}"); [ "$1" = grpc-stream ] && flags+=(--streaming)
      cell "$r" perf_analyzer "$1" "$pa" -m moe-mnist -u "127.0.0.1:$((port + $2))" "${flags[@]}" --concurrency-range "$conc" \
        --measurement-interval $((secs * 1000)) -s 50 --max-trials 4 -f "$tmp/pa.csv"
    done
  fi
done
