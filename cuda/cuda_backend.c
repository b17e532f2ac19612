/* cuda_backend.c - see cuda_backend.h: the instance (every matrix uploaded once into the
 * device's arena with a progress line and an out-of-memory message that gives the sizes,
 * or made there for a synthetic model; the small parameters as F32), the table, and the
 * device buffers the stages share. The stages are in cuda_forward.c, the KV state in
 * cuda_state.c. */
#include "cuda_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "iq_tables.h"
#include "ops.h"
#include "progress.h"
#include "qdot.h"
#include "quants.h"
#include "types.h"
#include "util.h"

void *ds4_cuda_buf(ds4_backend *b, cuda_buf_id id, size_t bytes) {
    if (bytes <= b->cap[id] && b->buf[id]) return b->buf[id];
    ds4_cuda_free(b->dev, b->buf[id]);
    b->cap[id] = 0;
    if (!(b->buf[id] = ds4_cuda_malloc(b->dev, bytes, b->err, sizeof b->err))) {
        ds4_fail("%s", b->err);
        return NULL;
    }
    b->cap[id] = bytes;
    return b->buf[id];
}

int ds4_cuda_stage_done(ds4_backend *b, const char *what) {
    if (ds4_cuda_check(b->dev, what, b->err, sizeof b->err) < 0) return ds4_fail("%s", b->err);
    return 0;
}

/* The device copy of tensor t (NULL when it was not uploaded). */
static const cuda_resident *resident_of(const ds4_backend *b, const gguf_tensor *t) {
    for (size_t lo = 0, hi = b->n_weights; lo < hi;) {
        const size_t mid = (lo + hi) / 2;
        if (b->weights[mid].host == t) return &b->weights[mid];
        if (b->weights[mid].host < t) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* W's rows on the device; -1 with the error set when it is missing or not readable there. */
static int matrix(const ds4_backend *b, const gguf_tensor *W, ds4_cuda_matrix *out) {
    if (!W) return ds4_fail("cuda: a tensor the model needs is missing");
    const ds4_type_info *t = ds4_type_get(W->type);
    const cuda_resident *r = resident_of(b, W);
    if (!r || !t || !ds4_cuda_rows_supported(W->type, (int64_t)W->ne[0]))
        return ds4_fail("cuda: %s (%s, rows of %lld values) cannot run on the device",
                        W->name, t ? t->name : "?", (long long)W->ne[0]);
    *out = (ds4_cuda_matrix){r->offset, ds4_row_size(W->type, W->ne[0]), W->type,
                             t->block > 1 ? t->bytes : t->bytes * 32, (int64_t)W->ne[0]};
    return 0;
}

/* A small parameter as F32 in device memory (NULL and no error when the model lacks it
 * and it is optional). */
static int param(ds4_backend *b, int il, ds4_tensor_role role, bool required, float **dev) {
    *dev = NULL;
    const gguf_tensor *t = ds4_model_tensor(b->model, il, role);
    if (!t) return required ? ds4_fail("cuda: a parameter the model needs is missing") : 0;
    float *v = ds4_tensor_f32(t);
    if (!v) return -1;
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    const uint64_t bytes = n * sizeof(float);
    *dev = ds4_cuda_malloc(b->dev, bytes, b->err, sizeof b->err);
    if (*dev) ds4_cuda_to_device(b->dev, *dev, v, bytes);
    free(v);
    return *dev ? 0 : ds4_fail("%s", b->err);
}

static int by_tensor(const void *a, const void *b) {
    const cuda_resident *x = a, *y = b;
    return x->host < y->host ? -1 : x->host > y->host;
}

/* Every matrix (two dimensions or more) to the device, once; a synthetic model's are
 * made there (fill.h). */
static int upload(ds4_backend *b) {
    const gguf_file *f = b->model->gguf;
    uint64_t total = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].n_dims >= 2) total += (f->tensors[i].size + 255) & ~(uint64_t)255, b->n_weights++;
    uint64_t free_b, total_b;
    ds4_cuda_memory(b->dev, &free_b, &total_b);
    if (total + (1ull << 30) > free_b)
        return ds4_fail("cuda: the weights need %.2f GiB and %s has %.2f GiB free of %.2f GiB (and 1 GiB for work)",
                        (double)total / (1 << 30), b->name, (double)free_b / (1 << 30), (double)total_b / (1 << 30));
    if (ds4_cuda_reserve(b->dev, total, b->err, sizeof b->err) < 0) return ds4_fail("%s", b->err);
    b->weights = ds4_calloc(b->n_weights ? b->n_weights : 1, sizeof *b->weights);
    if (!b->weights) return -1;
    ds4_progress prog;
    ds4_progress_begin(&prog, "cuda upload", total);
    const double t0 = ds4_time_now();
    size_t k = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->n_dims < 2) continue;
        cuda_resident *r = &b->weights[k++];
        r->host = t;
        const ds4_tensor_fill *fill = ds4_model_fill(b->model, t);
        if (fill ? ds4_cuda_fill(b->dev, fill->pool, fill->pool_blocks, (uint32_t)fill->block_bytes, fill->row_bytes,
                                 fill->n_rows, fill->seed, &r->offset, b->err, sizeof b->err) < 0
                 : ds4_cuda_upload(b->dev, t->data, t->size, &r->offset, b->err, sizeof b->err) < 0) {
            ds4_progress_end(&prog);
            return ds4_fail("%s", b->err);
        }
        ds4_progress_add(&prog, t->size);
    }
    ds4_progress_end(&prog);
    qsort(b->weights, b->n_weights, sizeof *b->weights, by_tensor);
    fprintf(stderr, "ds4: %.2f GiB of weights on %s in %.1f s\n", (double)total / (1 << 30), b->name,
            ds4_time_now() - t0);
    return 0;
}

static int load_layer(ds4_backend *b, int il) {
    const ds4_model *m = b->model;
    const ds4_config *cf = b->cfg;
    cuda_layer *w = &b->layers[il];
    w->kind = cf->kind[il];
    w->ratio = cf->compress_ratio[il];
#define M(role, dst) (matrix(b, ds4_model_tensor(m, il, role), dst) < 0)
#define P(role, dst) (param(b, il, role, true, dst) < 0)
    if (M(DS4_T_ATTN_Q_A, &w->q_a) || M(DS4_T_ATTN_Q_B, &w->q_b) || M(DS4_T_ATTN_KV, &w->kv) ||
        M(DS4_T_ATTN_OUT_A, &w->out_a) || M(DS4_T_ATTN_OUT_B, &w->out_b) || M(DS4_T_HC_ATTN_FN, &w->hc_attn.fn) ||
        M(DS4_T_HC_FFN_FN, &w->hc_ffn.fn) || P(DS4_T_ATTN_NORM, &w->attn_norm) ||
        P(DS4_T_ATTN_Q_A_NORM, &w->q_a_norm) || P(DS4_T_ATTN_KV_NORM, &w->kv_norm) ||
        P(DS4_T_ATTN_SINKS, &w->sinks) || P(DS4_T_FFN_NORM, &w->ffn_norm) ||
        P(DS4_T_HC_ATTN_BASE, &w->hc_attn.base) || P(DS4_T_HC_ATTN_SCALE, &w->hc_attn.scale) ||
        P(DS4_T_HC_FFN_BASE, &w->hc_ffn.base) || P(DS4_T_HC_FFN_SCALE, &w->hc_ffn.scale))
        return -1;
    if (w->kind != DS4_LAYER_SWA && (M(DS4_T_COMP_KV, &w->comp_kv) || M(DS4_T_COMP_GATE, &w->comp_gate) ||
                                     P(DS4_T_COMP_APE, &w->comp_ape) || P(DS4_T_COMP_NORM, &w->comp_norm)))
        return -1;
    if (w->kind == DS4_LAYER_CSA &&
        (M(DS4_T_IDX_Q_B, &w->idx_q_b) || M(DS4_T_IDX_PROJ, &w->idx_proj) || M(DS4_T_IDX_COMP_KV, &w->idx_kv) ||
         M(DS4_T_IDX_COMP_GATE, &w->idx_gate) || P(DS4_T_IDX_COMP_APE, &w->idx_ape) ||
         P(DS4_T_IDX_COMP_NORM, &w->idx_norm)))
        return -1;
    ds4_cuda_ffn_layer *L = &w->ffn;
    *L = (ds4_cuda_ffn_layer){.D = cf->n_embd, .E = cf->n_expert, .I = cf->expert_ff, .K = cf->n_expert_used,
                              .Is = cf->expert_ff * cf->n_expert_shared, .gating = cf->gating_func,
                              .norm = cf->expert_weights_norm, .scale = cf->expert_weights_scale,
                              .limit = cf->swiglu_limit[il], .limit_shared = cf->swiglu_limit_shared[il]};
    if (M(DS4_T_FFN_GATE_INP, &L->gate_inp) || M(DS4_T_FFN_GATE_EXPS, &L->gate_exps) ||
        M(DS4_T_FFN_UP_EXPS, &L->up_exps) || M(DS4_T_FFN_DOWN_EXPS, &L->down_exps) ||
        (L->Is && (M(DS4_T_FFN_GATE_SHEXP, &L->gate_sh) || M(DS4_T_FFN_UP_SHEXP, &L->up_sh) ||
                   M(DS4_T_FFN_DOWN_SHEXP, &L->down_sh))))
        return -1;
#undef M
#undef P
    w->tid2eid = ds4_model_tensor(m, il, DS4_T_FFN_TID2EID);
    float *bias = NULL;
    if (!w->tid2eid && param(b, il, DS4_T_FFN_EXP_PROBS_B, false, &bias) < 0) return -1;
    L->bias = bias;
    return 0;
}

static void free_layer(ds4_backend *b, cuda_layer *w) {
    float *v[] = {w->attn_norm, w->q_a_norm, w->kv_norm, w->sinks, w->ffn_norm, w->comp_ape, w->comp_norm,
                  w->idx_ape, w->idx_norm, w->hc_attn.base, w->hc_attn.scale, w->hc_ffn.base, w->hc_ffn.scale,
                  (float *)w->ffn.bias};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) ds4_cuda_free(b->dev, v[i]);
}

static void cuda_close(ds4_backend *b) {
    if (!b) return;
    ds4_cuda_states_close(b);
    for (uint32_t il = 0; b->layers && il < b->cfg->n_layer; il++) free_layer(b, &b->layers[il]);
    free(b->layers);
    float *v[] = {b->out_norm, b->head_base, b->head_scale, b->rope_main, b->rope_comp};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) ds4_cuda_free(b->dev, v[i]);
    for (int i = 0; i < CB_COUNT; i++) ds4_cuda_free(b->dev, b->buf[i]);
    free(b->chunk_seg);
    free(b->weights);
    ds4_cuda_destroy(b->dev);
    free(b);
}

/* The RoPE frequencies (ops.h) to the device. */
static float *rope_freqs(ds4_backend *b, float base, float factor, uint32_t orig, float fast, float slow) {
    const int dim = (int)b->cfg->rope_dim;
    float host[DS4_ROPE_MAX / 2 + 1];
    ds4_rope_freqs(host, dim, base, factor, orig, fast, slow);
    float *dev = ds4_cuda_malloc(b->dev, (dim / 2 + 1) * sizeof(float), b->err, sizeof b->err);
    if (dev) ds4_cuda_to_device(b->dev, dev, host, (dim / 2) * sizeof(float));
    else ds4_fail("%s", b->err);
    return dev;
}

/* Limits of the kernels, checked once (cuda_stages.h). */
static int check_shape(const ds4_config *cf) {
    if (cf->head_dim > 1024 || cf->rope_dim > cf->head_dim || cf->hc_mult > DS4_HC_MAX)
        return ds4_fail("cuda: heads of %u values (at most 1024) with %u rotated", cf->head_dim, cf->rope_dim);
    if (cf->n_expert_used > DS4_CUDA_FFN_MAX_K)
        return ds4_fail("cuda: %u experts a token (the device's MoE takes at most %d)", cf->n_expert_used,
                        DS4_CUDA_FFN_MAX_K);
    if ((uint64_t)cf->indexer_heads * (cf->indexer_dim + 1) > 10240 || cf->indexer_heads > 256)
        return ds4_fail("cuda: an indexer query of %u heads x %u values (at most 256 heads, 10240 values)",
                        cf->indexer_heads, cf->indexer_dim);
    return 0;
}

/* The activations of each weight type's products as the CPU quantizes them (qdot.h). */
static void act_formats(ds4_backend *b, ds4_act_mode act) {
    uint8_t fmt[DS4_CUDA_TYPE_IDS] = {0};
    for (uint32_t t = 0; t < DS4_CUDA_TYPE_IDS; t++)
        if (ds4_qdot_act_applies((int)act, t))
            fmt[t] = ds4_qdot_act_type(t) == GGML_TYPE_Q8_0 ? DS4_CUDA_ACT_Q8_0 : DS4_CUDA_ACT_Q8_K;
    ds4_cuda_act_formats(b->dev, fmt, DS4_CUDA_TYPE_IDS);
}

static int cuda_open(const ds4_model *m, const ds4_ctx_opts *o, ds4_backend **out) {
    if (o->observer)
        return ds4_fail("cuda: the products run on the device, where an observer (imatrix) cannot see them; use "
                        "--backend cpu");
    if (check_shape(&m->cfg) < 0) return -1;
    ds4_backend *b = ds4_calloc(1, sizeof *b);
    if (!b) return -1;
    b->model = m;
    b->cfg = &m->cfg;
    if (!(b->dev = ds4_cuda_create(o->device, b->err, sizeof b->err))) {
        ds4_fail("%s", b->err);
        free(b);
        return -1;
    }
    snprintf(b->name, sizeof b->name, "cuda-%s", ds4_cuda_name(b->dev));
    const ds4_config *cf = b->cfg;
    b->n_seq = o->n_seq > 0 ? o->n_seq : 1;
    act_formats(b, o->act);
    if (ds4_cuda_tables(b->dev, ds4_iq2xxs_grid, ds4_ksigns_iq2xs, ds4_kmask_iq2xs, b->err, sizeof b->err) < 0) {
        ds4_fail("%s", b->err);
        goto fail;
    }
    if (upload(b) < 0 || !(b->layers = ds4_calloc(cf->n_layer, sizeof *b->layers))) goto fail;
    for (uint32_t il = 0; il < cf->n_layer; il++)
        if (load_layer(b, (int)il) < 0) goto fail;
    if (matrix(b, ds4_model_tensor(m, -1, DS4_T_TOKEN_EMBD), &b->embd) < 0 ||
        matrix(b, ds4_model_tensor(m, -1, DS4_T_OUTPUT_HC_FN), &b->head_fn) < 0 ||
        matrix(b, ds4_model_tensor(m, -1, DS4_T_OUTPUT), &b->output) < 0 ||
        param(b, -1, DS4_T_OUTPUT_NORM, true, &b->out_norm) < 0 ||
        param(b, -1, DS4_T_OUTPUT_HC_BASE, true, &b->head_base) < 0 ||
        param(b, -1, DS4_T_OUTPUT_HC_SCALE, true, &b->head_scale) < 0)
        goto fail;
    if (!(b->rope_main = rope_freqs(b, cf->rope_base, 1.0f, 0, 0, 0)) ||
        !(b->rope_comp = rope_freqs(b, cf->compress_rope_base, cf->rope_scale, cf->rope_orig_ctx, cf->yarn_beta_fast,
                                    cf->yarn_beta_slow)))
        goto fail;
    if (ds4_cuda_states_open(b) < 0 || ds4_cuda_stage_done(b, "loading the model") < 0) goto fail;
    *out = b;
    return 0;
fail:
    cuda_close(b);
    return -1;
}

static const char *cuda_describe(const ds4_backend *b) { return b->name; }

/* Decode streams the weights from device memory. */
static double cuda_probe_gbps(ds4_backend *b) { return ds4_cuda_copy_gbps(b->dev); }

/* The device as a whole (what another process holds counts too: the GPU is a shared
 * resource, and this is what is left for it). */
static uint64_t cuda_device_bytes(ds4_backend *b) {
    uint64_t free_b = 0, total_b = 0;
    ds4_cuda_memory(b->dev, &free_b, &total_b);
    return total_b - free_b;
}

static const ds4_backend_ops table = {
    .name = "cuda",
    .device_clock = true,
    .open = cuda_open,
    .close = cuda_close,
    .describe = cuda_describe,
    .embed = ds4_cuda_embed,
    .hc_pre = ds4_cuda_hc_pre_stage,
    .attn_project = ds4_cuda_attn_project,
    .kv_append = ds4_cuda_kv_append_stage,
    .indexer_select = ds4_cuda_indexer_select,
    .attend = ds4_cuda_attend_stage,
    .hc_post = ds4_cuda_hc_post_stage,
    .ffn = ds4_cuda_ffn_stage,
    .head = ds4_cuda_head,
    .state_reset = ds4_cuda_state_reset,
    .state_get = ds4_cuda_state_get,
    .state_set = ds4_cuda_state_set,
    .state_bytes = ds4_cuda_state_bytes,
    .probe_gbps = cuda_probe_gbps,
    .device_bytes = cuda_device_bytes,
    .chunk_read = ds4_cuda_chunk_read,
    .chunk_write = ds4_cuda_chunk_write,
};

const ds4_backend_ops *ds4_cuda_backend(void) { return &table; }
