#!/bin/sh
# The CPU speed frontier on DeepSeek V4 Flash's real shapes: `ds4-quant synth` makes a
# Flash-shaped q2 model (4 layers: window, window, CSA, HCA; 16 routed experts of
# 4096 x 2048, 6 used; the real vocabulary, attention and shared-expert sizes), then
# ds4-bench walks context sizes with the bandwidth probe. Writes results/cpu-frontier.csv
# and .png. Usage: scripts/cpu_frontier.sh [extra ds4-bench options]
set -e
cd "$(dirname "$0")/.."
model=build/flash/flash-q2-l4-e16.gguf
mkdir -p build/flash
[ -f "$model" ] || bin/ds4-quant synth --quiet --out "$model" --recipe q2 --layers 4 --experts 16
bin/ds4-bench --model "$model" --csv results/cpu-frontier.csv --plot results/cpu-frontier.png \
    --prompt-lens 256,512,1024,2048 --gen-tokens 32 -r 2 --probe "$@"
