#!/bin/sh
# Decode on a host where another process keeps a core busy: for a quiet host and for one
# busy process (a shell loop), with one thread and with the default thread count (every
# CPU this process may use), ds4-bench's decode and prefill speeds. Writes
# results/threads-contention.csv: load, then ds4-bench's columns. The default must not be
# slower than one thread on a busy host (a pool that waits for descheduled workers was
# 5-50x slower). Model: tiny-q quantized q2 (small layers: many short parallel loops).
#   usage: scripts/threads_contention.sh [OUT.csv]
set -e
cd "$(dirname "$0")/.."
out=${1:-results/threads-contention.csv}
model=build/contention/tiny-q-q2.gguf
mkdir -p build/contention
[ -f build/contention/tiny-q-f32.gguf ] ||
    bin/ds4-quant convert --quiet --in vectors/models/tiny-q --out build/contention/tiny-q-f32.gguf --type f32
[ -f "$model" ] || bin/ds4-quant quantize --quiet --in build/contention/tiny-q-f32.gguf --out "$model" --recipe q2
tmp=$out.tmp.$$
first=1
for load in quiet busy; do
    busy=
    if [ $load = busy ]; then
        sh -c 'while :; do :; done' &
        busy=$!
        sleep 1
    fi
    for threads in 1 $(nproc); do
        bin/ds4-bench -m "$model" -p 64 -n 1024 -r 7 -t "$threads" --csv "$out.row" >/dev/null
        if [ $first = 1 ]; then sed '1s/^/load,/; 2,$s/^/'$load',/' "$out.row" >"$tmp"; first=0
        else tail -n +2 "$out.row" | sed 's/^/'$load',/' >>"$tmp"; fi
    done
    [ -n "$busy" ] && kill "$busy"
done
rm -f "$out.row"
mv "$tmp" "$out"
cut -d, -f1,5,12,9 "$out"
