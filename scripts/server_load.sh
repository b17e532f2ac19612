#!/bin/sh
# ds4-server under load: the same 16 chat requests (greedy, 64 tokens each) sent one at
# a time, then by 16 concurrent clients, to a server with --parallel 16; the aggregate
# decode rate of each way, and whether the replies agree, to results/server-load.csv.
#   usage: scripts/server_load.sh [MODEL.gguf [THREADS]]
#   (default: the real-vocabulary tiny-v model that tests/server.sh builds)
set -e
export LC_ALL=C
cd "$(dirname "$0")/.."
model=${1:-build/tests/models/tiny-v-tokenizer.gguf}
threads=${2:-$(nproc)}
[ -f "$model" ] || { echo "server_load: $model is missing (sh tests/server.sh builds it)" >&2; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/ds4-load-XXXXXX")
port=$((20000 + $$ % 20000))
bin/ds4-server -m "$model" --port "$port" -t "$threads" --parallel 16 --ctx 1024 2>"$T/log" &
pid=$!
trap 'kill $pid 2>/dev/null; [ -n "$KEEP" ] || rm -rf "$T"' EXIT
until curl -s -o /dev/null "http://127.0.0.1:$port/health"; do sleep 0.2; done
for i in $(seq 1 16); do
    printf '{"model":"m","messages":[{"role":"user","content":"Client %d asks about topic %d."}],"max_tokens":64,"temperature":0}' \
        "$i" "$((i * 7))" >"$T/q$i"
done
ask() { curl -s -H 'Content-Type: application/json' --data-binary @"$T/q$1" "http://127.0.0.1:$port/v1/chat/completions" >"$T/$2$1"; }
tokens() { cat "$T/$1"* | grep -o '"completion_tokens":[0-9]*' | awk -F: '{s += $2} END {print s}'; }
t0=$(date +%s.%N)
for i in $(seq 1 16); do ask "$i" serial; done
t1=$(date +%s.%N)
pids=
for i in $(seq 1 16); do ask "$i" together & pids="$pids $!"; done
for p in $pids; do wait "$p"; done
t2=$(date +%s.%N)
same=yes
for i in $(seq 1 16); do
    a=$(sed 's/.*"choices":\(.*\),"usage".*/\1/' "$T/serial$i") b=$(sed 's/.*"choices":\(.*\),"usage".*/\1/' "$T/together$i")
    [ "$a" = "$b" ] || same=no
done
out=results/server-load.csv
{
    echo "model,threads,parallel,clients,mode,completion_tokens,wall_seconds,aggregate_tps,replies_equal,git_sha,date"
    d=$(date -u +%Y-%m-%dT%H:%M:%SZ) sha=$(git rev-parse --short HEAD)
    awk -v m="$model" -v th="$threads" -v n="$(tokens serial)" -v a="$t0" -v b="$t1" -v s="$same" -v g="$sha" -v d="$d" \
        'BEGIN {printf "\"%s\",%d,16,1,serial,%d,%.3f,%.1f,%s,%s,%s\n", m, th, n, b - a, n / (b - a), s, g, d}'
    awk -v m="$model" -v th="$threads" -v n="$(tokens together)" -v a="$t1" -v b="$t2" -v s="$same" -v g="$sha" -v d="$d" \
        'BEGIN {printf "\"%s\",%d,16,16,concurrent,%d,%.3f,%.1f,%s,%s,%s\n", m, th, n, b - a, n / (b - a), s, g, d}'
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
