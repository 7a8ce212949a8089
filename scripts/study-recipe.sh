#!/usr/bin/env bash
# The recipe study in the README, re-runnable: trains each recipe of a small grid with several seeds
# (same architecture: 784 -> 16 -> MoE(8, top 2) -> 10), every run holding out --val 5000 training
# images and keeping its best-validation epoch, and prints a Markdown table: validation accuracy
# (what the choice is made on), test accuracy of the kept models (mean, sample standard deviation,
# range: information, it chooses nothing), kept epoch, and wall time of the whole `train` command
# (evaluation included). The recipe with the best mean validation accuracy is marked; the `original`
# row is `--recipe original` (no hold-out, last epoch), the reference.
#
# Environment (defaults: the study as run for the README):
#   SEEDS="1 2 3"  THREADS=1  OUT=runs/recipe-study  CLI=build/bin/moe-mnist  DATA (passed as --data)
#   DATASET=mnist  RECIPES: lines "name|flags" (see below)  ORIGINAL=1 (also run --recipe original)
# Finished runs (same flags) are reused, so an interrupted study continues where it stopped.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
SEEDS=${SEEDS:-"1 2 3"}
THREADS=${THREADS:-1}
DATASET=${DATASET:-mnist}
OUT=${OUT:-runs/recipe-study}
CLI=${CLI:-build/bin/moe-mnist}
ORIGINAL=${ORIGINAL:-1}
# Every flag of the recipe is spelled out, so a row does not change when the defaults do.
RECIPES=${RECIPES:-"adam-constant|--batch 128 --epochs 50 --lr 1e-3 --lr-schedule constant --weight-decay 0 --augment none
cosine-3e-3-wd|--batch 128 --epochs 50 --lr 3e-3 --lr-schedule cosine --weight-decay 1e-4 --augment none
cosine-3e-3-wd-shift1|--batch 128 --epochs 50 --lr 3e-3 --lr-schedule cosine --weight-decay 1e-4 --augment shift:1
onecycle-5e-3-ls|--batch 128 --epochs 50 --lr 5e-3 --lr-schedule onecycle --weight-decay 0 --augment none --label-smoothing 0.1"}
data=(--dataset "$DATASET"); [ -n "${DATA:-}" ] && data+=(--data "$DATA")
[ -x "$CLI" ] || { echo "study-recipe.sh: $CLI not built (run scripts/build.sh)" >&2; exit 1; }
command -v jq >/dev/null || { echo "study-recipe.sh: needs jq" >&2; exit 1; }
mkdir -p "$OUT"
say() { printf '[study] %s\n' "$*" >&2; }

# train DIR ARGS...: trains unless DIR already holds a finished run with the same arguments; the
# summary gets the command's wall time.
train() {
  local dir=$1; shift
  if [ -f "$dir/summary.json" ] && [ "$(cat "$dir/args" 2>/dev/null)" = "$*" ]; then return; fi
  say "train $dir: $*"
  local t0 t1
  t0=$(date +%s.%N)
  "$CLI" train --force --threads "$THREADS" --save-every 0 --json --out "$dir" "${data[@]}" "$@" > "$dir.summary.tmp" 2> "$dir.log.tmp"
  t1=$(date +%s.%N)
  jq --argjson w "$(echo "$t1 - $t0" | bc)" '. + {wall_seconds: $w}' "$dir.summary.tmp" > "$dir/summary.json"
  rm "$dir.summary.tmp"; mv "$dir.log.tmp" "$dir/train.log"; echo "$*" > "$dir/args"
}

# mean (min-max) of the numbers on stdin: pct (x100, 2 decimals) or num (1 decimal); sd: standard deviation
agg() { jq -rs --arg f "$1" '
  (if $f == "pct" then map(. * 100) else . end) as $v
  | (if $f == "pct" then 100 else 10 end) as $s
  | def r(x): ((x * $s | round) / $s | tostring);
  if ($v | length) == 1 then r($v[0]) else "\(r($v | add / length)) (\(r($v | min))-\(r($v | max)))" end'; }
sd() { jq -rs 'map(. * 100) as $v | ($v | add / length) as $m
  | if ($v | length) < 2 then "-" else ((($v | map((. - $m) * (. - $m)) | add) / (($v | length) - 1)) | sqrt * 100 | round / 100 | tostring) end'; }

rows=()
while IFS='|' read -r name flags; do
  [ -n "$name" ] || continue
  # shellcheck disable=SC2086
  for s in $SEEDS; do train "$OUT/$DATASET-$name-s$s" $flags --seed "$s"; done
  rows+=("$name|$flags")
done <<< "$RECIPES"
if [ "$ORIGINAL" = 1 ]; then
  for s in $SEEDS; do train "$OUT/$DATASET-original-s$s" --recipe original --seed "$s"; done
fi

field() { local name=$1 key=$2; for s in $SEEDS; do jq ".$key" "$OUT/$DATASET-$name-s$s/summary.json"; done; }
best=$(for r in "${rows[@]}"; do n=${r%%|*}; echo "$(field "$n" val_accuracy | jq -s 'add / length') $n"; done | sort -gr | head -1 | cut -d' ' -f2)
{
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "dataset $DATASET, seeds $SEEDS, --threads $THREADS; every recipe row: --val 5000 --keep best"
echo
echo "| recipe | flags | validation % | test % (kept model) | test sd | kept epoch | wall s |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for r in "${rows[@]}"; do
  n=${r%%|*}; f=${r#*|}; mark=""; [ "$n" = "$best" ] && mark=" (chosen)"
  echo "| $n$mark | \`$f\` | $(field "$n" val_accuracy | agg pct) | $(field "$n" test_accuracy | agg pct) | $(field "$n" test_accuracy | sd) | $(field "$n" kept_epoch | agg num) | $(field "$n" wall_seconds | agg num) |"
done
if [ "$ORIGINAL" = 1 ]; then
  echo "| original | \`--recipe original\` | - | $(field original test_accuracy | agg pct) | $(field original test_accuracy | sd) | 50 | $(field original wall_seconds | agg num) |"
fi
} | tee "$OUT/$DATASET-table.md"
