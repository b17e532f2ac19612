#!/bin/sh
# The CUDA backend on a GPU (make test-cuda; every check counts as skipped where the build
# has no CUDA or the machine no GPU): every committed model's F32/BF16/Q8_0 file against
# the transformers vectors with the CPU's gates; the q2/q4/mxfp4 files against the CPU on
# the same file (KL over a corpus of token ids: the CPU's predictions saved as a base;
# --ref-backend cpu over the vectors' prompts; against the vectors no worse than the
# CPU's KL mean + 10%), the q8_0 file the last two ways; the same
# greedy tokens on both backends; two CUDA runs bit for bit alike (CI gates on it); a
# batch job with 4 sequences equal to the CPU's; a state saved on CUDA restored on the
# CPU. Prints "N passed, N failed, N skipped".
cd "$(dirname "$0")/.." || exit 2
BIN=bin
D=build/tests/cuda
T=$(mktemp -d "${TMPDIR:-/tmp}/ds4-cuda-XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$D"
pass=0
fail=0
skipped=0
ok() { pass=$((pass + 1)); echo "ok   cuda/$1"; }
bad() { fail=$((fail + 1)); echo "FAIL cuda/$1${2:+: $2}"; }
finish() {
    echo "cuda: $pass passed, $fail failed, $skipped skipped"
    [ "$fail" -eq 0 ]
    exit
}

$BIN/ds4-quant convert --quiet --in vectors/models/tiny-a --out "$D/tiny-a-f32.gguf" --type f32 || exit 1
if ! $BIN/ds4 --version | grep -q 'backends:.*cuda'; then
    skipped=1; echo "skip cuda/* (this build has no CUDA backend: make CUDA=1)"; finish
fi
if ! $BIN/ds4 run -m "$D/tiny-a-f32.gguf" --prompt-ids 1,2,3 -n 1 --backend cuda >"$T/out" 2>"$T/err"; then
    skipped=1; echo "skip cuda/* (no GPU here: $(tail -n 1 "$T/err"))"; finish
fi

# every weight type's blocks decoded on the GPU exactly as on the CPU
if [ -x build/tests/cuda_decode ]; then
    build/tests/cuda_decode >"$T/dec" 2>&1
    grep -E '^(ok|FAIL)' "$T/dec" | sed 's/^/    /'
    if grep -q '22 passed, 0 failed' "$T/dec"; then ok decode_every_type; else bad decode_every_type "$(grep FAIL "$T/dec" | head -n 2)"; fi
else
    skipped=$((skipped + 1)); echo "skip cuda/decode_every_type (build/tests/cuda_decode: make CUDA=1)"
fi

gate() { # gate NAME MODEL_DIR TYPE VECTORS: the CPU's gates of issue 16 (max |dlogit| 1e-3, top-1
    # 100%, the greedy continuation, KL at most 1e-3), on the GPU
    [ -f "$2/config.json" ] && [ -f "$4" ] || { skipped=$((skipped + 1)); echo "skip cuda/$1 ($2 or $4 not here)"; return; }
    $BIN/ds4-quant convert --quiet --in "$2" --out "$D/$1.gguf" --type "$3" || { bad "$1" conversion; return; }
    if $BIN/ds4-logitcheck --model "$D/$1.gguf" --vectors "$4" --backend cuda --max-dlogit 1e-3 --min-top1 1 \
        --require-greedy --quiet >"$T/lc" 2>&1; then ok "$1"; else bad "$1" "$(tail -n 2 "$T/lc")"; fi
}
gate tiny-a-f32 vectors/models/tiny-a f32 vectors/ref/tiny-a.jsonl
gate tiny-a-release-bf16 vectors/models/tiny-a-official bf16 vectors/ref/tiny-a.jsonl
gate tiny-b-f32 vectors/models/tiny-b f32 vectors/ref/tiny-b.jsonl
gate tiny-b-bf16 vectors/models/tiny-b bf16 vectors/ref/tiny-b.jsonl
gate tiny-v-f32 vectors/models/tiny-v f32 vectors/ref/tiny-v.jsonl
gate tiny-q-f32 vectors/models/tiny-q f32 vectors/ref/tiny-q.jsonl
gate tiny-a-q8_0 vectors/models/tiny-a q8_0 vectors/ref-q8_0/tiny-a-q8_0.jsonl
gate tiny-b-q8_0 vectors/models/tiny-b q8_0 vectors/ref-q8_0/tiny-b-q8_0.jsonl

# sub-8-bit recipes against the CPU on the same file: KL(cpu || cuda) over token ids
m=tiny-b
[ -d vectors/models/$m ] || m=tiny-a
$BIN/ds4-quant convert --quiet --in vectors/models/$m --out "$T/f32.gguf" --type f32 || exit 1
awk 'BEGIN { srand(7); for (l = 0; l < 4; l++) { s = "{\"prompt_ids\":[0"; for (i = 1; i < 64; i++)
    s = s "," int(2 + rand() * 200); print s "]}" } }' >"$T/calib.jsonl"
$BIN/ds4 imatrix --model "$T/f32.gguf" --data "$T/calib.jsonl" --out "$T/imatrix" >/dev/null 2>&1 || exit 1
awk 'BEGIN { srand(7); for (i = 0; i < 600; i++) printf "%d ", 3 + int(rand() * 200) }' >"$T/ids"
for recipe in q2 q4 mxfp4; do
    $BIN/ds4-quant quantize --quiet --in "$T/f32.gguf" --out "$D/$m-$recipe.gguf" --recipe "$recipe" \
        --imatrix "$T/imatrix" || { bad "$m-$recipe-vs-cpu" quantize; continue; }
    $BIN/ds4-logitcheck --save-base "$T/base.bin" --model "$D/$m-$recipe.gguf" --ids "$T/ids" --ctx 128 --quiet \
        >/dev/null 2>&1 || { bad "$m-$recipe-vs-cpu" "cpu base"; continue; }
    if $BIN/ds4-logitcheck --base "$T/base.bin" --model "$D/$m-$recipe.gguf" --ids "$T/ids" --ctx 128 --backend cuda \
        --max-kl-mean 5e-4 --min-top1 0.99 >"$T/kl" 2>&1; then ok "$m-$recipe-vs-cpu"
    else bad "$m-$recipe-vs-cpu" "$(grep -i 'kl' "$T/kl" | head -n 2)"; fi
done

# every quantized file against the CPU on the vectors' prompts (--ref-backend cpu, the same
# --act), and against the transformers vectors no worse than the CPU's KL mean + 10%
kl_mean() { awk -F, '$2 == "\"overall\"" { print $8 }' "$1"; }
for recipe in q8_0 q2 q4 mxfp4; do
    Fq=$D/$m-$recipe.gguf
    [ "$recipe" = q8_0 ] && { $BIN/ds4-quant convert --quiet --in vectors/models/$m --out "$Fq" --type q8_0 || continue; }
    [ -f "$Fq" ] || { bad "$m-$recipe-ref-cpu" "no file"; continue; }
    if $BIN/ds4-logitcheck --model "$Fq" --backend cuda --ref-backend cpu --vectors vectors/ref/$m.jsonl \
        --max-kl 1 --max-kl-mean 5e-4 --min-top1 0.99 >"$T/ref" 2>&1; then ok "$m-$recipe-ref-cpu"
    else bad "$m-$recipe-ref-cpu" "$(tail -n 1 "$T/ref")"; fi
    for b in cpu cuda; do
        $BIN/ds4-logitcheck --model "$Fq" --backend "$b" --vectors vectors/ref/$m.jsonl --max-kl 1e9 --min-top1 0 \
            --csv "$T/$b.csv" --quiet >/dev/null 2>&1
    done
    c=$(kl_mean "$T/cpu.csv") g=$(kl_mean "$T/cuda.csv")
    if [ -n "$c" ] && [ -n "$g" ] && awk -v c="$c" -v g="$g" 'BEGIN { exit !(g <= c * 1.1 + 1e-9) }'; then
        ok "$m-$recipe-vs-transformers"
    else bad "$m-$recipe-vs-transformers" "KL mean cuda $g, cpu $c"; fi
done

# greedy tokens: the CPU's; and two GPU runs alike, bit for bit in their logits' digest
M=$D/tiny-b-f32.gguf
[ -f "$M" ] || M=$D/tiny-a-f32.gguf
$BIN/ds4 run -m "$M" --prompt-ids 5,6,7,8,9 -n 48 >"$T/cpu.out" 2>/dev/null
$BIN/ds4 run -m "$M" --prompt-ids 5,6,7,8,9 -n 48 --backend cuda >"$T/cuda.out" 2>/dev/null
if cmp -s "$T/cpu.out" "$T/cuda.out" && [ -s "$T/cpu.out" ]; then ok greedy_equals_cpu; else bad greedy_equals_cpu; fi
Q=$D/tiny-b-q2.gguf
[ -f "$Q" ] || Q=$M
for i in 1 2; do
    $BIN/ds4-logitcheck --save-base "$T/run$i.bin" --model "$Q" --ids "$T/ids" --ctx 128 --backend cuda --quiet \
        >/dev/null 2>&1
done
if cmp -s "$T/run1.bin" "$T/run2.bin" && [ -s "$T/run1.bin" ]; then ok runs_bit_identical; else bad runs_bit_identical; fi

# a batch job of 8 requests on 4 sequences: the CPU's results
awk 'BEGIN { srand(5); for (i = 0; i < 8; i++) { printf "{\"id\":\"r%d\",\"prompt_ids\":[", i
    n = 4 + int(rand() * 60); for (k = 0; k < n; k++) printf "%s%d", k ? "," : "", 3 + int(rand() * 200)
    printf "],\"max_tokens\":%d}\n", 4 + int(rand() * 20) } }' >"$T/jobs.jsonl"
for b in cpu cuda; do
    $BIN/ds4 batch -m "$M" --in "$T/jobs.jsonl" --out "$T/$b.jsonl" --parallel 4 --backend "$b" --quiet >/dev/null 2>&1
    sed 's/"prefill_tps":[^,]*,"decode_tps":[^,]*,//' "$T/$b.jsonl" | sort >"$T/$b.cmp"
done
if cmp -s "$T/cpu.cmp" "$T/cuda.cmp" && [ -s "$T/cpu.cmp" ]; then ok batch_parallel_equals_cpu
else bad batch_parallel_equals_cpu; fi

# a state saved on the GPU restores on the CPU (and goes on as the CPU's own)
$BIN/ds4 run -m "$M" --prompt-ids 5,6,7,8,9 -n 1 --state "$T/s.kv" --backend cuda >/dev/null 2>&1
$BIN/ds4 run -m "$M" --state "$T/s.kv" --prompt-ids 5,6,7,8,9,10,11 -n 16 >"$T/r.cpu" 2>"$T/r.err"
$BIN/ds4 run -m "$M" --prompt-ids 5,6,7,8,9,10,11 -n 16 >"$T/f.cpu" 2>/dev/null
if [ -s "$T/r.cpu" ] && cmp -s "$T/r.cpu" "$T/f.cpu" && grep -q '(5 cached)' "$T/r.err"; then ok state_cuda_to_cpu
else bad state_cuda_to_cpu "$(tail -n 1 "$T/r.err")"; fi
finish
