/* attention.c - one attention sublayer over a chunk of tokens: low-rank Q with per-head
 * RMSNorm, the shared K=V head, partial interleaved RoPE, the compressors (HCA, CSA) and
 * the lightning indexer, softmax with per-head sinks, the inverse rotation of the output
 * and the grouped low-rank output projection. Projections run as one batch for the
 * chunk; state updates and attention run token by token, in order, so every token sees
 * exactly the state a token-by-token decode would. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward_impl.h"
#include "threads.h"
#include "numeric.h"

/* Order of indexer scores as torch.topk on CUDA ranks them, which the reference vectors
 * come from: by the float's bits as a radix sort sees them (so -0 < +0), and among equal
 * scores the lower index first. Exact-zero scores are common (ReLU), so ties matter. */
static bool worse(const float *score, uint64_t a, uint64_t b) {
    uint32_t ka = ds4_f32_bits(score[a]), kb = ds4_f32_bits(score[b]);
    ka = (ka & 0x80000000u) ? ~ka : ka | 0x80000000u;
    kb = (kb & 0x80000000u) ? ~kb : kb | 0x80000000u;
    return ka < kb || (ka == kb && a > b);
}

/* Indices of the k best scores (k < n), with a heap whose root is the worst kept. */
static void top_k(const float *score, uint64_t n, uint64_t k, uint64_t *heap) {
    for (uint64_t i = 0; i < n; i++) {
        uint64_t j;
        if (i < k) {
            for (j = i; j && worse(score, i, heap[(j - 1) / 2]); j = (j - 1) / 2) heap[j] = heap[(j - 1) / 2];
            heap[j] = i;
            continue;
        }
        if (!worse(score, heap[0], i)) continue;
        for (j = 0;;) {
            uint64_t l = 2 * j + 1, r = l + 1, m = i;
            if (l < k && worse(score, heap[l], m)) m = heap[l];
            if (r < k && worse(score, heap[r], m)) m = heap[r];
            if (m == i) break;
            uint64_t child = m == heap[l] ? l : r;
            heap[j] = heap[child];
            j = child;
        }
        heap[j] = i;
    }
}

/* Finish a pooled compressor entry: RMSNorm, then RoPE at its window's first position. */
static void finish_entry(ds4_ctx *c, float *e, const ds4_compressor *comp, const float *norm) {
    const ds4_config *cf = c->cfg;
    ds4_rmsnorm(e, comp->width, norm, cf->rms_eps);
    int64_t pos = (int64_t)(comp->n_entries - 1) * comp->ratio;
    ds4_rope_apply(e, comp->width, (int)cf->rope_dim, c->rope_comp, pos, 1);
}

typedef struct {
    float *qres, *q, *kv, *att, *grp, *ckv, *cgate, *ikv, *igate, *iq, *iw;
    float *logits, *scores;
    uint64_t *sel;
    const float **keys;
    uint64_t cap_keys;
    int nt; /* threads: one logits row of cap_keys each */
} scratch;

/* One query token's attention for a range of heads: softmax with the head's sink over
 * the selected keys (K = V), then the inverse RoPE on the output. */
typedef struct {
    const float *q;
    float *att;
    const float *const *keys;
    uint64_t n_keys;
    const float *sinks;
    float scale;
    int d, rd;
    const float *rope;
    int64_t p;
    float *logits; /* a row of `stride` per thread */
    uint64_t stride;
} head_job;

static void attend_heads(void *arg, uint64_t h0, uint64_t h1, int thread) {
    const head_job *j = arg;
    float *lg = j->logits + (uint64_t)thread * j->stride;
    for (uint64_t h = h0; h < h1; h++) {
        const float *qh = j->q + h * (uint64_t)j->d;
        float m = j->sinks[h];
        for (uint64_t k = 0; k < j->n_keys; k++) {
            lg[k] = ds4_dot(qh, j->keys[k], (uint64_t)j->d) * j->scale;
            m = fmaxf(m, lg[k]);
        }
        float sum = expf(j->sinks[h] - m);
        for (uint64_t k = 0; k < j->n_keys; k++) sum += (lg[k] = expf(lg[k] - m));
        float *o = j->att + h * (uint64_t)j->d;
        memset(o, 0, (size_t)j->d * sizeof *o);
        for (uint64_t k = 0; k < j->n_keys; k++) ds4_axpy(lg[k] / sum, j->keys[k], o, (uint64_t)j->d);
        ds4_rope_apply(o, j->d, j->rd, j->rope, j->p, -1);
    }
}

/* Room for n keys (window + compressed entries) in the per-token buffers. */
static int reserve_keys(ds4_ctx *c, scratch *s, uint64_t n) {
    if (n <= s->cap_keys) return 0;
    const uint64_t cap = n * 2;
    s->logits = ds4_ctx_scratch(c, SB_LOGITS, cap * (uint64_t)s->nt * sizeof *s->logits);
    s->scores = ds4_ctx_scratch(c, SB_SCORES, cap * sizeof *s->scores);
    s->sel = ds4_ctx_scratch(c, SB_SEL, cap * sizeof *s->sel);
    s->keys = ds4_ctx_scratch(c, SB_KEYS, cap * sizeof *s->keys);
    if (!s->logits || !s->scores || !s->sel || !s->keys)
        return ds4_fail("out of memory for %llu attention keys", (unsigned long long)n);
    s->cap_keys = cap;
    return 0;
}

/* Choose the compressed entries token t attends to; returns how many, in s->sel. */
/* Lightning-indexer scores of a range of compressed entries for one query. */
typedef struct {
    const float *q, *w, *keys;
    float *scores;
    int heads, dim;
    float scale;
} score_job;

static void score_entries(void *arg, uint64_t e0, uint64_t e1, int thread) {
    (void)thread;
    const score_job *j = arg;
    for (uint64_t e = e0; e < e1; e++) {
        const float *k = j->keys + e * (uint64_t)j->dim;
        float total = 0.0f;
        for (int h = 0; h < j->heads; h++) {
            const float dot = ds4_dot(j->q + h * j->dim, k, (uint64_t)j->dim);
            total += (dot > 0.0f ? dot : 0.0f) * j->scale * j->w[h];
        }
        j->scores[e] = total;
    }
}

static uint64_t select_entries(ds4_ctx *c, int il, scratch *s, int t) {
    const ds4_config *cf = c->cfg;
    ds4_layer_state *st = &c->state[il];
    const uint64_t n = st->comp.n_entries;
    if (c->layers[il].kind == DS4_LAYER_HCA || n == 0) {
        for (uint64_t i = 0; i < n; i++) s->sel[i] = i;
        return n;
    }
    /* Lightning indexer: score = sum_h w_h * relu(q_h . k) / sqrt(Id); keep the top k. */
    const int Ih = (int)cf->indexer_heads, Id = (int)cf->indexer_dim;
    const float *q = s->iq + (size_t)t * Ih * Id, *w = s->iw + (size_t)t * Ih;
    score_job sj = {.q = q, .w = w, .keys = st->indexer.entries, .scores = s->scores, .heads = Ih, .dim = Id,
                    .scale = 1.0f / sqrtf((float)Id)};
    /* Every query scores every compressed entry: the long-context hot spot, in parallel
     * over entries (each score computed exactly as on one thread). */
    ds4_parallel_for(n * (uint64_t)Ih * Id < (1u << 16) ? 1 : c->n_threads, n, score_entries, &sj);
    if (n <= cf->indexer_topk) {
        for (uint64_t i = 0; i < n; i++) s->sel[i] = i;
        return n;
    }
    top_k(s->scores, n, cf->indexer_topk, s->sel);
    return cf->indexer_topk;
}

int ds4_attention(ds4_ctx *c, int il, const float *x, int T, uint64_t pos0, float *out) {
    const ds4_config *cf = c->cfg;
    const ds4_layer_weights *w = &c->layers[il];
    ds4_layer_state *st = &c->state[il];
    const int D = (int)cf->n_embd, H = (int)cf->n_head, d = (int)cf->head_dim, r = (int)cf->q_lora_rank;
    const int rd = (int)cf->rope_dim, G = (int)cf->o_groups, R = (int)cf->o_lora_rank, nt = c->n_threads;
    const int Ih = (int)cf->indexer_heads, Id = (int)cf->indexer_dim;
    const bool compressed = w->kind != DS4_LAYER_SWA, csa = w->kind == DS4_LAYER_CSA;
    const int cw = csa ? 2 * d : d;
    const float *rope = compressed ? c->rope_comp : c->rope_main;
    scratch s = {.nt = nt > 0 ? nt : 1};
    int rc = -1;
    s.qres = ds4_ctx_scratch(c, SB_QRES, (size_t)T * r * sizeof(float));
    s.q = ds4_ctx_scratch(c, SB_Q, (size_t)T * H * d * sizeof(float));
    s.kv = ds4_ctx_scratch(c, SB_KV, (size_t)T * d * sizeof(float));
    s.att = ds4_ctx_scratch(c, SB_ATT, (size_t)T * H * d * sizeof(float));
    s.grp = ds4_ctx_scratch(c, SB_GRP, (size_t)T * G * R * sizeof(float));
    if (!s.qres || !s.q || !s.kv || !s.att || !s.grp) goto done;
    if (compressed) {
        s.ckv = ds4_ctx_scratch(c, SB_CKV, (size_t)T * cw * sizeof(float));
        s.cgate = ds4_ctx_scratch(c, SB_CGATE, (size_t)T * cw * sizeof(float));
        if (!s.ckv || !s.cgate) goto done;
    }
    if (csa) {
        s.ikv = ds4_ctx_scratch(c, SB_IKV, (size_t)T * 2 * Id * sizeof(float));
        s.igate = ds4_ctx_scratch(c, SB_IGATE, (size_t)T * 2 * Id * sizeof(float));
        s.iq = ds4_ctx_scratch(c, SB_IQ, (size_t)T * Ih * Id * sizeof(float));
        s.iw = ds4_ctx_scratch(c, SB_IW, (size_t)T * Ih * sizeof(float));
        if (!s.ikv || !s.igate || !s.iq || !s.iw) goto done;
    }

    /* Batched projections for the chunk. */
    ds4_matmul(w->q_a, 0, r, x, D, T, s.qres, r, nt);
    ds4_matmul(w->kv, 0, d, x, D, T, s.kv, d, nt);
    for (int t = 0; t < T; t++) {
        ds4_rmsnorm(s.qres + (size_t)t * r, r, w->q_a_norm, cf->rms_eps);
        ds4_rmsnorm(s.kv + (size_t)t * d, d, w->kv_norm, cf->rms_eps);
        ds4_rope_apply(s.kv + (size_t)t * d, d, rd, rope, (int64_t)(pos0 + t), 1);
    }
    ds4_matmul(w->q_b, 0, (uint64_t)H * d, s.qres, r, T, s.q, (uint64_t)H * d, nt);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            float *qh = s.q + ((size_t)t * H + h) * d;
            ds4_rmsnorm(qh, d, NULL, cf->rms_eps);
            ds4_rope_apply(qh, d, rd, rope, (int64_t)(pos0 + t), 1);
        }
    if (compressed) {
        ds4_matmul(w->comp_kv, 0, cw, x, D, T, s.ckv, cw, nt);
        ds4_matmul(w->comp_gate, 0, cw, x, D, T, s.cgate, cw, nt);
    }
    if (csa) {
        ds4_matmul(w->idx_kv, 0, 2 * Id, x, D, T, s.ikv, 2 * Id, nt);
        ds4_matmul(w->idx_gate, 0, 2 * Id, x, D, T, s.igate, 2 * Id, nt);
        ds4_matmul(w->idx_q_b, 0, (uint64_t)Ih * Id, s.qres, r, T, s.iq, (uint64_t)Ih * Id, nt);
        ds4_matmul(w->idx_proj, 0, Ih, x, D, T, s.iw, Ih, nt);
        const float wscale = 1.0f / sqrtf((float)Ih);
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < Ih; h++)
                ds4_rope_apply(s.iq + ((size_t)t * Ih + h) * Id, Id, rd, c->rope_comp, (int64_t)(pos0 + t), 1);
            for (int h = 0; h < Ih; h++) s.iw[(size_t)t * Ih + h] *= wscale;
        }
    }

    /* Token by token: update the state, then attend. */
    const float scale = 1.0f / sqrtf((float)d);
    for (int t = 0; t < T; t++) {
        const int64_t p = (int64_t)(pos0 + t);
        ds4_window_push(&st->window, s.kv + (size_t)t * d, p);
        bool oom = false;
        if (compressed) {
            float *e = ds4_compressor_push(&st->comp, s.ckv + (size_t)t * cw, s.cgate + (size_t)t * cw, w->comp_ape, &oom);
            if (e) finish_entry(c, e, &st->comp, w->comp_norm);
        }
        if (csa) {
            float *e = ds4_compressor_push(&st->indexer, s.ikv + (size_t)t * 2 * Id, s.igate + (size_t)t * 2 * Id,
                                           w->idx_ape, &oom);
            if (e) finish_entry(c, e, &st->indexer, w->idx_norm);
        }
        if (oom || reserve_keys(c, &s, (uint64_t)st->window.cap + st->comp.n_entries + 1) < 0) {
            ds4_fail("out of memory growing the KV state");
            goto done;
        }
        uint64_t n_keys = 0;
        for (int i = 0; i < st->window.cap; i++)
            if (st->window.pos[i] >= 0 && st->window.pos[i] > p - st->window.cap)
                s.keys[n_keys++] = st->window.kv + (size_t)i * d;
        if (compressed) {
            uint64_t n_sel = select_entries(c, il, &s, t);
            for (uint64_t i = 0; i < n_sel; i++) s.keys[n_keys++] = st->comp.entries + s.sel[i] * (uint64_t)d;
        }
        head_job hj = {.q = s.q + (size_t)t * H * d, .att = s.att + (size_t)t * H * d, .keys = s.keys,
                       .n_keys = n_keys, .sinks = w->sinks, .scale = scale, .d = d, .rd = rd, .rope = rope, .p = p,
                       .logits = s.logits, .stride = s.cap_keys};
        /* Heads in parallel once there is enough work (Flash: 64 heads of 512 over up to 640 keys). */
        ds4_parallel_for((uint64_t)H * n_keys * d < (1u << 16) ? 1 : nt, (uint64_t)H, attend_heads, &hj);
    }

    /* Grouped output projection: group g maps its heads' slice through rows g*R.. of out_a. */
    const uint64_t per_group = (uint64_t)H * d / G;
    for (int g = 0; g < G; g++)
        ds4_matmul(w->out_a, (uint64_t)g * R, R, s.att + g * per_group, (uint64_t)H * d, T, s.grp + (size_t)g * R,
                   (uint64_t)G * R, nt);
    ds4_matmul(w->out_b, 0, D, s.grp, (uint64_t)G * R, T, out, D, nt);
    rc = 0;
done:
    return rc;
}
