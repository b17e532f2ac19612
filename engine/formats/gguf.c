/* gguf.c - GGUF reader (see gguf.h). Every read goes through a bounds-checked cursor. */
#include "gguf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "types.h"

#define MAX_ARRAY_DEPTH 8
#define MAX_TENSOR_NAME 256

static const struct { const char *name; size_t size; } gguf_types[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = {"u8", 1},   [GGUF_TYPE_INT8] = {"i8", 1},
    [GGUF_TYPE_UINT16] = {"u16", 2}, [GGUF_TYPE_INT16] = {"i16", 2},
    [GGUF_TYPE_UINT32] = {"u32", 4}, [GGUF_TYPE_INT32] = {"i32", 4},
    [GGUF_TYPE_FLOAT32] = {"f32", 4}, [GGUF_TYPE_BOOL] = {"bool", 1},
    [GGUF_TYPE_STRING] = {"str", 0}, [GGUF_TYPE_ARRAY] = {"arr", 0},
    [GGUF_TYPE_UINT64] = {"u64", 8}, [GGUF_TYPE_INT64] = {"i64", 8},
    [GGUF_TYPE_FLOAT64] = {"f64", 8},
};

const char *ds4_gguf_type_name(uint32_t type) {
    return type < GGUF_TYPE_COUNT ? gguf_types[type].name : "invalid";
}

size_t ds4_gguf_type_size(uint32_t type) { return type < GGUF_TYPE_COUNT ? gguf_types[type].size : 0; }

bool ds4_gguf_str_eq(gguf_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

uint64_t ds4_gguf_tensor_nelements(const gguf_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* ---- bounds-checked cursor ---- */

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    gguf_file *f;
    int depth;
} parser;

/* A printable, truncated rendering of untrusted bytes, for error messages. */
static const char *printable(const char *s, uint64_t len) {
    static _Thread_local char buf[72];
    return ds4_printable(buf, sizeof buf, s, len);
}

static int need(parser *ps, uint64_t n, const char *what) {
    if (n > ps->size - ps->pos)
        return ds4_fail("truncated file: %s at offset %zu needs %llu bytes, %zu left", what,
                        ps->pos, (unsigned long long)n, ps->size - ps->pos);
    return 0;
}

static int rd(parser *ps, void *out, size_t n, const char *what) {
    if (need(ps, n, what) < 0) return -1;
    memcpy(out, ps->p + ps->pos, n);
    ps->pos += n;
    return 0;
}

static int rd_u32(parser *ps, uint32_t *v, const char *what) { return rd(ps, v, 4, what); }
static int rd_u64(parser *ps, uint64_t *v, const char *what) { return rd(ps, v, 8, what); }

static int rd_str(parser *ps, gguf_str *s, const char *what) {
    uint64_t len;
    if (rd_u64(ps, &len, what) < 0) return -1;
    if (len > ps->size - ps->pos)
        return ds4_fail("%s: string length %llu at offset %zu exceeds the file (%zu bytes left)",
                        what, (unsigned long long)len, ps->pos - 8, ps->size - ps->pos);
    s->ptr = (const char *)ps->p + ps->pos;
    s->len = len;
    ps->pos += len;
    return 0;
}

static int rd_value(parser *ps, uint32_t type, gguf_value *v, const char *what);

static int rd_array(parser *ps, gguf_value *v, const char *what) {
    uint32_t et;
    uint64_t n;
    if (rd_u32(ps, &et, what) < 0 || rd_u64(ps, &n, what) < 0) return -1;
    if (et >= GGUF_TYPE_COUNT)
        return ds4_fail("%s: array of invalid element type %u", what, et);
    v->arr.type = et;
    v->arr.n = n;
    size_t left = ps->size - ps->pos;
    size_t es = gguf_types[et].size;
    if (es) {
        if (n > left / es)
            return ds4_fail("%s: array of %llu %s elements exceeds the file (%zu bytes left)", what,
                            (unsigned long long)n, gguf_types[et].name, left);
        v->arr.data = ps->p + ps->pos;
        if (et == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (ps->p[ps->pos + i] > 1) return ds4_fail("%s: bool array element %llu is not 0 or 1", what, (unsigned long long)i);
        ps->pos += n * es;
        return 0;
    }
    /* Strings need at least 8 bytes each, nested arrays at least 12. */
    size_t min = et == GGUF_TYPE_STRING ? 8 : 12;
    if (n > left / min)
        return ds4_fail("%s: array count %llu exceeds the file (%zu bytes left)", what,
                        (unsigned long long)n, left);
    if (et == GGUF_TYPE_ARRAY && ps->depth >= MAX_ARRAY_DEPTH)
        return ds4_fail("%s: arrays nested deeper than %d", what, MAX_ARRAY_DEPTH);
    gguf_value *items = ds4_arena_alloc(&ps->f->arena, n * sizeof *items);
    if (!items) return -1;
    ps->depth++;
    for (uint64_t i = 0; i < n; i++) {
        memset(&items[i], 0, sizeof items[i]);
        if (rd_value(ps, et, &items[i], what) < 0) return -1;
    }
    ps->depth--;
    v->arr.items = items;
    return 0;
}

static int rd_value(parser *ps, uint32_t type, gguf_value *v, const char *what) {
    v->type = type;
    switch (type) {
    case GGUF_TYPE_STRING: return rd_str(ps, &v->str, what);
    case GGUF_TYPE_ARRAY: return rd_array(ps, v, what);
    case GGUF_TYPE_BOOL: {
        uint8_t b;
        if (rd(ps, &b, 1, what) < 0) return -1;
        if (b > 1) return ds4_fail("%s: bool value %u is not 0 or 1", what, b);
        v->b = b;
        return 0;
    }
    default:
        if (type >= GGUF_TYPE_COUNT) return ds4_fail("%s: invalid value type %u", what, type);
        return rd(ps, &v->u64, gguf_types[type].size, what);
    }
}

static int parse_kv(parser *ps, gguf_file *f) {
    char what[128];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        snprintf(what, sizeof what, "key %llu", (unsigned long long)i);
        if (rd_str(ps, &kv->key, what) < 0) return -1;
        if (kv->key.len == 0) return ds4_fail("key %llu is empty", (unsigned long long)i);
        snprintf(what, sizeof what, "value of key '%s'", printable(kv->key.ptr, kv->key.len));
        uint32_t type;
        if (rd_u32(ps, &type, what) < 0) return -1;
        if (type >= GGUF_TYPE_COUNT) return ds4_fail("%s: invalid value type %u", what, type);
        if (rd_value(ps, type, &kv->value, what) < 0) return -1;
        int r = ds4_strmap_put(&f->key_index, kv->key.ptr, kv->key.len, i);
        if (r < 0) return -1;
        if (r == 0) return ds4_fail("duplicate key '%s'", printable(kv->key.ptr, kv->key.len));
    }
    return 0;
}

static int parse_alignment(gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_value *v = ds4_gguf_get(f, "general.alignment");
    if (!v) return 0;
    if (v->type != GGUF_TYPE_UINT32)
        return ds4_fail("general.alignment has type %s, expected u32", ds4_gguf_type_name(v->type));
    if (v->u32 == 0 || (v->u32 & (v->u32 - 1)))
        return ds4_fail("general.alignment %u is not a power of two", v->u32);
    f->alignment = v->u32;
    return 0;
}

static int parse_tensor_info(parser *ps, gguf_file *f, uint64_t i) {
    gguf_tensor *t = &f->tensors[i];
    char what[96];
    snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
    gguf_str name;
    if (rd_str(ps, &name, what) < 0) return -1;
    if (name.len == 0) return ds4_fail("%s: empty tensor name", what);
    if (name.len >= MAX_TENSOR_NAME)
        return ds4_fail("%s: tensor name of %llu bytes is too long", what, (unsigned long long)name.len);
    if (memchr(name.ptr, 0, name.len)) return ds4_fail("%s: tensor name contains a NUL byte", what);
    t->name = ds4_arena_strndup(&f->arena, name.ptr, name.len);
    if (!t->name) return -1;
    snprintf(what, sizeof what, "tensor '%s'", printable(name.ptr, name.len));

    if (rd_u32(ps, &t->n_dims, what) < 0) return -1;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return ds4_fail("%s: %u dimensions (must be 1 to %d)", what, t->n_dims, GGUF_MAX_DIMS);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims && rd_u64(ps, &t->ne[d], what) < 0) return -1;
        if (t->ne[d] > (uint64_t)INT64_MAX || !ds4_mul_ok(nel, t->ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return ds4_fail("%s: dimensions overflow (ne[%u] = %llu)", what, d, (unsigned long long)t->ne[d]);
    }
    if (rd_u32(ps, &t->type, what) < 0 || rd_u64(ps, &t->offset, what) < 0) return -1;
    const ds4_type_info *ti = ds4_type_get(t->type);
    if (!ti) return ds4_fail("%s: unknown ggml type %u", what, t->type);
    if (t->ne[0] % ti->block)
        return ds4_fail("%s: row of %llu elements is not a multiple of the %s block size %u", what,
                        (unsigned long long)t->ne[0], ti->name, ti->block);
    uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3]; /* cannot overflow: <= nel */
    if (!ds4_mul_ok(ds4_row_size(t->type, t->ne[0]), rows, &t->size))
        return ds4_fail("%s: byte size overflows", what);
    if (t->ne[0] == 0) t->size = 0;
    int r = ds4_strmap_put(&f->tensor_index, t->name, name.len, i);
    if (r < 0) return -1;
    if (r == 0) return ds4_fail("duplicate tensor name '%s'", t->name);
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int check_tensor_data(gguf_file *f) {
    if (f->n_tensors == 0) return 0;
    if (f->data_offset > f->size)
        return ds4_fail("truncated file: tensor data section starts at %llu, past the end (%zu bytes)",
                        (unsigned long long)f->data_offset, f->size);
    uint64_t avail = f->size - f->data_offset;
    gguf_tensor **order = ds4_malloc(f->n_tensors * sizeof *order);
    if (!order) return -1;
    int rc = 0;
    for (uint64_t i = 0; i < f->n_tensors && rc == 0; i++) {
        gguf_tensor *t = &f->tensors[i];
        order[i] = t;
        if (t->offset % f->alignment)
            rc = ds4_fail("tensor '%s': data offset %llu is not a multiple of the alignment %u",
                          t->name, (unsigned long long)t->offset, f->alignment);
        else if (t->offset > avail || t->size > avail - t->offset)
            rc = ds4_fail("tensor '%s': data [%llu, +%llu) lies outside the file (data section holds %llu bytes)",
                          t->name, (unsigned long long)t->offset, (unsigned long long)t->size,
                          (unsigned long long)avail);
        else
            t->data = f->base + f->data_offset + t->offset;
    }
    if (rc == 0) {
        qsort(order, f->n_tensors, sizeof *order, cmp_offset);
        for (uint64_t i = 1; i < f->n_tensors && rc == 0; i++) {
            const gguf_tensor *a = order[i - 1], *b = order[i];
            if (a->size && b->size && a->offset + a->size > b->offset)
                rc = ds4_fail("tensors '%s' and '%s' overlap", a->name, b->name);
        }
    }
    free(order);
    return rc;
}

static int parse(gguf_file *f) {
    parser ps = {.p = f->base, .size = f->size, .f = f};
    char magic[4];
    if (f->size < 4 || memcmp(f->base, "GGUF", 4) != 0) {
        if (f->size < 4) return ds4_fail("not a GGUF file (only %zu bytes)", f->size);
        return ds4_fail("not a GGUF file (magic is %s)", printable((const char *)f->base, 4));
    }
    if (rd(&ps, magic, 4, "magic") < 0 || rd_u32(&ps, &f->version, "version") < 0) return -1;
    if (f->version == 1) return ds4_fail("GGUF version 1 is not supported (convert it with a newer tool)");
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0 && __builtin_bswap32(f->version) <= 3)
            return ds4_fail("big-endian GGUF files are not supported");
        return ds4_fail("unsupported GGUF version %u", f->version);
    }
    if (rd_u64(&ps, &f->n_tensors, "tensor count") < 0 || rd_u64(&ps, &f->n_kv, "metadata count") < 0)
        return -1;
    size_t left = f->size - ps.pos;
    if (f->n_kv > left / 13)
        return ds4_fail("metadata count %llu exceeds what the file can hold (truncated or corrupt)",
                        (unsigned long long)f->n_kv);
    if (f->n_tensors > left / 32)
        return ds4_fail("tensor count %llu exceeds what the file can hold (truncated or corrupt)",
                        (unsigned long long)f->n_tensors);
    f->kv = ds4_calloc(f->n_kv, sizeof *f->kv);
    f->tensors = ds4_calloc(f->n_tensors, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return -1;
    if (ds4_strmap_init(&f->key_index, f->n_kv) < 0 || ds4_strmap_init(&f->tensor_index, f->n_tensors) < 0)
        return -1;
    if (parse_kv(&ps, f) < 0 || parse_alignment(f) < 0) return -1;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (parse_tensor_info(&ps, f, i) < 0) return -1;
    f->data_offset = ds4_align_up(ps.pos, f->alignment);
    return check_tensor_data(f);
}

static gguf_file *parse_or_fail(gguf_file *f, const char *label) {
    f->path = ds4_strndup(label, strlen(label));
    if (!f->path || parse(f) < 0) {
        ds4_error_prefix(label);
        ds4_gguf_close(f);
        return NULL;
    }
    return f;
}

gguf_file *ds4_gguf_parse(const void *data, size_t size, const char *label) {
    gguf_file *f = ds4_calloc(1, sizeof *f);
    if (!f) return NULL;
    f->base = data;
    f->size = size;
    return parse_or_fail(f, label);
}

gguf_file *ds4_gguf_open(const char *path) {
    gguf_file *f = ds4_calloc(1, sizeof *f);
    if (!f) return NULL;
    if (ds4_mmap_open(&f->map, path) < 0) {
        free(f);
        return NULL;
    }
    f->base = f->map.data;
    f->size = f->map.size;
    return parse_or_fail(f, path);
}

void ds4_gguf_close(gguf_file *f) {
    if (!f) return;
    ds4_mmap_close(&f->map);
    ds4_arena_free(&f->arena);
    ds4_strmap_free(&f->key_index);
    ds4_strmap_free(&f->tensor_index);
    free(f->kv);
    free(f->tensors);
    free(f->path);
    free(f);
}

/* ---- lookups ---- */

const gguf_value *ds4_gguf_get(const gguf_file *f, const char *key) {
    uint64_t i;
    if (!ds4_strmap_get(&f->key_index, key, strlen(key), &i)) return NULL;
    return &f->kv[i].value;
}

const gguf_tensor *ds4_gguf_find_tensor(const gguf_file *f, const char *name) {
    uint64_t i;
    if (!ds4_strmap_get(&f->tensor_index, name, strlen(name), &i)) return NULL;
    return &f->tensors[i];
}

/* Read scalar element i of a packed buffer of `type` as a value. */
static gguf_value scalar_at(uint32_t type, const void *data, uint64_t i) {
    gguf_value v = {.type = type};
    size_t es = gguf_types[type].size;
    memcpy(&v.u64, (const uint8_t *)data + i * es, es);
    return v;
}

static bool value_to_u64(const gguf_value *v, uint64_t *out) {
    switch (v->type) {
    case GGUF_TYPE_UINT8: *out = v->u8; return true;
    case GGUF_TYPE_UINT16: *out = v->u16; return true;
    case GGUF_TYPE_UINT32: *out = v->u32; return true;
    case GGUF_TYPE_UINT64: *out = v->u64; return true;
    case GGUF_TYPE_INT8: if (v->i8 < 0) return false; *out = (uint64_t)v->i8; return true;
    case GGUF_TYPE_INT16: if (v->i16 < 0) return false; *out = (uint64_t)v->i16; return true;
    case GGUF_TYPE_INT32: if (v->i32 < 0) return false; *out = (uint64_t)v->i32; return true;
    case GGUF_TYPE_INT64: if (v->i64 < 0) return false; *out = (uint64_t)v->i64; return true;
    default: return false;
    }
}

bool ds4_gguf_value_to_f64(const gguf_value *v, double *out) {
    switch (v->type) {
    case GGUF_TYPE_FLOAT32: *out = v->f32; return true;
    case GGUF_TYPE_FLOAT64: *out = v->f64; return true;
    case GGUF_TYPE_INT8: *out = v->i8; return true;
    case GGUF_TYPE_INT16: *out = v->i16; return true;
    case GGUF_TYPE_INT32: *out = v->i32; return true;
    case GGUF_TYPE_INT64: *out = (double)v->i64; return true;
    default: {
        uint64_t u;
        if (!value_to_u64(v, &u)) return false;
        *out = (double)u;
        return true;
    }
    }
}

bool ds4_gguf_arr_f64(const gguf_value *arr, uint64_t i, double *out) {
    if (arr->type != GGUF_TYPE_ARRAY || i >= arr->arr.n || !gguf_types[arr->arr.type].size) return false;
    gguf_value v = scalar_at(arr->arr.type, arr->arr.data, i);
    return ds4_gguf_value_to_f64(&v, out);
}

bool ds4_gguf_arr_u64(const gguf_value *arr, uint64_t i, uint64_t *out) {
    if (arr->type != GGUF_TYPE_ARRAY || i >= arr->arr.n || !gguf_types[arr->arr.type].size) return false;
    gguf_value v = scalar_at(arr->arr.type, arr->arr.data, i);
    return value_to_u64(&v, out);
}

bool ds4_gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out) {
    const gguf_value *v = ds4_gguf_get(f, key);
    return v && value_to_u64(v, out);
}

bool ds4_gguf_get_f64(const gguf_file *f, const char *key, double *out) {
    const gguf_value *v = ds4_gguf_get(f, key);
    return v && ds4_gguf_value_to_f64(v, out);
}

bool ds4_gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_value *v = ds4_gguf_get(f, key);
    if (!v || v->type != GGUF_TYPE_BOOL) return false;
    *out = v->b;
    return true;
}

bool ds4_gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_value *v = ds4_gguf_get(f, key);
    if (!v || v->type != GGUF_TYPE_STRING) return false;
    *out = v->str;
    return true;
}
