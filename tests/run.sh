#!/bin/sh
# Runs every test stage and prints the overall "N passed, N failed" line last:
#   the include graph (tests/layers.sh), unit tests (plain build), unit tests (ASan+UBSan),
#   CLI tests, hardening tests, the server's tests, ds4-logitcheck on every committed test model against its
#   reference vectors, long-context consistency,
#   fuzzing of the GGUF (with tokenizer metadata), safetensors and chat parsers
#   (ASan+UBSan, 100k inputs each) and of the forward pass on models that load (20k),
#   and the CUDA build (a compile check where there is no GPU).
cd "$(dirname "$0")/.." || exit 2
FUZZ_N=${DS4_FUZZ_ITERATIONS:-100000}
total_pass=0
total_fail=0
total_skip=0

# stage NAME COMMAND...: run, echo the output, add up its "N passed, N failed" line
stage() {
    name=$1
    shift
    echo "== $name"
    out=$("$@" 2>&1)
    status=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    s=0
    if [ -n "$line" ]; then
        p=$(echo "$line" | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^passed/) print $(i - 1)}')
        f=$(echo "$line" | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^failed/) print $(i - 1)}')
        s=$(echo "$line" | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^skipped/) print $(i - 1)}')
        s=${s:-0}
    elif [ $status -eq 77 ]; then p=0 f=0 s=1 # the stage cannot run here
    elif [ $status -eq 0 ]; then p=1 f=0
    else p=0 f=1
    fi
    # a stage that crashed after its summary still fails
    if [ $status -ne 0 ] && [ $status -ne 77 ] && [ "$f" -eq 0 ]; then f=1; fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    total_skip=$((total_skip + s))
}

mkdir -p build/tests/corpus
stage "the include graph: layers, no circles" sh tests/layers.sh
stage "unit tests" build/tests/unit
stage "unit tests under ASan+UBSan" build/tests/unit-san
stage "command-line tests" sh tests/cli.sh
stage "hardening: hostile paths, kills, full disks, locks, stale results" sh tests/hardening.sh
stage "ds4-server: the SDKs, curl, hostile requests, concurrency, restarts" sh tests/server.sh
stage "logitcheck against the reference vectors" sh tests/logitcheck.sh
stage "long-context consistency up to 32k tokens" sh tests/longctx.sh
stage "fuzz gguf (ASan+UBSan)" build/tests/fuzz_gguf-san -n "$FUZZ_N" build/tests/corpus/gguf/sample.gguf \
    build/tests/corpus/gguf/micro-model.gguf build/tests/corpus/gguf/tokenizer.gguf
stage "fuzz the forward pass (ASan+UBSan)" build/tests/fuzz_forward-san -n "$((FUZZ_N / 5))" \
    build/tests/corpus/gguf/micro-model.gguf
stage "fuzz safetensors (ASan+UBSan)" build/tests/fuzz_safetensors-san -n "$FUZZ_N" build/tests/corpus/safetensors/sample.safetensors
stage "fuzz chat output parsing and rendering (ASan+UBSan)" build/tests/fuzz_chat-san -n "$FUZZ_N" \
    tests/fuzz/seeds/chat-reply.txt tests/fuzz/seeds/chat-messages.json
stage "the CUDA build without a GPU (compile check; GPU checks skipped)" sh tests/cuda_build.sh

if [ "$total_skip" -gt 0 ]; then
    echo "$total_pass passed, $total_fail failed, $total_skip skipped"
else
    echo "$total_pass passed, $total_fail failed"
fi
[ "$total_fail" -eq 0 ]
