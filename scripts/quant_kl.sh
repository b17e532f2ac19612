#!/bin/sh
# Quantization loss of every recipe on the committed test models, against the unrounded
# F32 reference vectors (transformers fp32): writes results/quant-kl.csv, one row per
# model x recipe x importance matrix (none, or one collected by `ds4 imatrix` from 16
# calibration sequences of 256 random token ids, which the reference prompts are not).
# Usage: scripts/quant_kl.sh  (after make)
set -e
cd "$(dirname "$0")/.."
D=build/results/quant
mkdir -p "$D"
out=results/quant-kl.csv
echo "model,recipe,imatrix,file_bytes,bits_per_weight,kl_mean,kl_max,top1,topk_overlap,max_dlogit,greedy_match,greedy_len" >"$out.tmp"
for model in tiny-a tiny-b tiny-q tiny-v; do
    f32="$D/$model-f32.gguf"
    bin/ds4-quant convert --quiet --in "vectors/models/$model" --out "$f32" --type f32
    vocab=$(bin/ds4-gguf info "$f32" | sed -n 's/.*deepseek4.vocab_size = \([0-9]*\).*/\1/p')
    awk -v V="$vocab" 'BEGIN { srand(20261123); for (l = 0; l < 16; l++) { s = "{\"prompt_ids\":[0";
        for (i = 1; i < 256; i++) s = s "," int(2 + rand() * (V - 2)); print s "]}" } }' >"$D/calib-$model.jsonl"
    bin/ds4 imatrix --quiet --model "$f32" --data "$D/calib-$model.jsonl" --out "$D/$model.imatrix" --chunk 256
    # parameters: the F32 file's tensor bytes / 4 (every tensor is F32 or I32)
    params=$(bin/ds4-gguf info "$f32" | awk '$3 == "f32" || $3 == "i32" { s += $NF } END { print s / 4 }')
    for recipe in f16 q8 mxfp4 q4 q2; do
        for im in no yes; do
            [ "$im" = yes ] && [ "$recipe" = f16 ] && continue
            g="$D/$model-$recipe-$im.gguf"
            if [ "$im" = yes ]; then
                bin/ds4-quant quantize --quiet --in "$f32" --out "$g" --recipe "$recipe" --imatrix "$D/$model.imatrix"
            else
                bin/ds4-quant quantize --quiet --in "$f32" --out "$g" --recipe "$recipe"
            fi
            bin/ds4-logitcheck --model "$g" --vectors "vectors/ref/$model.jsonl" --csv "$D/$model-$recipe-$im.csv" \
                --quiet >/dev/null || true
            bytes=$(wc -c <"$g")
            tail -n 1 "$D/$model-$recipe-$im.csv" | awk -F, -v m="$model" -v r="$recipe" -v i="$im" -v b="$bytes" \
                -v p="$params" '{ printf "%s,%s,%s,%d,%.3f,%s,%s,%s,%s,%s,%s,%s\n", m, r, i, b, 8 * b / p, $8, $9,
                $10, $11, $5, $14, $13 }' >>"$out.tmp"
        done
    done
done
mv "$out.tmp" "$out"
echo "wrote $out"
