/* Each stage of a backend's table run from the same inputs on two backends and compared
 * (ggml's test-backend-ops idea): here the CPU backend at the best SIMD level this CPU
 * has against the CPU backend held to its scalar kernels, the reference math. A build
 * with another backend runs the same stages against the CPU.
 *
 * Tolerance: a SIMD dot product is within 1e-5 of the sum of |a_i b_i| of the scalar one
 * (vec.h); for terms of random sign that sum is about sqrt(n) times the size of the
 * result, so each output row of a stage is held to 1e-5 * sqrt(D) * its rms (D the
 * model width, the longest reduction of the test models). Stages without dot products
 * (embed) must agree bit for bit, as must positions and counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "fill.h"
#include "forward.h"
#include "hf_config.h"
#include "recipe.h"
#include "synth.h"
#include "test.h"
#include "types.h"

typedef struct {
    const ds4_backend_ops *ops;
    ds4_backend *b;
} side;

static void fill(float *x, size_t n, unsigned *seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)rand_r(seed) / RAND_MAX * 2.0f - 1.0f;
}

/* The worst row of got against want in units of the tolerance (<= 1 passes). */
static double rows_error(const float *got, const float *want, int rows, uint64_t n, uint64_t width) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        const float *g = got + (uint64_t)r * n, *w = want + (uint64_t)r * n;
        double sq = 0, err = 0;
        for (uint64_t i = 0; i < n; i++) {
            sq += (double)w[i] * w[i];
            const double d = fabs((double)g[i] - w[i]);
            err = d > err || isnan(d) ? d : err;
        }
        const double tol = 1e-5 * sqrt((double)width) * sqrt(sq / (double)n) + 1e-30;
        const double e = err / tol;
        worst = e > worst || isnan(e) ? e : worst;
    }
    return worst;
}

/* One chunk buffer of both sides, compared. */
static double chunk_error(side s[2], ds4_chunk_buf buf, int T, const ds4_config *c) {
    const uint64_t n = ds4_chunk_floats(c, buf);
    float *a = malloc((size_t)T * n * sizeof *a), *b = malloc((size_t)T * n * sizeof *b);
    double e = INFINITY;
    if (s[0].ops->chunk_read(s[0].b, buf, T, a) == 0 && s[1].ops->chunk_read(s[1].b, buf, T, b) == 0)
        e = rows_error(a, b, T, n, c->n_embd);
    free(a);
    free(b);
    return e;
}

/* The same random chunk buffer into both sides. */
static int write_both(side s[2], ds4_chunk_buf buf, int T, const ds4_config *c, unsigned *seed) {
    const uint64_t n = ds4_chunk_floats(c, buf);
    float *x = malloc((size_t)T * n * sizeof *x);
    fill(x, (size_t)T * n, seed);
    const int rc = s[0].ops->chunk_write(s[0].b, buf, T, x) | s[1].ops->chunk_write(s[1].b, buf, T, x);
    free(x);
    return rc;
}

static double compressor_error(const ds4_kv_compressor *a, const ds4_kv_compressor *b, uint64_t width) {
    if (!a->width) return 0;
    if (a->n_buf != b->n_buf || a->has_prev != b->has_prev || a->n_entries != b->n_entries) return INFINITY;
    double e = rows_error(a->buf_kv, b->buf_kv, (int)a->ratio, ds4_kv_proj(a), width);
    e = fmax(e, rows_error(a->buf_gate, b->buf_gate, (int)a->ratio, ds4_kv_proj(a), width));
    if (a->n_entries) e = fmax(e, rows_error(a->entries, b->entries, (int)a->n_entries, a->width, width));
    return e;
}

/* Both sides' KV states compared: counts and positions exactly, values to the tolerance. */
static double state_error(side s[2], const ds4_model *m) {
    ds4_kv_snapshot st[2];
    double e = INFINITY;
    if (ds4_model_kv_snapshot(m, &st[0]) < 0) return e;
    if (ds4_model_kv_snapshot(m, &st[1]) == 0) {
        if (s[0].ops->state_get(s[0].b, 0, &st[0]) == 0 && s[1].ops->state_get(s[1].b, 0, &st[1]) == 0) {
            e = 0;
            for (uint32_t il = 0; il < st[0].n_layer; il++) {
                const ds4_kv_layer *a = &st[0].layers[il], *b = &st[1].layers[il];
                if (memcmp(a->window_pos, b->window_pos, a->cap * sizeof *a->window_pos)) e = INFINITY;
                e = fmax(e, rows_error(a->window_kv, b->window_kv, (int)a->cap, a->dim, m->cfg.n_embd));
                e = fmax(e, compressor_error(&a->comp, &b->comp, m->cfg.n_embd));
                e = fmax(e, compressor_error(&a->indexer, &b->indexer, m->cfg.n_embd));
            }
        }
        ds4_kv_snapshot_free(&st[1]);
    }
    ds4_kv_snapshot_free(&st[0]);
    return e;
}

#define STAGE_BOTH(call_a, call_b) CHECKF((call_a) == 0 && (call_b) == 0, "%s", ds4_error())

/* Every stage of every layer for a chunk of T tokens after a primed state of P tokens:
 * `backend` (the CPU at its best SIMD level, or a GPU) against the CPU's scalar kernels,
 * each stage within `slack` times the tolerance (embed exactly). */
static void stages_agree(const ds4_model *m, ds4_act_mode act, int T, const char *backend, double slack) {
    const ds4_config *c = &m->cfg;
    enum { P = 203 }; /* past the window and several compressor windows */
    const char *levels[2] = {NULL, "scalar"}, *names_of[2] = {backend, "cpu"};
    side s[2];
    for (int k = 0; k < 2; k++) {
        s[k].ops = ds4_backend_find(names_of[k], NULL);
        const ds4_ctx_opts o = {.n_threads = 2, .act = act, .cpu_level = levels[k]};
        CHECKF(s[k].ops && s[k].ops->open(m, &o, &s[k].b) == 0, "%s", ds4_error());
    }
    /* the primed state: the reference context's after P random tokens */
    ds4_ctx *ref = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2, .act = act, .cpu_level = "scalar"});
    int32_t ids[P];
    unsigned seed = 7;
    for (int i = 0; i < P; i++) ids[i] = (int32_t)(rand_r(&seed) % c->n_vocab);
    ds4_kv_snapshot primed;
    CHECK(ref && ds4_model_kv_snapshot(m, &primed) == 0);
    CHECKF(ds4_eval(ref, ids, P, NULL, false) == 0 && ds4_ctx_state_get(ref, &primed) == 0, "%s", ds4_error());
    float *logits[2] = {malloc((size_t)T * c->n_vocab * sizeof(float)), malloc((size_t)T * c->n_vocab * sizeof(float))};
    double worst[9] = {0};
    const char *names[9] = {"embed", "hc_pre", "attn_project q", "attn_project kv", "kv_append", "attend",
                            "hc_post", "ffn", "head"};
    int32_t tokens[64];
    for (int t = 0; t < T; t++) tokens[t] = (int32_t)(rand_r(&seed) % c->n_vocab);
    const ds4_segment seg = {0, 0, T, P};
    const ds4_chunk ch = {&seg, 1, T};
    for (uint32_t il = 0; il < c->n_layer; il++) {
        for (int k = 0; k < 2; k++) CHECK(s[k].ops->state_set(s[k].b, 0, &primed) == 0);
        STAGE_BOTH(s[0].ops->embed(s[0].b, tokens, T), s[1].ops->embed(s[1].b, tokens, T));
        worst[0] = fmax(worst[0], chunk_error(s, DS4_CHUNK_STREAMS, T, c));
        CHECK(write_both(s, DS4_CHUNK_STREAMS, T, c, &seed) == 0);
        for (int k = 0; k < 2; k++) CHECK(s[k].ops->hc_pre(s[k].b, (int)il, DS4_SITE_ATTN, T) == 0);
        worst[1] = fmax(worst[1], chunk_error(s, DS4_CHUNK_X, T, c));
        CHECK(write_both(s, DS4_CHUNK_X, T, c, &seed) == 0);
        for (int k = 0; k < 2; k++) CHECK(s[k].ops->attn_project(s[k].b, (int)il, &ch) == 0);
        worst[2] = fmax(worst[2], chunk_error(s, DS4_CHUNK_Q, T, c));
        worst[3] = fmax(worst[3], chunk_error(s, DS4_CHUNK_KV, T, c));
        for (int k = 0; k < 2; k++) CHECK(s[k].ops->kv_append(s[k].b, (int)il, &ch) == 0);
        worst[4] = fmax(worst[4], state_error(s, m));
        for (int k = 0; k < 2 && c->kind[il] == DS4_LAYER_CSA; k++)
            CHECK(s[k].ops->indexer_select(s[k].b, (int)il, &ch) == 0);
        for (int k = 0; k < 2; k++) CHECK(s[k].ops->attend(s[k].b, (int)il, &ch) == 0);
        worst[5] = fmax(worst[5], chunk_error(s, DS4_CHUNK_Y, T, c));
        CHECK(write_both(s, DS4_CHUNK_Y, T, c, &seed) == 0);
        for (int k = 0; k < 2; k++) CHECK(s[k].ops->hc_post(s[k].b, (int)il, DS4_SITE_ATTN, T) == 0);
        worst[6] = fmax(worst[6], chunk_error(s, DS4_CHUNK_STREAMS, T, c));
        CHECK(write_both(s, DS4_CHUNK_X, T, c, &seed) == 0);
        for (int k = 0; k < 2; k++) CHECK(s[k].ops->ffn(s[k].b, (int)il, tokens, T) == 0);
        worst[7] = fmax(worst[7], chunk_error(s, DS4_CHUNK_Y, T, c));
    }
    CHECK(write_both(s, DS4_CHUNK_STREAMS, T, c, &seed) == 0);
    int rows[64];
    float *out[2][64];
    for (int t = 0; t < T; t++) {
        rows[t] = t;
        for (int k = 0; k < 2; k++) out[k][t] = logits[k] + (size_t)t * c->n_vocab;
    }
    for (int k = 0; k < 2; k++) CHECK(s[k].ops->head(s[k].b, rows, out[k], T) == 0);
    worst[8] = rows_error(logits[0], logits[1], T, c->n_vocab, c->n_embd);
    for (int i = 0; i < 9; i++) {
        if (strcmp(backend, "cpu")) printf("    %s T %d %s: %.3g of the tolerance\n", s[0].ops->describe(s[0].b), T,
                                           names[i], worst[i]);
        CHECKF(worst[i] <= (i == 0 ? 0 : slack), "stage %s (T %d, %s): %.3g of the tolerance", names[i], T,
               s[0].ops->describe(s[0].b), worst[i]);
    }
    free(logits[0]);
    free(logits[1]);
    ds4_kv_snapshot_free(&primed);
    ds4_ctx_free(ref);
    for (int k = 0; k < 2; k++) s[k].ops->close(s[k].b);
}

static void cpu_stages_match_scalar_f32(void) {
    ds4_model *m = test_model("tiny-a", GGML_TYPE_F32, NULL);
    CHECKF(m, "%s", ds4_error());
    stages_agree(m, DS4_ACT_AUTO, 1, "cpu", 1);
    stages_agree(m, DS4_ACT_AUTO, 5, "cpu", 1);
    ds4_model_free(m);
}

/* Q8_0 weights with int8 activations: the qdot kernels. */
static void cpu_stages_match_scalar_q8(void) {
    ds4_model *m = test_model("tiny-a", GGML_TYPE_Q8_0, NULL);
    CHECKF(m, "%s", ds4_error());
    stages_agree(m, DS4_ACT_Q8, 1, "cpu", 1);
    stages_agree(m, DS4_ACT_F32, 5, "cpu", 1);
    ds4_model_free(m);
}

/* The CUDA backend's stages against the CPU's scalar ones (skipped without CUDA or a
 * GPU): F32 and Q8_0 weights (F32 activations: the device's products), a decoded token
 * and a chunk of 37 (several segments' worth of window and compressor windows). The GPU
 * sums in other orders than the CPU and its expf differs in the last bit, hence twice
 * the CPU's tolerance. */
static void cuda_stages_match_cpu(void) {
    if (!ds4_backend_find("cuda", NULL)) {
        test_skip("no CUDA backend in this build");
        return;
    }
    ds4_model *m = test_model("tiny-a", GGML_TYPE_F32, NULL);
    CHECKF(m, "%s", ds4_error());
    ds4_ctx *probe = ds4_ctx_new(m, &(ds4_ctx_opts){.backend = "cuda"});
    if (!probe) {
        test_skip(ds4_error());
        ds4_model_free(m);
        return;
    }
    ds4_ctx_free(probe);
    stages_agree(m, DS4_ACT_F32, 1, "cuda", 2);
    stages_agree(m, DS4_ACT_F32, 37, "cuda", 2);
    ds4_model_free(m);
    m = test_model("tiny-a", GGML_TYPE_Q8_0, NULL);
    CHECKF(m, "%s", ds4_error());
    stages_agree(m, DS4_ACT_F32, 1, "cuda", 2);
    stages_agree(m, DS4_ACT_F32, 37, "cuda", 2);
    ds4_model_free(m);
}

/* The registry: a known backend missing from the build and an unknown name are refused
 * (never a silent CPU), and the compiled ones are named. */
static void registry_refuses_missing_backends(void) {
    bool not_built = false;
    CHECK(ds4_backend_find(NULL, NULL) == ds4_backend_find("cpu", NULL));
    CHECK(!ds4_backend_find("metal", &not_built) && not_built && strstr(ds4_error(), "metal: not in this build"));
    CHECK(!ds4_backend_find("tpu", &not_built) && !not_built && strstr(ds4_error(), "unknown backend 'tpu'") &&
          strstr(ds4_error(), "cpu"));
    CHECK(strstr(ds4_backend_names(), "cpu") != NULL);
    ds4_model *m = test_model("tiny-a", GGML_TYPE_F32, NULL);
    CHECKF(m, "%s", ds4_error());
    CHECK(ds4_ctx_new(m, &(ds4_ctx_opts){.backend = "metal"}) == NULL);
    CHECK(ds4_ctx_new(m, &(ds4_ctx_opts){.cpu_level = "sse9"}) == NULL && strstr(ds4_error(), "sse9"));
    /* a bounded context refuses what does not fit, and keeps its state */
    ds4_ctx *c = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 1, .kv_capacity = 8});
    const int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    CHECK(c && ds4_eval(c, ids, 5, NULL, false) == 0);
    CHECK(ds4_eval(c, ids, 4, NULL, false) < 0 && strstr(ds4_error(), "holds 8 tokens") && ds4_ctx_pos(c) == 5);
    CHECK(ds4_eval(c, ids, 3, NULL, false) == 0 && ds4_ctx_pos(c) == 8);
    ds4_ctx_free(c);
    ds4_model_free(m);
}

/* A synthetic model with holes (ds4-bench --synthetic on a GPU): every filled tensor's
 * rows, made as a backend makes them (ds4_fill_rows), are the bytes of the same model
 * written whole; the rest of the file is the same; the CPU refuses it in one message. */
static void synthetic_holes_are_the_whole_file(void) {
    ds4_hf_config hf;
    CHECKF(ds4_hf_config_load("vectors/models/tiny-a/config.json", &hf) == 0, "%s", ds4_error());
    ds4_recipe *r = ds4_recipe_new("q2");
    CHECK(r);
    char whole[600], holes[600];
    snprintf(whole, sizeof whole, "%s/syn-whole.gguf", test_tmpdir());
    snprintf(holes, sizeof holes, "%s/syn-holes.gguf", test_tmpdir());
    ds4_synth_opts o = {.cfg = &hf.cfg, .recipe = r, .out_path = whole, .seed = 9, .n_threads = 2, .fast = true};
    ds4_synth_stats st;
    CHECKF(ds4_synth(&o, &st) == 0 && st.n_fills == 0, "%s", ds4_error());
    o.out_path = holes;
    o.holes = true;
    CHECKF(ds4_synth(&o, &st) == 0 && st.n_fills > 0, "%s", ds4_error());
    ds4_recipe_free(r);
    ds4_model *a = ds4_model_load(whole), *b = ds4_model_load(holes);
    CHECK(a && b && ds4_model_attach_fills(b, st.fills, st.n_fills) == 0);
    CHECK(a->gguf->n_tensors == b->gguf->n_tensors && ds4_model_fingerprint(a) == ds4_model_fingerprint(b));
    int filled = 0;
    for (uint64_t i = 0; i < a->gguf->n_tensors; i++) {
        const gguf_tensor *ta = &a->gguf->tensors[i], *tb = &b->gguf->tensors[i];
        const ds4_tensor_fill *f = ds4_model_fill(b, tb);
        uint8_t *made = f ? malloc(tb->size) : NULL;
        if (f) ds4_fill_rows(f, 0, f->n_rows, made), filled++;
        CHECKF(ta->size == tb->size && !memcmp(ta->data, f ? made : tb->data, ta->size), "tensor %s", ta->name);
        free(made);
        CHECKF(!f || ds4_type_get(ta->type)->block > 1, "%s filled", ta->name);
    }
    CHECK(filled == (int)b->n_fills);
    CHECK(!ds4_ctx_new(b, &(ds4_ctx_opts){.n_threads = 1}) && strstr(ds4_error(), "synthetic model"));
    ds4_model_free(a);
    ds4_model_free(b);
}

const test_case backend_tests[] = {
    {"synthetic_holes_are_the_whole_file", synthetic_holes_are_the_whole_file},
    {"cpu_stages_match_scalar_f32", cpu_stages_match_scalar_f32},
    {"cpu_stages_match_scalar_q8", cpu_stages_match_scalar_q8},
    {"cuda_stages_match_cpu", cuda_stages_match_cpu},
    {"registry_refuses_missing_backends", registry_refuses_missing_backends},
    {0, 0},
};
