/* GGUF: writer/reader round trip of every value type, and hostile files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "quants.h"
#include "test.h"

/* Writes a file with one key of every type (nested arrays included) and three tensors.
 * Used as the fuzzing seed too (build/tests/corpus). */
static int write_sample(const char *path, uint32_t alignment) {
    gguf_writer *w = ds4_gguf_writer_open(path);
    if (!w) return -1;
    int rc = 0;
    if (alignment != GGUF_DEFAULT_ALIGNMENT) rc |= ds4_gguf_writer_set_alignment(w, alignment);
    gguf_value v;
    v = (gguf_value){.type = GGUF_TYPE_UINT8, .u8 = 200}; rc |= ds4_gguf_writer_kv(w, "t.u8", &v);
    v = (gguf_value){.type = GGUF_TYPE_INT8, .i8 = -100}; rc |= ds4_gguf_writer_kv(w, "t.i8", &v);
    v = (gguf_value){.type = GGUF_TYPE_UINT16, .u16 = 60000}; rc |= ds4_gguf_writer_kv(w, "t.u16", &v);
    v = (gguf_value){.type = GGUF_TYPE_INT16, .i16 = -30000}; rc |= ds4_gguf_writer_kv(w, "t.i16", &v);
    rc |= ds4_gguf_writer_kv_u32(w, "t.u32", 4000000000u);
    rc |= ds4_gguf_writer_kv_i32(w, "t.i32", -2000000000);
    rc |= ds4_gguf_writer_kv_f32(w, "t.f32", 1.5f);
    rc |= ds4_gguf_writer_kv_bool(w, "t.bool", true);
    rc |= ds4_gguf_writer_kv_str(w, "t.str", "h\xc3\xa9llo \"world\"");
    rc |= ds4_gguf_writer_kv_u64(w, "t.u64", 1ull << 60);
    v = (gguf_value){.type = GGUF_TYPE_INT64, .i64 = -(1ll << 60)}; rc |= ds4_gguf_writer_kv(w, "t.i64", &v);
    v = (gguf_value){.type = GGUF_TYPE_FLOAT64, .f64 = 3.25}; rc |= ds4_gguf_writer_kv(w, "t.f64", &v);
    const int32_t ints[3] = {1, -2, 3};
    rc |= ds4_gguf_writer_kv_arr(w, "t.arr_i32", GGUF_TYPE_INT32, ints, 3);
    const char *strs[3] = {"a", "", "ccc"};
    rc |= ds4_gguf_writer_kv_arr_str(w, "t.arr_str", strs, 3);
    /* [[1, -2, 3], [1, -2]] : an array of arrays */
    gguf_value inner[2] = {
        {.type = GGUF_TYPE_ARRAY, .arr = {.type = GGUF_TYPE_INT32, .n = 3, .data = ints}},
        {.type = GGUF_TYPE_ARRAY, .arr = {.type = GGUF_TYPE_INT32, .n = 2, .data = ints}},
    };
    v = (gguf_value){.type = GGUF_TYPE_ARRAY, .arr = {.type = GGUF_TYPE_ARRAY, .n = 2, .items = inner}};
    rc |= ds4_gguf_writer_kv(w, "t.nested", &v);
    v = (gguf_value){.type = GGUF_TYPE_ARRAY, .arr = {.type = GGUF_TYPE_UINT8, .n = 0, .data = ints}};
    rc |= ds4_gguf_writer_kv(w, "t.empty", &v);
    const uint64_t ne_a[2] = {4, 3}, ne_b[1] = {64}, ne_c[3] = {2, 2, 2};
    rc |= ds4_gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 2, ne_a);
    rc |= ds4_gguf_writer_add_tensor(w, "b", GGML_TYPE_Q8_0, 1, ne_b);
    rc |= ds4_gguf_writer_add_tensor(w, "c", GGML_TYPE_F16, 3, ne_c);
    if (rc) { ds4_gguf_writer_abort(w); return -1; }
    float fa[12];
    for (int i = 0; i < 12; i++) fa[i] = (float)i * 0.5f;
    float fb[64];
    for (int i = 0; i < 64; i++) fb[i] = (float)(i - 32);
    block_q8_0 qb[2];
    ds4_quantize_row_q8_0(fb, qb, 64);
    uint16_t fc[8];
    ds4_f32_to_f16_row(fa, fc, 8);
    /* tensor a arrives in two pieces */
    if (ds4_gguf_writer_write(w, fa, 20) < 0 || ds4_gguf_writer_write(w, (uint8_t *)fa + 20, 28) < 0 ||
        ds4_gguf_writer_write(w, qb, sizeof qb) < 0 || ds4_gguf_writer_write(w, fc, sizeof fc) < 0) {
        ds4_gguf_writer_abort(w);
        return -1;
    }
    return ds4_gguf_writer_finish(w);
}

static void round_trip_every_type(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/sample.gguf", test_tmpdir());
    CHECKF(write_sample(path, 64) == 0, "%s", ds4_error());
    gguf_file *f = ds4_gguf_open(path);
    CHECKF(f, "%s", ds4_error());
    uint64_t u;
    double d;
    gguf_str s;
    bool b;
    CHECK(f->version == 3 && f->alignment == 64 && f->n_tensors == 3);
    CHECK(ds4_gguf_get(f, "t.u8")->u8 == 200 && ds4_gguf_get(f, "t.i8")->i8 == -100);
    CHECK(ds4_gguf_get(f, "t.u16")->u16 == 60000 && ds4_gguf_get(f, "t.i16")->i16 == -30000);
    CHECK(ds4_gguf_get_u64(f, "t.u32", &u) && u == 4000000000u);
    CHECK(ds4_gguf_get(f, "t.i32")->i32 == -2000000000 && !ds4_gguf_get_u64(f, "t.i32", &u));
    CHECK(ds4_gguf_get_f64(f, "t.f32", &d) && d == 1.5);
    CHECK(ds4_gguf_get_bool(f, "t.bool", &b) && b);
    CHECK(ds4_gguf_get_str(f, "t.str", &s) && ds4_gguf_str_eq(s, "h\xc3\xa9llo \"world\""));
    CHECK(ds4_gguf_get_u64(f, "t.u64", &u) && u == 1ull << 60);
    CHECK(ds4_gguf_get(f, "t.i64")->i64 == -(1ll << 60) && ds4_gguf_get(f, "t.f64")->f64 == 3.25);
    const gguf_value *a = ds4_gguf_get(f, "t.arr_i32");
    CHECK(a && a->type == GGUF_TYPE_ARRAY && a->arr.n == 3 && ds4_gguf_arr_f64(a, 1, &d) && d == -2.0);
    const gguf_value *st = ds4_gguf_get(f, "t.arr_str");
    CHECK(st->arr.n == 3 && st->arr.items[1].str.len == 0 && ds4_gguf_str_eq(st->arr.items[2].str, "ccc"));
    const gguf_value *nest = ds4_gguf_get(f, "t.nested");
    CHECK(nest->arr.type == GGUF_TYPE_ARRAY && nest->arr.n == 2 && nest->arr.items[1].arr.n == 2);
    CHECK(ds4_gguf_arr_u64(&nest->arr.items[0], 2, &u) && u == 3);
    CHECK(ds4_gguf_get(f, "t.empty")->arr.n == 0 && !ds4_gguf_get(f, "missing"));
    char text[256];
    ds4_gguf_value_format(nest, text, sizeof text, 8);
    CHECKF(!strcmp(text, "[[1, -2, 3], [1, -2]]"), "formatted as %s", text);
    const gguf_tensor *ta = ds4_gguf_find_tensor(f, "a"), *tb = ds4_gguf_find_tensor(f, "b"), *tc = ds4_gguf_find_tensor(f, "c");
    CHECK(ta && tb && tc && !ds4_gguf_find_tensor(f, "d"));
    CHECK(ta->size == 48 && tb->size == 68 && tc->size == 16 && tc->ne[2] == 2);
    for (int i = 0; i < 3; i++) CHECK(f->tensors[i].offset % 64 == 0);
    CHECK((f->data_offset % 64) == 0);
    float back[64];
    CHECK(ds4_row_to_f32(GGML_TYPE_F32, ta->data, back, 12) == 0 && back[11] == 5.5f);
    CHECK(ds4_row_to_f32(GGML_TYPE_Q8_0, tb->data, back, 64) == 0 && fabsf(back[0] + 32.0f) < 0.13f && fabsf(back[63] - 31.0f) < 0.13f);
    CHECK(ds4_row_to_f32(GGML_TYPE_F16, tc->data, back, 8) == 0 && back[7] == 3.5f);
    ds4_gguf_close(f);
    /* Keep a copy as a fuzzing seed. */
    mkdir("build/tests/corpus", 0755);
    mkdir("build/tests/corpus/gguf", 0755);
    write_sample("build/tests/corpus/gguf/sample.gguf", GGUF_DEFAULT_ALIGNMENT);
}

static void writer_leaves_nothing_on_failure(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/partial.gguf", test_tmpdir());
    gguf_writer *w = ds4_gguf_writer_open(path);
    CHECK(w);
    const uint64_t ne[1] = {8};
    CHECK(ds4_gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne) == 0);
    CHECK(ds4_gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne) < 0); /* duplicate */
    CHECK(ds4_gguf_writer_kv_u32(w, "k", 1) == 0 && ds4_gguf_writer_kv_u32(w, "k", 2) < 0);
    CHECK(ds4_gguf_writer_add_tensor(w, "y", GGML_TYPE_Q8_0, 1, ne) < 0); /* 8 is not a q8_0 row */
    float data[4] = {0};
    CHECK(ds4_gguf_writer_write(w, data, sizeof data) == 0); /* half of x */
    CHECK(ds4_gguf_writer_finish(w) < 0);
    CHECKF(strstr(ds4_error(), "got 16 of 32 bytes"), "%s", ds4_error());
    CHECK(access(path, F_OK) != 0);
    /* no temporary left behind either */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);
}

/* ---- hostile files, built byte by byte ---- */

typedef struct { uint8_t b[4096]; size_t n; } img;
static void put(img *m, const void *p, size_t n) { memcpy(m->b + m->n, p, n); m->n += n; }
static void u32(img *m, uint32_t v) { put(m, &v, 4); }
static void u64(img *m, uint64_t v) { put(m, &v, 8); }
static void str(img *m, const char *s) { u64(m, strlen(s)); put(m, s, strlen(s)); }
static void header(img *m, uint64_t n_tensors, uint64_t n_kv) {
    m->n = 0;
    put(m, "GGUF", 4);
    u32(m, 3);
    u64(m, n_tensors);
    u64(m, n_kv);
}
static void tensor(img *m, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1, uint64_t off) {
    str(m, name);
    u32(m, 2);
    u64(m, ne0);
    u64(m, ne1);
    u32(m, type);
    u64(m, off);
}
static void pad_data(img *m, size_t bytes) {
    while (m->n % 32) m->b[m->n++] = 0;
    memset(m->b + m->n, 0, bytes);
    m->n += bytes;
}

static const char *parse_error(const img *m) {
    gguf_file *f = ds4_gguf_parse(m->b, m->n, "x.gguf");
    if (f) { ds4_gguf_close(f); return NULL; }
    return ds4_error();
}

#define EXPECT_ERROR(m, needle)                                                      \
    do {                                                                             \
        const char *e_ = parse_error(m);                                             \
        CHECKF(e_ && strstr(e_, needle) && !strncmp(e_, "x.gguf: ", 8) && !strchr(e_, '\n'), \
               "expected '%s', got '%s'", needle, e_ ? e_ : "(accepted)");           \
    } while (0)

static void rejects_hostile_headers(void) {
    img m;
    header(&m, 0, 0);
    CHECK(parse_error(&m) == NULL);
    memcpy(m.b, "GGUX", 4);
    EXPECT_ERROR(&m, "not a GGUF file");
    header(&m, 0, 0);
    memcpy(m.b + 4, (uint32_t[]){1}, 4);
    EXPECT_ERROR(&m, "version 1");
    memcpy(m.b + 4, (uint32_t[]){0x03000000}, 4);
    EXPECT_ERROR(&m, "big-endian");
    memcpy(m.b + 4, (uint32_t[]){7}, 4);
    EXPECT_ERROR(&m, "unsupported GGUF version 7");
    header(&m, 0, UINT64_MAX);
    EXPECT_ERROR(&m, "metadata count");
    header(&m, 1ull << 62, 0);
    EXPECT_ERROR(&m, "tensor count");
    header(&m, 0, 1);
    u64(&m, UINT64_MAX - 3);
    pad_data(&m, 64);
    EXPECT_ERROR(&m, "string length");
    header(&m, 0, 1);
    str(&m, "k");
    u32(&m, GGUF_TYPE_ARRAY);
    u32(&m, GGUF_TYPE_UINT64);
    u64(&m, 1ull << 61);
    EXPECT_ERROR(&m, "exceeds the file");
    header(&m, 0, 1);
    str(&m, "k");
    u32(&m, 99);
    EXPECT_ERROR(&m, "invalid value type 99");
    header(&m, 0, 1);
    str(&m, "k");
    u32(&m, GGUF_TYPE_BOOL);
    m.b[m.n++] = 2;
    EXPECT_ERROR(&m, "bool value 2");
    header(&m, 0, 2);
    str(&m, "k"); u32(&m, GGUF_TYPE_UINT32); u32(&m, 1);
    str(&m, "k"); u32(&m, GGUF_TYPE_UINT32); u32(&m, 2);
    EXPECT_ERROR(&m, "duplicate key 'k'");
    header(&m, 0, 1);
    str(&m, "general.alignment"); u32(&m, GGUF_TYPE_UINT32); u32(&m, 48);
    EXPECT_ERROR(&m, "not a power of two");
    /* arrays nested past the limit */
    header(&m, 0, 1);
    str(&m, "deep");
    u32(&m, GGUF_TYPE_ARRAY);
    for (int i = 0; i < 12; i++) { u32(&m, GGUF_TYPE_ARRAY); u64(&m, 1); }
    u32(&m, GGUF_TYPE_UINT8);
    u64(&m, 0);
    EXPECT_ERROR(&m, "nested deeper");
}

static void rejects_hostile_tensors(void) {
    img m;
    header(&m, 1, 0);
    tensor(&m, "w", GGML_TYPE_F32, 4, 2, 0);
    pad_data(&m, 32);
    CHECK(parse_error(&m) == NULL);
    m.n -= 1;
    EXPECT_ERROR(&m, "outside the file");
    header(&m, 1, 0);
    tensor(&m, "w", 4, 4, 2, 0); /* id 4 was Q4_2, removed from ggml */
    pad_data(&m, 32);
    EXPECT_ERROR(&m, "unknown ggml type 4");
    header(&m, 1, 0);
    tensor(&m, "w", GGML_TYPE_Q8_0, 48, 1, 0);
    pad_data(&m, 64);
    EXPECT_ERROR(&m, "not a multiple of the q8_0 block");
    header(&m, 1, 0);
    tensor(&m, "w", GGML_TYPE_F32, 1ull << 40, 1ull << 40, 0);
    EXPECT_ERROR(&m, "dimensions overflow");
    header(&m, 1, 0);
    tensor(&m, "w", GGML_TYPE_F32, 4, 1, 8);
    pad_data(&m, 64);
    EXPECT_ERROR(&m, "not a multiple of the alignment");
    header(&m, 2, 0);
    tensor(&m, "w", GGML_TYPE_F32, 16, 1, 0);
    tensor(&m, "v", GGML_TYPE_F32, 16, 1, 32);
    pad_data(&m, 128);
    EXPECT_ERROR(&m, "overlap");
    header(&m, 2, 0);
    tensor(&m, "w", GGML_TYPE_F32, 4, 1, 0);
    tensor(&m, "w", GGML_TYPE_F32, 4, 1, 32);
    pad_data(&m, 64);
    EXPECT_ERROR(&m, "duplicate tensor name 'w'");
    header(&m, 1, 0);
    str(&m, "w");
    u32(&m, 5);
    pad_data(&m, 64);
    EXPECT_ERROR(&m, "5 dimensions");
    header(&m, 1, 0);
    tensor(&m, "w", GGML_TYPE_F32, 4, 1, UINT64_MAX - 31);
    pad_data(&m, 64);
    EXPECT_ERROR(&m, "outside the file");
}

/* Every truncation of a valid file must be rejected cleanly (ASan proves no overread). */
static void rejects_every_truncation(void) {
    size_t len;
    char path[512];
    snprintf(path, sizeof path, "%s/trunc.gguf", test_tmpdir());
    CHECK(write_sample(path, GGUF_DEFAULT_ALIGNMENT) == 0);
    uint8_t *full = (uint8_t *)ds4_read_file(path, &len);
    CHECK(full);
    gguf_file *whole = ds4_gguf_parse(full, len, "t");
    CHECK(whole);
    size_t end = 0; /* the last byte any tensor needs; only the padding after it may go */
    for (uint64_t i = 0; i < whole->n_tensors; i++) {
        size_t e = whole->data_offset + whole->tensors[i].offset + whole->tensors[i].size;
        if (e > end) end = e;
    }
    ds4_gguf_close(whole);
    int accepted = 0;
    for (size_t n = 0; n < end; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact-size buffer so ASan sees any overread */
        memcpy(copy, full, n);
        gguf_file *f = ds4_gguf_parse(copy, n, "t");
        accepted += f != NULL;
        ds4_gguf_close(f);
        free(copy);
    }
    free(full);
    CHECKF(accepted == 0, "%d truncated images were accepted", accepted);
}

const test_case gguf_tests[] = {
    {"round_trip_every_type", round_trip_every_type},
    {"writer_leaves_nothing_on_failure", writer_leaves_nothing_on_failure},
    {"rejects_hostile_headers", rejects_hostile_headers},
    {"rejects_hostile_tensors", rejects_hostile_tensors},
    {"rejects_every_truncation", rejects_every_truncation},
    {0, 0},
};
