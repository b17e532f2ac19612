#!/bin/sh
# Long-context consistency on the small test model tiny-b (Flash's compression: CSA rate
# 4, HCA rate 128, window 128) at growing lengths up to 1,048,576 tokens:
# results/longctx-consistency.csv and .png. The 1M length takes about an hour on 2 cores.
# Usage: scripts/longctx_consistency.sh [LENGTHS]   (default 4096,16384,65536,262144,1048576)
set -e
cd "$(dirname "$0")/.."
mkdir -p build/results
model=build/results/tiny-b-f32.gguf
[ -f "$model" ] || bin/ds4-quant convert --quiet --in vectors/models/tiny-b --out "$model" --type f32
bin/ds4-longctx consistency --model "$model" --lengths "${1:-4096,16384,65536,262144,1048576}" \
    --csv results/longctx-consistency.csv --plot results/longctx-consistency.png --tmp build/results
