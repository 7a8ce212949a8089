#!/usr/bin/env bash
# The training yardstick (issue #12): `moe-mnist train` with its default settings against the same
# model's training step in PyTorch from Python (scripts/bench_train.py, Debian's python3-torch 1.13),
# on this machine, the same images, batch size and threads. Seconds per epoch of training steps only
# (evaluation excluded on both sides); the first epoch of each run is dropped as warm-up; median and
# min-max over the others. PyTorch runs with both expert dispatches (sparse, batched) and the ratio
# is taken against the faster of them.
#
#   scripts/bench-train.sh [--batches "128 64"] [--epochs 5] [--threads N] [--cli build/bin/moe-mnist]
#
# --threads N passes N to both; without it moe-mnist uses its default and PyTorch 1 thread (the
# default's value). On a machine others share, run it when the CPU is quiet, or expect spread.
set -euo pipefail
cd "$(dirname "$0")/.."
batches="128 64" epochs=5 threads="" cli=build/bin/moe-mnist
python=${PYTHON:-/usr/bin/python3}  # Debian's interpreter, the one python3-torch installs into
while [ $# -gt 0 ]; do
  case "$1" in
    --batches) batches=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --cli) cli=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-train.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$epochs" -ge 2 ] 2>/dev/null || { echo "bench-train.sh: --epochs must be >= 2 (the first is warm-up)" >&2; exit 2; }
[ -x "$cli" ] || { echo "bench-train.sh: $cli not found; build first (scripts/build.sh)" >&2; exit 1; }
"$python" -c 'import torch' 2>/dev/null || { echo "bench-train.sh: $python has no torch; run scripts/setup.sh (python3-torch)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# stats FILE: "median min max" of the numbers in FILE (one per line).
stats() { sort -g "$1" | awk '{v[NR]=$1} END {m = NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.3f %.3f %.3f", m, v[1], v[NR]}'; }

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "moe-mnist $(git rev-parse --short HEAD 2>/dev/null || echo '?'), PyTorch $("$python" -c 'import torch; print(torch.__version__)'), $epochs epochs per run, first dropped"
echo
echo "| batch | moe-mnist s/epoch | PyTorch sparse s/epoch | PyTorch batched s/epoch | moe-mnist / best PyTorch |"
echo "| ---: | --- | --- | --- | ---: |"
for b in $batches; do
  "$cli" train --epochs "$epochs" --batch "$b" ${threads:+--threads "$threads"} --save-every 0 --json --force \
    --out "$tmp/ours" > "$tmp/ours.json" 2> "$tmp/ours.log" || { cat "$tmp/ours.log" >&2; exit 1; }
  "$python" -c 'import json,sys; [print(h["seconds"]) for h in json.load(open(sys.argv[1]))["history"][1:]]' "$tmp/ours.json" > "$tmp/ours.s"
  # As many training images as moe-mnist trained on (the training split less its --val hold-out).
  n_train=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["training"]["train_images"])' "$tmp/ours/config.json")
  for style in sparse batched; do
    "$python" scripts/bench_train.py --batch "$b" --epochs "$epochs" --threads "${threads:-1}" --style "$style" \
      --n-train "$n_train" --data "${MOE_MNIST_DATA:-data/mnist}" 2>/dev/null | tail -n +2 |
      "$python" -c 'import json,sys; [print(json.loads(l)["seconds"]) for l in sys.stdin]' > "$tmp/py-$style.s"
  done
  read -r om omin omax <<< "$(stats "$tmp/ours.s")"
  read -r sm smin smax <<< "$(stats "$tmp/py-sparse.s")"
  read -r bm bmin bmax <<< "$(stats "$tmp/py-batched.s")"
  best=$(awk -v a="$sm" -v b="$bm" 'BEGIN {print (a < b ? a : b)}')
  ratio=$(awk -v o="$om" -v p="$best" 'BEGIN {printf "%.2fx", o / p}')
  echo "| $b | $om ($omin-$omax) | $sm ($smin-$smax) | $bm ($bmin-$bmax) | $ratio |"
done
