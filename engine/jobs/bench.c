/* bench.c - see bench.h. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "profile.h"
#include "util.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One timed pass: prefill, then gen decode steps, each fed its own greedy pick. */
static int pass(ds4_ctx *ctx, const int32_t *prompt, int n, int gen, double *prefill_s, double *decode_s) {
    const ds4_gen_opts go = {.max_tokens = gen + 1, .ignore_eos = true};
    ds4_gen_result g;
    const int rc = ds4_generate(ctx, prompt, (uint64_t)n, &go, &g);
    *prefill_s = g.prefill_seconds;
    *decode_s = g.decode_seconds;
    ds4_gen_result_free(&g);
    return rc;
}

int ds4_bench_run(ds4_ctx *ctx, const int32_t *prompt, int n, int gen, int repeats, ds4_bench_result *r) {
    memset(r, 0, sizeof *r);
    if (repeats < 1) repeats = 1;
    double *pre = ds4_calloc((size_t)repeats, sizeof *pre), *dec = ds4_calloc((size_t)repeats, sizeof *dec);
    int rc = -1;
    if (!pre || !dec) goto done;
    double ps, ds;
    /* warm-up: a short pass pages the weights in and settles the caches */
    if (pass(ctx, prompt, n < 16 ? n : 16, gen < 2 ? gen : 2, &ps, &ds) < 0) goto done;
    for (int i = 0; i < repeats; i++) {
        if (pass(ctx, prompt, n, gen, &ps, &ds) < 0) goto done;
        pre[i] = ps > 0 ? n / ps : 0;
        dec[i] = ds > 0 && gen > 0 ? gen / ds : 0;
    }
    qsort(pre, (size_t)repeats, sizeof *pre, cmp_double);
    qsort(dec, (size_t)repeats, sizeof *dec, cmp_double);
    r->prompt_tokens = n;
    r->gen_tokens = gen;
    r->repeats = repeats;
    r->prefill_tps = repeats % 2 ? pre[repeats / 2] : (pre[repeats / 2 - 1] + pre[repeats / 2]) / 2;
    r->decode_tps = repeats % 2 ? dec[repeats / 2] : (dec[repeats / 2 - 1] + dec[repeats / 2]) / 2;
    r->prefill_tps_min = pre[0];
    r->prefill_tps_max = pre[repeats - 1];
    r->decode_tps_min = dec[0];
    r->decode_tps_max = dec[repeats - 1];
    r->kv_bytes = ds4_ctx_kv_bytes(ctx);
    rc = 0;
done:
    free(pre);
    free(dec);
    return rc;
}

static int profile_on(void *arg, ds4_ctx *ctx) {
    (void)arg;
    (void)ctx;
    ds4_profile_reset();
    ds4_profile_enable(true);
    return 0;
}

int ds4_bench_profile(ds4_ctx *ctx, const int32_t *prompt, int n, int gen, FILE *out) {
    /* the prefill untimed, then the decode with the timers on */
    const ds4_gen_opts go = {.max_tokens = gen + 1, .ignore_eos = true, .prefilled = profile_on};
    ds4_gen_result g;
    const int rc = ds4_generate(ctx, prompt, (uint64_t)n, &go, &g);
    ds4_profile_enable(false);
    const double dt = g.decode_seconds;
    if (rc == 0) {
        fprintf(out, "decode profile at %d tokens of context: %.3f ms/token (%.2f tok/s with the timers on)\n", n,
                gen ? 1e3 * dt / gen : 0, dt > 0 ? gen / dt : 0);
        ds4_profile_report(out, (uint64_t)gen);
    }
    ds4_gen_result_free(&g);
    return rc;
}
