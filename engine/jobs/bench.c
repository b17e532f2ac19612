/* bench.c - see bench.h. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ops.h"
#include "profile.h"
#include "threads.h"
#include "util.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One timed pass: prefill, then gen_tokens decode steps, each fed its own greedy pick. */
static int pass(ds4_ctx *ctx, const int32_t *prompt, int n, int gen, float *logits, double *prefill_s,
                double *decode_s) {
    const uint32_t V = ds4_ctx_vocab(ctx);
    ds4_ctx_reset(ctx);
    double t0 = ds4_time_now();
    if (ds4_eval(ctx, prompt, n, logits, false) < 0) return -1;
    double t1 = ds4_time_now();
    for (int i = 0; i < gen; i++) {
        int32_t best = 0;
        for (uint32_t v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = (int32_t)v;
        if (ds4_eval(ctx, &best, 1, logits, false) < 0) return -1;
    }
    *prefill_s = t1 - t0;
    *decode_s = ds4_time_now() - t1;
    return 0;
}

int ds4_bench_run(ds4_ctx *ctx, const int32_t *prompt, int n, int gen, int repeats, ds4_bench_result *r) {
    memset(r, 0, sizeof *r);
    if (repeats < 1) repeats = 1;
    float *logits = ds4_malloc(ds4_ctx_vocab(ctx) * sizeof *logits);
    double *pre = ds4_calloc((size_t)repeats, sizeof *pre), *dec = ds4_calloc((size_t)repeats, sizeof *dec);
    int rc = -1;
    if (!logits || !pre || !dec) goto done;
    double ps, ds;
    /* warm-up: a short pass pages the weights in and settles the caches */
    if (pass(ctx, prompt, n < 16 ? n : 16, gen < 2 ? gen : 2, logits, &ps, &ds) < 0) goto done;
    for (int i = 0; i < repeats; i++) {
        if (pass(ctx, prompt, n, gen, logits, &ps, &ds) < 0) goto done;
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
    free(logits);
    free(pre);
    free(dec);
    return rc;
}

int ds4_bench_profile(ds4_ctx *ctx, const int32_t *prompt, int n, int gen, FILE *out) {
    float *logits = ds4_malloc(ds4_ctx_vocab(ctx) * sizeof *logits);
    if (!logits) return -1;
    const uint32_t V = ds4_ctx_vocab(ctx);
    ds4_ctx_reset(ctx);
    int rc = ds4_eval(ctx, prompt, n, logits, false);
    ds4_profile_reset();
    ds4_profile_enable(true);
    const double t0 = ds4_time_now();
    for (int i = 0; i < gen && rc == 0; i++) {
        int32_t best = 0;
        for (uint32_t v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = (int32_t)v;
        rc = ds4_eval(ctx, &best, 1, logits, false);
    }
    const double dt = ds4_time_now() - t0;
    ds4_profile_enable(false);
    if (rc == 0) {
        fprintf(out, "decode profile at %d tokens of context: %.3f ms/token (%.2f tok/s with the timers on)\n", n,
                gen ? 1e3 * dt / gen : 0, dt > 0 ? gen / dt : 0);
        ds4_profile_report(out, (uint64_t)gen);
    }
    free(logits);
    return rc;
}
