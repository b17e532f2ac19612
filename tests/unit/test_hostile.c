/* Hostile models: hash-routing tables that repeat an expert, are all zero or name
 * experts that do not exist; sizes in the metadata that no tensor bounds. Each either
 * computes (as transformers does) or is refused in one line, and never crashes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "quants.h"
#include "safetensors.h"
#include "st_image.h"
#include "test.h"
#include "util.h"

#define MODELS "vectors/models"

static const char *tmp_path(const char *name) {
    static char path[8][600];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 600, "%s/%s", test_tmpdir(), name);
    return p;
}

/* tiny-a in F32: two hash-routed layers, 8 experts, 2 per token, 512 tokens. */
static const char *tiny_a(void) {
    const char *out = tmp_path("hostile-tiny-a.gguf");
    ds4_convert_opts o = {.in_dir = MODELS "/tiny-a", .out_path = out, .type = GGML_TYPE_F32, .n_threads = 2};
    ds4_convert_stats s;
    if (access(out, F_OK) != 0 && ds4_convert(&o, &s) < 0) return NULL;
    return out;
}

/* The hash tables of tests/logitcheck.sh's tiny-a-hash case (scripts/ref_vectors.py
 * --hash-tables builds the same): layer 0 sends token t to expert (3t + 1) mod E in
 * every slot, layer 1 sends every token to expert 0 in every slot. */
typedef void (*table_fn)(int layer, uint32_t token, int32_t *row, uint32_t K, uint32_t E, void *arg);
static void repeated_tables(int layer, uint32_t token, int32_t *row, uint32_t K, uint32_t E, void *arg) {
    (void)arg;
    for (uint32_t k = 0; k < K; k++) row[k] = layer == 0 ? (int32_t)((3 * token + 1) % E) : 0;
}
/* One entry of layer 1 set to *(int32_t *)arg, the rest as they were. */
static void one_bad_id(int layer, uint32_t token, int32_t *row, uint32_t K, uint32_t E, void *arg) {
    (void)K; (void)E;
    if (layer == 1 && token == 77) row[1] = *(const int32_t *)arg;
}

/* A copy of src whose hash tables `fn` rewrites, row by row. */
static int patch_tables(const char *src, const char *dst, table_fn fn, void *arg) {
    ds4_model *m = ds4_model_load(src);
    size_t len;
    uint8_t *bytes = (uint8_t *)ds4_read_file(src, &len);
    if (!m || !bytes) return -1;
    const uint32_t K = m->cfg.n_expert_used, E = m->cfg.n_expert;
    for (uint32_t il = 0; il < m->cfg.n_hash_layers; il++) {
        const gguf_tensor *t = ds4_model_tensor(m, (int)il, DS4_T_FFN_TID2EID);
        uint8_t *at = bytes + ((const uint8_t *)t->data - m->gguf->base);
        for (uint32_t tok = 0; tok < m->cfg.n_vocab; tok++) {
            int32_t row[64];
            memcpy(row, at + (size_t)tok * K * 4, K * 4);
            fn((int)il, tok, row, K, E, arg);
            memcpy(at + (size_t)tok * K * 4, row, K * 4);
        }
    }
    ds4_model_free(m);
    const int rc = ds4_write_file_atomic(dst, bytes, len);
    free(bytes);
    return rc;
}

static bool all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

/* A repeated expert counts once per slot, as in transformers; an all-zero table sends
 * everything to expert 0 twice. Such a model loads and computes, chunked and one pass
 * alike. (Its logits against transformers: tests/logitcheck.sh, vectors/ref-hash.) */
static void repeated_and_zero_hash_tables_compute(void) {
    /* kept for tests/logitcheck.sh, which holds it to transformers */
    const char *src = tiny_a(), *dst = "build/tests/models/tiny-a-hash-repeated.gguf";
    mkdir("build/tests/models", 0755);
    CHECKF(src, "%s", ds4_error());
    CHECKF(patch_tables(src, dst, repeated_tables, NULL) == 0, "%s", ds4_error());
    ds4_model *m = ds4_model_load(dst);
    CHECKF(m, "%s", ds4_error());
    ds4_ctx *c = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
    const int n = 300; /* more rows for expert 0 than tokens in a chunk */
    const uint32_t V = m->cfg.n_vocab;
    int32_t *ids = malloc(n * sizeof *ids);
    float *full = malloc((size_t)n * V * sizeof *full), *part = malloc((size_t)n * V * sizeof *part);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 37 + 11) % V);
    CHECK(c && ds4_eval(c, ids, n, full, true) == 0);
    CHECK(all_finite(full, (size_t)n * V));
    ds4_ctx_reset(c);
    for (int i = 0; i < n; i += 7)
        CHECK(ds4_eval(c, ids + i, n - i < 7 ? n - i : 7, part + (size_t)i * V, true) == 0);
    double d = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) d = fmax(d, fabs((double)full[i] - part[i]));
    CHECKF(d == 0, "chunks of 7 differ from one pass by %g", d);
    free(ids); free(full); free(part);
    ds4_ctx_free(c);
    ds4_model_free(m);
}

/* An id below 0 or past the last expert is refused at load, in one line. */
static void out_of_range_hash_ids_refused(void) {
    const char *src = tiny_a(), *dst = tmp_path("hash-bad.gguf");
    CHECK(src);
    const int32_t bad[] = {-1, 8, 1 << 30};
    for (int i = 0; i < 3; i++) {
        CHECK(patch_tables(src, dst, one_bad_id, (void *)&bad[i]) == 0);
        CHECK(!ds4_model_load(dst));
        const char *e = ds4_error();
        char want[64];
        snprintf(want, sizeof want, "names expert %d", bad[i]);
        CHECKF(strstr(e, "blk.1.ffn_gate_tid2eid.weight: token 77, slot 1") && strstr(e, want) && !strchr(e, '\n'),
               "%s", e);
    }
}

/* The converter refuses the same ids in the checkpoint and leaves no output. */
static void convert_refuses_bad_ids(void) {
    char dir[600], cmd[1400];
    snprintf(dir, sizeof dir, "%s/bad-ids", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp " MODELS "/tiny-a/config.json %s/", dir, dir);
    CHECK(system(cmd) == 0);
    st_model *st = ds4_st_open(MODELS "/tiny-a");
    CHECK(st);
    st_image im = {0};
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (!strcmp(t->name, "model.layers.1.ffn.gate.tid2eid")) {
            int64_t *ids = malloc(t->nbytes);
            memcpy(ids, t->data, t->nbytes);
            ids[99] = -5;
            st_image_add(&im, t->name, "I64", (int)t->n_dims, t->shape, ids, t->nbytes);
            free(ids);
            continue;
        }
        st_image_add(&im, t->name, ds4_st_dtype_name(t->dtype), (int)t->n_dims, t->shape, t->data, t->nbytes);
    }
    ds4_st_close(st);
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", dir);
    CHECK(st_image_write(&im, cmd) == 0);
    const char *out = tmp_path("bad-ids.gguf");
    ds4_convert_opts o = {.in_dir = dir, .out_path = out, .type = GGML_TYPE_F32, .n_threads = 2};
    ds4_convert_stats s;
    CHECK(ds4_convert(&o, &s) < 0);
    CHECKF(strstr(ds4_error(), "expert id -5") && !strchr(ds4_error(), '\n'), "%s", ds4_error());
    CHECK(access(out, F_OK) != 0);
    snprintf(cmd, sizeof cmd, "ls %s/bad-ids.gguf.tmp.* >/dev/null 2>&1", test_tmpdir());
    CHECK(system(cmd) != 0);
}

/* A copy of src with one u32 metadata value replaced. */
static int with_u32(const char *src, const char *dst, const char *key, uint32_t value) {
    gguf_file *f = ds4_gguf_open(src);
    gguf_writer *w = ds4_gguf_writer_open(dst);
    int rc = f && w ? 0 : -1;
    for (uint64_t i = 0; rc == 0 && i < f->n_kv; i++) {
        char k[256];
        snprintf(k, sizeof k, "%.*s", (int)f->kv[i].key.len, f->kv[i].key.ptr);
        rc = !strcmp(k, key) ? ds4_gguf_writer_kv_u32(w, k, value) : ds4_gguf_writer_kv(w, k, &f->kv[i].value);
    }
    for (uint64_t i = 0; rc == 0 && i < f->n_tensors; i++)
        rc = ds4_gguf_writer_add_tensor(w, f->tensors[i].name, f->tensors[i].type, f->tensors[i].n_dims,
                                    f->tensors[i].ne);
    for (uint64_t i = 0; rc == 0 && i < f->n_tensors; i++) rc = ds4_gguf_writer_write(w, f->tensors[i].data, f->tensors[i].size);
    ds4_gguf_close(f);
    if (rc == 0) return ds4_gguf_writer_finish(w);
    if (w) ds4_gguf_writer_abort(w);
    return -1;
}

/* Window, top-k and iteration counts size buffers and loops without any tensor to bound
 * them: absurd values are refused at load, naming the key. */
static void unbounded_sizes_refused(void) {
    const char *src = tiny_a(), *dst = tmp_path("sizes.gguf");
    CHECK(src);
    const struct { const char *key, *name; uint32_t value; } cases[] = {
        {"deepseek4.attention.sliding_window", "sliding_window", 1u << 30},
        {"deepseek4.attention.indexer.top_k", "top_k", 4000000000u},
        {"deepseek4.hyper_connection.sinkhorn_iterations", "sinkhorn_iterations", 3000000000u},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(with_u32(src, dst, cases[i].key, cases[i].value) == 0);
        CHECK(!ds4_model_load(dst));
        CHECKF(strstr(ds4_error(), cases[i].name) && strstr(ds4_error(), "implausibly large"), "%s", ds4_error());
    }
}

const test_case hostile_tests[] = {
    {"repeated_and_zero_hash_tables_compute", repeated_and_zero_hash_tables_compute},
    {"out_of_range_hash_ids_refused", out_of_range_hash_ids_refused},
    {"convert_refuses_bad_ids", convert_refuses_bad_ids},
    {"unbounded_sizes_refused", unbounded_sizes_refused},
    {0, 0},
};
