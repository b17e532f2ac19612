/* cpu_moe.c - the CPU backend's MoE feed-forward over a chunk: router scores (sqrt-softplus, softmax or
 * sigmoid), expert choice by score + correction bias or by the hash table of the first
 * layers, normalised and scaled weights, SwiGLU experts with the clamp limit, and the
 * shared expert. Tokens are grouped by expert so each expert's weights are read once
 * per chunk, and the experts' products go out together: the gate and up products of
 * every expert in one parallel loop, their down products in another. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "ops.h"
#include "threads.h"

static float route_score(uint32_t gating, float logit) {
    switch (gating) {
    case DS4_GATING_SIGMOID: return ds4_sigmoid(logit);
    case DS4_GATING_SQRT_SOFTPLUS: return sqrtf(ds4_softplus(logit));
    default: return logit; /* softmax: normalised over all experts below */
    }
}

/* SwiGLU's middle: hg = silu(min(gate, L)) * clamp(up, -L, L), element by element. */
typedef struct {
    float *hg;
    const float *hu;
    float limit;
} swiglu_job;

static void swiglu_range(void *arg, uint64_t begin, uint64_t end, int thread) {
    (void)thread;
    const swiglu_job *j = arg;
    for (uint64_t i = begin; i < end; i++) {
        float g = j->hg[i], u = j->hu[i];
        if (j->limit > 0) {
            g = fminf(g, j->limit);
            u = fminf(fmaxf(u, -j->limit), j->limit);
        }
        j->hg[i] = ds4_silu(g) * u;
    }
}

/* On threads once there are enough elements: an exponential each. */
static void swiglu_act(float *hg, const float *hu, uint64_t n, float limit, int n_threads) {
    swiglu_job j = {hg, hu, limit};
    ds4_parallel_for_chunked(n < 4096 ? 1 : n_threads, n, 1024, swiglu_range, &j);
}

#define MAX_BATCH_EXPERTS 32 /* routed experts whose products share a loop */

/* Buffer rows for gathered experts: every row of the chunk when that is not much
 * (decode, short chunks: all experts in one batch), else at least the chunk's tokens. */
static int gather_capacity(int T, uint64_t K) {
    const uint64_t all = (uint64_t)T * K;
    return (int)(all <= 1024 ? all : T > 1024 ? (uint64_t)T : 1024);
}

int ds4_cpu_ffn(ds4_backend *b, int il, const int32_t *tokens, int T) {
    const ds4_config *cf = b->cfg;
    const ds4_layer_weights *w = &b->layers[il];
    const uint64_t D = cf->n_embd, E = cf->n_expert, I = cf->expert_ff, K = cf->n_expert_used;
    const uint64_t Is = (uint64_t)cf->expert_ff * cf->n_expert_shared;
    const int nt = b->mm.n_threads, cap = gather_capacity(T, K);
    const float *x = ds4_cpu_chunk(b, SB_X);
    float *out = ds4_cpu_scratch(b, SB_Y, (size_t)T * D * sizeof(float));
    float *logits = ds4_cpu_scratch(b, SB_ROUTER, (size_t)T * E * sizeof(float));
    int32_t *choice = ds4_cpu_scratch(b, SB_CHOICE, (size_t)T * K * sizeof(int32_t));
    float *weight = ds4_cpu_scratch(b, SB_WEIGHT, (size_t)T * K * sizeof(float));
    int *rows = ds4_cpu_scratch(b, SB_ROWS, (size_t)T * K * sizeof(int));
    int *slot = ds4_cpu_scratch(b, SB_SLOT, (size_t)T * K * sizeof(int));
    int32_t *owner = ds4_cpu_scratch(b, SB_OWNER, (size_t)T * K * sizeof(int32_t));
    float *xs = ds4_cpu_scratch(b, SB_XS, (size_t)cap * D * sizeof(float));
    float *ys = ds4_cpu_scratch(b, SB_YS, (size_t)cap * D * sizeof(float));
    float *hg = ds4_cpu_scratch(b, SB_HG, (size_t)cap * I * sizeof(float));
    float *hu = ds4_cpu_scratch(b, SB_HU, (size_t)cap * I * sizeof(float));
    float *sg = ds4_cpu_scratch(b, SB_SG, (size_t)T * (Is ? Is : 1) * sizeof(float));
    float *su = ds4_cpu_scratch(b, SB_SU, (size_t)T * (Is ? Is : 1) * sizeof(float));
    float *score = ds4_cpu_scratch(b, SB_SCORE, E * sizeof(float));
    float *biased = ds4_cpu_scratch(b, SB_BIASED, E * sizeof(float));
    int *count = ds4_cpu_scratch(b, SB_COUNT_E, (E + 1) * sizeof(int));
    if (!out || !logits || !choice || !weight || !rows || !slot || !owner || !xs || !ys || !hg || !hu || !sg || !su ||
        !score || !biased || !count)
        return -1;

    ds4_matmul(&b->mm, w->gate_inp, 0, E, x, D, T, logits, E);
    for (int t = 0; t < T; t++) {
        const float *lg = logits + (size_t)t * E;
        for (uint64_t e = 0; e < E; e++) score[e] = route_score(cf->gating_func, lg[e]);
        if (cf->gating_func == DS4_GATING_SOFTMAX) ds4_softmax(score, (int)E);
        int32_t *ch = choice + (size_t)t * K;
        if (w->tid2eid) {
            /* ids were checked against E when the model loaded */
            const uint8_t *row = (const uint8_t *)w->tid2eid->data + (size_t)tokens[t] * K * sizeof(int32_t);
            memcpy(ch, row, K * sizeof(int32_t));
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
    /* The rows of each expert, expert by expert. A hash table may name one expert in
     * several slots of a token (transformers then counts it once per slot), so an expert
     * can have up to T*K rows. */
    memset(count, 0, (E + 1) * sizeof *count);
    for (uint64_t i = 0; i < (uint64_t)T * K; i++) count[choice[i] + 1]++;
    for (uint64_t e = 0; e < E; e++) count[e + 1] += count[e];
    for (int t = 0; t < T; t++)
        for (uint64_t k = 0; k < K; k++) {
            const int32_t e = choice[(size_t)t * K + k];
            const int at = count[e]++;
            rows[at] = t;
            slot[at] = (int)k;
            owner[at] = e;
        }

    /* Batches of whole experts that fit the buffers (an expert with more rows than they
     * hold goes alone, in parts); the shared expert rides with the first batch. Its down
     * product writes `out`; the routed ones are then added in expert order. */
    const int n_rows = T * (int)K;
    ds4_matmul_part parts[2 * MAX_BATCH_EXPERTS + 2];
    if (!Is) memset(out, 0, (size_t)T * D * sizeof(float));
    for (int r0 = 0; r0 < n_rows;) {
        /* whole experts while they fit; an expert larger than the buffers alone, in parts */
        int r1 = r0, experts = 0;
        while (r1 < n_rows && experts < MAX_BATCH_EXPERTS) {
            int end = r1;
            while (end < n_rows && owner[end] == owner[r1]) end++;
            if (end - r0 > cap) {
                if (r1 == r0) r1 = r0 + cap;
                break;
            }
            r1 = end;
            experts++;
        }
        for (int i = r0; i < r1; i++) memcpy(xs + (size_t)(i - r0) * D, x + (size_t)rows[i] * D, D * sizeof(float));
        const bool shared = r0 == 0 && Is;
        int n_parts = 0;
        if (shared) {
            parts[n_parts++] = (ds4_matmul_part){w->gate_sh, 0, Is, x, D, T, sg, Is};
            parts[n_parts++] = (ds4_matmul_part){w->up_sh, 0, Is, x, D, T, su, Is};
        }
        for (int i = r0, j; i < r1; i = j) {
            for (j = i; j < r1 && owner[j] == owner[i];) j++;
            const uint64_t e = (uint64_t)owner[i], off = (uint64_t)(i - r0);
            parts[n_parts++] = (ds4_matmul_part){w->gate_exps, e * I, I, xs + off * D, D, j - i, hg + off * I, I};
            parts[n_parts++] = (ds4_matmul_part){w->up_exps, e * I, I, xs + off * D, D, j - i, hu + off * I, I};
        }
        ds4_matmul_batch(&b->mm, parts, n_parts);
        if (shared) swiglu_act(sg, su, (uint64_t)T * Is, w->limit_shared, nt);
        swiglu_act(hg, hu, (uint64_t)(r1 - r0) * I, w->limit, nt);
        n_parts = 0;
        if (shared) parts[n_parts++] = (ds4_matmul_part){w->down_sh, 0, D, sg, Is, T, out, D};
        for (int i = r0, j; i < r1; i = j) {
            for (j = i; j < r1 && owner[j] == owner[i];) j++;
            const uint64_t e = (uint64_t)owner[i], off = (uint64_t)(i - r0);
            parts[n_parts++] = (ds4_matmul_part){w->down_exps, e * D, D, hg + off * I, I, j - i, ys + off * D, D};
        }
        ds4_matmul_batch(&b->mm, parts, n_parts);
        for (int i = r0; i < r1; i++) {
            const float wt = weight[(size_t)rows[i] * K + slot[i]];
            float *o = out + (size_t)rows[i] * D;
            const float *y = ys + (size_t)(i - r0) * D;
            for (uint64_t d = 0; d < D; d++) o[d] += wt * y[d];
        }
        r0 = r1;
    }
    return 0;
}
