#!/usr/bin/env bash
# The main job: set-up if needed, build, train, export fp32/fp16/int8 (+ the gather, contrib-MoE and fused graphs),
# evaluate every available backend on the test set in one table, and draw the graph.
#   EPOCHS=50 scripts/demo.sh      the original's full run (default: 5 epochs)
#   OUT=runs/other scripts/demo.sh where the checkpoint and models go (default: runs/mnist)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
epochs=${EPOCHS:-5}
out=${OUT:-runs/mnist}
bin=build/bin/moe-mnist

scripts/setup.sh
scripts/build.sh

echo "== train: $epochs epochs -> $out" >&2
"$bin" train --epochs "$epochs" --out "$out" --force  # a fresh run replaces an earlier one and its exports

echo "== export" >&2
# Each lands in $out under the name bench looks for (model.fp32.onnx, model.int8-static.onnx, ...).
for p in fp32 fp16 int8; do "$bin" export --checkpoint "$out" --precision "$p"; done
"$bin" export --checkpoint "$out" --precision int8 --int8-input static
for r in gather moe fused; do "$bin" export --checkpoint "$out" --routing "$r"; done
# The graphs that take UINT8 pixels (1/255 folded into the embedding): portable and fused.
for r in dense fused; do "$bin" export --checkpoint "$out" --routing "$r" --input uint8; done

echo "== graph -> $out/model.svg" >&2
"$bin" graph --model "$out/model.fp32.onnx" --out "$out/model.svg"

echo "== every backend on the test set (batch 64, 2 threads)" >&2
"$bin" bench --model-dir "$out" --split test --passes 1 --repeats 3 --batches 64 --threads 2 --cpu-fp16
