#!/bin/sh
# Quantizer speed on DeepSeek V4 Flash's real layer shapes: `ds4-quant synth` writes a
# Flash-shaped model (4 layers: window, window, CSA, HCA; 4 routed experts of 4096 x 2048)
# under the q2, q4 and mxfp4 recipes and times each quantizer on the rows it gets.
# Writes results/quant-speed.csv (MB/s of F32 input per thread). Usage: scripts/quant_speed.sh
set -e
cd "$(dirname "$0")/.."
D=build/results/speed
mkdir -p "$D"
out=results/quant-speed.csv
first=1
for recipe in q2 q4 mxfp4; do
    bin/ds4-quant synth --quiet --out "$D/flash-$recipe.gguf" --recipe "$recipe" --layers 4 --experts 4 \
        --csv "$D/$recipe.csv"
    rm -f "$D/flash-$recipe.gguf"
    if [ $first = 1 ]; then head -n 1 "$D/$recipe.csv" >"$out.tmp"; first=0; fi
    tail -n +2 "$D/$recipe.csv" >>"$out.tmp"
done
mv "$out.tmp" "$out"
echo "wrote $out"
