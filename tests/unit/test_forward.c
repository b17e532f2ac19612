/* The forward pass against itself: chunked prefill, token-by-token decode and one full
 * pass agree; thread counts agree; bad tokens are rejected without touching the state;
 * the KV state grows by compressed entries only. (Agreement with the reference
 * implementation is ds4-logitcheck's job, run on the committed vectors by make test.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "forward.h"
#include "ops.h"
#include "quants.h"
#include "sampler.h"
#include "test.h"
#include "threads.h"

static ds4_model *tiny(const char *name) {
    char in[256], out[600];
    snprintf(in, sizeof in, "vectors/models/%s", name);
    snprintf(out, sizeof out, "%s/fwd-%s.gguf", test_tmpdir(), name);
    ds4_convert_opts o = {.in_dir = in, .out_path = out, .type = GGML_TYPE_F32, .n_threads = 2};
    ds4_convert_stats s;
    if (access(out, F_OK) != 0 && ds4_convert(&o, &s) < 0) return NULL;
    return ds4_model_load(out);
}

static int32_t *random_ids(int n, uint32_t vocab, unsigned seed) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    srand(seed);
    for (int i = 0; i < n; i++) ids[i] = i == 0 ? 0 : 2 + rand() % (int)(vocab - 2);
    return ids;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Logits of the whole prompt fed in chunks of `chunk` tokens. */
static int run_chunked(ds4_ctx *c, const int32_t *ids, int n, int chunk, float *logits) {
    ds4_ctx_reset(c);
    uint32_t V = ds4_ctx_vocab(c);
    for (int i = 0; i < n; i += chunk) {
        int k = n - i < chunk ? n - i : chunk;
        if (ds4_eval(c, ids + i, k, logits + (size_t)i * V, true) < 0) return -1;
    }
    return 0;
}

static void chunked_prefill_and_decode_match_full_pass(void) {
    const char *models[] = {"tiny-a", "tiny-b"};
    for (int mi = 0; mi < 2; mi++) {
        ds4_model *m = tiny(models[mi]);
        CHECKF(m, "%s", ds4_error());
        ds4_ctx *c = ds4_ctx_new(m, 2);
        const int n = mi == 0 ? 300 : 400; /* past the window, several compressed entries */
        const uint32_t V = m->cfg.n_vocab;
        int32_t *ids = random_ids(n, V, 5 + mi);
        float *full = malloc((size_t)n * V * sizeof *full), *part = malloc((size_t)n * V * sizeof *part);
        CHECK(c && run_chunked(c, ids, n, n, full) == 0);
        const int chunks[] = {1, 7, 64};
        for (int k = 0; k < 3; k++) {
            CHECK(run_chunked(c, ids, n, chunks[k], part) == 0);
            double d = max_diff(full, part, (size_t)n * V);
            CHECKF(d <= 1e-4, "%s: chunks of %d differ from one pass by %g", models[mi], chunks[k], d);
        }
        free(ids); free(full); free(part);
        ds4_ctx_free(c);
        ds4_model_free(m);
    }
}

static void threads_agree(void) {
    ds4_model *m = tiny("tiny-b");
    CHECK(m);
    ds4_ctx *c1 = ds4_ctx_new(m, 1), *c3 = ds4_ctx_new(m, 3);
    const int n = 200;
    const uint32_t V = m->cfg.n_vocab;
    int32_t *ids = random_ids(n, V, 9);
    float *a = malloc((size_t)n * V * sizeof *a), *b = malloc((size_t)n * V * sizeof *b);
    CHECK(ds4_eval(c1, ids, n, a, true) == 0 && ds4_eval(c3, ids, n, b, true) == 0);
    CHECKF(max_diff(a, b, (size_t)n * V) == 0, "1 and 3 threads differ");
    free(ids); free(a); free(b);
    ds4_ctx_free(c1);
    ds4_ctx_free(c3);
    ds4_model_free(m);
}

static void bad_tokens_leave_state_untouched(void) {
    ds4_model *m = tiny("tiny-a");
    CHECK(m);
    ds4_ctx *c = ds4_ctx_new(m, 1);
    const uint32_t V = m->cfg.n_vocab;
    float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
    int32_t ok[3] = {0, 5, 6}, bad[2] = {7, (int32_t)V};
    CHECK(ds4_eval(c, ok, 3, a, false) == 0 && ds4_ctx_pos(c) == 3);
    CHECK(ds4_eval(c, bad, 2, b, false) < 0 && strstr(ds4_error(), "outside the vocabulary"));
    int32_t neg = -1;
    CHECK(ds4_eval(c, &neg, 1, b, false) < 0);
    CHECK(ds4_ctx_pos(c) == 3);
    /* the state is as if the bad calls never happened */
    ds4_ctx *d = ds4_ctx_new(m, 1);
    int32_t next = 9;
    CHECK(ds4_eval(c, &next, 1, a, false) == 0 && ds4_eval(d, ok, 3, b, false) == 0 && ds4_eval(d, &next, 1, b, false) == 0);
    CHECK(max_diff(a, b, V) == 0);
    free(a); free(b);
    ds4_ctx_free(c);
    ds4_ctx_free(d);
    ds4_model_free(m);
}

/* KV bytes: raw windows and buffers are fixed; only compressed entries grow, by one
 * entry (head_dim floats, plus index_dim for CSA) per ratio tokens. */
static void kv_state_grows_by_compressed_entries_only(void) {
    ds4_model *m = tiny("tiny-a");
    CHECK(m);
    const ds4_config *cf = &m->cfg;
    ds4_ctx *c = ds4_ctx_new(m, 2);
    const uint64_t base = ds4_ctx_kv_bytes(c);
    const int n = 1000;
    int32_t *ids = random_ids(n, cf->n_vocab, 3);
    CHECK(ds4_eval(c, ids, n, NULL, false) == 0);
    uint64_t expect = base;
    for (uint32_t il = 0; il < cf->n_layer; il++) {
        if (cf->kind[il] == DS4_LAYER_SWA) continue;
        uint64_t entries = (uint64_t)n / cf->compress_ratio[il];
        expect += entries * cf->head_dim * sizeof(float);
        if (cf->kind[il] == DS4_LAYER_CSA) expect += entries * cf->indexer_dim * sizeof(float);
    }
    CHECKF(ds4_ctx_kv_bytes(c) == expect, "kv bytes %llu, expected %llu", (unsigned long long)ds4_ctx_kv_bytes(c),
           (unsigned long long)expect);
    free(ids);
    ds4_ctx_free(c);
    ds4_model_free(m);
}

/* Every SIMD dot kernel this CPU has, against the scalar one: within 1e-5 of the sum of
 * |a_i b_i| (they add in a different order), on lengths that exercise every tail. */
static void simd_dot_matches_scalar(void) {
    enum { N = 4099 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    srand(17);
    for (int i = 0; i < N; i++) {
        a[i] = (float)rand() / RAND_MAX - 0.5f;
        b[i] = ((float)rand() / RAND_MAX - 0.5f) * 4;
    }
    int levels = 0;
    for (int level = 1; level <= 2; level++) {
        ds4_dot_fn fn = ds4_dot_for_level(level);
        if (!fn) continue;
        levels++;
        for (uint64_t n = 0; n <= 300; n++) {
            uint64_t len = n < 200 ? n : N - (300 - n);
            double mag = 0;
            for (uint64_t i = 0; i < len; i++) mag += fabs((double)a[i] * b[i]);
            double d = fabs((double)fn(a, b, len) - ds4_dot_scalar(a, b, len));
            CHECKF(d <= 1e-5 * mag + 1e-7, "level %d, n %llu: differs by %g (sum |ab| %g)", level,
                   (unsigned long long)len, d, mag);
        }
    }
    free(a);
    free(b);
    if (!levels) test_skip("this CPU has no AVX2");
}

/* The F16 and Q8_0 row kernels of the decode path, every level, against the scalar one
 * and against converting the row first (the prefill path). */
static void rowdot_matches_reference(void) {
    enum { N = 4096 };
    float *w = malloc(N * sizeof *w), *x = malloc(N * sizeof *x), *wf = malloc(N * sizeof *wf);
    uint8_t *row = malloc(N * 2);
    srand(23);
    for (int i = 0; i < N; i++) {
        w[i] = ((float)rand() / RAND_MAX - 0.5f) * (i % 61 ? 1.0f : 9.0f);
        x[i] = (float)rand() / RAND_MAX - 0.5f;
    }
    const uint32_t types[2] = {GGML_TYPE_F16, GGML_TYPE_Q8_0};
    for (int k = 0; k < 2; k++) {
        ggml_row_from_f32(types[k], w, row, N);
        ggml_row_to_f32(types[k], row, wf, N);
        double mag = 0;
        for (int i = 0; i < N; i++) mag += fabs((double)wf[i] * x[i]);
        const float ref = ds4_dot_scalar(wf, x, N);
        for (int level = 0; level <= 2; level++) {
            ds4_rowdot_fn fn = ds4_rowdot_for_level(types[k], level);
            if (!fn) continue;
            const double d = fabs((double)fn(row, x, N) - ref);
            CHECKF(d <= 1e-5 * mag, "%s level %d: differs by %g (sum |wx| %g)", ggml_type_name(types[k]), level, d, mag);
        }
    }
    CHECK(ds4_rowdot_for_level(GGML_TYPE_Q4_K, 0) == NULL);
    free(w); free(x); free(wf); free(row);
}

/* The attention's y += a*x: every level gives the scalar loop's bits. */
static void axpy_matches_scalar_exactly(void) {
    enum { N = 517 };
    float x[N], y0[N], y1[N];
    srand(29);
    for (int i = 0; i < N; i++) x[i] = (float)rand() / RAND_MAX - 0.5f, y0[i] = (float)rand() / RAND_MAX;
    int bad = 0;
    for (int level = 1; level <= 2; level++) {
        ds4_axpy_fn fn = ds4_axpy_for_level(level);
        if (!fn) continue;
        memcpy(y1, y0, sizeof y0);
        float ref[N];
        memcpy(ref, y0, sizeof y0);
        for (uint64_t n = 0; n <= N; n += 47) {
            fn(0.3711f, x, y1, n);
            ds4_axpy_scalar(0.3711f, x, ref, n);
        }
        bad += memcmp(ref, y1, sizeof ref) != 0;
    }
    CHECK(bad == 0);
}

/* The thread pool covers every index exactly once, for any size and thread count,
 * also when a loop is started from inside another. */
static _Atomic int hits[1000];
static void count_range(void *ctx, uint64_t b, uint64_t e, int t) {
    (void)ctx; (void)t;
    for (uint64_t i = b; i < e; i++) hits[i]++;
}
static void nested_range(void *ctx, uint64_t b, uint64_t e, int t) {
    (void)t;
    for (uint64_t i = b; i < e; i++) ds4_parallel_for(4, 1, count_range, ctx);
}
static void parallel_for_covers_once(void) {
    const uint64_t sizes[] = {0, 1, 2, 3, 7, 64, 999, 1000};
    const int threads[] = {1, 2, 3, 8};
    int bad = 0;
    for (size_t a = 0; a < sizeof sizes / sizeof sizes[0]; a++)
        for (size_t b = 0; b < sizeof threads / sizeof threads[0]; b++)
            for (int rep = 0; rep < 20; rep++) {
                for (int i = 0; i < 1000; i++) hits[i] = 0;
                ds4_parallel_for(threads[b], sizes[a], count_range, NULL);
                for (uint64_t i = 0; i < 1000; i++) bad += hits[i] != (i < sizes[a]);
            }
    CHECKF(bad == 0, "%d indices not covered exactly once", bad);
    for (int i = 0; i < 1000; i++) hits[i] = 0;
    ds4_parallel_for(2, 10, nested_range, NULL);
    CHECK(hits[0] == 10); /* each of the 10 outer indices ran the 1-element inner loop inline */
}

static void sampler(void) {
    float logits[6] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f, -3.0f}, p[6];
    int32_t idx[6];
    ds4_sampler s;
    ds4_sampler_init(&s, 0, 1, 1);
    CHECK(ds4_sample(&s, logits, 6, p, idx) == 1);
    ds4_sampler_init(&s, 1.0f, 0.01f, 7); /* a tiny nucleus keeps only the best */
    for (int i = 0; i < 20; i++) CHECK(ds4_sample(&s, logits, 6, p, idx) == 1);
    int counts[6] = {0}, again[6] = {0};
    ds4_sampler_init(&s, 1.0f, 1.0f, 42);
    for (int i = 0; i < 2000; i++) counts[ds4_sample(&s, logits, 6, p, idx)]++;
    ds4_sampler_init(&s, 1.0f, 1.0f, 42);
    for (int i = 0; i < 2000; i++) again[ds4_sample(&s, logits, 6, p, idx)]++;
    CHECK(!memcmp(counts, again, sizeof counts)); /* same seed, same draws */
    /* frequencies follow softmax: token 1 ~ 44%, token 3 ~ 40%, token 5 rare */
    CHECKF(counts[1] > 750 && counts[1] < 1000 && counts[3] > 700 && counts[5] < 20, "%d %d %d", counts[1], counts[3], counts[5]);
}

const test_case forward_tests[] = {
    {"chunked_prefill_and_decode_match_full_pass", chunked_prefill_and_decode_match_full_pass},
    {"threads_agree", threads_agree},
    {"bad_tokens_leave_state_untouched", bad_tokens_leave_state_untouched},
    {"kv_state_grows_by_compressed_entries_only", kv_state_grows_by_compressed_entries_only},
    {"simd_dot_matches_scalar", simd_dot_matches_scalar},
    {"rowdot_matches_reference", rowdot_matches_reference},
    {"axpy_matches_scalar_exactly", axpy_matches_scalar_exactly},
    {"parallel_for_covers_once", parallel_for_covers_once},
    {"sampler", sampler},
    {0, 0},
};
