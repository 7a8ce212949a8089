#!/usr/bin/env bash
# Triton's perf_analyzer, unchanged (its default random data), against `moe-mnist serve` with
# batching off (--max-batch 1) and on (serve's defaults): single images (-b 1), sync, concurrency
# 1..64, over HTTP binary FP32, HTTP JSON FP32, gRPC FP32 and HTTP binary UINT8 (the UINT8 model).
# One server per mode and model, all started first; the modes take turns in every cell, --rounds
# times, each round starting with the next mode. Prints each run (infer/s, p50/p99 and the
# server-side queue and compute from the statistics extension, µs) and a summary per cell: medians
# over the rounds and on/off per round, median (min-max).
#   PA=path/to/perf_analyzer bench/serve/perf-analyzer-batching.sh MODEL.onnx MODEL-u8.onnx [ROUNDS=2] \
#       [CONCURRENCY="1 2 4 8 16 32 64"] [KINDS="http-binary http-json grpc http-uint8"]
#   env: MOE_MNIST_CLI (default build-rt/bin/moe-mnist), PA_WINDOW_MS (default 1500)
# perf_analyzer is not in CI (it is built from its public sources: ../shared/tools/perf_analyzer).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
model=${1:?usage: perf-analyzer-batching.sh MODEL.onnx MODEL-u8.onnx [ROUNDS] [CONCURRENCY] [KINDS]}
model_u8=${2:?usage: perf-analyzer-batching.sh MODEL.onnx MODEL-u8.onnx [ROUNDS] [CONCURRENCY] [KINDS]}
rounds=${3:-2} concurrency=${4:-"1 2 4 8 16 32 64"} kinds=${5:-"http-binary http-json grpc http-uint8"}
cli=${MOE_MNIST_CLI:-$root/build-rt/bin/moe-mnist}
pa=${PA:?set PA to the perf_analyzer binary}
window=${PA_WINDOW_MS:-1500}
modes="off on"
tmp=$(mktemp -d)
declare -A pid_of port_of
cleanup() { for p in "${pid_of[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
start_server() {  # start_server KEY MODEL NAME FLAGS...: HTTP on port_of[KEY], gRPC on the next port
  local key=$1 m=$2 name=$3; shift 3
  for _ in 1 2 3 4 5; do  # a random port may be taken: try another
    local port=$((20000 + RANDOM % 30000))
    "$cli" serve --model "$m" --name "$name" --port "$port" --grpc-port $((port + 1)) "$@" 2> "$tmp/server-$key.log" &
    pid_of[$key]=$!
    for _ in $(seq 100); do grep -q "listening on" "$tmp/server-$key.log" && break; kill -0 "${pid_of[$key]}" 2>/dev/null || break; sleep 0.1; done
    if grep -q "listening on" "$tmp/server-$key.log"; then port_of[$key]=$port; return 0; fi
    wait "${pid_of[$key]}" 2>/dev/null || true
  done
  cat "$tmp/server-$key.log" >&2; exit 1
}
for mode in $modes; do
  flags=(); [ "$mode" = off ] && flags=(--max-batch 1)
  start_server "$mode-fp32" "$model" moe-mnist "${flags[@]}"
  [[ " $kinds " == *uint8* ]] && start_server "$mode-u8" "$model_u8" moe-mnist-u8 "${flags[@]}"
done
echo "# perf_analyzer against moe-mnist serve: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# per run: $pa -m MODEL -u HOST:PORT -i PROTO [--input-tensor-format json --output-tensor-format json] -b 1 --concurrency-range C -p $window -s 50 --max-trials 4 -f CSV"
echo "| kind | conc | mode | round | infer/s | p50 us | p99 us | server queue us | server compute us | errors |" | tee "$tmp/rows"
read -ra order <<< "$modes"
for kind in $kinds; do
  for c in $concurrency; do
    for round in $(seq "$rounds"); do
      # Each round starts with the next mode, so neither always runs first (a position bias of 5-10%
      # in scripts/serve-bench.sh's runs).
      shift_by=$(( (round - 1) % ${#order[@]} ))
      for mode in "${order[@]:shift_by}" "${order[@]:0:shift_by}"; do
        key=$mode-fp32 name=moe-mnist proto=http extra=()
        case $kind in
          http-binary) ;;
          http-json) extra=(--input-tensor-format json --output-tensor-format json) ;;
          grpc) proto=grpc ;;
          http-uint8) key=$mode-u8 name=moe-mnist-u8 ;;
          *) echo "perf-analyzer-batching.sh: unknown kind '$kind'" >&2; exit 2 ;;
        esac
        port=${port_of[$key]}; [ "$proto" = grpc ] && port=$((port + 1))
        rm -f "$tmp/pa.csv"
        rc=0
        "$pa" -m "$name" -u "127.0.0.1:$port" -i "$proto" "${extra[@]}" -b 1 --concurrency-range "$c" -p "$window" \
          -s 50 --max-trials 4 -f "$tmp/pa.csv" > "$tmp/pa.log" 2>&1 || rc=$?
        if [ ! -s "$tmp/pa.csv" ]; then
          echo "| $kind | $c | $mode | $round | - | - | - | - | - | perf_analyzer exit $rc: $(grep -m1 -i 'error\|fail' "$tmp/pa.log" || tail -1 "$tmp/pa.log") |" | tee -a "$tmp/rows"
          continue
        fi
        python3 - "$tmp/pa.csv" "$kind" "$c" "$mode" "$round" "$rc" <<'PY' | tee -a "$tmp/rows"
import csv, sys
path, kind, c, mode, rnd, rc = sys.argv[1:]
row = next(csv.DictReader(open(path)))
compute = sum(float(row[k]) for k in ("Server Compute Input", "Server Compute Infer", "Server Compute Output"))
p = lambda k: float(row[k])  # perf_analyzer writes every time in µs
print(f"| {kind} | {c} | {mode} | {rnd} | {float(row['Inferences/Second']):.0f} | {p('p50 latency'):.0f} | {p('p99 latency'):.0f} "
      f"| {float(row['Server Queue']):.0f} | {compute:.0f} | {'0' if rc == '0' else 'exit ' + rc} |")
PY
      done
    done
  done
done
echo
python3 "$root/bench/serve/bench_summary.py" "$tmp/rows"
for key in "${!pid_of[@]}"; do
  kill -TERM "${pid_of[$key]}"; wait "${pid_of[$key]}" || { echo "serve exited non-zero after SIGTERM ($key)" >&2; exit 1; }
  unset "pid_of[$key]"
done
