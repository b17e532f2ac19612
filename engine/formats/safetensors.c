/* safetensors.c - see safetensors.h. Format: u64 header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the data section that the offsets index. */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (256ull << 20)

static const struct { const char *name; size_t size; } dtypes[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8}, [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E8M0] = {"F8_E8M0", 1},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
    [ST_U64] = {"U64", 8}, [ST_U32] = {"U32", 4}, [ST_U16] = {"U16", 2}, [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},
};

const char *ds4_st_dtype_name(st_dtype t) { return t < ST_DTYPE_COUNT ? dtypes[t].name : "?"; }
size_t ds4_st_dtype_size(st_dtype t) { return t < ST_DTYPE_COUNT ? dtypes[t].size : 0; }

uint64_t ds4_st_nelements(const st_tensor *t) {
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

static int dtype_from_name(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (!strcmp(dtypes[i].name, s)) { *out = (st_dtype)i; return 0; }
    return -1;
}

/* Reads a JSON integer that must be a non-negative whole number. */
static int json_u64(json_object *o, uint64_t *out) {
    if (!o || !json_object_is_type(o, json_type_int)) return -1;
    errno = 0;
    int64_t v = json_object_get_int64(o);
    if (v < 0) return -1;
    /* json-c saturates out-of-range values at INT64_MAX: treat as invalid */
    if (v == INT64_MAX) return -1;
    *out = (uint64_t)v;
    return 0;
}

typedef struct { uint64_t begin, end; const char *name; } span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Tensor names come from the file: print them safely. */
static const char *safe(const char *name) {
    static _Thread_local char buf[2][96];
    static _Thread_local int which;
    which ^= 1;
    return ds4_printable(buf[which], sizeof buf[which], name, strlen(name));
}

static int add_tensor(st_model *m, const char *name, const st_tensor *t) {
    if (m->n_tensors % 256 == 0) {
        st_tensor *p = ds4_realloc(m->tensors, (m->n_tensors + 256) * sizeof *p);
        if (!p) return -1;
        m->tensors = p;
    }
    st_tensor *dst = &m->tensors[m->n_tensors];
    *dst = *t;
    dst->name = ds4_arena_strndup(&m->arena, name, strlen(name));
    if (!dst->name) return -1;
    int r = ds4_strmap_put(&m->index, dst->name, strlen(dst->name), m->n_tensors);
    if (r < 0) return -1;
    if (r == 0) return ds4_fail("tensor '%s' appears twice", safe(name));
    m->n_tensors++;
    return 0;
}

/* Parse the header of the shard `file` (already mapped) and add its tensors. */
static int parse_shard(st_model *m, uint32_t file, const uint8_t *base, size_t size) {
    if (size < 8) return ds4_fail("truncated file: %zu bytes, too small for a safetensors header", size);
    uint64_t hlen;
    memcpy(&hlen, base, 8);
    if (hlen > size - 8)
        return ds4_fail("header length %llu exceeds the file (%zu bytes)", (unsigned long long)hlen, size);
    if (hlen > MAX_HEADER) return ds4_fail("header length %llu is implausibly large", (unsigned long long)hlen);
    if (hlen < 2) return ds4_fail("header of %llu bytes is not a JSON object", (unsigned long long)hlen);
    const char *json = (const char *)base + 8;
    if (json[0] != '{') return ds4_fail("header does not start with a JSON object");
    if (memchr(json, 0, hlen)) return ds4_fail("header contains a NUL byte");

    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok) return ds4_fail("out of memory");
    json_object *root = json_tokener_parse_ex(tok, json, (int)hlen);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        if (root) json_object_put(root);
        return ds4_fail("header is not valid JSON (%s)",
                        jerr == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(jerr));
    }
    for (size_t i = used; i < hlen; i++)
        if (json[i] != ' ' && json[i] != '\t' && json[i] != '\n' && json[i] != '\r') {
            json_object_put(root);
            return ds4_fail("header has trailing bytes after the JSON object");
        }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return ds4_fail("header is not a JSON object");
    }

    const uint8_t *data = base + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    size_t n = (size_t)json_object_object_length(root), ns = 0;
    span *spans = ds4_calloc(n ? n : 1, sizeof *spans);
    int rc = spans ? 0 : -1;
    json_object_object_foreach(root, key, val) {
        if (rc < 0) break;
        if (!strcmp(key, "__metadata__")) {
            if (!json_object_is_type(val, json_type_object)) {
                rc = ds4_fail("__metadata__ is not an object");
                break;
            }
            json_object_object_foreach(val, mk, mv) {
                (void)mk;
                if (!json_object_is_type(mv, json_type_string)) {
                    rc = ds4_fail("__metadata__ value of '%s' is not a string", safe(mk));
                    break;
                }
            }
            continue;
        }
        st_tensor t = {.file = file};
        json_object *jd, *js, *jo;
        if (key[0] == 0) { rc = ds4_fail("empty tensor name"); break; }
        if (!json_object_is_type(val, json_type_object) ||
            !json_object_object_get_ex(val, "dtype", &jd) || !json_object_object_get_ex(val, "shape", &js) ||
            !json_object_object_get_ex(val, "data_offsets", &jo)) {
            rc = ds4_fail("tensor '%s': entry needs dtype, shape and data_offsets", safe(key));
            break;
        }
        if (!json_object_is_type(jd, json_type_string) || dtype_from_name(json_object_get_string(jd), &t.dtype) < 0) {
            rc = ds4_fail("tensor '%s': unsupported dtype %.40s", safe(key), json_object_to_json_string(jd));
            break;
        }
        if (!json_object_is_type(js, json_type_array) || json_object_array_length(js) > ST_MAX_DIMS) {
            rc = ds4_fail("tensor '%s': shape must be an array of at most %d integers", safe(key), ST_MAX_DIMS);
            break;
        }
        t.n_dims = (uint32_t)json_object_array_length(js);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < t.n_dims && rc == 0; d++) {
            if (json_u64(json_object_array_get_idx(js, d), &t.shape[d]) < 0)
                rc = ds4_fail("tensor '%s': shape[%u] is not a non-negative integer", safe(key), d);
            else if (!ds4_mul_ok(nel, t.shape[d], &nel))
                rc = ds4_fail("tensor '%s': shape overflows", safe(key));
        }
        if (rc < 0) break;
        uint64_t begin, end, want;
        if (!json_object_is_type(jo, json_type_array) || json_object_array_length(jo) != 2 ||
            json_u64(json_object_array_get_idx(jo, 0), &begin) < 0 ||
            json_u64(json_object_array_get_idx(jo, 1), &end) < 0 || begin > end) {
            rc = ds4_fail("tensor '%s': data_offsets must be [begin, end] with begin <= end", safe(key));
            break;
        }
        if (!ds4_mul_ok(nel, dtypes[t.dtype].size, &want) || end - begin != want) {
            rc = ds4_fail("tensor '%s': %llu bytes of data but shape and dtype need %llu", safe(key),
                          (unsigned long long)(end - begin), (unsigned long long)want);
            break;
        }
        if (end > data_size) {
            rc = ds4_fail("tensor '%s': data [%llu, %llu) lies outside the file (data section %llu bytes)",
                          safe(key), (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
            break;
        }
        t.nbytes = want;
        t.data = data + begin;
        if (add_tensor(m, key, &t) < 0) { rc = -1; break; }
        spans[ns++] = (span){begin, end, m->tensors[m->n_tensors - 1].name};
    }
    if (rc == 0) {
        qsort(spans, ns, sizeof *spans, cmp_span);
        for (size_t i = 1; i < ns && rc == 0; i++)
            if (spans[i - 1].end > spans[i].begin && spans[i].end > spans[i].begin)
                rc = ds4_fail("tensors '%s' and '%s' overlap", safe(spans[i - 1].name), safe(spans[i].name));
    }
    free(spans);
    json_object_put(root);
    return rc;
}

static st_model *model_new(void) {
    st_model *m = ds4_calloc(1, sizeof *m);
    if (m && ds4_strmap_init(&m->index, 1024) < 0) {
        free(m);
        return NULL;
    }
    return m;
}

st_model *ds4_st_parse(const void *data, size_t size, const char *label) {
    st_model *m = model_new();
    if (!m) return NULL;
    if (parse_shard(m, 0, data, size) < 0) {
        ds4_error_prefix(label);
        ds4_st_close(m);
        return NULL;
    }
    return m;
}

static int open_shard(st_model *m, const char *path) {
    st_shard *s = ds4_realloc(m->shards, (m->n_shards + 1) * sizeof *s);
    if (!s) return -1;
    m->shards = s;
    s = &m->shards[m->n_shards];
    memset(s, 0, sizeof *s);
    s->path = ds4_strndup(path, strlen(path));
    if (!s->path) return -1;
    if (ds4_mmap_open(&s->map, path) < 0) {
        free(s->path);
        return -1;
    }
    m->n_shards++;
    if (parse_shard(m, m->n_shards - 1, s->map.data, s->map.size) < 0) {
        ds4_error_prefix(path);
        return -1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Shard names from the index: plain file names in the checkpoint directory only. */
static int shards_from_index(st_model *m, const char *dir, const char *index_path) {
    char *text = ds4_read_file(index_path, NULL);
    if (!text) return -1;
    json_object *root = json_tokener_parse(text), *wm;
    free(text);
    int rc = 0;
    if (!root || !json_object_object_get_ex(root, "weight_map", &wm) || !json_object_is_type(wm, json_type_object)) {
        rc = ds4_fail("%s: not a safetensors index (no weight_map object)", index_path);
        goto done;
    }
    size_t n = 0, cap = 16;
    char **files = ds4_malloc(cap * sizeof *files);
    if (!files) { rc = -1; goto done; }
    json_object_object_foreach(wm, tname, fobj) {
        const char *file = json_object_is_type(fobj, json_type_string) ? json_object_get_string(fobj) : NULL;
        if (!file || !file[0] || strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, ".")) {
            rc = ds4_fail("%s: tensor '%s' maps to an invalid shard name", index_path, safe(tname));
            break;
        }
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++) seen = !strcmp(files[i], file);
        if (seen) continue;
        if (n == cap) {
            char **p = ds4_realloc(files, (cap *= 2) * sizeof *files);
            if (!p) { rc = -1; break; }
            files = p;
        }
        files[n++] = (char *)file;
    }
    qsort(files, n, sizeof *files, cmp_str);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        rc = open_shard(m, path);
    }
    if (rc == 0) {
        json_object_object_foreach(wm, tname2, fobj2) {
            (void)fobj2;
            if (!ds4_st_find(m, tname2)) {
                rc = ds4_fail("%s: tensor '%s' is listed but missing from its shard", index_path, safe(tname2));
                break;
            }
        }
    }
    free(files);
done:
    if (root) json_object_put(root);
    return rc;
}

static int shards_from_dir(st_model *m, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return ds4_fail("%s: cannot open directory", dir);
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) && rc == 0) {
        size_t len = strlen(e->d_name);
        if (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors")) {
            char **p = ds4_realloc(names, (n + 1) * sizeof *names);
            if (!p || !(p[n] = ds4_strndup(e->d_name, len))) { names = p ? p : names; rc = -1; break; }
            names = p;
            n++;
        }
    }
    closedir(d);
    if (rc == 0 && n == 0) rc = ds4_fail("%s: no .safetensors files found", dir);
    if (names) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = open_shard(m, path);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

st_model *ds4_st_open(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0) {
        ds4_fail("%s: no such file or directory", path);
        return NULL;
    }
    st_model *m = model_new();
    if (!m) return NULL;
    int rc;
    if (S_ISDIR(st.st_mode)) {
        char index[4096];
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", path);
        rc = access(index, R_OK) == 0 ? shards_from_index(m, path, index) : shards_from_dir(m, path);
    } else {
        rc = open_shard(m, path);
    }
    if (rc < 0) {
        ds4_st_close(m);
        return NULL;
    }
    return m;
}

void ds4_st_close(st_model *m) {
    if (!m) return;
    for (uint32_t i = 0; i < m->n_shards; i++) {
        ds4_mmap_close(&m->shards[i].map);
        free(m->shards[i].path);
    }
    free(m->shards);
    free(m->tensors);
    ds4_arena_free(&m->arena);
    ds4_strmap_free(&m->index);
    free(m);
}

const st_tensor *ds4_st_find(const st_model *m, const char *name) {
    uint64_t i;
    if (!ds4_strmap_get(&m->index, name, strlen(name), &i)) return NULL;
    return &m->tensors[i];
}
