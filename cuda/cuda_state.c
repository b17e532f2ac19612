/* cuda_state.c - the CUDA backend's KV state: per sequence and layer the window ring and
 * the compressors' buffers in one device allocation, the compressed entries in their own,
 * which grows by doubling as the context does; copied to and from kvstate.h's layout
 * (state files, the disk cache, another backend). The counts (entries, buffered tokens,
 * has_prev) follow from the tokens a layer has taken, as kvstate.h states. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "util.h"

static uint64_t proj_of(uint32_t width, bool overlap) { return (uint64_t)(overlap ? 2 : 1) * width; }

/* Floats of one compressor's fixed buffers. */
static uint64_t comp_floats(uint32_t width, uint32_t ratio, bool overlap) {
    if (!width) return 0;
    return 2 * (uint64_t)ratio * proj_of(width, overlap) + (overlap ? 2 * (uint64_t)ratio * width : 0);
}

/* The geometry of layer il (the CPU's snapshot's). */
typedef struct {
    uint32_t cap, dim, ratio, cw, iw; /* cw, iw: compressor and indexer widths (0: none) */
    bool csa;
} layer_shape;

static layer_shape shape_of(const ds4_backend *b, int il) {
    const ds4_config *cf = b->cfg;
    const ds4_layer_kind k = cf->kind[il];
    return (layer_shape){cf->sliding_window, cf->head_dim, cf->compress_ratio[il],
                         k != DS4_LAYER_SWA ? cf->head_dim : 0, k == DS4_LAYER_CSA ? cf->indexer_dim : 0,
                         k == DS4_LAYER_CSA};
}

static float *carve_comp(ds4_cuda_comp *c, float *at, uint32_t width, uint32_t ratio, bool overlap) {
    if (!width) return at;
    const uint64_t buf = (uint64_t)ratio * proj_of(width, overlap);
    c->buf_kv = at, at += buf;
    c->buf_gate = at, at += buf;
    if (overlap) {
        c->prev_kv = at, at += (uint64_t)ratio * width;
        c->prev_gate = at, at += (uint64_t)ratio * width;
    }
    return at;
}

static int seq_open(ds4_backend *b, cuda_seq *s) {
    const uint32_t L = b->cfg->n_layer;
    s->layers = ds4_calloc(L, sizeof *s->layers);
    s->comp_cap = ds4_calloc(L, sizeof *s->comp_cap);
    s->idx_cap = ds4_calloc(L, sizeof *s->idx_cap);
    s->pos = ds4_calloc(L, sizeof *s->pos);
    if (!s->layers || !s->comp_cap || !s->idx_cap || !s->pos) return -1;
    uint64_t floats = 0;
    for (uint32_t il = 0; il < L; il++) {
        const layer_shape g = shape_of(b, (int)il);
        floats += (uint64_t)g.cap * g.dim + 2 * (uint64_t)g.cap + comp_floats(g.cw, g.ratio, g.csa) +
                  comp_floats(g.iw, g.ratio, true); /* (positions: two floats each) */
    }
    if (!(s->fixed = ds4_cuda_malloc(b->dev, floats * sizeof(float), b->err, sizeof b->err)))
        return ds4_fail("%s", b->err);
    ds4_cuda_set(b->dev, s->fixed, 0, floats * sizeof(float));
    float *at = s->fixed;
    for (uint32_t il = 0; il < L; il++) {
        const layer_shape g = shape_of(b, (int)il);
        ds4_cuda_kv_layer *l = &s->layers[il];
        l->window_pos = (int64_t *)at, at += 2 * (uint64_t)g.cap;
        l->window_kv = at, at += (uint64_t)g.cap * g.dim;
        at = carve_comp(&l->comp, at, g.cw, g.ratio, g.csa);
        at = carve_comp(&l->indexer, at, g.iw, g.ratio, true);
        ds4_cuda_set(b->dev, l->window_pos, 1, g.cap * sizeof(int64_t));
    }
    return 0;
}

static void seq_close(ds4_backend *b, cuda_seq *s) {
    free(s->layers);
    free(s->comp_cap);
    free(s->idx_cap);
    free(s->pos);
    ds4_cuda_free(b->dev, s->fixed);
}

int ds4_cuda_states_open(ds4_backend *b) {
    if (!(b->seqs = ds4_calloc((size_t)b->n_seq, sizeof *b->seqs))) return -1;
    for (int i = 0; i < b->n_seq; i++)
        if (seq_open(b, &b->seqs[i]) < 0) return -1;
    return 0;
}

void ds4_cuda_states_close(ds4_backend *b) {
    for (int i = 0; b->seqs && i < b->n_seq; i++) {
        cuda_seq *s = &b->seqs[i];
        for (uint32_t il = 0; s->layers && il < b->cfg->n_layer; il++) {
            ds4_cuda_free(b->dev, s->layers[il].comp.entries);
            ds4_cuda_free(b->dev, s->layers[il].indexer.entries);
        }
        seq_close(b, s);
    }
    free(b->seqs);
}

/* Room for n entries of `width` floats, keeping the first `keep`. */
static int grow_entries(ds4_backend *b, float **entries, uint64_t *cap, uint64_t n, uint64_t keep, uint32_t width) {
    if (n <= *cap) return 0;
    uint64_t want = *cap ? *cap : 64;
    while (want < n) want *= 2;
    float *e = ds4_cuda_malloc(b->dev, want * width * sizeof(float), b->err, sizeof b->err);
    if (!e) return ds4_fail("%s (for %llu compressed entries)", b->err, (unsigned long long)n);
    ds4_cuda_copy(b->dev, e, *entries, keep * width * sizeof(float));
    ds4_cuda_free(b->dev, *entries);
    *entries = e;
    *cap = want;
    return 0;
}

int ds4_cuda_state_reserve(ds4_backend *b, int seq, int il, uint64_t pos) {
    const layer_shape g = shape_of(b, il);
    cuda_seq *s = &b->seqs[seq];
    ds4_cuda_kv_layer *l = &s->layers[il];
    if (!g.ratio) return 0;
    const uint64_t keep = s->pos[il] / g.ratio, n = pos / g.ratio;
    if (g.cw && grow_entries(b, &l->comp.entries, &s->comp_cap[il], n, keep, g.cw) < 0) return -1;
    if (g.iw && grow_entries(b, &l->indexer.entries, &s->idx_cap[il], n, keep, g.iw) < 0) return -1;
    return 0;
}

void ds4_cuda_state_reset(ds4_backend *b, int seq) {
    cuda_seq *s = &b->seqs[seq];
    for (uint32_t il = 0; il < b->cfg->n_layer; il++) {
        ds4_cuda_set(b->dev, s->layers[il].window_pos, 1, shape_of(b, (int)il).cap * sizeof(int64_t));
        s->pos[il] = 0;
    }
}

/* One direction of a copy between the device's state and a snapshot. */
static int comp_copy(ds4_backend *b, ds4_kv_compressor *h, ds4_cuda_comp *d, uint64_t pos, bool out) {
    if (!h->width) return 0;
    const uint64_t buf = (uint64_t)h->ratio * ds4_kv_proj(h) * sizeof(float);
    const uint64_t prev = (uint64_t)h->ratio * h->width * sizeof(float);
    const uint64_t n = pos / h->ratio, entries = n * h->width * sizeof(float);
    void *hp[4] = {h->buf_kv, h->buf_gate, h->prev_kv, h->prev_gate};
    void *dp[4] = {d->buf_kv, d->buf_gate, d->prev_kv, d->prev_gate};
    const uint64_t bytes[4] = {buf, buf, h->overlap ? prev : 0, h->overlap ? prev : 0};
    if (out) {
        if (ds4_kv_reserve_entries(h, n) < 0) return -1;
        for (int i = 0; i < 4; i++)
            if (bytes[i] && ds4_cuda_to_host(b->dev, hp[i], dp[i], bytes[i], "reading the KV state", b->err,
                                             sizeof b->err) < 0)
                return ds4_fail("%s", b->err);
        if (entries && ds4_cuda_to_host(b->dev, h->entries, d->entries, entries, "reading the KV state", b->err,
                                        sizeof b->err) < 0)
            return ds4_fail("%s", b->err);
        h->n_entries = n;
        h->n_buf = (int32_t)(pos % h->ratio);
        h->has_prev = h->overlap && pos >= h->ratio;
    } else {
        for (int i = 0; i < 4; i++)
            if (bytes[i]) ds4_cuda_to_device(b->dev, dp[i], hp[i], bytes[i]);
        ds4_cuda_to_device(b->dev, d->entries, h->entries, entries);
    }
    return 0;
}

int ds4_cuda_state_get(ds4_backend *b, int seq, ds4_kv_snapshot *out) {
    cuda_seq *s = &b->seqs[seq];
    for (uint32_t il = 0; il < b->cfg->n_layer; il++) {
        ds4_kv_layer *h = &out->layers[il];
        ds4_cuda_kv_layer *d = &s->layers[il];
        if (ds4_cuda_to_host(b->dev, h->window_kv, d->window_kv, (uint64_t)h->cap * h->dim * sizeof(float),
                             "reading the KV state", b->err, sizeof b->err) < 0 ||
            ds4_cuda_to_host(b->dev, h->window_pos, d->window_pos, (uint64_t)h->cap * sizeof(int64_t),
                             "reading the KV state", b->err, sizeof b->err) < 0)
            return ds4_fail("%s", b->err);
        if (comp_copy(b, &h->comp, &d->comp, s->pos[il], true) < 0 ||
            comp_copy(b, &h->indexer, &d->indexer, s->pos[il], true) < 0)
            return -1;
    }
    return 0;
}

int ds4_cuda_state_set(ds4_backend *b, int seq, const ds4_kv_snapshot *in) {
    cuda_seq *s = &b->seqs[seq];
    for (uint32_t il = 0; il < b->cfg->n_layer; il++) {
        s->pos[il] = 0; /* nothing to keep */
        if (ds4_cuda_state_reserve(b, seq, (int)il, in->pos) < 0) return -1;
        ds4_kv_layer *h = &in->layers[il];
        ds4_cuda_kv_layer *d = &s->layers[il];
        ds4_cuda_to_device(b->dev, d->window_kv, h->window_kv, (uint64_t)h->cap * h->dim * sizeof(float));
        ds4_cuda_to_device(b->dev, d->window_pos, h->window_pos, (uint64_t)h->cap * sizeof(int64_t));
        comp_copy(b, &h->comp, &d->comp, in->pos, false);
        comp_copy(b, &h->indexer, &d->indexer, in->pos, false);
        s->pos[il] = in->pos;
    }
    return ds4_cuda_stage_done(b, "restoring the KV state");
}

uint64_t ds4_cuda_state_bytes(const ds4_backend *b, int seq) {
    const cuda_seq *s = &b->seqs[seq];
    uint64_t bytes = 0;
    for (uint32_t il = 0; il < b->cfg->n_layer; il++) {
        const layer_shape g = shape_of(b, (int)il);
        const uint64_t n = g.ratio ? s->pos[il] / g.ratio : 0;
        bytes += ((uint64_t)g.cap * g.dim + comp_floats(g.cw, g.ratio, g.csa) + comp_floats(g.iw, g.ratio, true) +
                  n * (g.cw + g.iw)) * sizeof(float);
    }
    return bytes;
}
