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
echo "logitcheck: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
