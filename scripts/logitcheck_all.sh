#!/bin/sh
# Measure every committed test model in every convert type against its reference vectors
# and write results/logitcheck.csv (one row per case and an overall row per run); files
# whose type has a reference with the same weight rounding (vectors/ref-TYPE/) are also
# measured against that, into results/logitcheck-rounded.csv.
set -e
cd "$(dirname "$0")/.."
D=build/results
mkdir -p "$D"
out=results/logitcheck.csv
first=1
for model in tiny-a tiny-b tiny-v tiny-q; do
    for type in f32 bf16 f16 q8_0; do
        gguf="$D/$model-$type.gguf"
        bin/ds4-quant convert --quiet --in "vectors/models/$model" --out "$gguf" --type "$type"
        bin/ds4-logitcheck --model "$gguf" --vectors "vectors/ref/$model.jsonl" --csv "$D/$model-$type.csv" \
            --quiet || true
        if [ $first = 1 ]; then head -n 1 "$D/$model-$type.csv" >"$out.tmp"; first=0; fi
        tail -n +2 "$D/$model-$type.csv" | sed "s|^\"$D/|\"|" >>"$out.tmp"
    done
done
mv "$out.tmp" "$out"
echo "wrote $out"

rounded=results/logitcheck-rounded.csv
first=1
for ref in vectors/ref-bf16/*.jsonl vectors/ref-f16/*.jsonl vectors/ref-q8_0/*.jsonl; do
    [ -f "$ref" ] || continue                 # (a type without such references)
    base=$(basename "$ref" .jsonl)            # e.g. tiny-q-q8_0
    type=${base##*-}
    model=${base%-*}
    gguf="$D/$model-$type.gguf"
    [ -f "$gguf" ] || bin/ds4-quant convert --quiet --in "vectors/models/$model" --out "$gguf" --type "$type"
    bin/ds4-logitcheck --model "$gguf" --vectors "$ref" --csv "$D/$base-rounded.csv" --quiet || true
    if [ $first = 1 ]; then head -n 1 "$D/$base-rounded.csv" >"$rounded.tmp"; first=0; fi
    tail -n +2 "$D/$base-rounded.csv" | sed "s|^\"$D/|\"|" >>"$rounded.tmp"
done
mv "$rounded.tmp" "$rounded"
echo "wrote $rounded"
