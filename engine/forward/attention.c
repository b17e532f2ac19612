/* attention.c - one attention sublayer over a chunk of tokens: low-rank Q with per-head
 * RMSNorm, the shared K=V head, partial interleaved RoPE, the compressors (HCA, CSA) and
 * the lightning indexer, softmax with per-head sinks, the inverse rotation of the output
 * and the grouped low-rank output projection. Projections run as one batch for the
 * chunk; the state advances token by token, in order, and every token then attends to
 * exactly what a token-by-token decode would show it, computed the same way, so chunked
 * prefill, decode and restored states agree bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "indexer.h"
#include "forward_impl.h"
#include "numeric.h"
#include "profile.h"
#include "threads.h"
#include "util.h"

/* Finish a pooled compressor entry: RMSNorm, then RoPE at its window's first position. */
static void finish_entry(ds4_ctx *c, float *e, const ds4_compressor *comp, const float *norm) {
    const ds4_config *cf = c->cfg;
    ds4_rmsnorm(e, comp->width, norm, cf->rms_eps);
    int64_t pos = (int64_t)(comp->n_entries - 1) * comp->ratio;
    ds4_rope_apply(e, comp->width, (int)cf->rope_dim, c->rope_comp, pos, 1);
}

/* Entries scored per tile when a thread serves many tokens: the tile is transposed once
 * and stays in cache while each token scores it. */
#define TILE_BLOCKS 32

/* Everything the per-token work reads, after the chunk's state updates. */
typedef struct {
    ds4_ctx *c;
    const ds4_layer_weights *w;
    const ds4_layer_state *st;
    ds4_index_fn index;
    int T, H, d, rd, Ih, Id, threads;
    uint64_t pos0, topk;
    bool hca, csa;
    const float *q, *kv, *iq, *iw, *rope;
    const float *old_kv;       /* the window as it was before the chunk */
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
    int select_token; /* the token an entry-parallel selection works for */
} chunk_job;

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
static void select_tokens(const chunk_job *j, int t0, int t1, int thread) {
    float *tile = j->kt + (uint64_t)thread * j->kt_floats;
    const uint64_t n_end = j->n_idx[t1 - 1], n_blocks = (n_end + DS4_KEY_BLOCK - 1) / DS4_KEY_BLOCK;
    ds4_topk *heap = j->heaps + t0;
    for (uint64_t b0 = 0; b0 < n_blocks; b0 += TILE_BLOCKS) {
        const uint64_t b1 = b0 + TILE_BLOCKS < n_blocks ? b0 + TILE_BLOCKS : n_blocks;
        transpose_blocks(j, b0, b1, n_end, tile);
        for (int t = t0; t < t1; t++) score_blocks(j, t, tile, b0, b1, j->n_idx[t], &heap[t - t0]);
    }
    for (int t = t0; t < t1; t++) j->n_sel[t] = ds4_topk_indices(&heap[t - t0], j->sel + (uint64_t)t * j->topk);
}

/* One thread's share of the blocks of a single token's selection. */
static void select_entry_range(void *arg, uint64_t b0, uint64_t b1, int thread) {
    const chunk_job *j = arg;
    const int t = j->select_token;
    float *tile = j->kt + (uint64_t)thread * j->kt_floats;
    for (uint64_t a = b0; a < b1; a += TILE_BLOCKS) {
        const uint64_t a1 = a + TILE_BLOCKS < b1 ? a + TILE_BLOCKS : b1;
        transpose_blocks(j, a, a1, j->n_idx[t], tile);
        score_blocks(j, t, tile, a, a1, j->n_idx[t], &j->heaps[j->T + thread]);
    }
}

/* Token t's keys: its window in the ring's slot order (fixed by the position alone, so
 * every way of splitting the work sums the same keys in the same order), then its
 * compressed entries in increasing order. */
static uint64_t gather_keys(const chunk_job *j, int t, const float **keys) {
    const int cap = j->st->window.cap;
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
static void attend(const chunk_job *j, int t, int h0, int h1, int thread) {
    const int d = j->d;
    const float **keys = j->keys + (uint64_t)thread * j->stride;
    float *lg = j->logits + (uint64_t)thread * j->H * j->stride;
    const float *q = j->q + ((size_t)t * j->H + h0) * d;
    const uint64_t n = gather_keys(j, t, keys);
    const float scale = 1.0f / sqrtf((float)d);
    /* ds4_dot, not the indexer's FMA chains: the reference vectors hold near-ties
     * (routing, top-k) that a different rounding of these logits decides differently. */
    for (uint64_t k = 0; k < n; k++)
        for (int h = h0; h < h1; h++)
            lg[(uint64_t)(h - h0) * j->stride + k] = ds4_dot(q + (size_t)(h - h0) * d, keys[k], (uint64_t)d) * scale;
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

/* Many tokens: each thread takes a run of tokens, first for the selection, then for
 * all heads. */
static void select_range(void *arg, uint64_t t0, uint64_t t1, int thread) {
    if (t1 > t0) select_tokens(arg, (int)t0, (int)t1, thread);
}

static void attend_range(void *arg, uint64_t t0, uint64_t t1, int thread) {
    for (uint64_t t = t0; t < t1; t++) attend(arg, (int)t, 0, ((const chunk_job *)arg)->H, thread);
}

static void heads_range(void *arg, uint64_t h0, uint64_t h1, int thread) {
    const chunk_job *j = arg;
    if (h1 > h0) attend(j, j->select_token, (int)h0, (int)h1, thread);
}

/* A few tokens: one at a time, the selection split over entries and the heads over threads. */
static void one_token(chunk_job *j, int t) {
    j->select_token = t;
    if (j->csa) {
        const double t0 = ds4_time_now();
        const uint64_t n = j->n_idx[t], blocks = (n + DS4_KEY_BLOCK - 1) / DS4_KEY_BLOCK;
        const int nt = n * j->Ih * j->Id < (1u << 16) ? 1 : j->threads;
        ds4_topk *heap = &j->heaps[t];
        for (int i = 0; i < nt; i++) ds4_topk_reset(&j->heaps[j->T + i], j->heaps[j->T + i].key, (uint32_t)j->topk);
        ds4_parallel_for(nt, blocks, select_entry_range, j);
        for (int i = 0; i < nt; i++) ds4_topk_merge(heap, &j->heaps[j->T + i]);
        j->n_sel[t] = ds4_topk_indices(heap, j->sel + (uint64_t)t * j->topk);
        j->c->indexer_seconds += ds4_time_now() - t0;
        ds4_prof_end(DS4_PROF_INDEXER, t0);
    }
    const double t1 = ds4_prof_begin();
    const uint64_t keys = (uint64_t)j->st->window.cap + (j->hca ? j->n_comp[t] : j->csa ? j->n_sel[t] : 0);
    ds4_parallel_for((uint64_t)j->H * keys * j->d < (1u << 16) ? 1 : j->threads, (uint64_t)j->H, heads_range, j);
    ds4_prof_end(DS4_PROF_ATTEND, t1);
}

int ds4_attention(ds4_ctx *c, int il, const float *x, int T, uint64_t pos0, float *out) {
    const ds4_config *cf = c->cfg;
    const ds4_layer_weights *w = &c->layers[il];
    ds4_layer_state *st = &c->state[il];
    const int D = (int)cf->n_embd, H = (int)cf->n_head, d = (int)cf->head_dim, r = (int)cf->q_lora_rank;
    const int rd = (int)cf->rope_dim, G = (int)cf->o_groups, R = (int)cf->o_lora_rank, nt = c->n_threads;
    const int Ih = (int)cf->indexer_heads, Id = (int)cf->indexer_dim;
    const bool compressed = w->kind != DS4_LAYER_SWA, csa = w->kind == DS4_LAYER_CSA;
    const int cw = csa ? 2 * d : d, cap = st->window.cap, threads = nt > 0 ? nt : 1;
    const float *rope = compressed ? c->rope_comp : c->rope_main;
    float *qres = ds4_ctx_scratch(c, SB_QRES, (size_t)T * r * sizeof(float));
    float *q = ds4_ctx_scratch(c, SB_Q, (size_t)T * H * d * sizeof(float));
    float *kv = ds4_ctx_scratch(c, SB_KV, (size_t)T * d * sizeof(float));
    float *att = ds4_ctx_scratch(c, SB_ATT, (size_t)T * H * d * sizeof(float));
    float *grp = ds4_ctx_scratch(c, SB_GRP, (size_t)T * G * R * sizeof(float));
    uint64_t *n_entries = ds4_ctx_scratch(c, SB_NENT, (size_t)2 * T * sizeof(uint64_t));
    float *ckv = NULL, *cgate = NULL, *ikv = NULL, *igate = NULL, *iq = NULL, *iw = NULL;
    if (!qres || !q || !kv || !att || !grp || !n_entries) return -1;
    if (compressed) {
        ckv = ds4_ctx_scratch(c, SB_CKV, (size_t)T * cw * sizeof(float));
        cgate = ds4_ctx_scratch(c, SB_CGATE, (size_t)T * cw * sizeof(float));
        if (!ckv || !cgate) return -1;
    }
    if (csa) {
        ikv = ds4_ctx_scratch(c, SB_IKV, (size_t)T * 2 * Id * sizeof(float));
        igate = ds4_ctx_scratch(c, SB_IGATE, (size_t)T * 2 * Id * sizeof(float));
        iq = ds4_ctx_scratch(c, SB_IQ, (size_t)T * Ih * Id * sizeof(float));
        iw = ds4_ctx_scratch(c, SB_IW, (size_t)T * Ih * sizeof(float));
        if (!ikv || !igate || !iq || !iw) return -1;
    }

    /* Batched projections for the chunk: everything that reads x in one loop, then what
     * reads the low-rank query. */
    double t0 = ds4_prof_begin();
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
    ds4_matmul_batch(parts, n_parts, nt);
    float cs[DS4_ROPE_MAX], ccs[DS4_ROPE_MAX]; /* a token's rotation, for every head */
    for (int t = 0; t < T; t++) {
        ds4_rmsnorm(qres + (size_t)t * r, r, w->q_a_norm, cf->rms_eps);
        ds4_rmsnorm(kv + (size_t)t * d, d, w->kv_norm, cf->rms_eps);
        ds4_rope_apply(kv + (size_t)t * d, d, rd, rope, (int64_t)(pos0 + t), 1);
    }
    parts[0] = (ds4_matmul_part){w->q_b, 0, (uint64_t)H * d, qres, r, T, q, (uint64_t)H * d};
    if (csa) parts[1] = (ds4_matmul_part){w->idx_q_b, 0, (uint64_t)Ih * Id, qres, r, T, iq, (uint64_t)Ih * Id};
    ds4_matmul_batch(parts, csa ? 2 : 1, nt);
    for (int t = 0; t < T; t++) {
        ds4_rope_table(cs, rd, rope, (int64_t)(pos0 + t));
        for (int h = 0; h < H; h++) {
            float *qh = q + ((size_t)t * H + h) * d;
            ds4_rmsnorm(qh, d, NULL, cf->rms_eps);
            ds4_rope_apply_table(qh, d, rd, cs, 1);
        }
    }
    if (csa) {
        const float wscale = 1.0f / sqrtf((float)Ih);
        for (int t = 0; t < T; t++) {
            ds4_rope_table(ccs, rd, c->rope_comp, (int64_t)(pos0 + t));
            for (int h = 0; h < Ih; h++) ds4_rope_apply_table(iq + ((size_t)t * Ih + h) * Id, Id, rd, ccs, 1);
            for (int h = 0; h < Ih; h++) iw[(size_t)t * Ih + h] *= wscale;
        }
    }

    ds4_prof_end(DS4_PROF_ATTN_PROJ, t0);

    /* The state advances token by token, in order; each token then attends to exactly
     * what it would have seen in a token-by-token decode: the window up to itself and
     * the entries finished by then. Pushing overwrites window slots that earlier tokens
     * of a multi-token chunk still need, so those read a copy taken before. */
    const float *old_kv = st->window.kv;
    const int64_t *old_pos = st->window.pos;
    if (T > 1) {
        float *wkv = ds4_ctx_scratch(c, SB_WIN, (size_t)cap * d * sizeof(float));
        int64_t *wpos = ds4_ctx_scratch(c, SB_WINPOS, (size_t)cap * sizeof(int64_t));
        if (!wkv || !wpos) return -1;
        memcpy(wkv, st->window.kv, (size_t)cap * d * sizeof(float));
        memcpy(wpos, st->window.pos, (size_t)cap * sizeof(int64_t));
        old_kv = wkv, old_pos = wpos;
    }
    t0 = ds4_prof_begin();
    bool oom = false;
    for (int t = 0; t < T && !oom; t++) {
        ds4_window_push(&st->window, kv + (size_t)t * d, (int64_t)(pos0 + t));
        if (compressed) {
            float *e = ds4_compressor_push(&st->comp, ckv + (size_t)t * cw, cgate + (size_t)t * cw, w->comp_ape, &oom);
            if (e) finish_entry(c, e, &st->comp, w->comp_norm);
        }
        if (csa) {
            float *e = ds4_compressor_push(&st->indexer, ikv + (size_t)t * 2 * Id, igate + (size_t)t * 2 * Id,
                                           w->idx_ape, &oom);
            if (e) finish_entry(c, e, &st->indexer, w->idx_norm);
        }
        n_entries[t] = st->comp.n_entries;
        n_entries[T + t] = st->indexer.n_entries;
    }
    if (oom || st->indexer.n_entries > UINT32_MAX) return ds4_fail("out of memory growing the KV state");
    ds4_prof_end(DS4_PROF_KV_APPEND, t0);

    chunk_job j = {.c = c, .w = w, .st = st, .index = ds4_index_best(), .T = T, .H = H, .d = d, .rd = rd,
                   .Ih = Ih, .Id = Id, .threads = threads, .pos0 = pos0, .hca = w->kind == DS4_LAYER_HCA,
                   .csa = csa, .q = q, .kv = kv, .iq = iq, .iw = iw, .rope = rope, .old_kv = old_kv,
                   .old_pos = old_pos, .n_comp = n_entries, .n_idx = n_entries + T, .att = att};
    j.topk = csa ? cf->indexer_topk : 0;
    j.stride = (uint64_t)cap + (j.hca ? st->comp.n_entries : j.topk);
    j.keys = ds4_ctx_scratch(c, SB_KEYS, (size_t)threads * j.stride * sizeof *j.keys);
    j.logits = ds4_ctx_scratch(c, SB_LOGITS, (size_t)threads * H * j.stride * sizeof *j.logits);
    if (!j.keys || !j.logits) return -1;
    if (csa) {
        j.kt_floats = (uint64_t)TILE_BLOCKS * DS4_KEY_BLOCK * Id;
        j.kt = ds4_ctx_scratch(c, SB_KT, (size_t)threads * j.kt_floats * sizeof *j.kt);
        uint64_t *storage = ds4_ctx_scratch(c, SB_HEAP, ((size_t)T + threads) * j.topk * sizeof *storage);
        j.heaps = ds4_ctx_scratch(c, SB_TOPK, ((size_t)T + threads) * sizeof *j.heaps);
        j.sel = ds4_ctx_scratch(c, SB_SEL, (size_t)T * j.topk * sizeof *j.sel);
        j.n_sel = ds4_ctx_scratch(c, SB_NSEL, (size_t)T * sizeof *j.n_sel);
        if (!j.kt || !storage || !j.heaps || !j.sel || !j.n_sel) return -1;
        for (int i = 0; i < T + threads; i++) ds4_topk_reset(&j.heaps[i], storage + (uint64_t)i * j.topk, (uint32_t)j.topk);
    }
    /* Many tokens share the threads out by token (cache-friendly: a tile of indexer keys
     * serves all of a thread's tokens); a few go one by one, split over entries and heads. */
    if (T >= 4 * threads || threads == 1) {
        if (csa) {
            const double ti = ds4_time_now();
            ds4_parallel_for(threads, (uint64_t)T, select_range, &j);
            c->indexer_seconds += ds4_time_now() - ti;
            ds4_prof_end(DS4_PROF_INDEXER, ti);
        }
        t0 = ds4_prof_begin();
        ds4_parallel_for(threads, (uint64_t)T, attend_range, &j);
        ds4_prof_end(DS4_PROF_ATTEND, t0);
    } else {
        for (int t = 0; t < T; t++) one_token(&j, t);
    }

    /* Grouped output projection: group g maps its heads' slice through rows g*R.. of
     * out_a (all groups in one loop). */
    t0 = ds4_prof_begin();
    const uint64_t per_group = (uint64_t)H * d / G;
    ds4_matmul_part groups[64];
    for (int g0 = 0; g0 < G; g0 += 64) {
        const int n = G - g0 < 64 ? G - g0 : 64;
        for (int g = g0; g < g0 + n; g++)
            groups[g - g0] = (ds4_matmul_part){w->out_a, (uint64_t)g * R, R, att + g * per_group, (uint64_t)H * d, T,
                                               grp + (size_t)g * R, (uint64_t)G * R};
        ds4_matmul_batch(groups, n, nt);
    }
    ds4_matmul(w->out_b, 0, D, grp, (uint64_t)G * R, T, out, D, nt);
    ds4_prof_end(DS4_PROF_ATTN_OUT, t0);
    return 0;
}
