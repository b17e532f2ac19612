/* longctx.c - see longctx.h. */
#include "longctx.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forward.h"
#include "state.h"
#include "util.h"

#define STRETCH 16 /* tokens decoded one by one at the end */
#define SAMPLES 6  /* positions sampled over the rest */

static double max_abs_diff(const float *a, const float *b, uint64_t n) {
    double m = 0;
    for (uint64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN counts as the largest */
    }
    return m;
}

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The worst |dlogit| of the last STRETCH tokens decoded by a new context that restores
 * the state saved at `path` (the L - STRETCH tokens before them), against ref. */
static double restored_worst(const ds4_model *m, const ds4_ctx_opts *opts, const char *path, const int32_t *ids,
                             uint64_t L, const float *ref, float *got) {
    const uint64_t V = m->cfg.n_vocab;
    double worst = INFINITY;
    ds4_ctx *fresh = ds4_ctx_new(m, opts);
    int32_t *saved = NULL;
    uint64_t n_saved = 0;
    if (fresh && ds4_kv_load(fresh, path, &saved, &n_saved) == 0 && n_saved == L - STRETCH) {
        worst = 0;
        for (int k = 0; k < STRETCH; k++) {
            if (ds4_eval(fresh, ids + L - STRETCH + k, 1, got, false) < 0) {
                worst = INFINITY;
                break;
            }
            const double d = max_abs_diff(got, ref + (size_t)k * V, V);
            if (d > worst || isnan(d)) worst = d;
        }
    }
    free(saved);
    ds4_ctx_free(fresh);
    return worst;
}

int ds4_longctx_consistency(const ds4_model *m, const ds4_ctx_opts *opts, uint64_t L, uint64_t seed, double tol,
                            const char *tmpdir, ds4_longctx_result *r) {
    memset(r, 0, sizeof *r);
    r->length = L;
    if (L < 2 * STRETCH) return ds4_fail("length %llu is too short (at least %d)", (unsigned long long)L, 2 * STRETCH);
    if (L > (1ull << 31)) return ds4_fail("length %llu is too long", (unsigned long long)L);
    const uint32_t V = m->cfg.n_vocab;
    const double t_start = ds4_time_now();
    int32_t *ids = ds4_malloc(L * sizeof *ids);
    uint64_t pos[SAMPLES + STRETCH];
    int np = 0;
    for (int k = 1; k <= SAMPLES; k++) pos[np++] = (L - STRETCH) * (uint64_t)k / SAMPLES - 1;
    for (int k = 0; k < STRETCH; k++) pos[np++] = L - STRETCH + (uint64_t)k;
    qsort(pos, (size_t)np, sizeof pos[0], cmp_u64);
    r->positions = np;
    float *ref = ds4_malloc((size_t)np * V * sizeof *ref), *got = ds4_malloc((size_t)V * sizeof *got);
    ds4_ctx *ctx = ds4_ctx_new(m, opts);
    int rc = ids && ref && got && ctx ? 0 : -1;
    if (ctx) snprintf(r->backend, sizeof r->backend, "%s", ds4_ctx_backend(ctx));
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (uint64_t i = 0; ids && i < L; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        ids[i] = i == 0 ? 0 : (int32_t)(2 + s % (V - 2));
    }

    /* 1. the reference: a prefill that stops only at the sampled positions, the state
     * saved where the stretch begins, then the stretch as one chunk */
    char path[4096];
    snprintf(path, sizeof path, "%s/longctx-%d.kv", tmpdir, (int)getpid());
    ds4_progress prog;
    char label[64];
    snprintf(label, sizeof label, "consistency %llu", (unsigned long long)L);
    ds4_progress_begin_count(&prog, label, 2 * L, "tok");
    double t0 = ds4_time_now();
    const double idx0 = ctx ? ds4_ctx_indexer_seconds(ctx) : 0;
    uint64_t at = 0;
    for (int k = 0; rc == 0 && k < np - STRETCH; k++) {
        rc = ds4_eval_progress(ctx, ids + at, pos[k] + 1 - at, ref + (size_t)k * V, &prog);
        at = pos[k] + 1;
    }
    const double t_saved = ds4_time_now();
    if (rc == 0) rc = ds4_kv_save(ctx, ids, L - STRETCH, path);
    const double t_stretch = ds4_time_now();
    if (rc == 0) rc = ds4_eval(ctx, ids + at, STRETCH, ref + (size_t)(np - STRETCH) * V, true);
    const double prefill_seconds = ds4_time_now() - t0 - (t_stretch - t_saved);
    r->prefill_tps = rc == 0 ? (double)L / prefill_seconds : 0;
    r->indexer_share = rc == 0 ? (ds4_ctx_indexer_seconds(ctx) - idx0) / prefill_seconds : 0;
    ds4_progress_add(&prog, STRETCH);
    r->kv_bytes = ds4_ctx_kv_bytes(ctx);
    r->kv_bytes_expected = ds4_config_kv_bytes(&m->cfg, L);

    /* 2. chunks of 1, 7, 64, 509, 4096, ... (cut at a sampled position, which then ends
     * its chunk so that only the last token's logits are needed), then the stretch
     * decoded token by token */
    static const uint64_t sizes[] = {1, 7, 64, 509, 4096};
    ds4_ctx_reset(ctx);
    at = 0;
    for (int k = 0, c = 0; rc == 0 && at < L - STRETCH; c++) {
        uint64_t end = at + sizes[c % 5];
        if (end > L - STRETCH) end = L - STRETCH;
        const bool sample = pos[k] < end;
        if (sample) end = pos[k] + 1;
        rc = ds4_eval(ctx, ids + at, (int)(end - at), sample ? got : NULL, false);
        ds4_progress_add(&prog, end - at);
        if (rc == 0 && sample) {
            const double d = max_abs_diff(got, ref + (size_t)k * V, V);
            if (d > r->max_dlogit_chunked || isnan(d)) r->max_dlogit_chunked = d;
            k++;
        }
        at = end;
    }
    t0 = ds4_time_now();
    for (int k = 0; rc == 0 && k < STRETCH; k++) {
        rc = ds4_eval(ctx, ids + L - STRETCH + k, 1, got, false);
        const double d = max_abs_diff(got, ref + (size_t)(np - STRETCH + k) * V, V);
        if (d > r->max_dlogit_decode || isnan(d)) r->max_dlogit_decode = d;
    }
    r->decode_tps = rc == 0 ? STRETCH / (ds4_time_now() - t0) : 0;
    ds4_progress_add(&prog, STRETCH);
    ds4_progress_end(&prog);

    /* 3. a fresh context restores the state and decodes the stretch: on the CPU in a
     * fresh process (one thread: the parent's thread pool does not exist there); a GPU's
     * context does not survive fork(), so there a second context in this process */
    const bool cpu = !opts->backend || !strcmp(opts->backend, "cpu");
    int fds[2];
    const float *stretch_ref = ref + (size_t)(np - STRETCH) * V;
    if (rc == 0 && !cpu) r->max_dlogit_restored = restored_worst(m, opts, path, ids, L, stretch_ref, got);
    if (rc == 0 && cpu && pipe(fds) < 0) rc = ds4_fail("pipe: %s", strerror(errno));
    if (rc == 0 && cpu) {
        fflush(NULL);
        const pid_t child = fork();
        if (child == 0) {
            close(fds[0]);
            ds4_ctx_opts one = *opts;
            one.n_threads = 1;
            const double worst = restored_worst(m, &one, path, ids, L, stretch_ref, got);
            const ssize_t w = write(fds[1], &worst, sizeof worst);
            _exit(w == sizeof worst ? 0 : 1);
        }
        close(fds[1]);
        double worst = INFINITY;
        if (child < 0 || read(fds[0], &worst, sizeof worst) != sizeof worst) worst = INFINITY;
        close(fds[0]);
        if (child > 0) waitpid(child, NULL, 0);
        r->max_dlogit_restored = worst;
    }
    unlink(path);
    r->pass = rc == 0 && r->max_dlogit_chunked <= tol && r->max_dlogit_decode <= tol &&
              r->max_dlogit_restored <= tol && r->kv_bytes == r->kv_bytes_expected;
    r->seconds = ds4_time_now() - t_start;
    ds4_ctx_free(ctx);
    free(ids);
    free(ref);
    free(got);
    return rc;
}
