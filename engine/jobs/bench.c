/* bench.c - see bench.h. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "sampler.h"
#include "profile.h"
#include "threads.h"
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

typedef struct {
    FILE *out;
    int n;
    double t0;
} profile_job;

/* The prefill's report, then the timers restarted for the decode. */
static int prefill_report(void *arg, ds4_ctx *ctx) {
    (void)ctx;
    profile_job *j = arg;
    const double dt = ds4_time_now() - j->t0;
    fprintf(j->out, "prefill profile of %d tokens: %.3f ms/token (%.1f tok/s with the timers on)\n", j->n,
            j->n ? 1e3 * dt / j->n : 0, dt > 0 ? j->n / dt : 0);
    ds4_profile_report(j->out, (uint64_t)j->n);
    ds4_profile_reset();
    return 0;
}

int ds4_bench_profile(ds4_ctx *ctx, const int32_t *prompt, int n, int gen, FILE *out) {
    profile_job j = {out, n, ds4_time_now()};
    const ds4_gen_opts go = {.max_tokens = gen + 1, .ignore_eos = true, .prefilled = prefill_report,
                             .prefilled_arg = &j};
    ds4_gen_result g;
    ds4_profile_reset();
    ds4_profile_enable(true);
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

/* The sequences' next tokens, each with its own sampler and scratch. */
typedef struct {
    ds4_sampler *smp;
    const float *logits;
    int32_t *next, *idx;
    float *probs;
    uint32_t V;
} draw_job;

static void draw_range(void *arg, uint64_t i0, uint64_t i1, int thread) {
    (void)thread;
    const draw_job *d = arg;
    for (uint64_t i = i0; i < i1; i++)
        d->next[i] = ds4_sample(&d->smp[i], d->logits + i * d->V, d->V, d->probs + i * d->V, d->idx + i * d->V);
}

static int bench_parallel(ds4_ctx *ctx, const int32_t *prompt, int n_prompt, int gen, int n, bool timers,
                          ds4_bench_parallel_result *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > ds4_ctx_n_seq(ctx)) return ds4_fail("%d sequences: this context holds %d", n, ds4_ctx_n_seq(ctx));
    const uint32_t V = ds4_ctx_vocab(ctx);
    const ds4_model *m = ds4_ctx_model(ctx);
    ds4_ctx **seq = ds4_calloc((size_t)n, sizeof *seq);
    ds4_sampler *smp = ds4_calloc((size_t)n, sizeof *smp);
    ds4_eval_item *items = ds4_calloc((size_t)n, sizeof *items);
    int32_t *next = ds4_calloc((size_t)n, sizeof *next), *idx = ds4_malloc((size_t)n * V * sizeof *idx);
    float *logits = ds4_malloc((size_t)n * V * sizeof *logits), *probs = ds4_malloc((size_t)n * V * sizeof *probs);
    ds4_kv_snapshot snap = {0};
    int rc = seq && smp && items && next && idx && logits && probs ? ds4_model_kv_snapshot(m, &snap) : -1;
    for (int i = 0; rc == 0 && i < n; i++) rc = (seq[i] = ds4_ctx_sequence(ctx, i)) ? 0 : -1;
    if (rc == 0) {
        ds4_ctx_reset(seq[0]);
        rc = ds4_eval(seq[0], prompt, n_prompt, logits, false);
    }
    if (rc == 0) rc = ds4_ctx_state_get(seq[0], &snap);
    for (int i = 0; rc == 0 && i < n; i++) {
        if (i) rc = ds4_ctx_state_set(seq[i], &snap);
        if (i) memcpy(logits + (size_t)i * V, logits, V * sizeof *logits);
        ds4_sampler_init(&smp[i], 1.0f, 1.0f, (uint64_t)i + 1);
    }
    if (timers) {
        ds4_profile_reset();
        ds4_profile_enable(true);
    }
    const double t0 = ds4_time_now();
    draw_job dj = {.smp = smp, .logits = logits, .next = next, .idx = idx, .probs = probs, .V = V};
    const int threads = ds4_ctx_threads(ctx) < n ? ds4_ctx_threads(ctx) : n;
    for (int step = 0; rc == 0 && step < gen; step++) {
        /* as a batch job draws: each sequence's token on its own thread */
        ds4_parallel_for(threads, (uint64_t)n, draw_range, &dj);
        for (int i = 0; i < n; i++) items[i] = (ds4_eval_item){seq[i], &next[i], 1, logits + (size_t)i * V, false};
        rc = ds4_eval_many(items, n);
    }
    const double dt = ds4_time_now() - t0;
    ds4_profile_enable(false);
    if (rc == 0) *out = (ds4_bench_parallel_result){n, gen, dt > 0 ? (double)n * gen / dt : 0, dt > 0 ? gen / dt : 0};
    for (int i = 0; seq && i < n; i++) ds4_ctx_free(seq[i]);
    ds4_kv_snapshot_free(&snap);
    free(seq);
    free(smp);
    free(items);
    free(next);
    free(idx);
    free(logits);
    free(probs);
    return rc;
}

int ds4_bench_parallel(ds4_ctx *ctx, const int32_t *prompt, int n_prompt, int gen, int n,
                       ds4_bench_parallel_result *out) {
    return bench_parallel(ctx, prompt, n_prompt, gen, n, false, out);
}

int ds4_bench_parallel_profile(ds4_ctx *ctx, const int32_t *prompt, int n_prompt, int gen, int n, FILE *out) {
    ds4_bench_parallel_result r;
    const int rc = bench_parallel(ctx, prompt, n_prompt, gen, n, true, &r);
    if (rc == 0) {
        fprintf(out, "decode profile of %d sequences: %.3f ms/step (%.2f tok/s with the timers on)\n", n,
                r.per_sequence_tps > 0 ? 1e3 / r.per_sequence_tps : 0, r.aggregate_tps);
        ds4_profile_report(out, (uint64_t)gen);
    }
    return rc;
}
