#!/bin/sh
# The main job on the built-in synthetic model: convert the Flash-shaped test checkpoint
# (vectors/models/tiny-b, transformers layout, BF16, sharded) to a Q8_0 GGUF, then list
# and check it. Later stages (bench, logitcheck) extend this script.
set -e
cd "$(dirname "$0")/.."
mkdir -p build/demo
OUT=build/demo/tiny-b-q8_0.gguf
echo "== converting vectors/models/tiny-b to $OUT"
bin/ds4-quant convert --in vectors/models/tiny-b --out "$OUT" --type q8_0
echo
echo "== ds4-gguf info $OUT (metadata; tensor table omitted)"
bin/ds4-gguf info --no-tensors "$OUT"
