#!/bin/sh
# Long-context consistency on the small test model tiny-a (every layer kind; window 8,
# CSA rate 4, HCA rate 8) at growing lengths: results/longctx-consistency.csv and .png.
# Usage: scripts/longctx_consistency.sh [LENGTHS]   (default 4096,16384,65536,131072)
set -e
cd "$(dirname "$0")/.."
mkdir -p build/results
model=build/results/tiny-a-f32.gguf
[ -f "$model" ] || bin/ds4-quant convert --quiet --in vectors/models/tiny-a --out "$model" --type f32
bin/ds4-longctx consistency --model "$model" --lengths "${1:-4096,16384,65536,131072}" \
    --csv results/longctx-consistency.csv --plot results/longctx-consistency.png --tmp build/results
