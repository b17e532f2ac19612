#!/bin/sh
# Decode speed by thread count on a big CPU, against the bandwidth probe: `ds4-quant
# synth --fast` makes the 43-layer Flash-shaped q2 model with 16 routed experts (Flash's
# real bytes per decoded token, ~9.5 GB: every layer, the shared expert, 6 routed experts
# of 4096 x 2048, the head), then ds4-bench measures each thread count with --probe and
# profiles decode at the largest. Writes DIR/cpu-scaling.csv (ds4-bench's columns, one row
# per thread count), DIR/cpu-scaling-profile.txt (decode at the most threads) and DIR/cpu.txt
# (what the CPU is).
#   usage: scripts/cpu_scaling.sh DIR [THREADS ...]   (default 1 2 4 8 16; MODEL_DIR for the model)
set -e
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/cpu_scaling.sh DIR [THREADS ...]}
shift
threads=${*:-1 2 4 8 16}
BIN=${BIN:-bin}
model=${MODEL_DIR:-build/flash}/flash-q2-l43-e16.gguf
mkdir -p "$out" "$(dirname "$model")"
{ lscpu 2>/dev/null || cat /proc/cpuinfo; echo; grep -E 'MemTotal|MemAvailable' /proc/meminfo
  for n in /sys/devices/system/node/node*; do [ -d "$n" ] && echo "$(basename "$n"): cpus $(cat "$n/cpulist")"; done
} >"$out/cpu.txt"
[ -f "$model" ] || $BIN/ds4-quant synth --quiet --fast --out "$model" --recipe q2 --layers 43 --experts 16
csv="$out/cpu-scaling.csv"
rm -f "$csv"
for t in $threads; do
    $BIN/ds4-bench -m "$model" -p 32 -n 16 -r 2 -t "$t" --probe --csv "$out/t$t.csv"
    if [ -f "$csv" ]; then tail -n +2 "$out/t$t.csv" >>"$csv"; else cp "$out/t$t.csv" "$csv"; fi
    rm -f "$out/t$t.csv"
done
most=$(echo "$threads" | tr ' ' '\n' | sort -n | tail -1)
$BIN/ds4-bench -m "$model" -p 32 -n 8 -r 1 -t "$most" --profile 2>"$out/cpu-scaling-profile.txt" >/dev/null
