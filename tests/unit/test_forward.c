/* The forward pass against itself: chunked prefill, token-by-token decode and one full
 * pass agree; thread counts agree; bad tokens are rejected without touching the state;
 * the KV state grows by compressed entries only. (Agreement with the reference
 * implementation is ds4-logitcheck's job, run on the committed vectors by make test.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "matmul.h"
#include "vec.h"
#include "convert.h"
#include "forward.h"
#include "indexer.h"
#include "numeric.h"
#include "ops.h"
#include "quants.h"
#include "sampler.h"
#include "test.h"

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
        ds4_ctx *c = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
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
    ds4_ctx *c1 = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 1}), *c3 = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 3});
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
    ds4_ctx *c = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 1});
    const uint32_t V = m->cfg.n_vocab;
    float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
    int32_t ok[3] = {0, 5, 6}, bad[2] = {7, (int32_t)V};
    CHECK(ds4_eval(c, ok, 3, a, false) == 0 && ds4_ctx_pos(c) == 3);
    CHECK(ds4_eval(c, bad, 2, b, false) < 0 && strstr(ds4_error(), "outside the vocabulary"));
    int32_t neg = -1;
    CHECK(ds4_eval(c, &neg, 1, b, false) < 0);
    CHECK(ds4_ctx_pos(c) == 3);
    /* the state is as if the bad calls never happened */
    ds4_ctx *d = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 1});
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
    ds4_ctx *c = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
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
 * and against converting the row first (the prefill path), on rows of whole groups of 16
 * Q8_0 blocks, with some left over, and shorter than one group. */
static void rowdot_matches_reference(void) {
    enum { N = 4096 };
    const int lengths[4] = {N, 17 * 32, 3 * 32, 32};
    float *w = malloc(N * sizeof *w), *x = malloc(N * sizeof *x), *wf = malloc(N * sizeof *wf);
    uint8_t *row = malloc(N * 2);
    srand(23);
    for (int i = 0; i < N; i++) {
        w[i] = ((float)rand() / RAND_MAX - 0.5f) * (i % 61 ? 1.0f : 9.0f);
        x[i] = (float)rand() / RAND_MAX - 0.5f;
    }
    const uint32_t types[2] = {GGML_TYPE_F16, GGML_TYPE_Q8_0};
    for (int k = 0; k < 2; k++)
        for (int l = 0; l < 4; l++) {
            const int n = lengths[l];
            ds4_row_from_f32(types[k], w, row, n);
            ds4_row_to_f32(types[k], row, wf, n);
            double mag = 0;
            for (int i = 0; i < n; i++) mag += fabs((double)wf[i] * x[i]);
            const float ref = ds4_dot_scalar(wf, x, (uint64_t)n);
            for (int level = 0; level <= 2; level++) {
                ds4_rowdot_fn fn = ds4_rowdot_for_level(types[k], level);
                if (!fn) continue;
                const double d = fabs((double)fn(row, x, (uint64_t)n) - ref);
                CHECKF(d <= 1e-5 * mag, "%s level %d, n %d: differs by %g (sum |wx| %g)", ds4_type_name(types[k]),
                       level, n, d, mag);
            }
        }
    CHECK(ds4_rowdot_for_level(GGML_TYPE_Q4_K, 0) == NULL);
    free(w); free(x); free(wf); free(row);
}

/* A matrix product over F32 rows with many activation rows (prefill, where rows and
 * tokens go through the level's blocked kernel) gives each (row, token) exactly ds4_dot's bits,
 * as decode computes them, for row counts and lengths with and without remainders. */
static void matmul_equals_single_dots(void) {
    enum { ROWS = 7, T = 11, NMAX = 4096 + 19 };
    const uint64_t lengths[3] = {NMAX, 64, 48 + 5};
    float *w = malloc(ROWS * NMAX * sizeof *w), *x = malloc(T * NMAX * sizeof *x), y[T * ROWS];
    srand(31);
    for (int i = 0; i < ROWS * NMAX; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < T * NMAX; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    int bad = 0;
    for (int l = 0; l < 3; l++) {
        const uint64_t n = lengths[l];
        gguf_tensor W = {"w", GGML_TYPE_F32, 2, {n, ROWS, 1, 1}, 0, ROWS * n * sizeof(float), w};
        for (int threads = 1; threads <= 2; threads++) {
            const ds4_matmul_ctx mc = {.n_threads = threads, .level = ds4_cpu_detect()};
            ds4_matmul(&mc, &W, 0, ROWS, x, NMAX, T, y, ROWS);
            for (int t = 0; t < T; t++)
                for (int r = 0; r < ROWS; r++) {
                    const float one = ds4_dot(w + (uint64_t)r * n, x + (uint64_t)t * NMAX, n);
                    bad += memcmp(&one, &y[t * ROWS + r], sizeof one) != 0;
                }
        }
    }
    CHECKF(bad == 0, "%d products differ from ds4_dot", bad);
    free(w);
    free(x);
}

/* A batch of products (ds4_matmul_batch) computes each exactly as ds4_matmul does alone,
 * for every weight type's path (F32 rows, F16/Q8_0 read per block for one or two
 * activation rows and converted for more, int8 kernels for the sub-8-bit types), with
 * any mix of row counts, offsets and thread counts. */
static void matmul_batch_equals_single_products(void) {
    enum { N = 512, ROWS = 40, TMAX = 5, PARTS = 12 };
    const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_IQ2_XXS,
                              GGML_TYPE_Q4_K};
    float *w = malloc(ROWS * N * sizeof *w), *x = malloc(TMAX * N * sizeof *x), imp[N];
    srand(77);
    for (int i = 0; i < ROWS * N; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < TMAX * N; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < N; i++) imp[i] = 1.0f;
    uint8_t *q[6];
    gguf_tensor W[6];
    for (int k = 0; k < 6; k++) {
        const uint64_t rb = ds4_row_size(types[k], N);
        q[k] = malloc(ROWS * rb);
        for (int r = 0; r < ROWS; r++)
            CHECK(ds4_quantize_row(types[k], w + (size_t)r * N, q[k] + r * rb, N,
                                   ds4_quantize_needs_imatrix(types[k]) ? imp : NULL) == 0);
        W[k] = (gguf_tensor){"w", types[k], 2, {N, ROWS, 1, 1}, 0, ROWS * rb, q[k]};
    }
    ds4_matmul_part parts[PARTS];
    float one[PARTS][TMAX * ROWS], many[PARTS][TMAX * ROWS];
    int bad = 0;
    for (int rep = 0; rep < 8; rep++)
        for (int threads = 1; threads <= 3; threads += 2) {
            const ds4_matmul_ctx mc = {.n_threads = threads, .level = ds4_cpu_detect()};
            for (int p = 0; p < PARTS; p++) {
                const int T = 1 + (p + rep) % TMAX, row0 = (p * 7 + rep) % 20, n_out = 1 + (p * 5 + rep * 3) % 20;
                parts[p] = (ds4_matmul_part){&W[(p + rep) % 6], (uint64_t)row0, (uint64_t)n_out, x, N, T, many[p],
                                             (uint64_t)n_out};
                ds4_matmul(&mc, parts[p].W, parts[p].row0, parts[p].n_out, x, N, T, one[p], parts[p].n_out);
            }
            ds4_matmul_batch(&mc, parts, PARTS);
            for (int p = 0; p < PARTS; p++)
                bad += memcmp(one[p], many[p], (size_t)parts[p].T * parts[p].n_out * sizeof(float)) != 0;
        }
    CHECKF(bad == 0, "%d products of a batch differ from the same product alone", bad);
    for (int k = 0; k < 6; k++) free(q[k]);
    free(w);
    free(x);
}

/* Two stored Q8_0 rows times four activation rows, at every level that has the kernel:
 * each result is the level's dot2x4 over the converted rows and its rowdot over the
 * stored row, bit for bit (the batched decode and the single one agree through it). */
static void rowdot2x4_matches_converted_rows(void) {
    enum { N = 4096 + 64, LDX = N + 8 };
    const uint64_t rb = ds4_row_size(GGML_TYPE_Q8_0, N);
    float *w = malloc(2 * N * sizeof *w), *wf = malloc(2 * N * sizeof *wf), *x = malloc(4 * LDX * sizeof *x);
    uint8_t *q = malloc(2 * rb);
    srand(53);
    for (int i = 0; i < 2 * N; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < 4 * LDX; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int r = 0; r < 2; r++) {
        CHECK(ds4_quantize_row(GGML_TYPE_Q8_0, w + (size_t)r * N, q + r * rb, N, NULL) == 0);
        CHECK(ds4_row_to_f32(GGML_TYPE_Q8_0, q + r * rb, wf + (size_t)r * N, N) == 0);
    }
    int bad = 0, levels = 0;
    for (int level = 0; level <= 2; level++) {
        const ds4_rowdot2x4_fn fused = ds4_rowdot2x4_for_level(GGML_TYPE_Q8_0, level);
        if (!fused) continue;
        levels++;
        const ds4_dot2x4_fn converted = ds4_dot2x4_for_level(level);
        const ds4_rowdot_fn one = ds4_rowdot_for_level(GGML_TYPE_Q8_0, level);
        float got[2][4], want[2][4];
        fused(q, q + rb, x, LDX, N, got);
        converted(wf, wf + N, x, LDX, N, want);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 4; t++) {
                const float single = one(q + r * rb, x + (size_t)t * LDX, N);
                bad += memcmp(&got[r][t], &want[r][t], sizeof(float)) != 0 || memcmp(&got[r][t], &single, sizeof(float)) != 0;
            }
    }
    CHECKF(bad == 0, "%d of %d results differ", bad, 8 * levels);
    free(w);
    free(wf);
    free(x);
    free(q);
}

/* The hyper-connections' weighted row sums: every level gives the scalar loop's bits,
 * from zero or not, for every tail length. */
static void weighted_sum_matches_scalar_exactly(void) {
    enum { N = 4096 + 13, R = 5 };
    float *rows[R], w[R], want[N], got[N];
    srand(41);
    for (int r = 0; r < R; r++) {
        rows[r] = malloc(N * sizeof(float));
        for (int i = 0; i < N; i++) rows[r][i] = (float)rand() / RAND_MAX * 4 - 2;
        w[r] = (float)rand() / RAND_MAX - 0.5f;
    }
    rows[2][7] = -0.0f;
    w[0] = -0.0f; /* -0 products: from zero they turn +0 */
    int bad = 0;
    for (int level = 0; level <= 2; level++) {
        const ds4_weighted_sum_fn fn = ds4_weighted_sum_for_level(level);
        if (!fn) continue;
        for (int from_zero = 0; from_zero < 2; from_zero++)
            for (uint64_t n = 1; n <= N; n += n < 40 ? 1 : 997) {
                ds4_weighted_sum_scalar(want, (const float *const *)rows, w, R, n, from_zero);
                fn(got, (const float *const *)rows, w, R, n, from_zero);
                bad += memcmp(want, got, n * sizeof(float)) != 0;
            }
    }
    for (int r = 0; r < R; r++) free(rows[r]);
    CHECKF(bad == 0, "%d weighted sums differ from the scalar loop", bad);
    /* RoPE from a table of the position is ds4_rope_apply, bit for bit */
    float inv[32], cs[64], a[128], b[128];
    ds4_rope_freqs(inv, 64, 160000.0f, 16.0f, 65536, 32.0f, 1.0f);
    for (int i = 0; i < 128; i++) a[i] = b[i] = (float)rand() / RAND_MAX - 0.5f;
    ds4_rope_apply(a, 128, 64, inv, 12345, -1);
    ds4_rope_table(cs, 64, inv, 12345);
    ds4_rope_apply_table(b, 128, 64, cs, -1);
    CHECK(!memcmp(a, b, sizeof a));
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

/* The indexer kernel: every level gives the scalar kernel's bits, the scalar kernel is the
 * FMA chain over untransposed keys, and a key's score does not depend on the block. */
static void index_kernel_matches_scalar_exactly(void) {
    static const int dims[] = {4, 16, 32, 128}, heads[] = {1, 2, 4, 5, 64};
    enum { MAXD = 128, MAXH = 64 };
    static float keys[DS4_KEY_BLOCK][MAXD], q[MAXH * MAXD], w[MAXH], kt[DS4_KEY_BLOCK * MAXD];
    float ref[DS4_KEY_BLOCK], got[DS4_KEY_BLOCK], part[DS4_KEY_BLOCK];
    const float *rows[DS4_KEY_BLOCK];
    srand(31);
    ds4_index_fn scalar = ds4_index_for_level(0);
    CHECK(scalar != NULL);
    for (size_t a = 0; a < sizeof dims / sizeof dims[0]; a++)
        for (size_t b = 0; b < sizeof heads / sizeof heads[0]; b++) {
            const int D = dims[a], H = heads[b];
            for (int i = 0; i < DS4_KEY_BLOCK; i++) {
                for (int j = 0; j < D; j++) keys[i][j] = (float)rand() / RAND_MAX - 0.5f;
                rows[i] = keys[i];
            }
            for (int i = 0; i < H * D; i++) q[i] = (float)rand() / RAND_MAX - 0.5f;
            for (int h = 0; h < H; h++) w[h] = (float)rand() / RAND_MAX - 0.3f;
            ds4_keys_transpose(rows, DS4_KEY_BLOCK, D, kt);
            const float floor = 0.01f;
            const uint32_t mask = scalar(kt, D, q, w, H, 0.125f, floor, ref);
            for (int i = 0; i < DS4_KEY_BLOCK; i++) {
                float total = 0.0f;
                for (int h = 0; h < H; h++) {
                    float dot = 0.0f;
                    for (int j = 0; j < D; j++) dot = fmaf(q[h * D + j], keys[i][j], dot);
                    total += (dot > 0.0f ? dot : 0.0f) * 0.125f * w[h];
                }
                CHECKF(ds4_f32_bits(total) == ds4_f32_bits(ref[i]), "dim %d heads %d key %d: %g vs %g", D, H, i,
                       total, ref[i]);
                CHECK(((mask >> i) & 1) == !(ref[i] < floor));
            }
            for (int level = 1; level <= 2; level++) {
                ds4_index_fn fn = ds4_index_for_level(level);
                if (!fn) continue;
                CHECK(fn(kt, D, q, w, H, 0.125f, floor, got) == mask);
                CHECKF(!memcmp(got, ref, sizeof ref), "level %d dim %d heads %d differs", level, D, H);
            }
            /* a partial block: the first 5 keys score as in the full one */
            ds4_keys_transpose(rows, 5, D, kt);
            ds4_index_for_level((int)ds4_cpu_detect())(kt, D, q, w, H, 0.125f, -INFINITY, part);
            CHECK(!memcmp(part, ref, 5 * sizeof(float)));
        }
}

/* torch.topk's order (radix order of the bits, -0 below +0, lower index first among
 * equal scores) against a full sort, streamed, split into merged parts, with ties. */
static int by_rank(const void *a, const void *b) {
    const float *sa = a, *sb = b; /* pairs of (score, index) */
    uint32_t ka = ds4_f32_bits(sa[0]), kb = ds4_f32_bits(sb[0]);
    ka = (ka & 0x80000000u) ? ~ka : ka | 0x80000000u;
    kb = (kb & 0x80000000u) ? ~kb : kb | 0x80000000u;
    if (ka != kb) return ka > kb ? -1 : 1;
    return sa[1] < sb[1] ? -1 : sa[1] > sb[1];
}

static int by_value(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void topk_matches_full_sort(void) {
    enum { N = 3000 };
    static float score[N], pairs[N][2];
    static uint64_t want[N], got[N], store[4][512];
    static const uint32_t ks[] = {1, 5, 16, 128, 512};
    srand(37);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            const int r = rand() % 10;
            score[i] = r < 3 ? 0.0f : r == 3 ? -0.0f : r == 4 ? 0.25f : (float)rand() / RAND_MAX - 0.2f;
            if (round == 2) score[i] = (float)(rand() % 7); /* many exact ties */
            pairs[i][0] = score[i], pairs[i][1] = (float)i;
        }
        qsort(pairs, N, sizeof pairs[0], by_rank);
        for (size_t a = 0; a < sizeof ks / sizeof ks[0]; a++) {
            const uint32_t k = ks[a];
            for (uint32_t i = 0; i < k; i++) want[i] = (uint64_t)pairs[i][1];
            qsort(want, k, sizeof want[0], by_value);
            ds4_topk whole, part[3];
            ds4_topk_reset(&whole, store[0], k);
            for (int i = 0; i < N; i++) ds4_topk_push(&whole, score[i], (uint32_t)i);
            CHECK(ds4_topk_indices(&whole, got) == k);
            CHECKF(!memcmp(got, want, k * sizeof got[0]), "round %d, k %u: streamed top-k differs", round, k);
            for (int p = 0; p < 3; p++) {
                ds4_topk_reset(&part[p], store[1 + p], k);
                for (int i = p * N / 3; i < (p + 1) * N / 3; i++) ds4_topk_push(&part[p], score[i], (uint32_t)i);
            }
            ds4_topk_reset(&whole, store[0], k);
            for (int p = 2; p >= 0; p--) ds4_topk_merge(&whole, &part[p]);
            CHECK(ds4_topk_indices(&whole, got) == k);
            CHECKF(!memcmp(got, want, k * sizeof got[0]), "round %d, k %u: merged top-k differs", round, k);
        }
    }
    ds4_topk few;
    ds4_topk_reset(&few, store[0], 8);
    ds4_topk_push(&few, 1.0f, 7);
    ds4_topk_push(&few, 2.0f, 3);
    CHECK(ds4_topk_indices(&few, got) == 2 && got[0] == 3 && got[1] == 7);
}

const test_case forward_tests[] = {
    {"chunked_prefill_and_decode_match_full_pass", chunked_prefill_and_decode_match_full_pass},
    {"threads_agree", threads_agree},
    {"bad_tokens_leave_state_untouched", bad_tokens_leave_state_untouched},
    {"kv_state_grows_by_compressed_entries_only", kv_state_grows_by_compressed_entries_only},
    {"simd_dot_matches_scalar", simd_dot_matches_scalar},
    {"rowdot_matches_reference", rowdot_matches_reference},
    {"matmul_equals_single_dots", matmul_equals_single_dots},
    {"matmul_batch_equals_single_products", matmul_batch_equals_single_products},
    {"axpy_matches_scalar_exactly", axpy_matches_scalar_exactly},
    {"rowdot2x4_matches_converted_rows", rowdot2x4_matches_converted_rows},
    {"weighted_sum_matches_scalar_exactly", weighted_sum_matches_scalar_exactly},
    {"index_kernel_matches_scalar_exactly", index_kernel_matches_scalar_exactly},
    {"topk_matches_full_sort", topk_matches_full_sort},
    {"sampler", sampler},
    {0, 0},
};
