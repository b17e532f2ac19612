#!/bin/sh
# Coverage-guided fuzzing with libFuzzer (clang; make fuzz builds the targets), each
# target for SECONDS (default 600) from its committed seeds and the corpus it grew in
# earlier runs (build/fuzz/corpus/TARGET, kept). Writes results/fuzz.csv: target,
# seconds, runs, crashes (a crash leaves its input in build/fuzz/crash-TARGET-*).
#   usage: scripts/fuzz_long.sh [SECONDS]
cd "$(dirname "$0")/.." || exit 2
SECONDS_EACH=${1:-600}
make -s fuzz || exit 1
[ -f build/tests/corpus/gguf/micro-model.gguf ] || make -s build/tests/unit && build/tests/unit convert >/dev/null
mkdir -p build/fuzz results
csv=results/fuzz.csv.tmp.$$
echo "target,seconds,runs,crashes,date" >"$csv"
for t in fuzz_gguf fuzz_forward fuzz_safetensors fuzz_chat; do
    corpus=build/fuzz/corpus/$t
    mkdir -p "$corpus"
    case $t in
        fuzz_gguf) seeds="build/tests/corpus/gguf" ;;
        fuzz_forward) seeds="build/tests/corpus/gguf/micro-model.gguf" ;;
        fuzz_safetensors) seeds="build/tests/corpus/safetensors" ;;
        fuzz_chat) seeds="tests/fuzz/seeds" ;;
    esac
    for s in $seeds; do
        if [ -d "$s" ]; then cp "$s"/* "$corpus/" 2>/dev/null; else cp "$s" "$corpus/"; fi
    done
    log=build/fuzz/$t.log
    ./build/fuzz/$t -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=4096 \
        -artifact_prefix="build/fuzz/crash-$t-" "$corpus" >"$log" 2>&1
    runs=$(grep -o 'Done [0-9]* runs' "$log" | awk '{print $2}')
    crashes=$(ls build/fuzz/crash-$t-* 2>/dev/null | wc -l)
    echo "$t: ${runs:-?} runs in $SECONDS_EACH s, $crashes crashes (log: $log)"
    echo "$t,$SECONDS_EACH,${runs:-0},$crashes,$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$csv"
done
mv "$csv" results/fuzz.csv
