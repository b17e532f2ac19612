/* gguf_write.c - streaming GGUF v3 writer (see gguf.h). Metadata is serialized into a
 * buffer as it is declared; tensor data goes straight to the (temporary) output file. */
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quants.h"

typedef struct {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t offset, size;
} out_tensor;

struct gguf_writer {
    ds4_outfile out;
    ds4_buf kv;           /* serialized key/value pairs */
    uint64_t n_kv;
    ds4_strmap keys;      /* owns nothing: points into key_names */
    char **key_names;
    out_tensor *tensors;
    uint64_t n_tensors, cap_tensors;
    ds4_strmap names;
    uint32_t alignment;
    bool started, failed;
    uint64_t cur;         /* tensor being written */
    uint64_t cur_written; /* bytes of it written so far */
    uint64_t data_pos;    /* bytes written to the data section */
};

static int put(ds4_buf *b, const void *p, size_t n) { return ds4_buf_append(b, p, n); }
static int put_u32(ds4_buf *b, uint32_t v) { return put(b, &v, 4); }
static int put_u64(ds4_buf *b, uint64_t v) { return put(b, &v, 8); }
static int put_str(ds4_buf *b, const char *s, uint64_t n) {
    return put_u64(b, n) < 0 || put(b, s, n) < 0 ? -1 : 0;
}

gguf_writer *ds4_gguf_writer_open(const char *path) {
    gguf_writer *w = ds4_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (ds4_strmap_init(&w->keys, 64) < 0 || ds4_strmap_init(&w->names, 256) < 0 ||
        ds4_outfile_open(&w->out, path) < 0) {
        ds4_strmap_free(&w->keys);
        ds4_strmap_free(&w->names);
        free(w);
        return NULL;
    }
    return w;
}

int ds4_gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment) {
    if (!alignment || (alignment & (alignment - 1)))
        return ds4_fail("alignment %u is not a power of two", alignment);
    w->alignment = alignment;
    return ds4_gguf_writer_kv_u32(w, "general.alignment", alignment);
}

static int put_value(ds4_buf *b, const gguf_value *v, int depth) {
    switch (v->type) {
    case GGUF_TYPE_STRING: return put_str(b, v->str.ptr, v->str.len);
    case GGUF_TYPE_ARRAY: {
        if (depth > 8) return ds4_fail("arrays nested too deeply");
        if (put_u32(b, v->arr.type) < 0 || put_u64(b, v->arr.n) < 0) return -1;
        size_t es = ds4_gguf_type_size(v->arr.type);
        if (es) return put(b, v->arr.data, v->arr.n * es);
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.items[i].type != v->arr.type)
                return ds4_fail("array element %llu has type %s, array holds %s",
                                (unsigned long long)i, ds4_gguf_type_name(v->arr.items[i].type),
                                ds4_gguf_type_name(v->arr.type));
            if (put_value(b, &v->arr.items[i], depth + 1) < 0) return -1;
        }
        return 0;
    }
    default: {
        size_t es = ds4_gguf_type_size(v->type);
        if (!es) return ds4_fail("invalid gguf value type %u", v->type);
        return put(b, &v->u64, es);
    }
    }
}

int ds4_gguf_writer_kv(gguf_writer *w, const char *key, const gguf_value *v) {
    if (w->started) return ds4_fail("metadata '%s' declared after the data began", key);
    size_t n = strlen(key);
    if (n == 0) return ds4_fail("empty metadata key");
    char *copy = ds4_strndup(key, n);
    char **names = ds4_realloc(w->key_names, (w->n_kv + 1) * sizeof *names);
    if (!copy || !names) { free(copy); return -1; }
    w->key_names = names;
    int r = ds4_strmap_put(&w->keys, copy, n, w->n_kv);
    if (r <= 0) {
        free(copy);
        return r < 0 ? -1 : ds4_fail("duplicate metadata key '%s'", key);
    }
    names[w->n_kv++] = copy;
    size_t mark = w->kv.len;
    if (put_str(&w->kv, key, n) < 0 || put_u32(&w->kv, v->type) < 0 || put_value(&w->kv, v, 0) < 0) {
        w->kv.len = mark;
        return -1;
    }
    return 0;
}

int ds4_gguf_writer_kv_u32(gguf_writer *w, const char *key, uint32_t v) {
    gguf_value val = {.type = GGUF_TYPE_UINT32, .u32 = v};
    return ds4_gguf_writer_kv(w, key, &val);
}
int ds4_gguf_writer_kv_i32(gguf_writer *w, const char *key, int32_t v) {
    gguf_value val = {.type = GGUF_TYPE_INT32, .i32 = v};
    return ds4_gguf_writer_kv(w, key, &val);
}
int ds4_gguf_writer_kv_u64(gguf_writer *w, const char *key, uint64_t v) {
    gguf_value val = {.type = GGUF_TYPE_UINT64, .u64 = v};
    return ds4_gguf_writer_kv(w, key, &val);
}
int ds4_gguf_writer_kv_f32(gguf_writer *w, const char *key, float v) {
    gguf_value val = {.type = GGUF_TYPE_FLOAT32, .f32 = v};
    return ds4_gguf_writer_kv(w, key, &val);
}
int ds4_gguf_writer_kv_bool(gguf_writer *w, const char *key, bool v) {
    gguf_value val = {.type = GGUF_TYPE_BOOL, .b = v};
    return ds4_gguf_writer_kv(w, key, &val);
}
int ds4_gguf_writer_kv_str(gguf_writer *w, const char *key, const char *v) {
    gguf_value val = {.type = GGUF_TYPE_STRING, .str = {v, strlen(v)}};
    return ds4_gguf_writer_kv(w, key, &val);
}
int ds4_gguf_writer_kv_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n) {
    if (!ds4_gguf_type_size(elem_type)) return ds4_fail("'%s': not a scalar array type", key);
    gguf_value val = {.type = GGUF_TYPE_ARRAY, .arr = {.type = elem_type, .n = n, .data = data}};
    return ds4_gguf_writer_kv(w, key, &val);
}
int ds4_gguf_writer_kv_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    gguf_value *items = ds4_calloc(n, sizeof *items);
    if (!items) return -1;
    for (uint64_t i = 0; i < n; i++)
        items[i] = (gguf_value){.type = GGUF_TYPE_STRING, .str = {strs[i], strlen(strs[i])}};
    gguf_value val = {.type = GGUF_TYPE_ARRAY, .arr = {.type = GGUF_TYPE_STRING, .n = n, .items = items}};
    int rc = ds4_gguf_writer_kv(w, key, &val);
    free(items);
    return rc;
}

int ds4_gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne) {
    if (w->started) return ds4_fail("tensor '%s' declared after the data began", name);
    size_t len = strlen(name);
    if (len == 0 || len >= GGUF_MAX_NAME)
        return ds4_fail("tensor name '%s' must have 1 to %d bytes", name, GGUF_MAX_NAME - 1);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS) return ds4_fail("tensor '%s': %u dimensions", name, n_dims);
    if (!ds4_type_get(type)) return ds4_fail("tensor '%s': unknown ggml type %u", name, type);
    out_tensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t rows = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        t.ne[d] = ne[d];
        if (d > 0 && !ds4_mul_ok(rows, ne[d], &rows)) return ds4_fail("tensor '%s': size overflows", name);
    }
    uint64_t row = ds4_row_size(type, ne[0]);
    if (!row && ne[0]) return ds4_fail("tensor '%s': %llu is not a multiple of the %s block", name,
                                      (unsigned long long)ne[0], ds4_type_name(type));
    if (!ds4_mul_ok(row, rows, &t.size)) return ds4_fail("tensor '%s': size overflows", name);
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        out_tensor *p = ds4_realloc(w->tensors, cap * sizeof *p);
        if (!p) return -1;
        w->tensors = p;
        w->cap_tensors = cap;
    }
    t.name = ds4_strndup(name, len);
    if (!t.name) return -1;
    int r = ds4_strmap_put(&w->names, t.name, len, w->n_tensors);
    if (r <= 0) {
        free(t.name);
        return r < 0 ? -1 : ds4_fail("duplicate tensor name '%s'", name);
    }
    w->tensors[w->n_tensors++] = t;
    return 0;
}

static int write_padding(gguf_writer *w, uint64_t pos) {
    static const uint8_t zeros[256];
    uint64_t pad = ds4_align_up(pos, w->alignment) - pos;
    while (pad) {
        size_t n = pad > sizeof zeros ? sizeof zeros : pad;
        if (ds4_outfile_write(&w->out, zeros, n) < 0) return -1;
        pad -= n;
    }
    return 0;
}

/* Write the header (metadata + tensor infos); no more declarations after this. */
static int begin_data(gguf_writer *w) {
    if (w->started) return 0;
    ds4_buf h = {0};
    uint64_t off = 0;
    int rc = -1;
    if (put(&h, "GGUF", 4) < 0 || put_u32(&h, 3) < 0 || put_u64(&h, w->n_tensors) < 0 ||
        put_u64(&h, w->n_kv) < 0 || put(&h, w->kv.data, w->kv.len) < 0)
        goto done;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        out_tensor *t = &w->tensors[i];
        t->offset = off;
        if (put_str(&h, t->name, strlen(t->name)) < 0 || put_u32(&h, t->n_dims) < 0) goto done;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (put_u64(&h, t->ne[d]) < 0) goto done;
        if (put_u32(&h, t->type) < 0 || put_u64(&h, t->offset) < 0) goto done;
        off = ds4_align_up(off + t->size, w->alignment);
    }
    if (ds4_outfile_write(&w->out, h.data, h.len) < 0 || write_padding(w, h.len) < 0) goto done;
    w->started = true;
    rc = 0;
done:
    ds4_buf_free(&h);
    if (rc < 0) w->failed = true;
    return rc;
}

/* Move on past tensors whose data is complete (and past empty ones). */
static int advance(gguf_writer *w) {
    while (w->cur < w->n_tensors && w->cur_written == w->tensors[w->cur].size) {
        if (write_padding(w, w->data_pos) < 0) return -1;
        w->data_pos = ds4_align_up(w->data_pos, w->alignment);
        w->cur++;
        w->cur_written = 0;
    }
    return 0;
}

/* n bytes of tensor data from `data`, or a hole of n bytes where data is NULL. */
static int put_data(gguf_writer *w, const void *data, uint64_t n) {
    if (w->failed) return ds4_fail("writer already failed");
    if (!w->started && begin_data(w) < 0) return -1;
    const uint8_t *p = data;
    while (n) {
        if (advance(w) < 0) goto fail;
        if (w->cur >= w->n_tensors) {
            ds4_fail("%s: more tensor data written than declared", w->out.path);
            goto fail;
        }
        const uint64_t room = w->tensors[w->cur].size - w->cur_written, k = n < room ? n : room;
        if ((p ? ds4_outfile_write(&w->out, p, (size_t)k) : ds4_outfile_skip(&w->out, k)) < 0) goto fail;
        w->cur_written += k;
        w->data_pos += k;
        if (p) p += k;
        n -= k;
    }
    return 0;
fail:
    w->failed = true;
    return -1;
}

int ds4_gguf_writer_write(gguf_writer *w, const void *data, size_t n) { return put_data(w, data, n); }
int ds4_gguf_writer_skip(gguf_writer *w, uint64_t n) { return put_data(w, NULL, n); }

static void writer_free(gguf_writer *w) {
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->key_names[i]);
    free(w->tensors);
    free(w->key_names);
    ds4_strmap_free(&w->keys);
    ds4_strmap_free(&w->names);
    ds4_buf_free(&w->kv);
    free(w);
}

int ds4_gguf_writer_finish(gguf_writer *w) {
    if (!w->failed && (w->started || begin_data(w) == 0) && advance(w) == 0) {
        if (w->cur < w->n_tensors) {
            ds4_fail("%s: tensor '%s' got %llu of %llu bytes", w->out.path, w->tensors[w->cur].name,
                     (unsigned long long)w->cur_written, (unsigned long long)w->tensors[w->cur].size);
        } else {
            int rc = ds4_outfile_commit(&w->out);
            writer_free(w);
            return rc;
        }
    }
    ds4_gguf_writer_abort(w);
    return -1;
}

void ds4_gguf_writer_abort(gguf_writer *w) {
    if (!w) return;
    if (w->out.fd >= 0) ds4_outfile_abort(&w->out);
    writer_free(w);
}
