/* mem.c - see mem.h. */
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "hash.h"

void *ds4_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) ds4_fail("out of memory allocating %zu bytes", n);
    return p;
}

void *ds4_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) ds4_fail("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *ds4_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) ds4_fail("out of memory allocating %zu bytes", n);
    return q;
}

char *ds4_strndup(const char *s, size_t n) {
    char *p = ds4_malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- arena ---- */

struct ds4_arena_block {
    ds4_arena_block *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
};

void *ds4_arena_alloc(ds4_arena *a, size_t n) {
    n = ds4_align_up(n ? n : 1, 16);
    ds4_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = ds4_malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *ds4_arena_strndup(ds4_arena *a, const char *s, size_t n) {
    char *p = ds4_arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void ds4_arena_free(ds4_arena *a) {
    while (a->head) {
        ds4_arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

/* ---- string map (FNV-1a, linear probing, load factor <= 1/2) ---- */

int ds4_strmap_init(ds4_strmap *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 1) cap *= 2;
    memset(m, 0, sizeof *m);
    m->cap = cap;
    m->keys = ds4_calloc(cap, sizeof *m->keys);
    m->lens = ds4_calloc(cap, sizeof *m->lens);
    m->vals = ds4_calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->lens || !m->vals) {
        ds4_strmap_free(m);
        return -1;
    }
    return 0;
}

static size_t strmap_slot(const ds4_strmap *m, const char *key, size_t len) {
    size_t i = ds4_fnv1a(DS4_FNV_START, key, len) & (m->cap - 1);
    while (m->keys[i] && !(m->lens[i] == len && memcmp(m->keys[i], key, len) == 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int strmap_grow(ds4_strmap *m) {
    ds4_strmap bigger;
    if (ds4_strmap_init(&bigger, m->cap) < 0) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) ds4_strmap_put(&bigger, m->keys[i], m->lens[i], m->vals[i]);
    ds4_strmap_free(m);
    *m = bigger;
    return 0;
}

int ds4_strmap_put(ds4_strmap *m, const char *key, size_t len, uint64_t val) {
    if ((m->count + 1) * 2 > m->cap && strmap_grow(m) < 0) return -1;
    size_t i = strmap_slot(m, key, len);
    if (m->keys[i]) return 0;
    m->keys[i] = key;
    m->lens[i] = len;
    m->vals[i] = val;
    m->count++;
    return 1;
}

bool ds4_strmap_get(const ds4_strmap *m, const char *key, size_t len, uint64_t *val) {
    if (!m->cap) return false;
    size_t i = strmap_slot(m, key, len);
    if (!m->keys[i]) return false;
    if (val) *val = m->vals[i];
    return true;
}

void ds4_strmap_free(ds4_strmap *m) {
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- buffers and files ---- */

int ds4_buf_append(ds4_buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = ds4_realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void ds4_buf_free(ds4_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
