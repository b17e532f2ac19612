/* kvstate.c - see kvstate.h. */
#include "kvstate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int ds4_window_init(ds4_window *w, int cap, int dim) {
    w->cap = cap;
    w->dim = dim;
    w->kv = ds4_calloc((size_t)cap * dim, sizeof *w->kv);
    w->pos = ds4_malloc((size_t)cap * sizeof *w->pos);
    if (!w->kv || !w->pos) return -1;
    for (int i = 0; i < cap; i++) w->pos[i] = -1;
    return 0;
}

void ds4_window_push(ds4_window *w, const float *kv, int64_t pos) {
    int slot = (int)(pos % w->cap);
    memcpy(w->kv + (size_t)slot * w->dim, kv, (size_t)w->dim * sizeof *kv);
    w->pos[slot] = pos;
}

int ds4_compressor_init(ds4_compressor *c, int width, int ratio, bool overlap) {
    memset(c, 0, sizeof *c);
    c->width = width;
    c->ratio = ratio;
    c->overlap = overlap;
    if (!width) return 0;
    const size_t proj = (size_t)(overlap ? 2 : 1) * width;
    c->buf_kv = ds4_malloc((size_t)ratio * proj * sizeof(float));
    c->buf_gate = ds4_malloc((size_t)ratio * proj * sizeof(float));
    if (!c->buf_kv || !c->buf_gate) return -1;
    if (overlap) {
        c->prev_kv = ds4_malloc((size_t)ratio * width * sizeof(float));
        c->prev_gate = ds4_malloc((size_t)ratio * width * sizeof(float));
        if (!c->prev_kv || !c->prev_gate) return -1;
    }
    return 0;
}

static float *new_entry(ds4_compressor *c) {
    if (c->n_entries == c->cap_entries) {
        uint64_t cap = c->cap_entries ? c->cap_entries * 2 : 64;
        float *e = realloc(c->entries, cap * (uint64_t)c->width * sizeof *e);
        if (!e) return NULL;
        c->entries = e;
        c->cap_entries = cap;
    }
    return c->entries + c->n_entries++ * (uint64_t)c->width;
}

float *ds4_compressor_push(ds4_compressor *c, const float *kv, const float *gate, const float *bias, bool *oom) {
    const int w = c->width, r = c->ratio, proj = (c->overlap ? 2 : 1) * w;
    float *bk = c->buf_kv + (size_t)c->n_buf * proj, *bg = c->buf_gate + (size_t)c->n_buf * proj;
    const float *bb = bias + (size_t)c->n_buf * proj;
    memcpy(bk, kv, (size_t)proj * sizeof *kv);
    for (int i = 0; i < proj; i++) bg[i] = gate[i] + bb[i];
    if (++c->n_buf < r) return NULL;
    c->n_buf = 0;

    float *e = new_entry(c);
    if (!e) {
        *oom = true;
        return NULL;
    }
    /* Per channel: softmax over the window's slots, then the weighted sum. Slots of the
     * current window read the second half of an overlapping projection. */
    const int cur = c->overlap ? w : 0;
    for (int ch = 0; ch < w; ch++) {
        float m = -INFINITY;
        if (c->overlap && c->has_prev)
            for (int i = 0; i < r; i++) m = fmaxf(m, c->prev_gate[i * w + ch]);
        for (int i = 0; i < r; i++) m = fmaxf(m, c->buf_gate[i * proj + cur + ch]);
        float sum = 0.0f, acc = 0.0f;
        if (c->overlap && c->has_prev)
            for (int i = 0; i < r; i++) {
                float p = expf(c->prev_gate[i * w + ch] - m);
                sum += p;
                acc += p * c->prev_kv[i * w + ch];
            }
        for (int i = 0; i < r; i++) {
            float p = expf(c->buf_gate[i * proj + cur + ch] - m);
            sum += p;
            acc += p * c->buf_kv[i * proj + cur + ch];
        }
        e[ch] = acc / sum;
    }
    if (c->overlap) {
        for (int i = 0; i < r; i++) {
            memcpy(c->prev_kv + (size_t)i * w, c->buf_kv + (size_t)i * proj, (size_t)w * sizeof(float));
            memcpy(c->prev_gate + (size_t)i * w, c->buf_gate + (size_t)i * proj, (size_t)w * sizeof(float));
        }
        c->has_prev = true;
    }
    return e;
}

static void compressor_free(ds4_compressor *c) {
    free(c->buf_kv);
    free(c->buf_gate);
    free(c->prev_kv);
    free(c->prev_gate);
    free(c->entries);
    memset(c, 0, sizeof *c);
}

void ds4_layer_state_free(ds4_layer_state *s) {
    free(s->window.kv);
    free(s->window.pos);
    compressor_free(&s->comp);
    compressor_free(&s->indexer);
    memset(s, 0, sizeof *s);
}

void ds4_layer_state_reset(ds4_layer_state *s) {
    for (int i = 0; i < s->window.cap; i++) s->window.pos[i] = -1;
    ds4_compressor *cs[2] = {&s->comp, &s->indexer};
    for (int k = 0; k < 2; k++) {
        cs[k]->n_buf = 0;
        cs[k]->has_prev = false;
        cs[k]->n_entries = 0;
    }
}

static uint64_t compressor_bytes(const ds4_compressor *c) {
    if (!c->width) return 0;
    uint64_t proj = (uint64_t)(c->overlap ? 2 : 1) * c->width;
    uint64_t b = 2 * (uint64_t)c->ratio * proj * sizeof(float);
    if (c->overlap) b += 2 * (uint64_t)c->ratio * c->width * sizeof(float);
    return b + c->n_entries * (uint64_t)c->width * sizeof(float);
}

uint64_t ds4_layer_state_bytes(const ds4_layer_state *s) {
    return (uint64_t)s->window.cap * s->window.dim * sizeof(float) + compressor_bytes(&s->comp) +
           compressor_bytes(&s->indexer);
}
