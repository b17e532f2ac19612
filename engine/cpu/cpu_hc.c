/* cpu_hc.c - the CPU backend's hyper-connection stages and the two ends of the model:
 * the token embedding copied into every stream, the mixing weights of a site (sigmoid
 * pre and post weights, the Sinkhorn-normalised combination), the collapse of the
 * streams into the sublayer input and the write back of its output, and the hyper-head
 * with the final norm and the LM head. */
#include <stdbool.h>
#include <string.h>

#include "cpu_internal.h"
#include "ops.h"
#include "quants.h"
#include "threads.h"

int ds4_cpu_embed(ds4_backend *b, const int32_t *tokens, int T) {
    const int hc = (int)b->cfg->hc_mult, D = (int)b->cfg->n_embd;
    float *streams = ds4_cpu_scratch(b, SB_STREAMS, (size_t)T * hc * D * sizeof(float));
    if (!streams) return -1;
    const gguf_tensor *embd = ds4_model_tensor(b->model, -1, DS4_T_TOKEN_EMBD);
    for (int t = 0; t < T; t++) {
        float *s = streams + (size_t)t * hc * D;
        ds4_tensor_row(embd, (uint64_t)tokens[t], s);
        for (int j = 1; j < hc; j++) memcpy(s + (size_t)j * D, s, (size_t)D * sizeof(float));
    }
    return 0;
}

/* A site's mixing weights for token t from its row of the mixer's product m: pre [hc],
 * post [hc] and the combination comb [hc][hc]. */
static void site_weights(const ds4_config *cf, const ds4_hc_weights *w, const float *m, float *pre, float *po,
                         float *cb) {
    const int hc = (int)cf->hc_mult;
    for (int j = 0; j < hc; j++) {
        pre[j] = ds4_sigmoid(m[j] * w->scale[0] + w->base[j]) + cf->hc_eps;
        po[j] = 2.0f * ds4_sigmoid(m[hc + j] * w->scale[1] + w->base[hc + j]);
    }
    for (int j = 0; j < hc; j++) {
        float *row = cb + j * hc;
        for (int k = 0; k < hc; k++) row[k] = m[2 * hc + j * hc + k] * w->scale[2] + w->base[2 * hc + j * hc + k];
        ds4_softmax(row, hc);
        for (int k = 0; k < hc; k++) row[k] += cf->hc_eps;
    }
    /* Sinkhorn: columns first, then rows and columns alternately. */
    for (int it = 0; it < (int)cf->hc_sinkhorn_iters; it++) {
        if (it > 0)
            for (int j = 0; j < hc; j++) {
                float sum = 0.0f;
                for (int k = 0; k < hc; k++) sum += cb[j * hc + k];
                for (int k = 0; k < hc; k++) cb[j * hc + k] /= sum + cf->hc_eps;
            }
        for (int k = 0; k < hc; k++) {
            float sum = 0.0f;
            for (int j = 0; j < hc; j++) sum += cb[j * hc + k];
            for (int j = 0; j < hc; j++) cb[j * hc + k] /= sum + cf->hc_eps;
        }
    }
}

/* The per-token part of hc_pre, tokens [t0, t1): mixing weights, collapse, norm. */
typedef struct {
    const ds4_config *cf;
    const ds4_hc_weights *w;
    const float *norm, *streams, *mix;
    float *post, *comb, *x;
} pre_job;

static void pre_range(void *arg, uint64_t t0, uint64_t t1, int thread) {
    (void)thread;
    const pre_job *j = arg;
    const int hc = (int)j->cf->hc_mult, D = (int)j->cf->n_embd, nm = (2 + hc) * hc;
    for (uint64_t t = t0; t < t1; t++) {
        float pre[DS4_HC_MAX];
        site_weights(j->cf, j->w, j->mix + t * nm, pre, j->post + t * hc, j->comb + t * hc * hc);
        const float *s = j->streams + t * hc * D, *rows[DS4_HC_MAX];
        for (int k = 0; k < hc; k++) rows[k] = s + (size_t)k * D;
        ds4_weighted_sum(j->x + t * D, rows, pre, hc, (uint64_t)D, true);
        ds4_rmsnorm(j->x + t * D, D, j->norm, j->cf->rms_eps);
    }
}

/* Tokens share the threads once there are a few: each one's Sinkhorn is serial work. */
static int token_threads(const ds4_backend *b, int T) { return T >= 8 ? b->mm.n_threads : 1; }

/* Sublayer input x [T][D] = RMSNorm(sum_j pre[t][j] * streams[t][j]); keeps post [T][hc]
 * and comb [T][hc][hc] for hc_post. */
int ds4_cpu_hc_pre(ds4_backend *b, int layer, ds4_hc_site site, int T) {
    const ds4_config *cf = b->cfg;
    const ds4_layer_weights *lw = &b->layers[layer];
    const ds4_hc_weights *w = site == DS4_SITE_ATTN ? &lw->hc_attn : &lw->hc_ffn;
    const int hc = (int)cf->hc_mult, D = (int)cf->n_embd, nm = (2 + hc) * hc;
    const float *streams = ds4_cpu_chunk(b, SB_STREAMS);
    float *flat = ds4_cpu_scratch(b, SB_FLAT, (size_t)T * hc * D * sizeof(float));
    float *mix = ds4_cpu_scratch(b, SB_MIX, (size_t)T * nm * sizeof(float));
    float *post = ds4_cpu_scratch(b, SB_POST, (size_t)T * hc * sizeof(float));
    float *comb = ds4_cpu_scratch(b, SB_COMB, (size_t)T * hc * hc * sizeof(float));
    float *x = ds4_cpu_scratch(b, SB_X, (size_t)T * D * sizeof(float));
    if (!flat || !mix || !post || !comb || !x) return -1;
    memcpy(flat, streams, (size_t)T * hc * D * sizeof(float));
    for (int t = 0; t < T; t++) ds4_rmsnorm(flat + (size_t)t * hc * D, hc * D, NULL, cf->rms_eps);
    ds4_matmul(&b->mm, w->fn, 0, nm, flat, (uint64_t)hc * D, T, mix, nm);
    pre_job j = {cf, w, site == DS4_SITE_ATTN ? lw->attn_norm : lw->ffn_norm, streams, mix, post, comb, x};
    ds4_parallel_for(token_threads(b, T), (uint64_t)T, pre_range, &j);
    return 0;
}

/* streams[t][k] = post[t][k] * y[t] + sum_j comb[t][j][k] * streams[t][j], tokens [t0, t1);
 * tmp is scratch for hc*D floats per thread. */
typedef struct {
    int hc, D;
    float *streams, *tmp;
    const float *y, *post, *comb;
} post_job;

static void post_range(void *arg, uint64_t t0, uint64_t t1, int thread) {
    const post_job *j = arg;
    const int hc = j->hc, D = j->D;
    float *tmp = j->tmp + (size_t)thread * hc * D;
    for (uint64_t t = t0; t < t1; t++) {
        float *s = j->streams + t * hc * D;
        const float *po = j->post + t * hc, *cb = j->comb + t * hc * hc;
        const float *rows[DS4_HC_MAX + 1] = {j->y + t * D};
        for (int k = 0; k < hc; k++) rows[1 + k] = s + (size_t)k * D;
        for (int k = 0; k < hc; k++) {
            float w[DS4_HC_MAX + 1] = {po[k]};
            for (int i = 0; i < hc; i++) w[1 + i] = cb[i * hc + k];
            ds4_weighted_sum(tmp + (size_t)k * D, rows, w, hc + 1, (uint64_t)D, false);
        }
        memcpy(s, tmp, (size_t)hc * D * sizeof(float));
    }
}

int ds4_cpu_hc_post(ds4_backend *b, int layer, ds4_hc_site site, int T) {
    (void)layer; /* hc_pre kept the site's weights */
    (void)site;
    const int hc = (int)b->cfg->hc_mult, D = (int)b->cfg->n_embd, nt = token_threads(b, T);
    float *tmp = ds4_cpu_scratch(b, SB_TMP, (size_t)nt * hc * D * sizeof(float));
    if (!tmp) return -1;
    post_job j = {hc, D, ds4_cpu_chunk(b, SB_STREAMS), tmp, ds4_cpu_chunk(b, SB_Y), ds4_cpu_chunk(b, SB_POST),
                  ds4_cpu_chunk(b, SB_COMB)};
    ds4_parallel_for(nt, (uint64_t)T, post_range, &j);
    return 0;
}

/* Hyper-head: collapse the streams with sigmoid weights, then the final norm and the LM
 * head, for the rows listed. */
int ds4_cpu_head(ds4_backend *b, const int *rows, float *const *out, int n_rows) {
    const ds4_config *cf = b->cfg;
    const int hc = (int)cf->hc_mult, D = (int)cf->n_embd, n_out = n_rows;
    const uint64_t V = cf->n_vocab;
    const float *streams = ds4_cpu_chunk(b, SB_STREAMS);
    float *flat = ds4_cpu_scratch(b, SB_FLAT, (size_t)n_out * hc * D * sizeof(float));
    float *mix = ds4_cpu_scratch(b, SB_MIX, (size_t)n_out * hc * sizeof(float));
    float *x = ds4_cpu_scratch(b, SB_X, (size_t)n_out * D * sizeof(float));
    if (!flat || !mix || !x) return -1;
    for (int t = 0; t < n_out; t++)
        memcpy(flat + (size_t)t * hc * D, streams + (size_t)rows[t] * hc * D, (size_t)hc * D * sizeof(float));
    for (int t = 0; t < n_out; t++) ds4_rmsnorm(flat + (size_t)t * hc * D, hc * D, NULL, cf->rms_eps);
    ds4_matmul(&b->mm, ds4_model_tensor(b->model, -1, DS4_T_OUTPUT_HC_FN), 0, hc, flat, (uint64_t)hc * D, n_out,
               mix, hc);
    for (int t = 0; t < n_out; t++) {
        const float *s = streams + (size_t)rows[t] * hc * D;
        float *xt = x + (size_t)t * D;
        for (int i = 0; i < D; i++) xt[i] = 0.0f;
        for (int j = 0; j < hc; j++) {
            float pre = ds4_sigmoid(mix[(size_t)t * hc + j] * b->head_scale[0] + b->head_base[j]) + cf->hc_eps;
            for (int i = 0; i < D; i++) xt[i] += pre * s[(size_t)j * D + i];
        }
        ds4_rmsnorm(xt, D, b->out_norm, cf->rms_eps);
    }
    /* One product for every row (the head is read once): straight into the caller's
     * memory when the outputs are adjacent, else through a buffer. */
    const gguf_tensor *W = ds4_model_tensor(b->model, -1, DS4_T_OUTPUT);
    bool adjacent = true;
    for (int t = 1; t < n_out && adjacent; t++) adjacent = out[t] == out[0] + (size_t)t * V;
    float *y = adjacent ? out[0] : ds4_cpu_scratch(b, SB_HEAD, (size_t)n_out * V * sizeof(float));
    if (!y) return -1;
    ds4_matmul(&b->mm, W, 0, V, x, D, n_out, y, V);
    for (int t = 0; t < n_out && !adjacent; t++) memcpy(out[t], y + (size_t)t * V, V * sizeof(float));
    return 0;
}
