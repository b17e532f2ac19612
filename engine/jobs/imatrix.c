/* imatrix.c - see imatrix.h. */
#include "imatrix.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "forward.h"
#include "ops.h"
#include "progress.h"
#include "quants.h"
#include "tokenizer.h"
#include "util.h"

typedef struct {
    char *name;
    uint64_t cols, n_mat;
    float *sum2;   /* cols * n_mat, owned when collecting */
    float *counts; /* n_mat */
    const gguf_tensor *sum2_t, *counts_t; /* when loaded: straight from the file */
} entry;

struct ds4_imatrix {
    entry *e;
    size_t n;
    ds4_strmap by_name;
    gguf_file *file; /* when loaded */
};

static entry *find(const ds4_imatrix *im, const char *name) {
    uint64_t i;
    return ds4_strmap_get(&im->by_name, name, strlen(name), &i) ? &im->e[i] : NULL;
}

void ds4_imatrix_free(ds4_imatrix *im) {
    if (!im) return;
    for (size_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        if (!im->file) {
            free(im->e[i].sum2);
            free(im->e[i].counts);
        }
    }
    free(im->e);
    ds4_strmap_free(&im->by_name);
    ds4_gguf_close(im->file);
    free(im);
}

static int add_entry(ds4_imatrix *im, const char *name, size_t len) {
    entry *e = &im->e[im->n];
    if (!(e->name = ds4_strndup(name, len))) return -1;
    if (ds4_strmap_put(&im->by_name, e->name, len, im->n) == 0) return ds4_fail("imatrix names '%s' twice", e->name);
    im->n++;
    return 0;
}

ds4_imatrix *ds4_imatrix_load(const char *path) {
    gguf_file *f = ds4_gguf_open(path);
    if (!f) return NULL;
    gguf_str type;
    ds4_imatrix *im = ds4_calloc(1, sizeof *im);
    if (!im) { ds4_gguf_close(f); return NULL; }
    im->file = f;
    if (!ds4_gguf_get_str(f, "general.type", &type) || !ds4_gguf_str_eq(type, "imatrix")) {
        ds4_fail("%s is a GGUF but not an importance matrix (general.type is not \"imatrix\")", path);
        goto fail;
    }
    if (!(im->e = ds4_calloc(f->n_tensors + 1, sizeof *im->e)) || ds4_strmap_init(&im->by_name, f->n_tensors + 1) < 0)
        goto fail;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        const size_t len = strlen(t->name);
        if (len < 9 || strcmp(t->name + len - 8, ".in_sum2")) continue;
        char counts_name[GGUF_MAX_NAME + 8];
        snprintf(counts_name, sizeof counts_name, "%.*s.counts", (int)(len - 8), t->name);
        const gguf_tensor *c = ds4_gguf_find_tensor(f, counts_name);
        if (!c || t->type != GGML_TYPE_F32 || c->type != GGML_TYPE_F32 || c->ne[0] != 1 || c->ne[1] != t->ne[1] ||
            t->ne[2] != 1 || c->ne[2] != 1) {
            ds4_fail("%s: %s has no matching F32 .counts [1, %llu]", path, t->name, (unsigned long long)t->ne[1]);
            goto fail;
        }
        if (add_entry(im, t->name, len - 8) < 0) goto fail;
        entry *e = &im->e[im->n - 1];
        e->cols = t->ne[0];
        e->n_mat = t->ne[1];
        e->sum2_t = t;
        e->counts_t = c;
    }
    if (!im->n) {
        ds4_fail("%s: an importance matrix with no *.in_sum2 tensors", path);
        goto fail;
    }
    return im;
fail:
    ds4_imatrix_free(im);
    return NULL;
}

int ds4_imatrix_get(const ds4_imatrix *im, const char *name, uint64_t mat, uint64_t cols, float *out) {
    const entry *e = find(im, name);
    if (!e) return 0;
    if (e->cols != cols || mat >= e->n_mat)
        return ds4_fail("importance matrix for %s has %llu columns x %llu matrices; the tensor needs %llu x %llu",
                        name, (unsigned long long)e->cols, (unsigned long long)e->n_mat, (unsigned long long)cols,
                        (unsigned long long)mat + 1);
    float count;
    const float *sum2 = e->sum2;
    if (e->counts_t) {
        memcpy(&count, (const float *)e->counts_t->data + mat, sizeof count);
        sum2 = e->sum2_t->data;
    } else {
        count = e->counts[mat];
    }
    if (!(count > 0)) return 0;
    memcpy(out, sum2 + mat * cols, cols * sizeof *out);
    for (uint64_t i = 0; i < cols; i++) out[i] /= count;
    return 1;
}

/* ---- collection ---- */

static void observe(void *ctx, const gguf_tensor *W, uint64_t row0, const float *x, uint64_t ldx, int T) {
    entry *e = find(ctx, W->name);
    if (!e) return;
    const uint64_t mat = W->n_dims >= 3 && W->ne[1] ? row0 / W->ne[1] : 0;
    if (mat >= e->n_mat) return;
    float *s = e->sum2 + mat * e->cols;
    for (int t = 0; t < T; t++)
        for (uint64_t i = 0; i < e->cols; i++) s[i] += x[(uint64_t)t * ldx + i] * x[(uint64_t)t * ldx + i];
    e->counts[mat] += (float)T;
}

/* An empty collector for every matrix of model m (observe feeds it). */
static ds4_imatrix *collector(const ds4_model *m) {
    const gguf_file *f = m->gguf;
    ds4_imatrix *im = ds4_calloc(1, sizeof *im);
    if (!im || !(im->e = ds4_calloc(f->n_tensors + 1, sizeof *im->e)) ||
        ds4_strmap_init(&im->by_name, f->n_tensors + 1) < 0)
        goto fail;
    for (int il = -1; il < (int)m->cfg.n_layer; il++) {
        for (int r = il < 0 ? 0 : DS4_T_FIRST_LAYER; r < (il < 0 ? DS4_T_FIRST_LAYER : DS4_T_COUNT); r++) {
            const ds4_tensor_class cls = ds4_role_class((ds4_tensor_role)r);
            const gguf_tensor *t = ds4_model_tensor(m, il, (ds4_tensor_role)r);
            if (!t || r == DS4_T_TOKEN_EMBD || t->n_dims < 2 ||
                (cls != DS4_CLASS_MATRIX && cls != DS4_CLASS_SMALL && cls != DS4_CLASS_EXPERTS))
                continue;
            if (add_entry(im, t->name, strlen(t->name)) < 0) goto fail;
            entry *e = &im->e[im->n - 1];
            e->cols = t->ne[0];
            e->n_mat = t->n_dims >= 3 ? t->ne[2] : 1;
            if (!(e->sum2 = ds4_calloc(e->cols * e->n_mat, sizeof *e->sum2)) ||
                !(e->counts = ds4_calloc(e->n_mat, sizeof *e->counts)))
                goto fail;
        }
    }
    return im;
fail:
    ds4_imatrix_free(im);
    return NULL;
}

uint64_t ds4_imatrix_n_entries(const ds4_imatrix *im) {
    uint64_t n = 0;
    for (size_t i = 0; i < im->n; i++) {
        const entry *e = &im->e[i];
        float c = 0;
        for (uint64_t k = 0; k < e->n_mat && !c; k++) {
            if (e->counts) c = e->counts[k];
            else memcpy(&c, (const float *)e->counts_t->data + k, sizeof c);
        }
        n += c > 0;
    }
    return n;
}

int ds4_imatrix_save(const ds4_imatrix *im, const char *path, const char *dataset, uint32_t chunks,
                     uint32_t chunk_size) {
    if (im->file) return ds4_fail("this importance matrix was loaded, not collected");
    gguf_writer *w = ds4_gguf_writer_open(path);
    if (!w) return -1;
    const char *datasets[1] = {dataset};
    int rc = ds4_gguf_writer_kv_str(w, "general.type", "imatrix") < 0 ||
             ds4_gguf_writer_kv_arr_str(w, "imatrix.datasets", datasets, 1) < 0 ||
             ds4_gguf_writer_kv_u32(w, "imatrix.chunk_count", chunks) < 0 ||
             ds4_gguf_writer_kv_u32(w, "imatrix.chunk_size", chunk_size) < 0;
    char name[GGUF_MAX_NAME + 16];
    for (size_t i = 0; i < im->n && !rc; i++) {
        const entry *e = &im->e[i];
        const uint64_t ne_sum[2] = {e->cols, e->n_mat}, ne_cnt[2] = {1, e->n_mat};
        snprintf(name, sizeof name, "%s.in_sum2", e->name);
        rc = ds4_gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 2, ne_sum) < 0;
        snprintf(name, sizeof name, "%s.counts", e->name);
        rc = rc || ds4_gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 2, ne_cnt) < 0;
    }
    for (size_t i = 0; i < im->n && !rc; i++) {
        const entry *e = &im->e[i];
        rc = ds4_gguf_writer_write(w, e->sum2, e->cols * e->n_mat * sizeof(float)) < 0 ||
             ds4_gguf_writer_write(w, e->counts, e->n_mat * sizeof(float)) < 0;
    }
    if (rc) {
        ds4_gguf_writer_abort(w);
        return -1;
    }
    return ds4_gguf_writer_finish(w);
}

/* Token ids of one calibration line; -1 with the error set. */
static int line_tokens(const char *line, size_t len, uint64_t lineno, const ds4_tokenizer *tok, uint32_t n_vocab,
                       int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    json_tokener *jt = json_tokener_new();
    json_object *obj = jt ? json_tokener_parse_ex(jt, line, (int)len) : NULL;
    const bool complete = jt && json_tokener_get_error(jt) == json_tokener_success;
    json_tokener_free(jt);
    json_object *v;
    int rc = 0;
    if (!obj || !complete || !json_object_is_type(obj, json_type_object)) {
        rc = ds4_fail("line %llu: not a JSON object", (unsigned long long)lineno);
    } else if (json_object_object_get_ex(obj, "prompt_ids", &v) && json_object_is_type(v, json_type_array)) {
        const size_t count = json_object_array_length(v);
        *ids = ds4_malloc(count * sizeof **ids + 1);
        for (size_t i = 0; *ids && i < count && rc == 0; i++) {
            json_object *e = json_object_array_get_idx(v, i);
            const int64_t id = json_object_get_int64(e);
            if (!json_object_is_type(e, json_type_int) || id < 0 || id >= n_vocab)
                rc = ds4_fail("line %llu: prompt_ids[%zu] is not a token id below %u", (unsigned long long)lineno, i,
                              n_vocab);
            else (*ids)[(*n)++] = (int32_t)id;
        }
        if (!*ids) rc = -1;
    } else if (json_object_object_get_ex(obj, "text", &v) && json_object_is_type(v, json_type_string)) {
        if (!tok) rc = ds4_fail("line %llu: \"text\" needs a model with a tokenizer; give \"prompt_ids\"",
                                (unsigned long long)lineno);
        else rc = ds4_tokenize(tok, json_object_get_string(v), (size_t)json_object_get_string_len(v), false, ids, n);
    } else {
        rc = ds4_fail("line %llu: needs \"prompt_ids\" (array) or \"text\" (string)", (unsigned long long)lineno);
    }
    json_object_put(obj);
    if (rc < 0) {
        free(*ids);
        *ids = NULL;
    }
    return rc;
}

ds4_imatrix *ds4_imatrix_calibrate(const ds4_model *m, const ds4_tokenizer *tok, const char *jsonl_path,
                                   const ds4_ctx_opts *opts, uint32_t chunk_size, bool progress, uint32_t *chunks,
                                   uint64_t *tokens) {
    *chunks = 0;
    *tokens = 0;
    size_t size;
    char *text = ds4_read_file(jsonl_path, &size);
    if (!text) return NULL;
    ds4_imatrix *im = collector(m);
    ds4_ctx_opts o = *opts;
    o.observer = observe;
    o.observer_ctx = im;
    ds4_ctx *ctx = im ? ds4_ctx_new(m, &o) : NULL;
    ds4_progress prog;
    ds4_progress_begin(&prog, "imatrix", progress ? size : 0);
    prog.tty = prog.tty && progress;
    uint64_t lineno = 0;
    int rc = ctx ? 0 : -1;
    for (char *line = text; rc == 0 && line < text + size;) {
        char *end = memchr(line, '\n', (size_t)(text + size - line));
        const size_t len = end ? (size_t)(end - line) : (size_t)(text + size - line);
        lineno++;
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k < len) {
            int32_t *ids;
            size_t n;
            rc = line_tokens(line, len, lineno, tok, m->cfg.n_vocab, &ids, &n);
            for (size_t at = 0; rc == 0 && at < n; at += chunk_size) {
                const int len_chunk = (int)(n - at < chunk_size ? n - at : chunk_size);
                ds4_ctx_reset(ctx);
                rc = ds4_eval(ctx, ids + at, len_chunk, NULL, false);
                (*chunks)++;
                *tokens += (uint64_t)len_chunk;
            }
            free(ids);
        }
        ds4_progress_add(&prog, len + 1);
        line = end ? end + 1 : text + size;
    }
    ds4_progress_end(&prog);
    if (rc == 0 && !*tokens) rc = ds4_fail("%s holds no calibration tokens", jsonl_path);
    ds4_ctx_free(ctx);
    free(text);
    if (rc < 0) {
        ds4_imatrix_free(im);
        return NULL;
    }
    return im;
}
