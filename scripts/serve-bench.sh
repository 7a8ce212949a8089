#!/usr/bin/env bash
# Load test of `moe-mnist serve` on loopback with wrk: single-image requests (KServe v2 JSON FP32,
# binary FP32, binary UINT8) at several keep-alive connection counts, dynamic batching on and off.
# --batching modes: on (serve's defaults), off (--max-batch 1: one request per model run), or
# delay:N (--max-delay-us N); one server per mode, the modes taking turns in every cell, --rounds times
# (each round starting with the next mode).
# Reports requests/s, latency p50/p99, mean batch size, errors, where the server's time goes, the
# server's memory before and after, and (several modes or rounds) each mode against the first per cell.
# Bounded: each cell runs --seconds.
#
#   scripts/serve-bench.sh [--model M.onnx] [--model-u8 M-u8.onnx] [--seconds S] [--connections "1 16 64 256"]
#                          [--payloads "json-fp32 binary-fp32 binary-uint8"] [--batching "on off"] [--rounds N]
#                          [--fresh] [--check] [-- extra serve flags]
# UINT8 payloads go to the UINT8 model (moe-mnist-u8: a KServe v2 input has one datatype):
# --model-u8, by default M-u8.onnx beside M.onnx, else exported from M.onnx's checkpoint folder.
# --fresh: new servers for every round, so no mode keeps one process's luck (code and memory layout,
#   thread placement): two identical servers differed by 12-16% over 8 rounds here.
# --check: exit 1 on any error response or socket error (CI's bounded smoke run).
# env SERVER_CPUS / CLIENT_CPUS: taskset CPU lists for the servers and wrk (separate cores, so the
# client does not take the server's CPU: less noise between rounds).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cli="${MOE_MNIST_CLI:-$root/build/bin/moe-mnist}"
model="$root/runs/mnist/model.fp32.onnx" model_u8=""
seconds=5 connections="1 16 64 256" payloads="json-fp32 binary-fp32 binary-uint8" batching="on off" rounds=1 fresh=0 check=0
data="${MOE_MNIST_DATA:-$root/data/mnist}"
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --model-u8) model_u8=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --payloads) payloads=$2; shift 2 ;;
    --batching) batching=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    --check) check=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "serve-bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "serve-bench.sh: wrk not found (apt install wrk)" >&2; exit 3; }
[ -f "$model" ] || { echo "serve-bench.sh: $model not found (train and export first: scripts/demo.sh)" >&2; exit 1; }

server_pin=(); [ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
client_pin=(); [ -n "${CLIENT_CPUS:-}" ] && client_pin=(taskset -c "$CLIENT_CPUS")
tmp=$(mktemp -d)
declare -A url_of pid_of rss_of  # per server (KEY = mode-model): its URL, process and RSS at start
cleanup() { for p in "${pid_of[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
python3 "$root/bench/serve/make_bodies.py" "$data" "$tmp" > "$tmp/bodies"
if [[ " $payloads " == *uint8* ]]; then
  [ -n "$model_u8" ] || model_u8="${model%.onnx}-u8.onnx"
  if [ ! -f "$model_u8" ]; then
    model_u8="$tmp/model-u8.onnx"
    "$cli" export --checkpoint "$(dirname "$model")" --input uint8 --out "$model_u8" 2> "$tmp/export.log" ||
      { cat "$tmp/export.log" >&2; echo "serve-bench.sh: no UINT8 model for the uint8 payloads (give --model-u8)" >&2; exit 1; }
  fi
fi

# A metric's value summed over its label sets (the model series carry model and version labels).
metric() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.17g\n", s }' "$tmp/metrics"; }
scrape() {  # the current server's metrics; one that does not answer ends the run with its log
  curl -sf "$url/metrics" > "$tmp/metrics" && return
  echo "serve-bench.sh: the server $b-$kind ($url) did not answer /metrics; its log ends:" >&2
  tail -5 "$tmp/server-$b-$kind.log" >&2
  exit 1
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "# serve-bench: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; wrk -t1, ${seconds}s per cell; $(date -u '+%Y-%m-%d %H:%M UTC')${SERVER_CPUS:+; servers on CPUs $SERVER_CPUS}${CLIENT_CPUS:+, wrk on CPUs $CLIENT_CPUS}"
echo "# server: $cli serve --model $model${model_u8:+ (UINT8 payloads: $model_u8)} $*"
errors_total=0
mode_flags() {  # the serve flags of a --batching mode
  case "$1" in
    on) ;;
    off) echo "--max-batch 1" ;;
    delay:*) echo "--max-delay-us ${1#delay:}" ;;
    *) echo "serve-bench.sh: unknown batching mode '$1' (on, off, delay:N)" >&2; exit 2 ;;
  esac
}
# One server per batching mode and model, all started first and idle but for the one under load, so
# the modes take turns within each cell (same minute, same machine load): a fair comparison on a
# noisy machine, where cells minutes apart differ by more than the rules do.
start_server() {  # start_server KEY MODEL NAME MODE EXTRA...
  local key=$1 m=$2 name=$3 mode=$4; shift 4
  rm -f "$tmp/server-$key.log"  # a restart's log: the previous server's "listening on" line must not be read
  # shellcheck disable=SC2046  # the mode's flags are words
  "${server_pin[@]}" "$cli" serve --model "$m" --name "$name" --port 0 --grpc-port 0 $(mode_flags "$mode") "$@" 2> "$tmp/server-$key.log" &
  pid_of[$key]=$!
  local u=""
  for _ in $(seq 100); do grep -qs "listening on" "$tmp/server-$key.log" && break; sleep 0.1; done
  u=$(grep -o 'http://[0-9.:]*' "$tmp/server-$key.log" | head -1 || true)
  [ -n "$u" ] || { cat "$tmp/server-$key.log" >&2; exit 1; }
  url_of[$key]=$u
  rss_of[$key]=$(rss_kib "${pid_of[$key]}")
}
stop_server() {  # stop_server KEY: SIGTERM, and it must exit cleanly
  kill -TERM "${pid_of[$1]}"; wait "${pid_of[$1]}" || { echo "serve exited non-zero after SIGTERM ($1)" >&2; exit 1; }
  unset "pid_of[$1]"
}
serve_args=("$@")
start_servers() {  # start_servers KIND...: one server per mode for each kind (fp32, u8)
  local b k
  for b in $batching; do
    for k in "$@"; do
      if [ "$k" = u8 ]; then start_server "$b-u8" "$model_u8" moe-mnist-u8 "$b" "${serve_args[@]}"
      else start_server "$b-fp32" "$model" moe-mnist "$b" "${serve_args[@]}"; fi
    done
  done
}
read -ra modes <<< "$batching"
kinds=()
for b in "${modes[@]}"; do mode_flags "$b" > /dev/null; done
[[ " $payloads " == *" json-fp32 "* || " $payloads " == *" binary-fp32 "* ]] && kinds+=(fp32)
[[ " $payloads " == *uint8* ]] && kinds+=(u8)
start_servers "${kinds[@]}"
printf '| batching | payload | conns | req/s | p50 ms | p99 ms | mean batch | errors | server us/req (queue + model/img) | round |\n' | tee "$tmp/rows"
printf '|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n' | tee -a "$tmp/rows"
for p in $payloads; do
  name=moe-mnist kind=fp32
  [[ $p == *uint8 ]] && name=moe-mnist-u8 kind=u8
  hlen=$(awk -v n="$p" '$1 == n {print $2}' "$tmp/bodies")
  ctype=application/octet-stream; [ -z "$hlen" ] && ctype=application/json
  for c in $connections; do
    for round in $(seq "$rounds"); do
      if [ "$fresh" = 1 ] && [ "$round" -gt 1 ]; then
        for b in $batching; do stop_server "$b-$kind"; done
        start_servers "$kind"
      fi
      # Each round starts with the next mode, so no mode always runs first (or right after another):
      # a cell's position in the round biased identical servers by 5-10% here.
      shift_by=$(( (round - 1) % ${#modes[@]} ))
      for b in "${modes[@]:shift_by}" "${modes[@]:0:shift_by}"; do
        url=${url_of[$b-$kind]}
        scrape
        r0=$(metric moe_mnist_model_runs_total); i0=$(metric moe_mnist_images_total)
        q0=$(metric moe_mnist_queue_wait_seconds_sum); m0=$(metric moe_mnist_model_run_seconds_sum)
        d0=$(awk '/^moe_mnist_http_request_duration_seconds_sum{route="infer"}/ {print $2}' "$tmp/metrics"); d0=${d0:-0}
        BODY="$tmp/$p" HLEN="$hlen" CTYPE="$ctype" URLPATH="/v2/models/$name/infer" \
          "${client_pin[@]}" wrk -t1 -c"$c" -d"${seconds}s" --latency -s "$root/bench/serve/request.lua" "$url" > "$tmp/wrk.txt" ||
          { echo "serve-bench.sh: wrk failed against the server $b-$kind ($url):" >&2; cat "$tmp/wrk.txt" >&2; tail -5 "$tmp/server-$b-$kind.log" >&2; exit 1; }
        scrape
        r1=$(metric moe_mnist_model_runs_total); i1=$(metric moe_mnist_images_total)
        q1=$(metric moe_mnist_queue_wait_seconds_sum); m1=$(metric moe_mnist_model_run_seconds_sum)
        d1=$(awk '/^moe_mnist_http_request_duration_seconds_sum{route="infer"}/ {print $2}' "$tmp/metrics")
        rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")
        p50=$(awk '$1 == "50%" {print $2}' "$tmp/wrk.txt"); p99=$(awk '$1 == "99%" {print $2}' "$tmp/wrk.txt")
        non2xx=$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.txt"); non2xx=${non2xx:-0}
        sock=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$tmp/wrk.txt"); sock=${sock:-0}
        errors=$((non2xx + sock)); errors_total=$((errors_total + errors))
        awk -v b="$b" -v p="$p" -v c="$c" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v e="$errors" -v round="$round" \
            -v runs=$((r1 - r0)) -v imgs=$((i1 - i0)) -v q="$q1 - $q0" -v m="$m1 - $m0" -v d="$d1 - $d0" '
          function ms(x) { if (x ~ /us$/) return x / 1000; if (x ~ /ms$/) return x + 0; if (x ~ /s$/) return x * 1000; return x }
          BEGIN {
            split(q, qa, " - "); split(m, ma, " - "); split(d, da, " - ")
            mean = runs > 0 ? imgs / runs : 0
            per = imgs > 0 ? 1e6 * (da[1] - da[2]) / imgs : 0
            qimg = imgs > 0 ? 1e6 * (qa[1] - qa[2]) / imgs : 0
            mimg = imgs > 0 ? 1e6 * (ma[1] - ma[2]) / imgs : 0
            printf "| %s | %s | %d | %.0f | %.2f | %.2f | %.1f | %d | %.0f (%.0f + %.1f) | %d |\n", b, p, c, rps, ms(p50), ms(p99), mean, e, per, qimg, mimg, round
          }' | tee -a "$tmp/rows"
      done
    done
  done
done
for key in "${!pid_of[@]}"; do
  echo "# server $key: RSS $((rss_of[$key] / 1024)) MiB at start, $(( $(rss_kib "${pid_of[$key]}") / 1024 )) MiB after"
  stop_server "$key"
done
# Several rules or rounds: each rule against the first, per cell (median of the rounds, min-max).
n_modes=$(wc -w <<< "$batching")
if [ "$rounds" -gt 1 ] || [ "$n_modes" -gt 1 ]; then
  echo
  python3 "$root/bench/serve/bench_summary.py" "$tmp/rows"
fi
if [ "$check" = 1 ] && [ "$errors_total" -gt 0 ]; then
  echo "serve-bench.sh: $errors_total error responses or socket errors" >&2
  exit 1
fi
