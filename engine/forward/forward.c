/* forward.c - the model-level forward pass (see forward.h): embedding, the
 * hyper-connection streams around each sublayer, the hyper-head, final norm and LM head;
 * plus the context that owns the per-layer weights view and the KV state. */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward_impl.h"
#include "profile.h"
#include "quants.h"

#define DEFAULT_BATCH 256

/* Small parameters are copied to F32 once; matrices stay in the mapped file. */
static float *vec(const ds4_model *m, int il, ds4_tensor_role role, int *bad) {
    const gguf_tensor *t = ds4_model_tensor(m, il, role);
    if (!t) return NULL;
    float *v = ds4_tensor_f32(t);
    if (!v) *bad = 1;
    return v;
}

static int load_layer(ds4_ctx *c, int il) {
    const ds4_model *m = c->model;
    const ds4_config *cf = c->cfg;
    ds4_layer_weights *w = &c->layers[il];
    int bad = 0;
    w->kind = cf->kind[il];
    w->ratio = (int)cf->compress_ratio[il];
#define T(role) ds4_model_tensor(m, il, role)
    w->attn_norm = vec(m, il, DS4_T_ATTN_NORM, &bad);
    w->q_a_norm = vec(m, il, DS4_T_ATTN_Q_A_NORM, &bad);
    w->kv_norm = vec(m, il, DS4_T_ATTN_KV_NORM, &bad);
    w->sinks = vec(m, il, DS4_T_ATTN_SINKS, &bad);
    w->ffn_norm = vec(m, il, DS4_T_FFN_NORM, &bad);
    w->q_a = T(DS4_T_ATTN_Q_A);
    w->q_b = T(DS4_T_ATTN_Q_B);
    w->kv = T(DS4_T_ATTN_KV);
    w->out_a = T(DS4_T_ATTN_OUT_A);
    w->out_b = T(DS4_T_ATTN_OUT_B);
    w->hc_attn = (ds4_hc_weights){T(DS4_T_HC_ATTN_FN), vec(m, il, DS4_T_HC_ATTN_BASE, &bad),
                                  vec(m, il, DS4_T_HC_ATTN_SCALE, &bad)};
    w->hc_ffn = (ds4_hc_weights){T(DS4_T_HC_FFN_FN), vec(m, il, DS4_T_HC_FFN_BASE, &bad),
                                 vec(m, il, DS4_T_HC_FFN_SCALE, &bad)};
    if (w->kind != DS4_LAYER_SWA) {
        w->comp_kv = T(DS4_T_COMP_KV);
        w->comp_gate = T(DS4_T_COMP_GATE);
        w->comp_ape = vec(m, il, DS4_T_COMP_APE, &bad);
        w->comp_norm = vec(m, il, DS4_T_COMP_NORM, &bad);
    }
    if (w->kind == DS4_LAYER_CSA) {
        w->idx_q_b = T(DS4_T_IDX_Q_B);
        w->idx_proj = T(DS4_T_IDX_PROJ);
        w->idx_kv = T(DS4_T_IDX_COMP_KV);
        w->idx_gate = T(DS4_T_IDX_COMP_GATE);
        w->idx_ape = vec(m, il, DS4_T_IDX_COMP_APE, &bad);
        w->idx_norm = vec(m, il, DS4_T_IDX_COMP_NORM, &bad);
    }
    w->gate_inp = T(DS4_T_FFN_GATE_INP);
    w->gate_exps = T(DS4_T_FFN_GATE_EXPS);
    w->up_exps = T(DS4_T_FFN_UP_EXPS);
    w->down_exps = T(DS4_T_FFN_DOWN_EXPS);
    w->gate_sh = T(DS4_T_FFN_GATE_SHEXP);
    w->up_sh = T(DS4_T_FFN_UP_SHEXP);
    w->down_sh = T(DS4_T_FFN_DOWN_SHEXP);
    w->exp_bias = vec(m, il, DS4_T_FFN_EXP_PROBS_B, &bad);
    w->tid2eid = T(DS4_T_FFN_TID2EID);
    w->limit = cf->swiglu_limit[il];
    w->limit_shared = cf->swiglu_limit_shared[il];
#undef T
    if (bad) return -1;

    ds4_layer_state *st = &c->state[il];
    if (ds4_window_init(&st->window, (int)cf->sliding_window, (int)cf->head_dim) < 0) return -1;
    if (w->kind != DS4_LAYER_SWA &&
        ds4_compressor_init(&st->comp, (int)cf->head_dim, w->ratio, w->kind == DS4_LAYER_CSA) < 0)
        return -1;
    if (w->kind == DS4_LAYER_CSA && ds4_compressor_init(&st->indexer, (int)cf->indexer_dim, w->ratio, true) < 0)
        return -1;
    return 0;
}

static void free_layer(ds4_layer_weights *w) {
    float *v[] = {w->attn_norm, w->q_a_norm, w->kv_norm, w->sinks, w->ffn_norm, w->hc_attn.base, w->hc_attn.scale,
                  w->hc_ffn.base, w->hc_ffn.scale, w->comp_ape, w->comp_norm, w->idx_ape, w->idx_norm, w->exp_bias};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) free(v[i]);
}

ds4_ctx *ds4_ctx_new(const ds4_model *m, int n_threads) {
    ds4_ctx *c = ds4_calloc(1, sizeof *c);
    if (!c) return NULL;
    const ds4_config *cf = &m->cfg;
    c->model = m;
    c->cfg = cf;
    c->n_threads = n_threads > 0 ? n_threads : 1;
    c->n_batch = DEFAULT_BATCH;
    c->layers = ds4_calloc(cf->n_layer, sizeof *c->layers);
    c->state = ds4_calloc(cf->n_layer, sizeof *c->state);
    c->rope_main = ds4_malloc((cf->rope_dim / 2 + 1) * sizeof(float));
    c->rope_comp = ds4_malloc((cf->rope_dim / 2 + 1) * sizeof(float));
    int bad = 0;
    c->out_norm = vec(m, -1, DS4_T_OUTPUT_NORM, &bad);
    c->head_base = vec(m, -1, DS4_T_OUTPUT_HC_BASE, &bad);
    c->head_scale = vec(m, -1, DS4_T_OUTPUT_HC_SCALE, &bad);
    if (!c->layers || !c->state || !c->rope_main || !c->rope_comp || bad) goto fail;
    ds4_rope_freqs(c->rope_main, (int)cf->rope_dim, cf->rope_base, 1.0f, 0, 0, 0);
    ds4_rope_freqs(c->rope_comp, (int)cf->rope_dim, cf->compress_rope_base, cf->rope_scale, cf->rope_orig_ctx,
                   cf->yarn_beta_fast, cf->yarn_beta_slow);
    for (uint32_t il = 0; il < cf->n_layer; il++)
        if (load_layer(c, (int)il) < 0) goto fail;
    return c;
fail:
    ds4_ctx_free(c);
    return NULL;
}

void *ds4_ctx_scratch(ds4_ctx *c, ds4_scratch_id id, size_t bytes) {
    if (bytes > c->scratch_cap[id]) {
        free(c->scratch[id]);
        c->scratch_cap[id] = 0;
        if (!(c->scratch[id] = ds4_malloc(bytes))) return NULL;
        c->scratch_cap[id] = bytes;
    }
    return c->scratch[id];
}

void ds4_ctx_free(ds4_ctx *c) {
    if (!c) return;
    for (uint32_t il = 0; c->layers && il < c->cfg->n_layer; il++) {
        free_layer(&c->layers[il]);
        ds4_layer_state_free(&c->state[il]);
    }
    free(c->layers);
    free(c->state);
    free(c->out_norm);
    free(c->head_base);
    free(c->head_scale);
    free(c->rope_main);
    free(c->rope_comp);
    for (int i = 0; i < SB_COUNT; i++) free(c->scratch[i]);
    free(c);
}

void ds4_ctx_reset(ds4_ctx *c) {
    for (uint32_t il = 0; il < c->cfg->n_layer; il++) ds4_layer_state_reset(&c->state[il]);
    c->pos = 0;
}

int ds4_eval_progress(ds4_ctx *c, const int32_t *tokens, uint64_t n, float *logits, ds4_progress *progress) {
    const uint64_t step = 65536;
    for (uint64_t done = 0; done < n;) {
        const uint64_t m = n - done < step ? n - done : step;
        if (ds4_eval(c, tokens + done, (int)m, done + m == n ? logits : NULL, false) < 0) return -1;
        if (progress) ds4_progress_add(progress, m);
        done += m;
    }
    return 0;
}

uint64_t ds4_ctx_pos(const ds4_ctx *c) { return c->pos; }
uint32_t ds4_ctx_vocab(const ds4_ctx *c) { return c->cfg->n_vocab; }

double ds4_ctx_indexer_seconds(const ds4_ctx *c) { return c->indexer_seconds; }

uint64_t ds4_ctx_kv_bytes(const ds4_ctx *c) {
    uint64_t b = 0;
    for (uint32_t il = 0; il < c->cfg->n_layer; il++) b += ds4_layer_state_bytes(&c->state[il]);
    return b;
}

/* ---- hyper-connections ---- */

/* Mixing weights of one site for T tokens: pre [T][hc], post [T][hc], comb [T][hc][hc]
 * (Sinkhorn-normalised), and the collapsed sublayer input x [T][D]. flat is scratch
 * [T][hc*D], mix scratch [T][(2+hc)*hc]. */
static void hc_pre(ds4_ctx *c, const ds4_hc_weights *w, const float *streams, int T, float *flat, float *mix,
                   float *post, float *comb, float *x) {
    const ds4_config *cf = c->cfg;
    const int hc = (int)cf->hc_mult, D = (int)cf->n_embd, nm = (2 + hc) * hc;
    memcpy(flat, streams, (size_t)T * hc * D * sizeof(float));
    for (int t = 0; t < T; t++) ds4_rmsnorm(flat + (size_t)t * hc * D, hc * D, NULL, cf->rms_eps);
    ds4_matmul(w->fn, 0, nm, flat, (uint64_t)hc * D, T, mix, nm, c->n_threads);
    for (int t = 0; t < T; t++) {
        const float *m = mix + (size_t)t * nm, *s = streams + (size_t)t * hc * D;
        float pre[64], *po = post + (size_t)t * hc, *cb = comb + (size_t)t * hc * hc;
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
        const float *rows[64];
        for (int j = 0; j < hc; j++) rows[j] = s + (size_t)j * D;
        ds4_weighted_sum(x + (size_t)t * D, rows, pre, hc, (uint64_t)D, true);
    }
}

/* streams[t][k] = post[t][k] * y[t] + sum_j comb[t][j][k] * streams[t][j] */
static void hc_post(const ds4_config *cf, float *streams, const float *y, const float *post, const float *comb,
                    int T, float *tmp) {
    const int hc = (int)cf->hc_mult, D = (int)cf->n_embd;
    for (int t = 0; t < T; t++) {
        float *s = streams + (size_t)t * hc * D;
        const float *po = post + (size_t)t * hc, *cb = comb + (size_t)t * hc * hc;
        const float *rows[65] = {y + (size_t)t * D};
        for (int j = 0; j < hc; j++) rows[1 + j] = s + (size_t)j * D;
        for (int k = 0; k < hc; k++) {
            float w[65] = {po[k]};
            for (int j = 0; j < hc; j++) w[1 + j] = cb[j * hc + k];
            ds4_weighted_sum(tmp + (size_t)k * D, rows, w, hc + 1, (uint64_t)D, false);
        }
        memcpy(s, tmp, (size_t)hc * D * sizeof(float));
    }
}

/* ---- evaluation ---- */

static int eval_chunk(ds4_ctx *c, const int32_t *tokens, int T, float *logits, bool all_logits) {
    const ds4_config *cf = c->cfg;
    const int hc = (int)cf->hc_mult, D = (int)cf->n_embd, nm = (2 + hc) * hc;
    const uint64_t V = cf->n_vocab;
    float *streams = ds4_ctx_scratch(c, SB_STREAMS, (size_t)T * hc * D * sizeof(float));
    float *flat = ds4_ctx_scratch(c, SB_FLAT, (size_t)T * hc * D * sizeof(float));
    float *mix = ds4_ctx_scratch(c, SB_MIX, (size_t)T * nm * sizeof(float));
    float *post = ds4_ctx_scratch(c, SB_POST, (size_t)T * hc * sizeof(float));
    float *comb = ds4_ctx_scratch(c, SB_COMB, (size_t)T * hc * hc * sizeof(float));
    float *x = ds4_ctx_scratch(c, SB_X, (size_t)T * D * sizeof(float));
    float *y = ds4_ctx_scratch(c, SB_Y, (size_t)T * D * sizeof(float));
    float *tmp = ds4_ctx_scratch(c, SB_TMP, (size_t)hc * D * sizeof(float));
    int rc = -1;
    if (!streams || !flat || !mix || !post || !comb || !x || !y || !tmp) goto done;

    double t0 = ds4_prof_begin();
    const gguf_tensor *embd = ds4_model_tensor(c->model, -1, DS4_T_TOKEN_EMBD);
    for (int t = 0; t < T; t++) {
        float *s = streams + (size_t)t * hc * D;
        ds4_tensor_row(embd, (uint64_t)tokens[t], s);
        for (int j = 1; j < hc; j++) memcpy(s + (size_t)j * D, s, (size_t)D * sizeof(float));
    }
    ds4_prof_end(DS4_PROF_EMBED, t0);
    for (uint32_t il = 0; il < cf->n_layer; il++) {
        const ds4_layer_weights *w = &c->layers[il];
        t0 = ds4_prof_begin();
        hc_pre(c, &w->hc_attn, streams, T, flat, mix, post, comb, x);
        for (int t = 0; t < T; t++) ds4_rmsnorm(x + (size_t)t * D, D, w->attn_norm, cf->rms_eps);
        ds4_prof_end(DS4_PROF_HC, t0);
        if (ds4_attention(c, (int)il, x, T, c->pos, y) < 0) goto done;
        t0 = ds4_prof_begin();
        hc_post(cf, streams, y, post, comb, T, tmp);
        hc_pre(c, &w->hc_ffn, streams, T, flat, mix, post, comb, x);
        for (int t = 0; t < T; t++) ds4_rmsnorm(x + (size_t)t * D, D, w->ffn_norm, cf->rms_eps);
        ds4_prof_end(DS4_PROF_HC, t0);
        if (ds4_moe(c, (int)il, x, tokens, T, y) < 0) goto done;
        t0 = ds4_prof_begin();
        hc_post(cf, streams, y, post, comb, T, tmp);
        ds4_prof_end(DS4_PROF_HC, t0);
    }
    c->pos += (uint64_t)T;
    if (!logits) {
        rc = 0;
        goto done;
    }
    t0 = ds4_prof_begin();
    /* Hyper-head: collapse the streams with sigmoid weights, then norm and LM head. */
    const int first = all_logits ? 0 : T - 1, n_out = T - first;
    const gguf_tensor *head_fn = ds4_model_tensor(c->model, -1, DS4_T_OUTPUT_HC_FN);
    memcpy(flat, streams + (size_t)first * hc * D, (size_t)n_out * hc * D * sizeof(float));
    for (int t = 0; t < n_out; t++) ds4_rmsnorm(flat + (size_t)t * hc * D, hc * D, NULL, cf->rms_eps);
    ds4_matmul(head_fn, 0, hc, flat, (uint64_t)hc * D, n_out, mix, hc, c->n_threads);
    for (int t = 0; t < n_out; t++) {
        const float *s = streams + (size_t)(first + t) * hc * D;
        float *xt = x + (size_t)t * D;
        for (int i = 0; i < D; i++) xt[i] = 0.0f;
        for (int j = 0; j < hc; j++) {
            float pre = ds4_sigmoid(mix[(size_t)t * hc + j] * c->head_scale[0] + c->head_base[j]) + cf->hc_eps;
            for (int i = 0; i < D; i++) xt[i] += pre * s[(size_t)j * D + i];
        }
        ds4_rmsnorm(xt, D, c->out_norm, cf->rms_eps);
    }
    ds4_matmul(ds4_model_tensor(c->model, -1, DS4_T_OUTPUT), 0, V, x, D, n_out, logits, V, c->n_threads);
    ds4_prof_end(DS4_PROF_HEAD, t0);
    rc = 0;
done:
    return rc;
}

int ds4_eval(ds4_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits) {
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->cfg->n_vocab)
            return ds4_fail("token %d at index %d is outside the vocabulary (0..%u)", tokens[i], i,
                            c->cfg->n_vocab - 1);
    if (c->cfg->hc_mult > 64) return ds4_fail("hyper-connection count %u is too large", c->cfg->hc_mult);
    for (int done = 0; done < n;) {
        int T = n - done < c->n_batch ? n - done : c->n_batch;
        bool last = done + T == n;
        float *out = !logits ? NULL : all_logits ? logits + (size_t)done * c->cfg->n_vocab : last ? logits : NULL;
        if (eval_chunk(c, tokens + done, T, out, all_logits) < 0) return -1;
        done += T;
    }
    return 0;
}
