#!/bin/sh
# On the GPU machine: where a decoded token's time goes with --backend cuda and on the
# CPU alone (ds4-bench --profile: per stage, and the products' bytes and GB/s), on the
# 4-layer Flash-shaped q2 model; the tables to $OUT.
#   usage: OUT=DIR sh scripts/device_profile.sh
cd "$(dirname "$0")/.." || exit 2
export LD_LIBRARY_PATH=$PWD/.dev/lib
mkdir -p bin "$OUT"
cp .dev/cuda/ds4* bin/
M=/dev/shm/flash-q2-l4-e16.gguf
bin/ds4-quant synth --quiet --fast --out "$M" --recipe q2 --layers 4 --experts 16
for b in cuda cpu; do
    bin/ds4-bench -m "$M" --backend "$b" -p 512 -n 32 -r 1 --profile >"$OUT/profile-$b.txt" 2>&1
done
rm -f "$M"
