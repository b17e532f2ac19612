/* safetensors: single files, shards through an index, and hostile headers. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h"
#include "st_image.h"
#include "test.h"

static const char *parse_error(const void *data, size_t n) {
    st_model *m = ds4_st_parse(data, n, "x.safetensors");
    if (m) { ds4_st_close(m); return NULL; }
    return ds4_error();
}

/* A raw image: u64 length, then the given header text, then `data_bytes` zeros. */
static const char *raw_error(const char *header, size_t data_bytes) {
    static uint8_t buf[8192];
    uint64_t n = strlen(header);
    memcpy(buf, &n, 8);
    memcpy(buf + 8, header, n);
    memset(buf + 8 + n, 0, data_bytes);
    return parse_error(buf, 8 + n + data_bytes);
}

#define EXPECT(header, data_bytes, needle)                                              \
    do {                                                                                \
        const char *e_ = raw_error(header, data_bytes);                                 \
        CHECKF(e_ && strstr(e_, needle) && !strncmp(e_, "x.safetensors: ", 15),         \
               "expected '%s', got '%s'", needle, e_ ? e_ : "(accepted)");              \
    } while (0)

static void reads_tensors(void) {
    st_image im = {0};
    float f[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[2] = {0x3c00, 0xc000};
    uint8_t fp8[4] = {0x38, 0x40, 0xb8, 0};
    st_image_add(&im, "a", "F32", 2, (uint64_t[]){2, 3}, f, sizeof f);
    st_image_add(&im, "b", "BF16", 1, (uint64_t[]){2}, h, sizeof h);
    st_image_add(&im, "c", "F8_E4M3", 2, (uint64_t[]){2, 2}, fp8, sizeof fp8);
    st_image_add(&im, "s", "F32", 0, NULL, f, 4); /* a scalar */
    ds4_buf b = {0};
    st_image_finish(&im, &b);
    st_model *m = ds4_st_parse(b.data, b.len, "x");
    CHECKF(m, "%s", ds4_error());
    const st_tensor *a = ds4_st_find(m, "a"), *c = ds4_st_find(m, "c"), *s = ds4_st_find(m, "s");
    CHECK(a && a->dtype == ST_F32 && a->n_dims == 2 && a->shape[1] == 3 && a->nbytes == 24);
    float v;
    memcpy(&v, a->data + 20, 4);
    CHECK(v == 6.0f);
    CHECK(c && c->dtype == ST_F8_E4M3 && c->data[1] == 0x40);
    CHECK(s && s->n_dims == 0 && ds4_st_nelements(s) == 1);
    CHECK(!ds4_st_find(m, "missing") && m->n_tensors == 4);
    ds4_st_close(m);
    /* every truncation is rejected */
    int accepted = 0;
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.data, n);
        st_model *t = ds4_st_parse(copy, n, "t");
        accepted += t != NULL;
        ds4_st_close(t);
        free(copy);
    }
    CHECKF(accepted == 0, "%d truncations accepted", accepted);
    mkdir("build/tests/corpus", 0755);
    mkdir("build/tests/corpus/safetensors", 0755);
    FILE *out = fopen("build/tests/corpus/safetensors/sample.safetensors", "wb");
    if (out) {
        fwrite(b.data, 1, b.len, out);
        fclose(out);
    }
    ds4_buf_free(&b);
}

static void rejects_hostile_headers(void) {
    uint8_t tiny[4] = {0};
    CHECK(parse_error(tiny, 4) && strstr(ds4_error(), "too small"));
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    CHECK(parse_error(huge, 16) && strstr(ds4_error(), "exceeds the file"));
    EXPECT("{\"a\":", 0, "not valid JSON");
    EXPECT("[1,2]", 0, "JSON object");
    EXPECT("{} xx", 0, "trailing bytes");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside the file");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, "need 12");
    EXPECT("{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unsupported dtype");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "begin <= end");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "overflow");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "needs dtype, shape and data_offsets");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, "overlap");
    EXPECT("{\"__metadata__\":{\"x\":1}}", 0, "not a string");
    /* names come from the file: a newline in one must not break the one-line error */
    const char *e = raw_error("{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16);
    CHECKF(e && strstr(e, "a?b") && !strchr(e, '\n'), "%s", e ? e : "(accepted)");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "at most 8");
}

static void reads_shards_and_rejects_bad_indexes(void) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/sharded", test_tmpdir());
    mkdir(dir, 0755);
    float one = 1.0f, two = 2.0f;
    st_image im = {0};
    st_image_add(&im, "x", "F32", 1, (uint64_t[]){1}, &one, 4);
    snprintf(path, sizeof path, "%s/part-1.safetensors", dir);
    CHECK(st_image_write(&im, path) == 0);
    st_image_add(&im, "y", "F32", 1, (uint64_t[]){1}, &two, 4);
    snprintf(path, sizeof path, "%s/part-2.safetensors", dir);
    CHECK(st_image_write(&im, path) == 0);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"weight_map\":{\"x\":\"part-1.safetensors\",\"y\":\"part-2.safetensors\"}}");
    fclose(f);
    st_model *m = ds4_st_open(dir);
    CHECKF(m, "%s", ds4_error());
    CHECK(m->n_shards == 2 && ds4_st_find(m, "x") && ds4_st_find(m, "y") && ds4_st_find(m, "y")->file == 1);
    ds4_st_close(m);
    f = fopen(path, "w");
    fprintf(f, "{\"weight_map\":{\"x\":\"../../etc/passwd\"}}");
    fclose(f);
    CHECK(!ds4_st_open(dir) && strstr(ds4_error(), "invalid shard name"));
    f = fopen(path, "w");
    fprintf(f, "{\"weight_map\":{\"z\":\"part-1.safetensors\"}}");
    fclose(f);
    CHECK(!ds4_st_open(dir) && strstr(ds4_error(), "'z' is listed but missing"));
    CHECK(!ds4_st_open("/nonexistent/dir") && strstr(ds4_error(), "/nonexistent/dir"));
}

const test_case safetensors_tests[] = {
    {"reads_tensors", reads_tensors},
    {"rejects_hostile_headers", rejects_hostile_headers},
    {"reads_shards_and_rejects_bad_indexes", reads_shards_and_rejects_bad_indexes},
    {0, 0},
};
