#!/bin/sh
# On the GPU machine's CPU (16 cores, AVX-512), through the device tool: the batched
# step's bit-exactness tests at the AVX-512 kernels (unit suites batch_step and backend)
# and the batch scaling of scripts/batch_scaling.sh with every core. Binaries and their
# .so files come in .dev/ (built on the development machine); results go to $OUT.
#   usage: sh scripts/device_batch.sh   (with OUT set)
set -e
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/.dev/lib
B=.dev/new
mkdir -p bin build/tests "$OUT"
cp $B/ds4 $B/ds4-bench $B/ds4-quant bin/
cp $B/unit build/tests/unit
lscpu | grep -E '^(Model name|CPU\(s\))' >"$OUT/cpu.txt"
build/tests/unit batch_step backend chat_stream api >"$OUT/unit.txt" 2>&1 || true
tail -n 1 "$OUT/unit.txt"
M=/dev/shm/flash-q2-l4-e16.gguf
t0=$(date +%s)
bin/ds4-quant synth --quiet --fast --out "$M" --recipe q2 --layers 4 --experts 16
echo "synth: $(($(date +%s) - t0)) s"
bin/ds4-bench -m "$M" --parallel "${PARALLEL:-1,2,4,8,16,32}" -p 128 -n 64 -t "$(nproc)" \
    --csv "$OUT/batch-scaling-16core.csv"
rm -f "$M"
