#!/bin/sh
# Capture reference vectors from the DeepSeek API, for ds4-logitcheck with the real weights.
#
#   DEEPSEEK_API_KEY=... scripts/capture_api_vectors.sh MESSAGES.jsonl OUT.jsonl [MAX_TOKENS]
#
# MESSAGES.jsonl holds one conversation per line: a JSON array of chat messages, e.g.
#   [{"role": "user", "content": "Name three rivers of Italy."}]
# Each is sent as documented for DeepSeek's chat completions API: the non-thinking model,
# temperature 0 (greedy), logprobs with the top 20 alternatives per token. Each output line
# is {"id", "messages", "think": false, "response": <the API's JSON>}, which
#   ds4-logitcheck --model flash.gguf --vectors OUT.jsonl
# turns back into token ids through the model's tokenizer and chat template (no-think) and
# teacher-forces along the API's tokens.
set -eu
[ $# -ge 2 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
: "${DEEPSEEK_API_KEY:?set DEEPSEEK_API_KEY}"
IN=$1
OUT=$2
MAX=${3:-64}
URL=${DEEPSEEK_API_URL:-https://api.deepseek.com/chat/completions}
MODEL=${DEEPSEEK_MODEL:-deepseek-chat}
tmp=$(mktemp "$OUT.tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT
n=0
while IFS= read -r messages; do
    [ -n "$messages" ] || continue
    n=$((n + 1))
    body=$(printf '{"model": "%s", "messages": %s, "temperature": 0, "max_tokens": %s, "logprobs": true, "top_logprobs": 20, "stream": false}' \
        "$MODEL" "$messages" "$MAX")
    response=$(curl -sS --fail-with-body "$URL" -H "Content-Type: application/json" \
        -H "Authorization: Bearer $DEEPSEEK_API_KEY" -d "$body") || {
        echo "capture: request $n failed: $response" >&2
        exit 1
    }
    printf '{"id": "api/%d", "messages": %s, "think": false, "response": %s}\n' "$n" "$messages" "$response" >>"$tmp"
    echo "captured $n" >&2
done <"$IN"
mv "$tmp" "$OUT"
trap - EXIT
echo "wrote $n cases to $OUT" >&2
