/* cuda_forward.c - the CUDA backend's stages (backend.h), each the CPU stage of the same
 * name (engine/cpu/) on the device: matrix products by cuda_matmul.h, the rest by
 * cuda_stages.h, on the chunk's activations in device memory. Only the token ids, the
 * chunk's positions and segments, a hash layer's expert choices and the logits cross
 * PCIe. With the profile on, timing marks (device events) bound each stage and each batch
 * of products, read back when the head waits for its logits: the stages' times are the
 * device's and nothing waits stage by stage. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "profile.h"
#include "types.h"
#include "util.h"

#define BUF(id, bytes) ds4_cuda_buf(b, id, bytes)
#define GOT(id) (b->buf[id])

/* ---- the profile: the device's time between timing marks, so no stage waits ---- */

/* The device times since the last resolve, to the profile: each stage from the mark
 * before it to its own, each batch of products from its start to its end (shared among
 * its weight types by the bytes they read). Waits for the device. */
static void resolve(ds4_backend *b) {
    int prev = -1, begin = -1;
    for (int i = 0; i < b->n_marks; i++) {
        const cuda_mark *m = &b->marks[i];
        if (m->kind == MARK_STAGE && prev >= 0)
            ds4_prof_stage_time((ds4_prof_stage)m->stage, ds4_cuda_mark_seconds(b->dev, prev, i));
        if (m->kind == MARK_BASE || m->kind == MARK_STAGE) prev = i;
        if (m->kind == MARK_PRODUCTS) begin = i;
        if (m->kind == MARK_PRODUCTS_END && begin >= 0) {
            const double dt = ds4_cuda_mark_seconds(b->dev, begin, i);
            uint64_t all = 0;
            for (int k = 0; k < m->n_types; k++) all += m->bytes[k];
            for (int k = 0; k < m->n_types; k++)
                ds4_prof_product((ds4_prof_stage)m->stage, m->type[k], m->bytes[k],
                                 all ? dt * (double)m->bytes[k] / (double)all : 0);
        }
    }
    b->n_marks = 0;
}

/* A timing mark of `kind` in the current stage (products: the bytes they read by type). */
static int mark(ds4_backend *b, int kind, const ds4_cuda_product *p, int n) {
    if (!ds4_profile_on) return 0;
    if (kind != MARK_PRODUCTS_END && b->n_marks + 2 >= DS4_CUDA_MARKS) { /* full: on from a new base */
        resolve(b);
        if (kind != MARK_BASE && mark(b, MARK_BASE, NULL, 0) < 0) return -1;
    }
    cuda_mark *m = &b->marks[b->n_marks];
    *m = (cuda_mark){.kind = kind, .stage = (int)ds4_prof_current()};
    for (int k = 0; k < n; k++) {
        int t = 0;
        while (t < m->n_types && m->type[t] != p[k].w.type) t++;
        if (t == CUDA_MARK_TYPES) t--; /* more types than a mark keeps: the last one's */
        if (t == m->n_types) m->type[m->n_types++] = p[k].w.type;
        m->bytes[t] += p[k].w.row_bytes * p[k].n_out;
    }
    if (ds4_cuda_mark(b->dev, b->n_marks, b->err, sizeof b->err) < 0) return ds4_fail("%s", b->err);
    b->n_marks++;
    return 0;
}

/* ---- graphs: a decode step's layers captured (cuda_graph.cu) ---- */

/* Chunks of at most this many rows (decode, batched decode) are captured: a prefill's
 * kernels are few for their work. */
#define GRAPH_MAX_T 64

/* From here the chunk's work goes into slot's graph (unless one is being captured). */
static void graph_open(ds4_backend *b, int T, int slot) {
    if (!ds4_profile_on && T <= GRAPH_MAX_T) ds4_cuda_graph_begin(b->dev, slot, T);
}

static int graph_close(ds4_backend *b) {
    return ds4_cuda_graph_end(b->dev, b->err, sizeof b->err) < 0 ? ds4_fail("%s", b->err) : 0;
}

/* Products queued (between two marks when profiling). */
static int products(ds4_backend *b, const ds4_cuda_product *p, int n) {
    if (mark(b, MARK_PRODUCTS, NULL, 0) < 0) return -1;
    ds4_cuda_run(b->dev, p, n);
    return mark(b, MARK_PRODUCTS_END, p, n);
}

static ds4_cuda_product product(const ds4_cuda_matrix *w, uint64_t row0, uint64_t n_out, const float *x, uint64_t ldx,
                                int T, float *y, uint64_t ldy) {
    ds4_cuda_product p = {*w, n_out, x, ldx, T, y, ldy, 0, 0, 0, NULL};
    p.w.offset += row0 * w->row_bytes;
    return p;
}

static int done(ds4_backend *b, const char *what) {
    return ds4_cuda_stage_done(b, what) < 0 || mark(b, MARK_STAGE, NULL, 0) < 0 ? -1 : 0;
}

/* Uploads the chunk's row positions and segment indices unless they are there already. */
static int chunk_rows(ds4_backend *b, const ds4_chunk *c) {
    if (b->chunk_seg && b->chunk_n_seg == c->n_seg && b->chunk_T == c->T &&
        !memcmp(b->chunk_seg, c->seg, (size_t)c->n_seg * sizeof *c->seg))
        return 0;
    int64_t *pos = ds4_malloc((size_t)c->T * sizeof *pos);
    int32_t *seg = ds4_malloc((size_t)c->T * sizeof *seg);
    ds4_segment *copy = ds4_malloc((size_t)c->n_seg * sizeof *copy);
    int64_t *dpos = BUF(CB_ROWPOS, (size_t)c->T * sizeof *pos);
    int32_t *dseg = BUF(CB_ROWSEG, (size_t)c->T * sizeof *seg);
    const int ok = pos && seg && copy && dpos && dseg;
    if (ok) {
        for (int s = 0; s < c->n_seg; s++)
            for (int t = 0; t < c->seg[s].n; t++) {
                pos[c->seg[s].row0 + t] = (int64_t)c->seg[s].pos0 + t;
                seg[c->seg[s].row0 + t] = s;
            }
        ds4_cuda_to_device(b->dev, dpos, pos, (size_t)c->T * sizeof *pos);
        ds4_cuda_to_device(b->dev, dseg, seg, (size_t)c->T * sizeof *seg);
        memcpy(copy, c->seg, (size_t)c->n_seg * sizeof *copy);
        free(b->chunk_seg);
        b->chunk_seg = copy;
        b->chunk_n_seg = c->n_seg;
        b->chunk_T = c->T;
    } else {
        free(copy);
    }
    free(pos);
    free(seg);
    return ok ? 0 : -1;
}

int ds4_cuda_embed(ds4_backend *b, const int32_t *tokens, int T) {
    const int hc = (int)b->cfg->hc_mult, D = (int)b->cfg->n_embd;
    int32_t *ids = BUF(CB_TOKENS, (size_t)T * sizeof *ids);
    float *streams = BUF(CB_STREAMS, (size_t)T * hc * D * sizeof(float));
    if (!ids || !streams) return -1;
    if (ds4_profile_on) { /* a forward pass starts: its stages are timed from here */
        if (b->n_marks) resolve(b);
        if (mark(b, MARK_BASE, NULL, 0) < 0) return -1;
    }
    graph_open(b, T, 0);
    ds4_cuda_to_device(b->dev, ids, tokens, (size_t)T * sizeof *ids);
    ds4_cuda_rows(b->dev, &b->embd, ids, T, streams, (uint64_t)hc * D, hc, (uint64_t)D);
    return done(b, "embed");
}

static ds4_cuda_hc_site site_of(const ds4_backend *b, const cuda_hc_weights *w, const float *norm, int nm,
                                 int norm_mix) {
    const ds4_config *cf = b->cfg;
    return (ds4_cuda_hc_site){(int)cf->hc_mult, (int)cf->n_embd, (int)cf->hc_sinkhorn_iters, nm, norm_mix, cf->hc_eps,
                              cf->rms_eps, w->scale, w->base, norm};
}

int ds4_cuda_hc_pre_stage(ds4_backend *b, int il, ds4_hc_site site, int T) {
    const ds4_config *cf = b->cfg;
    const cuda_layer *lw = &b->layers[il];
    const cuda_hc_weights *w = site == DS4_SITE_ATTN ? &lw->hc_attn : &lw->hc_ffn;
    const int hc = (int)cf->hc_mult, D = (int)cf->n_embd, nm = (2 + hc) * hc;
    if (site == DS4_SITE_ATTN) graph_open(b, T, 1 + il); /* a layer a graph */
    const float *streams = GOT(CB_STREAMS);
    float *mix = BUF(CB_MIX, (size_t)T * nm * sizeof(float));
    float *post = BUF(CB_POST, (size_t)T * hc * sizeof(float)), *comb = BUF(CB_COMB, (size_t)T * hc * hc * sizeof(float));
    float *x = BUF(CB_X, (size_t)T * D * sizeof(float));
    if (!mix || !post || !comb || !x) return -1;
    /* the mixer reads the raw streams; hc_pre scales its outputs by the streams' norm */
    const ds4_cuda_product p = product(&w->fn, 0, (uint64_t)nm, streams, (uint64_t)hc * D, T, mix, (uint64_t)nm);
    if (products(b, &p, 1) < 0) return -1;
    const ds4_cuda_hc_site s = site_of(b, w, site == DS4_SITE_ATTN ? lw->attn_norm : lw->ffn_norm, nm, 1);
    ds4_cuda_hc_pre(b->dev, &s, mix, streams, NULL, T, post, comb, x);
    return done(b, "hc_pre");
}

int ds4_cuda_hc_post_stage(ds4_backend *b, int il, ds4_hc_site site, int T) {
    (void)il; /* hc_pre kept the site's weights */
    ds4_cuda_hc_post(b->dev, (int)b->cfg->hc_mult, (int)b->cfg->n_embd, T, GOT(CB_STREAMS), GOT(CB_Y), GOT(CB_POST),
                     GOT(CB_COMB));
    if (done(b, "hc_post") < 0) return -1;
    return site == DS4_SITE_FFN ? graph_close(b) : 0; /* the layer's graph runs */
}

int ds4_cuda_attn_project(ds4_backend *b, int il, const ds4_chunk *c) {
    const int T = c->T;
    const ds4_config *cf = b->cfg;
    const cuda_layer *w = &b->layers[il];
    const int D = (int)cf->n_embd, H = (int)cf->n_head, d = (int)cf->head_dim, r = (int)cf->q_lora_rank;
    const int rd = (int)cf->rope_dim, Ih = (int)cf->indexer_heads, Id = (int)cf->indexer_dim;
    const bool compressed = w->kind != DS4_LAYER_SWA, csa = w->kind == DS4_LAYER_CSA;
    const int cw = csa ? 2 * d : d;
    const float *rope = compressed ? b->rope_comp : b->rope_main, *x = GOT(CB_X);
    if (chunk_rows(b, c) < 0) return -1;
    const int64_t *pos = GOT(CB_ROWPOS);
    float *qres = BUF(CB_QRES, (size_t)T * r * sizeof(float)), *q = BUF(CB_Q, (size_t)T * H * d * sizeof(float));
    float *kv = BUF(CB_KV, (size_t)T * d * sizeof(float));
    float *ckv = NULL, *cgate = NULL, *ikv = NULL, *igate = NULL, *iq = NULL, *iw = NULL;
    if (!qres || !q || !kv) return -1;
    if (compressed && (!(ckv = BUF(CB_CKV, (size_t)T * cw * sizeof(float))) ||
                       !(cgate = BUF(CB_CGATE, (size_t)T * cw * sizeof(float)))))
        return -1;
    if (csa && (!(ikv = BUF(CB_IKV, (size_t)T * 2 * Id * sizeof(float))) ||
                !(igate = BUF(CB_IGATE, (size_t)T * 2 * Id * sizeof(float))) ||
                !(iq = BUF(CB_IQ, (size_t)T * Ih * Id * sizeof(float))) ||
                !(iw = BUF(CB_IW, (size_t)T * Ih * sizeof(float)))))
        return -1;
    ds4_cuda_product p[7] = {product(&w->q_a, 0, r, x, D, T, qres, r), product(&w->kv, 0, d, x, D, T, kv, d)};
    int n = 2;
    if (compressed) {
        p[n++] = product(&w->comp_kv, 0, cw, x, D, T, ckv, cw);
        p[n++] = product(&w->comp_gate, 0, cw, x, D, T, cgate, cw);
    }
    if (csa) {
        p[n++] = product(&w->idx_kv, 0, 2 * Id, x, D, T, ikv, 2 * Id);
        p[n++] = product(&w->idx_gate, 0, 2 * Id, x, D, T, igate, 2 * Id);
        p[n++] = product(&w->idx_proj, 0, Ih, x, D, T, iw, Ih);
    }
    if (products(b, p, n) < 0) return -1;
    ds4_cuda_norm_rope(b->dev, qres, T, 1, r, 1, w->q_a_norm, cf->rms_eps, rd, NULL, pos);
    ds4_cuda_norm_rope(b->dev, kv, T, 1, d, 1, w->kv_norm, cf->rms_eps, rd, rope, pos);
    p[0] = product(&w->q_b, 0, (uint64_t)H * d, qres, r, T, q, (uint64_t)H * d);
    if (csa) p[1] = product(&w->idx_q_b, 0, (uint64_t)Ih * Id, qres, r, T, iq, (uint64_t)Ih * Id);
    if (products(b, p, csa ? 2 : 1) < 0) return -1;
    ds4_cuda_norm_rope(b->dev, q, T, H, d, 1, NULL, cf->rms_eps, rd, rope, pos);
    if (csa) {
        ds4_cuda_norm_rope(b->dev, iq, T, Ih, Id, 0, NULL, 0, rd, b->rope_comp, pos);
        ds4_cuda_scale(b->dev, iw, (uint64_t)T * Ih, 1.0f / sqrtf((float)Ih));
    }
    return done(b, "attn_project");
}

/* The chunk's segments for layer il's attention kernels, on the device. */
static ds4_cuda_seg *segments(ds4_backend *b, int il, const ds4_chunk *c) {
    const ds4_config *cf = b->cfg;
    const uint32_t cap = cf->sliding_window, d = cf->head_dim;
    ds4_cuda_seg *host = ds4_malloc((size_t)c->n_seg * sizeof *host);
    ds4_cuda_seg *dev = BUF(CB_SEGS, (size_t)c->n_seg * sizeof *host);
    float *old_kv = BUF(CB_OLDKV, (size_t)c->n_seg * cap * d * sizeof(float));
    int64_t *old_pos = BUF(CB_OLDPOS, (size_t)c->n_seg * cap * sizeof(int64_t));
    if (!host || !dev || !old_kv || !old_pos) {
        free(host);
        return NULL;
    }
    for (int s = 0; s < c->n_seg; s++) {
        const ds4_segment *g = &c->seg[s];
        const ds4_cuda_kv_layer *st = &b->seqs[g->seq].layers[il];
        const bool copy = g->n > 1;
        host[s] = (ds4_cuda_seg){*st, copy ? old_kv + (size_t)s * cap * d : st->window_kv,
                                 copy ? old_pos + (size_t)s * cap : st->window_pos, g->row0, g->n, (int64_t)g->pos0};
    }
    ds4_cuda_to_device(b->dev, dev, host, (size_t)c->n_seg * sizeof *host);
    free(host);
    return dev;
}

int ds4_cuda_kv_append_stage(ds4_backend *b, int il, const ds4_chunk *c) {
    const ds4_config *cf = b->cfg;
    const cuda_layer *w = &b->layers[il];
    for (int s = 0; s < c->n_seg; s++)
        if (ds4_cuda_state_reserve(b, c->seg[s].seq, il, c->seg[s].pos0 + (uint64_t)c->seg[s].n) < 0) return -1;
    const ds4_cuda_seg *segs = segments(b, il, c);
    if (!segs) return -1;
    const bool compressed = w->kind != DS4_LAYER_SWA, csa = w->kind == DS4_LAYER_CSA;
    const ds4_cuda_append a = {
        segs, c->n_seg, cf->sliding_window, cf->head_dim, cf->rope_dim, cf->rms_eps, b->rope_comp, GOT(CB_KV),
        GOT(CB_CKV), GOT(CB_CGATE), GOT(CB_IKV), GOT(CB_IGATE),
        {compressed ? cf->head_dim : 0, w->ratio, csa, w->comp_ape, w->comp_norm},
        {csa ? cf->indexer_dim : 0, w->ratio, 1, w->idx_ape, w->idx_norm}};
    ds4_cuda_kv_append(b->dev, &a);
    for (int s = 0; s < c->n_seg; s++) b->seqs[c->seg[s].seq].pos[il] = c->seg[s].pos0 + (uint64_t)c->seg[s].n;
    return done(b, "kv_append");
}

/* The most compressed entries a row of the chunk sees at this ratio. */
static uint64_t most_entries(const ds4_chunk *c, uint32_t ratio) {
    uint64_t n = 0;
    for (int s = 0; s < c->n_seg && ratio; s++) {
        const uint64_t e = (c->seg[s].pos0 + (uint64_t)c->seg[s].n) / ratio;
        n = e > n ? e : n;
    }
    return n;
}

static ds4_cuda_rows_of rows_of(ds4_backend *b, const ds4_chunk *c) {
    return (ds4_cuda_rows_of){GOT(CB_SEGS), GOT(CB_ROWSEG), GOT(CB_ROWPOS), c->T};
}

int ds4_cuda_indexer_select(ds4_backend *b, int il, const ds4_chunk *c) {
    const ds4_config *cf = b->cfg;
    const uint32_t ratio = b->layers[il].ratio, topk = cf->indexer_topk;
    const uint64_t most = most_entries(c, ratio);
    float *scores = BUF(CB_SCORES, (size_t)c->T * (most ? most : 1) * sizeof(float));
    int32_t *sel = BUF(CB_SEL, (size_t)c->T * (topk ? topk : 1) * sizeof(int32_t));
    int32_t *n_sel = BUF(CB_NSEL, (size_t)c->T * sizeof(int32_t));
    if (!scores || !sel || !n_sel || chunk_rows(b, c) < 0) return -1;
    const ds4_cuda_rows_of r = rows_of(b, c);
    ds4_cuda_indexer(b->dev, &r, GOT(CB_IQ), GOT(CB_IW), (int)cf->indexer_heads, (int)cf->indexer_dim, ratio, topk,
                     most, scores, sel, n_sel);
    return done(b, "indexer_select");
}

int ds4_cuda_attend_stage(ds4_backend *b, int il, const ds4_chunk *c) {
    const ds4_config *cf = b->cfg;
    const cuda_layer *w = &b->layers[il];
    const int T = c->T, H = (int)cf->n_head, d = (int)cf->head_dim, G = (int)cf->o_groups, R = (int)cf->o_lora_rank;
    const int D = (int)cf->n_embd;
    const int kind = w->kind == DS4_LAYER_CSA ? 1 : w->kind == DS4_LAYER_HCA ? 2 : 0;
    const uint64_t max_keys = cf->sliding_window + (kind == 2 ? most_entries(c, w->ratio) : kind == 1 ? cf->indexer_topk : 0);
    const int splits = ds4_cuda_attend_splits(b->dev, T, H, max_keys);
    const size_t parts = (size_t)T * H * splits;
    float *part = BUF(CB_ATTPART, parts * d * sizeof(float)), *part_ml = BUF(CB_ATTML, parts * 2 * sizeof(float));
    float *att = BUF(CB_ATT, (size_t)T * H * d * sizeof(float)), *grp = BUF(CB_GRP, (size_t)T * G * R * sizeof(float));
    float *out = BUF(CB_Y, (size_t)T * D * sizeof(float));
    if (!part || !part_ml || !att || !grp || !out || chunk_rows(b, c) < 0) return -1;
    const ds4_cuda_rows_of r = rows_of(b, c);
    const ds4_cuda_attend_job j = {H, d, (int)cf->rope_dim, cf->sliding_window, w->ratio, kind, GOT(CB_Q), GOT(CB_KV),
                                   w->sinks, kind ? b->rope_comp : b->rope_main, GOT(CB_SEL), GOT(CB_NSEL),
                                   cf->indexer_topk, splits, part, part_ml, att};
    ds4_cuda_attend(b->dev, &r, &j);
    /* Grouped output projection: group g maps its heads' slice through rows g*R.. of
     * out_a, then out_b over all groups. */
    ds4_cuda_product p = product(&w->out_a, 0, (uint64_t)G * R, att, (uint64_t)H * d, T, grp, (uint64_t)G * R);
    p.group_rows = (uint64_t)R;
    p.group_x = (uint64_t)H * d / G;
    if (products(b, &p, 1) < 0) return -1;
    p = product(&w->out_b, 0, D, grp, (uint64_t)G * R, T, out, D);
    if (products(b, &p, 1) < 0) return -1;
    return done(b, "attend");
}

int ds4_cuda_ffn_stage(ds4_backend *b, int il, const int32_t *tokens, int T) {
    const ds4_config *cf = b->cfg;
    const cuda_layer *w = &b->layers[il];
    const uint64_t D = cf->n_embd, K = cf->n_expert_used;
    const float *x = GOT(CB_X);
    float *y = BUF(CB_Y, (size_t)T * D * sizeof(float));
    if (!y) return -1;
    int32_t *choice = NULL;
    if (w->tid2eid) { /* ids were checked against E when the model loaded */
        int32_t *host = ds4_malloc((size_t)T * K * sizeof *host);
        if (!host || !(choice = BUF(CB_CHOICE, (size_t)T * K * sizeof *host))) {
            free(host);
            return -1;
        }
        for (int t = 0; t < T; t++)
            memcpy(host + (size_t)t * K, (const uint8_t *)w->tid2eid->data + (size_t)tokens[t] * K * sizeof(int32_t),
                   K * sizeof(int32_t));
        ds4_cuda_to_device(b->dev, choice, host, (size_t)T * K * sizeof *host);
        free(host);
    }
    /* a few rows in one pass; more grouped by expert, each expert's weights read once */
    const int rc = T > DS4_CUDA_FFN_MAX_T ? ds4_cuda_ffn_grouped(b->dev, &w->ffn, x, T, choice, y, b->err, sizeof b->err)
                                          : ds4_cuda_ffn(b->dev, &w->ffn, x, T, choice, y, b->err, sizeof b->err);
    if (rc < 0) return ds4_fail("%s", b->err);
    if (ds4_profile_on) { /* the weights read: the router, the shared expert, the experts chosen (one per token
                             and choice, at most all of them) */
        const ds4_cuda_ffn_layer *L = &w->ffn;
        const uint64_t chosen = (uint64_t)T * K < L->E ? (uint64_t)T * K : L->E;
        ds4_prof_bytes(L->E * L->gate_inp.row_bytes +
                       (L->Is ? L->Is * (L->gate_sh.row_bytes + L->up_sh.row_bytes) + D * L->down_sh.row_bytes : 0) +
                       chosen * (L->I * (L->gate_exps.row_bytes + L->up_exps.row_bytes) + D * L->down_exps.row_bytes));
    }
    return done(b, "ffn");
}

int ds4_cuda_head(ds4_backend *b, const int *rows, float *const *out, int n) {
    const ds4_config *cf = b->cfg;
    const int hc = (int)cf->hc_mult, D = (int)cf->n_embd;
    const uint64_t V = cf->n_vocab;
    int32_t *drows = BUF(CB_ROWS, (size_t)n * sizeof *drows);
    float *flat = BUF(CB_FLAT, (size_t)n * hc * D * sizeof(float)), *mix = BUF(CB_MIX, (size_t)n * hc * sizeof(float));
    float *x = BUF(CB_HEADX, (size_t)n * D * sizeof(float)), *logits = BUF(CB_HEADOUT, (size_t)n * V * sizeof(float));
    if (!drows || !flat || !mix || !x || !logits) return -1;
    graph_open(b, n, 1 + (int)cf->n_layer); /* until the logits are copied out */
    ds4_cuda_to_device(b->dev, drows, rows, (size_t)n * sizeof *drows);
    const float *streams = GOT(CB_STREAMS);
    ds4_cuda_rmsnorm(b->dev, flat, (uint64_t)hc * D, streams, (uint64_t)hc * D, drows, n, hc * D, NULL, cf->rms_eps);
    ds4_cuda_product p = product(&b->head_fn, 0, hc, flat, (uint64_t)hc * D, n, mix, hc);
    if (products(b, &p, 1) < 0) return -1;
    const cuda_hc_weights hw = {b->head_fn, b->head_base, b->head_scale};
    const ds4_cuda_hc_site s = site_of(b, &hw, b->out_norm, hc, 0);
    ds4_cuda_hc_pre(b->dev, &s, mix, streams, drows, n, NULL, NULL, x);
    p = product(&b->output, 0, V, x, D, n, logits, V);
    if (products(b, &p, 1) < 0) return -1;
    if (mark(b, MARK_STAGE, NULL, 0) < 0) return -1;
    bool adjacent = true;
    for (int t = 1; t < n && adjacent; t++) adjacent = out[t] == out[0] + (size_t)t * V;
    for (int t = 0; t < n; t += adjacent ? n : 1)
        if (ds4_cuda_to_host(b->dev, out[t], logits + (size_t)t * V, (adjacent ? n : 1) * V * sizeof(float), "head",
                             b->err, sizeof b->err) < 0)
            return ds4_fail("%s", b->err);
    if (ds4_profile_on) resolve(b);
    return 0;
}

static const cuda_buf_id chunk_ids[] = {
    [DS4_CHUNK_STREAMS] = CB_STREAMS, [DS4_CHUNK_X] = CB_X, [DS4_CHUNK_Y] = CB_Y, [DS4_CHUNK_Q] = CB_Q,
    [DS4_CHUNK_KV] = CB_KV};

int ds4_cuda_chunk_read(ds4_backend *b, ds4_chunk_buf buf, int T, float *out) {
    const size_t bytes = (size_t)T * ds4_chunk_floats(b->cfg, buf) * sizeof(float);
    if (bytes > b->cap[chunk_ids[buf]]) return ds4_fail("no chunk of %d tokens in that buffer", T);
    if (ds4_cuda_to_host(b->dev, out, b->buf[chunk_ids[buf]], bytes, "reading a chunk", b->err, sizeof b->err) < 0)
        return ds4_fail("%s", b->err);
    return 0;
}

int ds4_cuda_chunk_write(ds4_backend *b, ds4_chunk_buf buf, int T, const float *in) {
    const size_t bytes = (size_t)T * ds4_chunk_floats(b->cfg, buf) * sizeof(float);
    void *to = BUF(chunk_ids[buf], bytes);
    if (!to) return -1;
    ds4_cuda_to_device(b->dev, to, in, bytes);
    return ds4_cuda_stage_done(b, "writing a chunk");
}
