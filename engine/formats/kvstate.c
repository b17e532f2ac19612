/* kvstate.c - see kvstate.h. */
#include "kvstate.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static int compressor_init(ds4_kv_compressor *c, uint32_t width, uint32_t ratio, bool overlap) {
    memset(c, 0, sizeof *c);
    c->width = width;
    c->ratio = ratio;
    c->overlap = overlap;
    if (!width) return 0;
    const size_t proj = (size_t)ds4_kv_proj(c);
    c->buf_kv = ds4_calloc((size_t)ratio * proj, sizeof(float));
    c->buf_gate = ds4_calloc((size_t)ratio * proj, sizeof(float));
    if (!c->buf_kv || !c->buf_gate) return -1;
    if (overlap) {
        c->prev_kv = ds4_calloc((size_t)ratio * width, sizeof(float));
        c->prev_gate = ds4_calloc((size_t)ratio * width, sizeof(float));
        if (!c->prev_kv || !c->prev_gate) return -1;
    }
    return 0;
}

static void compressor_free(ds4_kv_compressor *c) {
    free(c->buf_kv);
    free(c->buf_gate);
    free(c->prev_kv);
    free(c->prev_gate);
    free(c->entries);
    memset(c, 0, sizeof *c);
}

int ds4_kv_snapshot_init(ds4_kv_snapshot *s, uint32_t n_layer, const ds4_kv_geometry *g) {
    memset(s, 0, sizeof *s);
    if (!(s->layers = ds4_calloc(n_layer, sizeof *s->layers))) return -1;
    s->n_layer = n_layer;
    for (uint32_t il = 0; il < n_layer; il++) {
        ds4_kv_layer *l = &s->layers[il];
        l->cap = g[il].window;
        l->dim = g[il].dim;
        l->window_kv = ds4_calloc((size_t)l->cap * l->dim, sizeof(float));
        l->window_pos = ds4_malloc((size_t)l->cap * sizeof(int64_t));
        if (!l->window_kv || !l->window_pos) goto fail;
        for (uint32_t i = 0; i < l->cap; i++) l->window_pos[i] = -1;
        if (compressor_init(&l->comp, g[il].ratio ? g[il].dim : 0, g[il].ratio, g[il].csa) < 0 ||
            compressor_init(&l->indexer, g[il].csa ? g[il].indexer_dim : 0, g[il].ratio, true) < 0)
            goto fail;
    }
    return 0;
fail:
    ds4_kv_snapshot_free(s);
    return -1;
}

void ds4_kv_snapshot_free(ds4_kv_snapshot *s) {
    for (uint32_t il = 0; s->layers && il < s->n_layer; il++) {
        free(s->layers[il].window_kv);
        free(s->layers[il].window_pos);
        compressor_free(&s->layers[il].comp);
        compressor_free(&s->layers[il].indexer);
    }
    free(s->layers);
    memset(s, 0, sizeof *s);
}

int ds4_kv_reserve_entries(ds4_kv_compressor *c, uint64_t n) {
    if (n <= c->cap_entries) return 0;
    uint64_t cap = c->cap_entries ? c->cap_entries : 64;
    while (cap < n) cap *= 2;
    float *e = realloc(c->entries, cap * (uint64_t)c->width * sizeof *e);
    if (!e) return ds4_fail("out of memory for %llu compressed entries", (unsigned long long)n);
    c->entries = e;
    c->cap_entries = cap;
    return 0;
}

static void compressor_copy(ds4_kv_compressor *d, const ds4_kv_compressor *s) {
    if (!s->width) return;
    const size_t buf = (size_t)s->ratio * ds4_kv_proj(s) * sizeof(float);
    memcpy(d->buf_kv, s->buf_kv, buf);
    memcpy(d->buf_gate, s->buf_gate, buf);
    if (s->overlap) {
        memcpy(d->prev_kv, s->prev_kv, (size_t)s->ratio * s->width * sizeof(float));
        memcpy(d->prev_gate, s->prev_gate, (size_t)s->ratio * s->width * sizeof(float));
    }
    if (s->n_entries) memcpy(d->entries, s->entries, s->n_entries * (uint64_t)s->width * sizeof(float));
    d->n_buf = s->n_buf;
    d->has_prev = s->has_prev;
    d->n_entries = s->n_entries;
}

int ds4_kv_snapshot_copy(ds4_kv_snapshot *dst, const ds4_kv_snapshot *src) {
    for (uint32_t il = 0; il < src->n_layer; il++)
        if (ds4_kv_reserve_entries(&dst->layers[il].comp, src->layers[il].comp.n_entries) < 0 ||
            ds4_kv_reserve_entries(&dst->layers[il].indexer, src->layers[il].indexer.n_entries) < 0)
            return -1;
    for (uint32_t il = 0; il < src->n_layer; il++) {
        const ds4_kv_layer *s = &src->layers[il];
        ds4_kv_layer *d = &dst->layers[il];
        memcpy(d->window_kv, s->window_kv, (size_t)s->cap * s->dim * sizeof(float));
        memcpy(d->window_pos, s->window_pos, (size_t)s->cap * sizeof(int64_t));
        compressor_copy(&d->comp, &s->comp);
        compressor_copy(&d->indexer, &s->indexer);
    }
    dst->pos = src->pos;
    return 0;
}

void ds4_kv_snapshot_clear(ds4_kv_snapshot *s) {
    for (uint32_t il = 0; il < s->n_layer; il++) {
        ds4_kv_layer *l = &s->layers[il];
        for (uint32_t i = 0; i < l->cap; i++) l->window_pos[i] = -1;
        ds4_kv_compressor *cs[2] = {&l->comp, &l->indexer};
        for (int k = 0; k < 2; k++) {
            cs[k]->n_buf = 0;
            cs[k]->has_prev = 0;
            cs[k]->n_entries = 0;
        }
    }
    s->pos = 0;
}

static uint64_t compressor_bytes(const ds4_kv_compressor *c) {
    if (!c->width) return 0;
    uint64_t b = 2 * (uint64_t)c->ratio * ds4_kv_proj(c) * sizeof(float);
    if (c->overlap) b += 2 * (uint64_t)c->ratio * c->width * sizeof(float);
    return b + c->n_entries * (uint64_t)c->width * sizeof(float);
}

uint64_t ds4_kv_snapshot_bytes(const ds4_kv_snapshot *s) {
    uint64_t b = 0;
    for (uint32_t il = 0; il < s->n_layer; il++) {
        const ds4_kv_layer *l = &s->layers[il];
        b += (uint64_t)l->cap * l->dim * sizeof(float) + compressor_bytes(&l->comp) + compressor_bytes(&l->indexer);
    }
    return b;
}

static int check_compressor(const ds4_kv_compressor *c, uint64_t pos, uint32_t il) {
    if (!c->width) return 0;
    if ((uint64_t)c->n_buf != pos % c->ratio || c->has_prev != (c->overlap && pos >= c->ratio) ||
        c->n_entries != pos / c->ratio)
        return ds4_fail("layer %u: a compressor state that %llu tokens cannot leave", il, (unsigned long long)pos);
    return 0;
}

int ds4_kv_snapshot_check(const ds4_kv_snapshot *s, uint64_t pos) {
    for (uint32_t il = 0; il < s->n_layer; il++) {
        const ds4_kv_layer *l = &s->layers[il];
        for (uint32_t slot = 0; slot < l->cap; slot++) {
            const int64_t back = ((int64_t)pos - 1 - (int64_t)slot) % l->cap;
            const int64_t want = (int64_t)pos - 1 - (int64_t)slot < 0 ? -1 : (int64_t)pos - 1 - back;
            if (l->window_pos[slot] != want)
                return ds4_fail("layer %u: an impossible window (slot %u)", il, slot);
        }
        if (check_compressor(&l->comp, pos, il) < 0 || check_compressor(&l->indexer, pos, il) < 0) return -1;
    }
    return 0;
}
