/* cpu_attention.c - the CPU backend's attention stages over a chunk of tokens:
 * low-rank Q with per-head RMSNorm, the shared K=V head, partial interleaved RoPE, the
 * compressor and indexer inputs (attn_project); the window and compressors advancing
 * token by token, in order (kv_append); the lightning indexer's top-k on CSA layers
 * (indexer_select); softmax with per-head sinks, the inverse rotation of the output and
 * the grouped low-rank output projection (attend). Every token attends to exactly what
 * a token-by-token decode would show it, computed the same way, so chunked prefill,
 * decode and restored states agree bit for bit. */
#include <math.h>
#include <string.h>

#include "cpu_internal.h"
#include "indexer.h"
#include "ops.h"
#include "threads.h"

/* The position of each row of the chunk. */
static int64_t row_pos(const ds4_chunk *c, int row) {
    int s = 0;
    while (row >= c->seg[s].row0 + c->seg[s].n) s++;
    return (int64_t)c->seg[s].pos0 + (row - c->seg[s].row0);
}

int ds4_cpu_attn_project(ds4_backend *b, int il, const ds4_chunk *c) {
    const int T = c->T;
    const ds4_config *cf = b->cfg;
    const ds4_layer_weights *w = &b->layers[il];
    const int D = (int)cf->n_embd, H = (int)cf->n_head, d = (int)cf->head_dim, r = (int)cf->q_lora_rank;
    const int rd = (int)cf->rope_dim, Ih = (int)cf->indexer_heads, Id = (int)cf->indexer_dim;
    const bool compressed = w->kind != DS4_LAYER_SWA, csa = w->kind == DS4_LAYER_CSA;
    const int cw = csa ? 2 * d : d;
    const float *rope = compressed ? b->rope_comp : b->rope_main, *x = ds4_cpu_chunk(b, SB_X);
    float *qres = ds4_cpu_scratch(b, SB_QRES, (size_t)T * r * sizeof(float));
    float *q = ds4_cpu_scratch(b, SB_Q, (size_t)T * H * d * sizeof(float));
    float *kv = ds4_cpu_scratch(b, SB_KV, (size_t)T * d * sizeof(float));
    float *ckv = NULL, *cgate = NULL, *ikv = NULL, *igate = NULL, *iq = NULL, *iw = NULL;
    if (!qres || !q || !kv) return -1;
    if (compressed) {
        ckv = ds4_cpu_scratch(b, SB_CKV, (size_t)T * cw * sizeof(float));
        cgate = ds4_cpu_scratch(b, SB_CGATE, (size_t)T * cw * sizeof(float));
        if (!ckv || !cgate) return -1;
    }
    if (csa) {
        ikv = ds4_cpu_scratch(b, SB_IKV, (size_t)T * 2 * Id * sizeof(float));
        igate = ds4_cpu_scratch(b, SB_IGATE, (size_t)T * 2 * Id * sizeof(float));
        iq = ds4_cpu_scratch(b, SB_IQ, (size_t)T * Ih * Id * sizeof(float));
        iw = ds4_cpu_scratch(b, SB_IW, (size_t)T * Ih * sizeof(float));
        if (!ikv || !igate || !iq || !iw) return -1;
    }
    /* Everything that reads x in one loop, then what reads the low-rank query. */
    ds4_matmul_part parts[7] = {{w->q_a, 0, r, x, D, T, qres, r}, {w->kv, 0, d, x, D, T, kv, d}};
    int n_parts = 2;
    if (compressed) {
        parts[n_parts++] = (ds4_matmul_part){w->comp_kv, 0, cw, x, D, T, ckv, cw};
        parts[n_parts++] = (ds4_matmul_part){w->comp_gate, 0, cw, x, D, T, cgate, cw};
    }
    if (csa) {
        parts[n_parts++] = (ds4_matmul_part){w->idx_kv, 0, 2 * Id, x, D, T, ikv, 2 * Id};
        parts[n_parts++] = (ds4_matmul_part){w->idx_gate, 0, 2 * Id, x, D, T, igate, 2 * Id};
        parts[n_parts++] = (ds4_matmul_part){w->idx_proj, 0, Ih, x, D, T, iw, Ih};
    }
    ds4_matmul_batch(&b->mm, parts, n_parts);
    float cs[DS4_ROPE_MAX]; /* a token's rotation, for every head */
    for (int t = 0; t < T; t++) {
        ds4_rmsnorm(qres + (size_t)t * r, r, w->q_a_norm, cf->rms_eps);
        ds4_rmsnorm(kv + (size_t)t * d, d, w->kv_norm, cf->rms_eps);
        ds4_rope_apply(kv + (size_t)t * d, d, rd, rope, row_pos(c, t), 1);
    }
    parts[0] = (ds4_matmul_part){w->q_b, 0, (uint64_t)H * d, qres, r, T, q, (uint64_t)H * d};
    if (csa) parts[1] = (ds4_matmul_part){w->idx_q_b, 0, (uint64_t)Ih * Id, qres, r, T, iq, (uint64_t)Ih * Id};
    ds4_matmul_batch(&b->mm, parts, csa ? 2 : 1);
    for (int t = 0; t < T; t++) {
        ds4_rope_table(cs, rd, rope, row_pos(c, t));
        for (int h = 0; h < H; h++) {
            float *qh = q + ((size_t)t * H + h) * d;
            ds4_rmsnorm(qh, d, NULL, cf->rms_eps);
            ds4_rope_apply_table(qh, d, rd, cs, 1);
        }
    }
    if (csa) {
        const float wscale = 1.0f / sqrtf((float)Ih);
        for (int t = 0; t < T; t++) {
            ds4_rope_table(cs, rd, b->rope_comp, row_pos(c, t));
            for (int h = 0; h < Ih; h++) ds4_rope_apply_table(iq + ((size_t)t * Ih + h) * Id, Id, rd, cs, 1);
            for (int h = 0; h < Ih; h++) iw[(size_t)t * Ih + h] *= wscale;
        }
    }
    return 0;
}

int ds4_cpu_kv_append(ds4_backend *b, int il, const ds4_chunk *c) {
    const ds4_config *cf = b->cfg;
    const ds4_layer_weights *w = &b->layers[il];
    const int T = c->T, d = (int)cf->head_dim, Id = (int)cf->indexer_dim, cw = w->kind == DS4_LAYER_CSA ? 2 * d : d;
    const int cap = (int)cf->sliding_window;
    const float *kv = ds4_cpu_chunk(b, SB_KV), *ckv = ds4_cpu_chunk(b, SB_CKV), *cgate = ds4_cpu_chunk(b, SB_CGATE);
    const float *ikv = ds4_cpu_chunk(b, SB_IKV), *igate = ds4_cpu_chunk(b, SB_IGATE);
    uint64_t *n_entries = ds4_cpu_scratch(b, SB_NENT, (size_t)2 * T * sizeof(uint64_t));
    float *wkv = ds4_cpu_scratch(b, SB_WIN, (size_t)c->n_seg * cap * d * sizeof(float));
    int64_t *wpos = ds4_cpu_scratch(b, SB_WINPOS, (size_t)c->n_seg * cap * sizeof(int64_t));
    b->old_kv = ds4_cpu_scratch(b, SB_OLDKV, (size_t)c->n_seg * sizeof *b->old_kv);
    b->old_pos = ds4_cpu_scratch(b, SB_OLDPOS, (size_t)c->n_seg * sizeof *b->old_pos);
    if (!n_entries || !wkv || !wpos || !b->old_kv || !b->old_pos) return -1;
    for (int s = 0; s < c->n_seg; s++) {
        const ds4_segment *g = &c->seg[s];
        ds4_kv_layer *st = &b->states[g->seq].layers[il];
        /* Pushing overwrites window slots that earlier tokens of a multi-token segment
         * still need, so attend reads those from a copy taken before. */
        b->old_kv[s] = st->window_kv;
        b->old_pos[s] = st->window_pos;
        if (g->n > 1) {
            float *k = wkv + (size_t)s * cap * d;
            int64_t *p = wpos + (size_t)s * cap;
            memcpy(k, st->window_kv, (size_t)st->cap * d * sizeof(float));
            memcpy(p, st->window_pos, (size_t)st->cap * sizeof(int64_t));
            b->old_kv[s] = k;
            b->old_pos[s] = p;
        }
        for (int t = g->row0; t < g->row0 + g->n; t++) {
            ds4_cpu_window_push(st, kv + (size_t)t * d, (int64_t)g->pos0 + (t - g->row0));
            if (w->kind != DS4_LAYER_SWA &&
                ds4_cpu_compressor_push(b, &st->comp, ckv + (size_t)t * cw, cgate + (size_t)t * cw, w->comp_ape,
                                        w->comp_norm) < 0)
                return -1;
            if (w->kind == DS4_LAYER_CSA &&
                ds4_cpu_compressor_push(b, &st->indexer, ikv + (size_t)t * 2 * Id, igate + (size_t)t * 2 * Id,
                                        w->idx_ape, w->idx_norm) < 0)
                return -1;
            n_entries[t] = st->comp.n_entries;
            n_entries[T + t] = st->indexer.n_entries;
        }
        if (st->indexer.n_entries > UINT32_MAX) return ds4_fail("more compressed entries than the indexer can rank");
    }
    return 0;
}

/* Entries scored per tile when a thread serves many tokens: the tile is transposed once
 * and stays in cache while each token scores it. */
#define TILE_BLOCKS 32

/* Everything the per-token work of the selection and of attend reads. */
typedef struct {
    const ds4_layer_weights *w;
    const ds4_kv_layer *st;
    ds4_index_fn index;
    ds4_dot_fn dot;                 /* the context's level's */
    int T, H, d, rd, Ih, Id, threads;
    uint64_t pos0, topk;
    bool hca, csa;
    const float *q, *kv, *iq, *iw, *rope;
    const float *old_kv;            /* the window as it was before the chunk */
    const int64_t *old_pos;
    const uint64_t *n_comp, *n_idx; /* entries token t sees */
    float *att;
    /* selection: heaps for the T tokens, then one per thread; per token its indices */
    ds4_topk *heaps;
    uint64_t *sel;
    uint32_t *n_sel;
    /* per thread: key pointers, logits (H rows of `stride`), a transposed indexer tile */
    const float **keys;
    float *logits, *kt;
    uint64_t stride, kt_floats;
    int token; /* the token an entry- or head-parallel loop works for */
} chunk_job;

/* The job of segment s: its rows of the chunk's buffers, its sequence's state. */
static chunk_job job_for(ds4_backend *b, int il, const ds4_chunk *c, int s) {
    const ds4_config *cf = b->cfg;
    const ds4_layer_weights *w = &b->layers[il];
    const ds4_segment *g = &c->seg[s];
    const uint64_t *n_entries = ds4_cpu_chunk(b, SB_NENT);
    const int threads = b->mm.n_threads > 0 ? b->mm.n_threads : 1, H = (int)cf->n_head, d = (int)cf->head_dim;
    const int Ih = (int)cf->indexer_heads, Id = (int)cf->indexer_dim;
    const float *q = ds4_cpu_chunk(b, SB_Q), *kv = ds4_cpu_chunk(b, SB_KV);
    const float *iq = ds4_cpu_chunk(b, SB_IQ), *iw = ds4_cpu_chunk(b, SB_IW);
    const bool csa = w->kind == DS4_LAYER_CSA;
    return (chunk_job){.w = w, .st = &b->states[g->seq].layers[il], .index = ds4_index_for_level((int)b->mm.level),
                       .dot = ds4_dot_for_level((int)b->mm.level), .T = g->n, .H = H, .d = d, .rd = (int)cf->rope_dim,
                       .Ih = Ih, .Id = Id, .threads = threads, .pos0 = g->pos0,
                       .topk = csa ? cf->indexer_topk : 0, .hca = w->kind == DS4_LAYER_HCA, .csa = csa,
                       .q = q + (size_t)g->row0 * H * d, .kv = kv + (size_t)g->row0 * d,
                       .iq = csa ? iq + (size_t)g->row0 * Ih * Id : NULL, .iw = csa ? iw + (size_t)g->row0 * Ih : NULL,
                       .rope = w->kind != DS4_LAYER_SWA ? b->rope_comp : b->rope_main, .old_kv = b->old_kv[s],
                       .old_pos = b->old_pos[s], .n_comp = n_entries + g->row0, .n_idx = n_entries + c->T + g->row0};
}

/* Many tokens share the threads out by token (cache-friendly: a tile of indexer keys
 * serves all of a thread's tokens); a few go one by one, split over entries and heads.
 * The selection and attend split alike, and either split gives the same results. */
static bool by_token(const chunk_job *j) { return j->T >= 4 * j->threads || j->threads == 1; }

/* Scores the entries below n of blocks [b0, b1) for token t's indexer query, from a
 * tile holding those blocks transposed, pushing them into the token's heap. */
static void score_blocks(const chunk_job *j, int t, const float *tile, uint64_t b0, uint64_t b1, uint64_t n,
                         ds4_topk *heap) {
    const float *q = j->iq + (size_t)t * j->Ih * j->Id, *w = j->iw + (size_t)t * j->Ih;
    const float scale = 1.0f / sqrtf((float)j->Id);
    float s[DS4_KEY_BLOCK];
    for (uint64_t b = b0; b < b1 && b * DS4_KEY_BLOCK < n; b++) {
        const uint64_t e0 = b * DS4_KEY_BLOCK;
        uint32_t mask = j->index(tile + (b - b0) * DS4_KEY_BLOCK * j->Id, j->Id, q, w, j->Ih, scale, heap->floor, s);
        if (n - e0 < DS4_KEY_BLOCK) mask &= (1u << (n - e0)) - 1;
        for (; mask; mask &= mask - 1) {
            const int i = __builtin_ctz(mask);
            ds4_topk_push(heap, s[i], (uint32_t)(e0 + (uint64_t)i));
        }
    }
}

/* Transposes indexer blocks [b0, b1) (those that exist) into `tile`. */
static void transpose_blocks(const chunk_job *j, uint64_t b0, uint64_t b1, uint64_t n, float *tile) {
    const float *rows[DS4_KEY_BLOCK];
    for (uint64_t b = b0; b < b1 && b * DS4_KEY_BLOCK < n; b++) {
        const uint64_t e0 = b * DS4_KEY_BLOCK;
        const int m = n - e0 < DS4_KEY_BLOCK ? (int)(n - e0) : DS4_KEY_BLOCK;
        for (int i = 0; i < m; i++) rows[i] = j->st->indexer.entries + (e0 + (uint64_t)i) * j->Id;
        ds4_keys_transpose(rows, m, j->Id, tile + (b - b0) * DS4_KEY_BLOCK * j->Id);
    }
}

/* Lightning indexer for tokens [t0, t1) on one thread: score = sum_h w_h * relu(q_h . k)
 * / sqrt(Id) over every entry the token sees, keeping the top k. */
static void select_range(void *arg, uint64_t t0, uint64_t t1, int thread) {
    const chunk_job *j = arg;
    if (t1 <= t0) return;
    float *tile = j->kt + (uint64_t)thread * j->kt_floats;
    const uint64_t n_end = j->n_idx[t1 - 1], n_blocks = (n_end + DS4_KEY_BLOCK - 1) / DS4_KEY_BLOCK;
    ds4_topk *heap = j->heaps + t0;
    for (uint64_t b0 = 0; b0 < n_blocks; b0 += TILE_BLOCKS) {
        const uint64_t b1 = b0 + TILE_BLOCKS < n_blocks ? b0 + TILE_BLOCKS : n_blocks;
        transpose_blocks(j, b0, b1, n_end, tile);
        for (uint64_t t = t0; t < t1; t++) score_blocks(j, (int)t, tile, b0, b1, j->n_idx[t], &heap[t - t0]);
    }
    for (uint64_t t = t0; t < t1; t++) j->n_sel[t] = ds4_topk_indices(&heap[t - t0], j->sel + t * j->topk);
}

/* One thread's share of the blocks of a single token's selection. */
static void select_entry_range(void *arg, uint64_t b0, uint64_t b1, int thread) {
    const chunk_job *j = arg;
    const int t = j->token;
    float *tile = j->kt + (uint64_t)thread * j->kt_floats;
    for (uint64_t a = b0; a < b1; a += TILE_BLOCKS) {
        const uint64_t a1 = a + TILE_BLOCKS < b1 ? a + TILE_BLOCKS : b1;
        transpose_blocks(j, a, a1, j->n_idx[t], tile);
        score_blocks(j, t, tile, a, a1, j->n_idx[t], &j->heaps[j->T + thread]);
    }
}

int ds4_cpu_indexer_select(ds4_backend *b, int il, const ds4_chunk *c) {
    const uint64_t topk = b->cfg->indexer_topk;
    uint64_t *sel = ds4_cpu_scratch(b, SB_SEL, (size_t)c->T * topk * sizeof *sel);
    uint32_t *n_sel = ds4_cpu_scratch(b, SB_NSEL, (size_t)c->T * sizeof *n_sel);
    if (!sel || !n_sel) return -1;
    for (int s = 0; s < c->n_seg; s++) {
        chunk_job j = job_for(b, il, c, s);
        const int threads = j.threads, T = j.T;
        j.sel = sel + (size_t)c->seg[s].row0 * topk;
        j.n_sel = n_sel + c->seg[s].row0;
        j.kt_floats = (uint64_t)TILE_BLOCKS * DS4_KEY_BLOCK * j.Id;
        j.kt = ds4_cpu_scratch(b, SB_KT, (size_t)threads * j.kt_floats * sizeof *j.kt);
        uint64_t *storage = ds4_cpu_scratch(b, SB_HEAP, ((size_t)T + threads) * j.topk * sizeof *storage);
        j.heaps = ds4_cpu_scratch(b, SB_TOPK, ((size_t)T + threads) * sizeof *j.heaps);
        if (!j.kt || !storage || !j.heaps) return -1;
        for (int i = 0; i < T + threads; i++) ds4_topk_reset(&j.heaps[i], storage + (uint64_t)i * j.topk, (uint32_t)j.topk);
        if (by_token(&j)) {
            ds4_parallel_for(threads, (uint64_t)T, select_range, &j);
            continue;
        }
        for (int t = 0; t < T; t++) {
            j.token = t;
            const uint64_t n = j.n_idx[t], blocks = (n + DS4_KEY_BLOCK - 1) / DS4_KEY_BLOCK;
            const int nt = n * j.Ih * j.Id < (1u << 16) ? 1 : threads;
            for (int i = 0; i < nt; i++) ds4_topk_reset(&j.heaps[T + i], j.heaps[T + i].key, (uint32_t)j.topk);
            ds4_parallel_for(nt, blocks, select_entry_range, &j);
            for (int i = 0; i < nt; i++) ds4_topk_merge(&j.heaps[t], &j.heaps[T + i]);
            j.n_sel[t] = ds4_topk_indices(&j.heaps[t], j.sel + (uint64_t)t * j.topk);
        }
    }
    return 0;
}

/* Token t's keys: its window in the ring's slot order (fixed by the position alone, so
 * every way of splitting the work sums the same keys in the same order), then its
 * compressed entries in increasing order. */
static uint64_t gather_keys(const chunk_job *j, int t, const float **keys) {
    const int cap = (int)j->st->cap;
    const int64_t p = (int64_t)j->pos0 + t;
    uint64_t n = 0;
    for (int slot = 0; slot < cap; slot++) {
        const int64_t q = p - ((p - slot) % cap + cap) % cap; /* the latest position <= p in this slot */
        if (q < 0) continue;
        if (q >= (int64_t)j->pos0) keys[n++] = j->kv + (uint64_t)(q - (int64_t)j->pos0) * j->d;
        else if (j->old_pos[slot] == q) keys[n++] = j->old_kv + (uint64_t)slot * j->d;
    }
    const float *entries = j->st->comp.entries;
    if (j->hca)
        for (uint64_t e = 0; e < j->n_comp[t]; e++) keys[n++] = entries + e * j->d;
    if (j->csa)
        for (uint32_t i = 0; i < j->n_sel[t]; i++) keys[n++] = entries + j->sel[(uint64_t)t * j->topk + i] * j->d;
    return n;
}

/* Heads [h0, h1) of token t: softmax with the head's sink over its keys (K = V), then the
 * inverse RoPE on the output. */
static void attend_heads(const chunk_job *j, int t, int h0, int h1, int thread) {
    const int d = j->d;
    const float **keys = j->keys + (uint64_t)thread * j->stride;
    float *lg = j->logits + (uint64_t)thread * j->H * j->stride;
    const float *q = j->q + ((size_t)t * j->H + h0) * d;
    const uint64_t n = gather_keys(j, t, keys);
    const float scale = 1.0f / sqrtf((float)d);
    /* a dot product, not the indexer's FMA chains: the reference vectors hold near-ties
     * (routing, top-k) that a different rounding of these logits decides differently. */
    for (uint64_t k = 0; k < n; k++)
        for (int h = h0; h < h1; h++)
            lg[(uint64_t)(h - h0) * j->stride + k] = j->dot(q + (size_t)(h - h0) * d, keys[k], (uint64_t)d) * scale;
    float cs[DS4_ROPE_MAX];
    ds4_rope_table(cs, j->rd, j->rope, (int64_t)j->pos0 + t);
    for (int h = h0; h < h1; h++) {
        float *row = lg + (uint64_t)(h - h0) * j->stride;
        const float sink = j->w->sinks[h];
        float m = sink;
        for (uint64_t k = 0; k < n; k++) m = fmaxf(m, row[k]);
        float sum = expf(sink - m);
        for (uint64_t k = 0; k < n; k++) sum += (row[k] = expf(row[k] - m));
        float *o = j->att + ((size_t)t * j->H + h) * d;
        memset(o, 0, (size_t)d * sizeof *o);
        for (uint64_t k = 0; k < n; k++) ds4_axpy(row[k] / sum, keys[k], o, (uint64_t)d);
        ds4_rope_apply_table(o, d, j->rd, cs, -1);
    }
}

static void attend_range(void *arg, uint64_t t0, uint64_t t1, int thread) {
    for (uint64_t t = t0; t < t1; t++) attend_heads(arg, (int)t, 0, ((const chunk_job *)arg)->H, thread);
}

static void heads_range(void *arg, uint64_t h0, uint64_t h1, int thread) {
    const chunk_job *j = arg;
    if (h1 > h0) attend_heads(j, j->token, (int)h0, (int)h1, thread);
}

int ds4_cpu_attend(ds4_backend *b, int il, const ds4_chunk *c) {
    const ds4_config *cf = b->cfg;
    const int T = c->T, H = (int)cf->n_head, d = (int)cf->head_dim, G = (int)cf->o_groups, R = (int)cf->o_lora_rank;
    const int D = (int)cf->n_embd, cap = (int)cf->sliding_window;
    const uint64_t topk = b->cfg->indexer_topk;
    float *att = ds4_cpu_scratch(b, SB_ATT, (size_t)T * H * d * sizeof(float));
    float *grp = ds4_cpu_scratch(b, SB_GRP, (size_t)T * G * R * sizeof(float));
    float *out = ds4_cpu_scratch(b, SB_Y, (size_t)T * D * sizeof(float));
    uint64_t *sel = ds4_cpu_chunk(b, SB_SEL);
    uint32_t *n_sel = ds4_cpu_chunk(b, SB_NSEL);
    if (!att || !grp || !out) return -1;
    for (int s = 0; s < c->n_seg; s++) {
        chunk_job j = job_for(b, il, c, s);
        const int threads = j.threads, row0 = c->seg[s].row0;
        if (j.csa) {
            j.sel = sel + (size_t)row0 * topk;
            j.n_sel = n_sel + row0;
        }
        j.att = att + (size_t)row0 * H * d;
        j.stride = (uint64_t)cap + (j.hca ? j.st->comp.n_entries : j.topk);
        j.keys = ds4_cpu_scratch(b, SB_KEYS, (size_t)threads * j.stride * sizeof *j.keys);
        j.logits = ds4_cpu_scratch(b, SB_LOGITS, (size_t)threads * H * j.stride * sizeof *j.logits);
        if (!j.keys || !j.logits) return -1;
        if (by_token(&j)) {
            ds4_parallel_for(threads, (uint64_t)j.T, attend_range, &j);
            continue;
        }
        for (int t = 0; t < j.T; t++) {
            j.token = t;
            const uint64_t keys = (uint64_t)cap + (j.hca ? j.n_comp[t] : j.csa ? j.n_sel[t] : 0);
            ds4_parallel_for((uint64_t)H * keys * d < (1u << 16) ? 1 : threads, (uint64_t)H, heads_range, &j);
        }
    }
    /* Grouped output projection: group g maps its heads' slice through rows g*R.. of
     * out_a (all groups in one loop), for every row of the chunk. */
    const ds4_layer_weights *w = &b->layers[il];
    const uint64_t per_group = (uint64_t)H * d / G;
    ds4_matmul_part groups[64];
    for (int g0 = 0; g0 < G; g0 += 64) {
        const int n = G - g0 < 64 ? G - g0 : 64;
        for (int g = g0; g < g0 + n; g++)
            groups[g - g0] = (ds4_matmul_part){w->out_a, (uint64_t)g * R, R, att + g * per_group, (uint64_t)H * d,
                                               T, grp + (size_t)g * R, (uint64_t)G * R};
        ds4_matmul_batch(&b->mm, groups, n);
    }
    ds4_matmul(&b->mm, w->out_b, 0, D, grp, (uint64_t)G * R, T, out, D);
    return 0;
}
