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

/* Prefill `prompt`, then decode gen_tokens greedily with the profile on (profile.h),
 * and print where each decoded token's time went. */
int ds4_bench_profile(ds4_ctx *ctx, const int32_t *prompt, int n_prompt, int gen_tokens, FILE *out);

#endif
