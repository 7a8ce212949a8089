#!/usr/bin/env bash
# The routing study in the README, re-runnable: trains every configuration, measures routing with
# `moe-mnist experts` and speed with `moe-mnist eval`, and prints two Markdown tables.
#
#   1. noisy gating on/off x importance loss (w 0.01) on/off, E=8 k=2: test accuracy, load CV,
#      importance CV, dead experts (mean and range over the seeds), plus the pictures of the default run;
#   2. E in {4,8,16} x k in {1,2,4}: test accuracy and ONNX Runtime CPU fp32 images/s at batch 64.
#
# Environment (defaults are the issue's full study; the README states what it was run with):
#   EPOCHS=10 SEEDS="1 2 3"       part 1          GRID_EPOCHS=$EPOCHS GRID_SEEDS=1   part 2
#   THREADS=2 (training and eval)  OUT=runs/study  CLI=build/bin/moe-mnist  DATA (passed as --data)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
EPOCHS=${EPOCHS:-10}
SEEDS=${SEEDS:-"1 2 3"}
GRID_EPOCHS=${GRID_EPOCHS:-$EPOCHS}
GRID_SEEDS=${GRID_SEEDS:-1}
THREADS=${THREADS:-2}
OUT=${OUT:-runs/study}
CLI=${CLI:-build/bin/moe-mnist}
data=(); [ -n "${DATA:-}" ] && data=(--data "$DATA")
[ -x "$CLI" ] || { echo "study-routing.sh: $CLI not built (run scripts/build.sh)" >&2; exit 1; }
mkdir -p "$OUT"
say() { printf '[study] %s\n' "$*" >&2; }

# train DIR ARGS...: trains unless DIR already holds a finished run with the same arguments.
train() {
  local dir=$1; shift
  if [ -f "$dir/summary.json" ] && [ "$(cat "$dir/args" 2>/dev/null)" = "$*" ]; then return; fi
  say "train $dir: $*"
  "$CLI" train --force --threads "$THREADS" --save-every 0 --json --out "$dir" "${data[@]}" "$@" > "$dir.summary.tmp" 2> "$dir.log.tmp"
  mv "$dir.summary.tmp" "$dir/summary.json"; mv "$dir.log.tmp" "$dir/train.log"; echo "$*" > "$dir/args"
}

stats() { "$CLI" experts --model "$1" --json "${data[@]}"; }  # reference forward pass over the test set

# mean (min-max) of the numbers on stdin; FORMAT pct (x100, 2 decimals), num (3 decimals), int (1 decimal)
agg() { jq -rs --arg f "$1" '
  (if $f == "pct" then map(. * 100) else . end) as $v
  | (if $f == "pct" then 100 elif $f == "int" then 10 else 1000 end) as $s
  | def r(x): ((x * $s | round) / $s | tostring);
  if ($v | length) == 1 then r($v[0]) else "\(r($v | add / length)) (\(r($v | min))-\(r($v | max)))" end'; }

{
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "part 1: E=8 k=2, $EPOCHS epochs, seeds $SEEDS; part 2: $GRID_EPOCHS epochs, seeds $GRID_SEEDS; --threads $THREADS"
echo
echo "| noisy gating | importance loss | test accuracy % | load CV | importance CV | dead experts |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for noise in on off; do
  for imp in 0.01 0; do
    accs=(); lcv=(); icv=(); dead=()
    for seed in $SEEDS; do
      dir="$OUT/noise-$noise-imp-$imp-seed$seed"
      mkdir -p "$dir"
      args=(--epochs "$EPOCHS" --seed "$seed" --w-importance "$imp")
      [ "$noise" = off ] && args+=(--no-noise)
      train "$dir" "${args[@]}"
      stats "$dir" > "$dir/experts.json"
    done
    files=("$OUT"/noise-$noise-imp-$imp-seed*/experts.json)
    a=$(jq '.accuracy' "${files[@]}" | agg pct)
    l=$(jq '.load_cv' "${files[@]}" | agg num)
    i=$(jq '.importance_cv' "${files[@]}" | agg num)
    d=$(jq '.dead_experts | length' "${files[@]}" | agg int)
    echo "| $noise | $( [ "$imp" = 0 ] && echo off || echo "w $imp" ) | $a | $l | $i | $d |"
  done
done

first_seed=${SEEDS%% *}
default="$OUT/noise-on-imp-0.01-seed$first_seed"
mkdir -p "$OUT/plots"
"$CLI" experts --model "$default" --plot "$OUT/plots" "${data[@]}" > "$OUT/plots/experts.txt"
"$CLI" plot-train "$default" --out "$OUT/plots/train" 2>/dev/null

echo
echo "| experts E | top k | parameters (inference) | test accuracy % | ORT CPU fp32 images/s, batch 64 (best of 5) |"
echo "| ---: | ---: | ---: | ---: | ---: |"
for E in 4 8 16; do
  for k in 1 2 4; do
    [ "$k" -le "$E" ] || continue
    accs=(); speeds=()
    for seed in $GRID_SEEDS; do
      dir="$OUT/E$E-k$k-seed$seed"
      mkdir -p "$dir"
      train "$dir" --epochs "$GRID_EPOCHS" --seed "$seed" --experts "$E" --top "$k"
      "$CLI" export --checkpoint "$dir" 2> "$dir/export.log"
      best=0
      for rep in 1 2 3 4 5; do
        s=$("$CLI" eval --model "$dir/model.fp32.onnx" --backend cpu --batch 64 --passes 3 --threads "$THREADS" --json "${data[@]}" | jq '.images_per_second')
        best=$(jq -n --argjson a "$best" --argjson b "$s" '[$a,$b]|max')
      done
      echo "$best" > "$dir/images_per_second"
    done
    a=$(for seed in $GRID_SEEDS; do jq '.test_accuracy' "$OUT/E$E-k$k-seed$seed/summary.json"; done | agg pct)
    s=$(for seed in $GRID_SEEDS; do cat "$OUT/E$E-k$k-seed$seed/images_per_second"; done | jq -s 'add/length|round')
    p=$((784 * 16 + 16 + E * (16 * 16 + 16) * 2 + E * 17 + 16 * 10 + 10))  # inference: embedding, experts, gate, classifier
    echo "| $E | $k | $p | $a | $s |"
  done
done
} | tee "$OUT/study.md"
