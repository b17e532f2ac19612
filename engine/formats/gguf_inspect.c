/* gguf_inspect.c - human-readable views of GGUF files: value formatting, the info
 * listing and a metadata + tensor diff (see gguf.h). */
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quants.h"

typedef struct { char *buf; size_t size, len; } sbuf;

static void emit(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(sbuf *s, const char *fmt, ...) {
    if (s->len + 1 >= s->size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->buf + s->len, s->size - s->len, fmt, ap);
    va_end(ap);
    s->len += n < 0 ? 0 : (size_t)n;
    if (s->len >= s->size) s->len = s->size - 1;
}

static void emit_str(sbuf *s, gguf_str str) {
    emit(s, "\"");
    for (uint64_t i = 0; i < str.len && i < 120; i++) {
        unsigned char c = (unsigned char)str.ptr[i];
        if (c == '"' || c == '\\') emit(s, "\\%c", c);
        else if (c == '\n') emit(s, "\\n");
        else if (c < 0x20 || c == 0x7f) emit(s, "\\x%02x", c);
        else emit(s, "%c", c);
    }
    emit(s, str.len > 120 ? "\"... (%llu bytes)" : "\"", (unsigned long long)str.len);
}

static void emit_value(sbuf *s, const gguf_value *v, size_t max_items) {
    switch (v->type) {
    case GGUF_TYPE_UINT8: emit(s, "%u", v->u8); break;
    case GGUF_TYPE_INT8: emit(s, "%d", v->i8); break;
    case GGUF_TYPE_UINT16: emit(s, "%u", v->u16); break;
    case GGUF_TYPE_INT16: emit(s, "%d", v->i16); break;
    case GGUF_TYPE_UINT32: emit(s, "%u", v->u32); break;
    case GGUF_TYPE_INT32: emit(s, "%d", v->i32); break;
    case GGUF_TYPE_UINT64: emit(s, "%llu", (unsigned long long)v->u64); break;
    case GGUF_TYPE_INT64: emit(s, "%lld", (long long)v->i64); break;
    case GGUF_TYPE_FLOAT32: emit(s, "%.9g", v->f32); break;
    case GGUF_TYPE_FLOAT64: emit(s, "%.17g", v->f64); break;
    case GGUF_TYPE_BOOL: emit(s, v->u8 ? "true" : "false"); break;
    case GGUF_TYPE_STRING: emit_str(s, v->str); break;
    case GGUF_TYPE_ARRAY: {
        emit(s, "[");
        uint64_t n = v->arr.n < max_items ? v->arr.n : max_items;
        size_t es = ds4_gguf_type_size(v->arr.type);
        for (uint64_t i = 0; i < n; i++) {
            if (i) emit(s, ", ");
            if (es) {
                gguf_value e = {.type = v->arr.type};
                memcpy(&e.u64, (const uint8_t *)v->arr.data + i * es, es);
                emit_value(s, &e, max_items);
            } else {
                emit_value(s, &v->arr.items[i], max_items);
            }
        }
        if (v->arr.n > n) emit(s, ", ... (%llu items)", (unsigned long long)v->arr.n);
        emit(s, "]");
        break;
    }
    default: emit(s, "?"); break;
    }
}

void ds4_gguf_value_format(const gguf_value *v, char *buf, size_t size, size_t max_items) {
    sbuf s = {buf, size, 0};
    if (size) buf[0] = 0;
    emit_value(&s, v, max_items);
}

bool ds4_gguf_value_equal(const gguf_value *a, const gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case GGUF_TYPE_STRING: return a->str.len == b->str.len && !memcmp(a->str.ptr, b->str.ptr, a->str.len);
    case GGUF_TYPE_ARRAY: {
        if (a->arr.type != b->arr.type || a->arr.n != b->arr.n) return false;
        size_t es = ds4_gguf_type_size(a->arr.type);
        if (es) return !memcmp(a->arr.data, b->arr.data, a->arr.n * es);
        for (uint64_t i = 0; i < a->arr.n; i++)
            if (!ds4_gguf_value_equal(&a->arr.items[i], &b->arr.items[i])) return false;
        return true;
    }
    default: return !memcmp(&a->u64, &b->u64, ds4_gguf_type_size(a->type));
    }
}

static void type_label(const gguf_value *v, char *buf, size_t n) {
    if (v->type == GGUF_TYPE_ARRAY)
        snprintf(buf, n, "arr[%s,%llu]", ds4_gguf_type_name(v->arr.type), (unsigned long long)v->arr.n);
    else
        snprintf(buf, n, "%s", ds4_gguf_type_name(v->type));
}

static void shape_label(const gguf_tensor *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%llu", d ? ", " : "", (unsigned long long)t->ne[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

void ds4_gguf_print_info(const gguf_file *f, FILE *out, bool show_tensors, size_t max_items) {
    fprintf(out, "%s: GGUF v%u, %llu metadata keys, %llu tensors, alignment %u, data at %llu, %zu bytes\n",
            f->path, f->version, (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors, f->alignment,
            (unsigned long long)f->data_offset, f->size);
    char value[1024], type[48];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        type_label(&kv->value, type, sizeof type);
        ds4_gguf_value_format(&kv->value, value, sizeof value, max_items);
        fprintf(out, "  %4llu: %-14s %.*s = %s\n", (unsigned long long)i, type, (int)kv->key.len, kv->key.ptr, value);
    }
    if (!show_tensors) return;
    fprintf(out, "  %4s  %-44s %-8s %-22s %12s %12s\n", "#", "tensor", "type", "shape", "offset", "bytes");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char shape[96];
        shape_label(t, shape, sizeof shape);
        fprintf(out, "  %4llu  %-44s %-8s %-22s %12llu %12llu\n", (unsigned long long)i, t->name,
                ds4_type_name(t->type), shape, (unsigned long long)t->offset, (unsigned long long)t->size);
    }
}

static bool ignored(const char *const *keys, gguf_str key) {
    for (; keys && *keys; keys++)
        if (ds4_gguf_str_eq(key, *keys)) return true;
    return false;
}

/* Largest |a - b| over two tensors of the same shape; NAN if either type cannot be read. */
static double max_abs_diff(const gguf_tensor *a, const gguf_tensor *b, uint64_t *n_diff) {
    const uint64_t cols = a->ne[0], rows = a->ne[1] * a->ne[2] * a->ne[3];
    const uint64_t ra = ds4_row_size(a->type, cols), rb = ds4_row_size(b->type, cols);
    float *x = malloc(cols * sizeof *x), *y = malloc(cols * sizeof *y);
    double worst = 0;
    *n_diff = 0;
    for (uint64_t r = 0; r < rows && x && y; r++) {
        if (ds4_row_to_f32(a->type, (const uint8_t *)a->data + r * ra, x, (int64_t)cols) < 0 ||
            ds4_row_to_f32(b->type, (const uint8_t *)b->data + r * rb, y, (int64_t)cols) < 0) {
            worst = NAN;
            break;
        }
        for (uint64_t c = 0; c < cols; c++) {
            double d = fabs((double)x[c] - (double)y[c]);
            if (d != 0 || isnan(d)) (*n_diff)++;
            if (d > worst || isnan(d)) worst = d;
        }
    }
    free(x);
    free(y);
    return worst;
}

uint64_t ds4_gguf_print_diff(const gguf_file *a, const gguf_file *b, const char *const *ignore_keys, FILE *out) {
    uint64_t n = 0;
    char va[512], vb[512];
    for (uint64_t i = 0; i < a->n_kv; i++) {
        const gguf_kv *kv = &a->kv[i];
        if (ignored(ignore_keys, kv->key)) continue;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 255 ? kv->key.len : 255), kv->key.ptr);
        const gguf_value *other = ds4_gguf_get(b, key);
        ds4_gguf_value_format(&kv->value, va, sizeof va, 8);
        if (!other) {
            fprintf(out, "metadata %s: only in %s (%s)\n", key, a->path, va), n++;
        } else if (!ds4_gguf_value_equal(&kv->value, other)) {
            ds4_gguf_value_format(other, vb, sizeof vb, 8);
            fprintf(out, "metadata %s: %s vs %s\n", key, va, vb), n++;
        }
    }
    for (uint64_t i = 0; i < b->n_kv; i++) {
        const gguf_kv *kv = &b->kv[i];
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 255 ? kv->key.len : 255), kv->key.ptr);
        if (!ignored(ignore_keys, kv->key) && !ds4_gguf_get(a, key))
            fprintf(out, "metadata %s: only in %s\n", key, b->path), n++;
    }
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const gguf_tensor *ta = &a->tensors[i], *tb = ds4_gguf_find_tensor(b, ta->name);
        char sa[96], sb[96];
        shape_label(ta, sa, sizeof sa);
        if (!tb) {
            fprintf(out, "tensor %s: only in %s\n", ta->name, a->path), n++;
            continue;
        }
        shape_label(tb, sb, sizeof sb);
        if (strcmp(sa, sb)) {
            fprintf(out, "tensor %s: shape %s vs %s\n", ta->name, sa, sb), n++;
            continue;
        }
        if (ta->type == tb->type && ta->size == tb->size && !memcmp(ta->data, tb->data, ta->size)) continue;
        n++;
        uint64_t n_diff;
        double d = max_abs_diff(ta, tb, &n_diff);
        if (ta->type != tb->type)
            fprintf(out, "tensor %s: type %s vs %s", ta->name, ds4_type_name(ta->type), ds4_type_name(tb->type));
        else
            fprintf(out, "tensor %s: data differs", ta->name);
        if (isnan(d)) fprintf(out, "\n");
        else fprintf(out, ", %llu of %llu values differ, max |diff| %.6g\n", (unsigned long long)n_diff,
                     (unsigned long long)ds4_gguf_tensor_nelements(ta), d);
    }
    for (uint64_t i = 0; i < b->n_tensors; i++)
        if (!ds4_gguf_find_tensor(a, b->tensors[i].name))
            fprintf(out, "tensor %s: only in %s\n", b->tensors[i].name, b->path), n++;
    return n;
}
