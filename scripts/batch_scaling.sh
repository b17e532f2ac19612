#!/bin/sh
# Batched decode on the CPU, two measurements:
#  1. results/batch-scaling.csv (+ .png): ds4-bench --parallel on the Flash-shaped q2
#     model of scripts/cpu_frontier.sh (4 layers, 16 routed experts of Flash's size):
#     N = 1, 2, 4, ..., 64 sequences (PARALLEL overrides the list) decoding 64 tokens together after a 128-token prompt;
#     aggregate and per-sequence tok/s.
#  2. results/batch-mixed.csv: a mixed ds4 batch job (24 requests, prompts of 8 to 333
#     tokens, 8 to 64 generated, a third sampled with a seed) on tiny-b (F32) with
#     --parallel 1 and 4: wall time and generated tok/s, and whether the outputs agree.
#   usage: scripts/batch_scaling.sh [THREADS]
set -e
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
model=build/flash/flash-q2-l4-e16.gguf
mkdir -p build/flash build/batch
[ -f "$model" ] || bin/ds4-quant synth --quiet --fast --out "$model" --recipe q2 --layers 4 --experts 16
rm -f results/batch-scaling.csv
bin/ds4-bench -m "$model" --parallel "${PARALLEL:-1,2,4,8,16,32,64}" -p 128 -n 64 -t "$threads" \
    --csv results/batch-scaling.csv --plot results/batch-scaling.png

small=build/batch/tiny-b-f32.gguf
[ -f "$small" ] || bin/ds4-quant convert --quiet --in vectors/models/tiny-b --out "$small" --type f32
awk 'BEGIN {
    srand(3)
    for (i = 0; i < 24; i++) {
        n = 8 + int(rand() * 326); g = 8 + int(rand() * 57)
        line = "{\"id\":\"r" i "\",\"prompt_ids\":["
        for (k = 0; k < n; k++) line = line (k ? "," : "") (2 + int(rand() * 1000))
        line = line "],\"max_tokens\":" g
        if (i % 3 == 0) line = line ",\"temperature\":0.8,\"seed\":" i
        print line "}"
    }
}' >build/batch/mixed.jsonl
out=results/batch-mixed.csv
echo "model,backend,parallel,requests,generated_tokens,wall_seconds,generated_tps,outputs_equal_parallel_1" >"$out.tmp"
for p in 1 4; do
    rm -f "build/batch/mixed-$p.jsonl"
    t0=$(date +%s.%N)
    bin/ds4 batch -m "$small" --in build/batch/mixed.jsonl --out "build/batch/mixed-$p.jsonl" --parallel "$p" \
        -t "$threads" --quiet
    t1=$(date +%s.%N)
    gen=$(grep -o '"completion_tokens":[0-9]*' "build/batch/mixed-$p.jsonl" | awk -F: '{s += $2} END {print s}')
    # the same tokens and finish reasons as the job run one request at a time
    same=yes
    if [ "$p" != 1 ]; then
        for f in 1 "$p"; do
            sed 's/"prefill_tps":[^,]*,"decode_tps":[^,]*,"cached_tokens":[0-9]*,//' "build/batch/mixed-$f.jsonl" \
                >"build/batch/mixed-$f.cmp"
        done
        cmp -s build/batch/mixed-1.cmp "build/batch/mixed-$p.cmp" || same=no
    fi
    awk -v p="$p" -v g="$gen" -v t0="$t0" -v t1="$t1" -v s="$same" -v m="$small" \
        'BEGIN {printf "\"%s\",cpu,%d,24,%d,%.3f,%.1f,%s\n", m, p, g, t1 - t0, g / (t1 - t0), s}' >>"$out.tmp"
done
mv "$out.tmp" "$out"
cat "$out"
