/* bench.h - measuring the engine: prefill and decode speed at a given context (warm-up
 * excluded, repeated, median and range), peak memory, and a STREAM-like probe of the
 * memory bandwidth that decode speed is bounded by. */
#ifndef DS4_BENCH_H
#define DS4_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "forward.h"

typedef struct {
    int prompt_tokens, gen_tokens, repeats;
    double prefill_tps, prefill_tps_min, prefill_tps_max; /* median, range */
    double decode_tps, decode_tps_min, decode_tps_max;
    uint64_t kv_bytes;        /* KV state after prompt + generation */
} ds4_bench_result;

/* Prefill `prompt` then decode gen_tokens greedily, `repeats` times after one warm-up. */
int ds4_bench_run(ds4_ctx *ctx, const int32_t *prompt, int n_prompt, int gen_tokens, int repeats,
                  ds4_bench_result *out);

/* Prefill `prompt`, then decode gen_tokens greedily, with the profile on (profile.h):
 * where each prompt token's time went, then each decoded token's. */
int ds4_bench_profile(ds4_ctx *ctx, const int32_t *prompt, int n_prompt, int gen_tokens, FILE *out);

/* Batched decode: n sequences of ctx (made with n_seq >= n) decode gen_tokens together,
 * all n decoding in every step. The prompt is prefilled once and its state copied to
 * the others; each then samples at temperature 1 with its own seed, so the sequences
 * part after one token and route to different experts, as different requests do.
 * Aggregate tok/s: n x gen_tokens / wall time of the decode steps. */
typedef struct {
    int n_seq, gen_tokens;
    double aggregate_tps, per_sequence_tps;
} ds4_bench_parallel_result;
int ds4_bench_parallel(ds4_ctx *ctx, const int32_t *prompt, int n_prompt, int gen_tokens, int n,
                       ds4_bench_parallel_result *out);
/* The same decode once more with the stage timers on, and their table per step to `out`. */
int ds4_bench_parallel_profile(ds4_ctx *ctx, const int32_t *prompt, int n_prompt, int gen_tokens, int n, FILE *out);

#endif
