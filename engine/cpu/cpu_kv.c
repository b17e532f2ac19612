/* cpu_kv.c - the CPU backend's KV state updates, on kvstate.h's layout: a token's K=V
 * vector into the window's ring, and its compressor projections into the pending
 * window, which every `ratio` tokens pools into one entry: per channel a softmax over
 * the window's slots of (gate + position bias), the weighted sum of the kv projections,
 * then RMSNorm and RoPE at the window's first position. With overlap (CSA) projections
 * are 2*width wide and entry w pools window w-1's first half with window w's second. */
#include <math.h>
#include <string.h>

#include "cpu_internal.h"
#include "ops.h"

void ds4_cpu_window_push(ds4_kv_layer *l, const float *kv, int64_t pos) {
    const uint32_t slot = (uint32_t)(pos % l->cap);
    memcpy(l->window_kv + (size_t)slot * l->dim, kv, (size_t)l->dim * sizeof *kv);
    l->window_pos[slot] = pos;
}

/* Pools the full window into a new raw entry; NULL when memory runs out. */
static float *pool_window(ds4_kv_compressor *c) {
    if (ds4_kv_reserve_entries(c, c->n_entries + 1) < 0) return NULL;
    float *e = c->entries + c->n_entries++ * (uint64_t)c->width;
    const int w = (int)c->width, r = (int)c->ratio, proj = (int)ds4_kv_proj(c);
    /* Slots of the current window read the second half of an overlapping projection. */
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
        c->has_prev = 1;
    }
    return e;
}

int ds4_cpu_compressor_push(ds4_backend *b, ds4_kv_compressor *c, const float *kv, const float *gate,
                            const float *bias, const float *norm) {
    const uint64_t proj = ds4_kv_proj(c);
    float *bk = c->buf_kv + (size_t)c->n_buf * proj, *bg = c->buf_gate + (size_t)c->n_buf * proj;
    const float *bb = bias + (size_t)c->n_buf * proj;
    memcpy(bk, kv, (size_t)proj * sizeof *kv);
    for (uint64_t i = 0; i < proj; i++) bg[i] = gate[i] + bb[i];
    if ((uint32_t)++c->n_buf < c->ratio) return 0;
    c->n_buf = 0;
    float *e = pool_window(c);
    if (!e) return -1;
    ds4_rmsnorm(e, (int)c->width, norm, b->cfg->rms_eps);
    const int64_t pos = (int64_t)(c->n_entries - 1) * c->ratio;
    ds4_rope_apply(e, (int)c->width, (int)b->cfg->rope_dim, b->rope_comp, pos, 1);
    return 0;
}
