/* moe.c - the MoE feed-forward over a chunk: router scores (sqrt-softplus, softmax or
 * sigmoid), expert choice by score + correction bias or by the hash table of the first
 * layers, normalised and scaled weights, SwiGLU experts with the clamp limit, and the
 * shared expert. Tokens are grouped by expert so each expert's weights are read once
 * per chunk. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward_impl.h"

static float route_score(uint32_t gating, float logit) {
    switch (gating) {
    case DS4_GATING_SIGMOID: return ds4_sigmoid(logit);
    case DS4_GATING_SQRT_SOFTPLUS: return sqrtf(ds4_softplus(logit));
    default: return logit; /* softmax: normalised over all experts below */
    }
}

/* SwiGLU expert on n gathered rows: out = down(silu(min(gate, L)) * clamp(up, -L, L)). */
static void swiglu(const gguf_tensor *gate, const gguf_tensor *up, const gguf_tensor *down, uint64_t e,
                   uint64_t I, uint64_t D, float limit, const float *x, int n, float *hg, float *hu, float *y,
                   int nt) {
    ds4_matmul(gate, e * I, I, x, D, n, hg, I, nt);
    ds4_matmul(up, e * I, I, x, D, n, hu, I, nt);
    for (uint64_t i = 0; i < (uint64_t)n * I; i++) {
        float g = hg[i], u = hu[i];
        if (limit > 0) {
            g = fminf(g, limit);
            u = fminf(fmaxf(u, -limit), limit);
        }
        hg[i] = ds4_silu(g) * u;
    }
    ds4_matmul(down, e * D, D, hg, I, n, y, D, nt);
}

/* Routed expert e on n gathered rows, each added into its token's output row with the
 * weight of its slot. */
static void run_expert(const ds4_layer_weights *w, uint64_t e, uint64_t I, uint64_t D, uint64_t K,
                       const float *xs, int n, const int *rows, const int *slot, const float *weight, float *hg,
                       float *hu, float *ys, float *out, int nt) {
    swiglu(w->gate_exps, w->up_exps, w->down_exps, e, I, D, w->limit, xs, n, hg, hu, ys, nt);
    for (int j = 0; j < n; j++) {
        const float wt = weight[(size_t)rows[j] * K + slot[j]];
        float *o = out + (size_t)rows[j] * D;
        for (uint64_t i = 0; i < D; i++) o[i] += wt * ys[(size_t)j * D + i];
    }
}

int ds4_moe(ds4_ctx *c, int il, const float *x, const int32_t *tokens, int T, float *out) {
    const ds4_config *cf = c->cfg;
    const ds4_layer_weights *w = &c->layers[il];
    const uint64_t D = cf->n_embd, E = cf->n_expert, I = cf->expert_ff, K = cf->n_expert_used;
    const uint64_t Is = (uint64_t)cf->expert_ff * cf->n_expert_shared;
    const uint64_t Imax = I > Is ? I : Is;
    const int nt = c->n_threads;
    float *logits = ds4_ctx_scratch(c, SB_ROUTER, (size_t)T * E * sizeof(float));
    int32_t *choice = ds4_ctx_scratch(c, SB_CHOICE, (size_t)T * K * sizeof(int32_t));
    float *weight = ds4_ctx_scratch(c, SB_WEIGHT, (size_t)T * K * sizeof(float));
    int *rows = ds4_ctx_scratch(c, SB_ROWS, (size_t)T * sizeof(int));
    int *slot = ds4_ctx_scratch(c, SB_SLOT, (size_t)T * sizeof(int));
    float *xs = ds4_ctx_scratch(c, SB_XS, (size_t)T * D * sizeof(float));
    float *ys = ds4_ctx_scratch(c, SB_YS, (size_t)T * D * sizeof(float));
    float *hg = ds4_ctx_scratch(c, SB_HG, (size_t)T * Imax * sizeof(float));
    float *hu = ds4_ctx_scratch(c, SB_HU, (size_t)T * Imax * sizeof(float));
    float *score = ds4_ctx_scratch(c, SB_SCORE, E * sizeof(float));
    float *biased = ds4_ctx_scratch(c, SB_BIASED, E * sizeof(float));
    int rc = -1;
    if (!logits || !choice || !weight || !rows || !slot || !xs || !ys || !hg || !hu || !score || !biased) goto done;

    ds4_matmul(w->gate_inp, 0, E, x, D, T, logits, E, nt);
    for (int t = 0; t < T; t++) {
        const float *lg = logits + (size_t)t * E;
        for (uint64_t e = 0; e < E; e++) score[e] = route_score(cf->gating_func, lg[e]);
        if (cf->gating_func == DS4_GATING_SOFTMAX) ds4_softmax(score, (int)E);
        int32_t *ch = choice + (size_t)t * K;
        if (w->tid2eid) {
            const uint8_t *row = (const uint8_t *)w->tid2eid->data + (size_t)tokens[t] * K * sizeof(int32_t);
            for (uint64_t k = 0; k < K; k++) {
                int32_t id;
                memcpy(&id, row + k * sizeof id, sizeof id);
                if (id < 0 || (uint64_t)id >= E) {
                    ds4_fail("layer %d: hash table sends token %d to expert %d of %llu", il, tokens[t], id,
                             (unsigned long long)E);
                    goto done;
                }
                ch[k] = id;
            }
        } else {
            for (uint64_t e = 0; e < E; e++) biased[e] = score[e] + (w->exp_bias ? w->exp_bias[e] : 0.0f);
            for (uint64_t k = 0; k < K; k++) {
                uint64_t best = 0;
                for (uint64_t e = 1; e < E; e++)
                    if (biased[e] > biased[best]) best = e;
                ch[k] = (int32_t)best;
                biased[best] = -INFINITY;
            }
        }
        float sum = 0.0f, *wt = weight + (size_t)t * K;
        for (uint64_t k = 0; k < K; k++) sum += (wt[k] = score[ch[k]]);
        for (uint64_t k = 0; k < K; k++)
            wt[k] = (cf->expert_weights_norm ? wt[k] / (sum + 1e-20f) : wt[k]) * cf->expert_weights_scale;
    }

    /* Shared expert on every token. */
    memset(out, 0, (size_t)T * D * sizeof(float));
    if (Is) {
        swiglu(w->gate_sh, w->up_sh, w->down_sh, 0, Is, D, w->limit_shared, x, T, hg, hu, out, nt);
    }
    /* Routed experts: gather the rows of each expert, run it once, scatter-add. A hash
     * table may name one expert in several slots of a token (transformers then counts it
     * once per slot), so an expert can have up to T*K rows: they go through in batches of
     * at most T, the rows the buffers hold. */
    for (uint64_t e = 0; e < E; e++) {
        int n = 0;
        for (int t = 0; t < T; t++)
            for (uint64_t k = 0; k < K; k++) {
                if ((uint64_t)choice[(size_t)t * K + k] != e) continue;
                rows[n] = t;
                slot[n] = (int)k;
                memcpy(xs + (size_t)n * D, x + (size_t)t * D, D * sizeof(float));
                if (++n == T) {
                    run_expert(w, e, I, D, K, xs, n, rows, slot, weight, hg, hu, ys, out, nt);
                    n = 0;
                }
            }
        if (n) run_expert(w, e, I, D, K, xs, n, rows, slot, weight, hg, hu, ys, out, nt);
    }
    rc = 0;
done:
    return rc;
}
