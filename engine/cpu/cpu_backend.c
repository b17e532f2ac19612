/* cpu_backend.c - the CPU backend's table (backend.h): the instance with its weights
 * view (matrices straight from the mapped file, small parameters copied to F32 once),
 * its KV state, and the state operations. The stages live in cpu_hc.c,
 * cpu_attention.c and cpu_moe.c. */
#include "cpu_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "cpufeatures.h"
#include "ops.h"
#include "probe.h"
#include "quants.h"
#include "sysinfo.h"

/* Small parameters are copied to F32 once; matrices stay in the mapped file. */
static float *vec(const ds4_model *m, int il, ds4_tensor_role role, int *bad) {
    const gguf_tensor *t = ds4_model_tensor(m, il, role);
    if (!t) return NULL;
    float *v = ds4_tensor_f32(t);
    if (!v) *bad = 1;
    return v;
}

static int load_layer(ds4_backend *b, int il) {
    const ds4_model *m = b->model;
    const ds4_config *cf = b->cfg;
    ds4_layer_weights *w = &b->layers[il];
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
    return bad ? -1 : 0;
}

static void free_layer(ds4_layer_weights *w) {
    float *v[] = {w->attn_norm, w->q_a_norm, w->kv_norm, w->sinks, w->ffn_norm, w->hc_attn.base, w->hc_attn.scale,
                  w->hc_ffn.base, w->hc_ffn.scale, w->comp_ape, w->comp_norm, w->idx_ape, w->idx_norm, w->exp_bias};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) free(v[i]);
}

static void cpu_close(ds4_backend *b) {
    if (!b) return;
    for (uint32_t il = 0; b->layers && il < b->cfg->n_layer; il++) free_layer(&b->layers[il]);
    free(b->layers);
    for (int i = 0; b->states && i < b->n_seq; i++) ds4_kv_snapshot_free(&b->states[i]);
    free(b->states);
    free(b->out_norm);
    free(b->head_base);
    free(b->head_scale);
    free(b->rope_main);
    free(b->rope_comp);
    for (int i = 0; i < SB_COUNT; i++) free(b->scratch[i]);
    free(b);
}

int ds4_cpu_backend_open_offload(const ds4_model *m, const ds4_ctx_opts *o, const ds4_matmul_offload *offload,
                                 const char *name, ds4_backend **out) {
    if (m->n_fills && !offload)
        return ds4_fail("this synthetic model's matrices are made in a GPU's memory; the CPU reads its weights "
                        "from a file (ds4-quant synth --fast writes one)");
    ds4_backend *b = ds4_calloc(1, sizeof *b);
    if (!b) return -1;
    const ds4_config *cf = &m->cfg;
    b->model = m;
    b->cfg = cf;
    ds4_cpu_level level = ds4_cpu_detect();
    if (o->cpu_level) {
        int want = -1;
        for (int l = DS4_CPU_SCALAR; l <= DS4_CPU_AVX512; l++)
            if (!strcmp(o->cpu_level, ds4_cpu_level_name((ds4_cpu_level)l))) want = l;
        if (want < 0) {
            free(b);
            return ds4_fail("cpu level '%s': scalar, avx2 or avx512", o->cpu_level);
        }
        if (want < (int)level) level = (ds4_cpu_level)want;
    }
    b->mm = (ds4_matmul_ctx){o->n_threads > 0 ? o->n_threads : ds4_cpu_count(), level, o->act, o->observer,
                             o->observer_ctx, offload};
    snprintf(b->description, sizeof b->description, "%s%scpu-%s", name ? name : "", name ? "+" : "",
             ds4_cpu_level_name(level));
    b->layers = ds4_calloc(cf->n_layer, sizeof *b->layers);
    b->rope_main = ds4_malloc((cf->rope_dim / 2 + 1) * sizeof(float));
    b->rope_comp = ds4_malloc((cf->rope_dim / 2 + 1) * sizeof(float));
    int bad = 0;
    b->out_norm = vec(m, -1, DS4_T_OUTPUT_NORM, &bad);
    b->head_base = vec(m, -1, DS4_T_OUTPUT_HC_BASE, &bad);
    b->head_scale = vec(m, -1, DS4_T_OUTPUT_HC_SCALE, &bad);
    b->n_seq = o->n_seq > 0 ? o->n_seq : 1;
    b->states = ds4_calloc((size_t)b->n_seq, sizeof *b->states);
    if (!b->layers || !b->rope_main || !b->rope_comp || !b->states || bad) goto fail;
    for (int i = 0; i < b->n_seq; i++)
        if (ds4_model_kv_snapshot(m, &b->states[i]) < 0) goto fail;
    ds4_rope_freqs(b->rope_main, (int)cf->rope_dim, cf->rope_base, 1.0f, 0, 0, 0);
    ds4_rope_freqs(b->rope_comp, (int)cf->rope_dim, cf->compress_rope_base, cf->rope_scale, cf->rope_orig_ctx,
                   cf->yarn_beta_fast, cf->yarn_beta_slow);
    for (uint32_t il = 0; il < cf->n_layer; il++)
        if (load_layer(b, (int)il) < 0) goto fail;
    *out = b;
    return 0;
fail:
    cpu_close(b);
    return -1;
}

static int cpu_open(const ds4_model *m, const ds4_ctx_opts *o, ds4_backend **out) {
    return ds4_cpu_backend_open_offload(m, o, NULL, NULL, out);
}

const ds4_matmul_offload *ds4_cpu_backend_offload(const ds4_backend *b) { return b->mm.offload; }

static const char *cpu_describe(const ds4_backend *b) { return b->description; }

static void cpu_state_reset(ds4_backend *b, int seq) { ds4_kv_snapshot_clear(&b->states[seq]); }
static int cpu_state_get(ds4_backend *b, int seq, ds4_kv_snapshot *out) {
    return ds4_kv_snapshot_copy(out, &b->states[seq]);
}
static int cpu_state_set(ds4_backend *b, int seq, const ds4_kv_snapshot *in) {
    return ds4_kv_snapshot_copy(&b->states[seq], in);
}
static uint64_t cpu_state_bytes(const ds4_backend *b, int seq) { return ds4_kv_snapshot_bytes(&b->states[seq]); }

/* Decode streams the weights from DRAM: that is the bandwidth it is bounded by. */
static double cpu_probe_gbps(ds4_backend *b) { return ds4_probe_read_gbps(b->mm.n_threads); }

static const ds4_scratch_id chunk_ids[] = {
    [DS4_CHUNK_STREAMS] = SB_STREAMS, [DS4_CHUNK_X] = SB_X, [DS4_CHUNK_Y] = SB_Y, [DS4_CHUNK_Q] = SB_Q,
    [DS4_CHUNK_KV] = SB_KV};

static int cpu_chunk_read(ds4_backend *b, ds4_chunk_buf buf, int T, float *out) {
    const size_t bytes = (size_t)T * ds4_chunk_floats(b->cfg, buf) * sizeof(float);
    if (bytes > b->scratch_cap[chunk_ids[buf]]) return ds4_fail("no chunk of %d tokens in that buffer", T);
    memcpy(out, b->scratch[chunk_ids[buf]], bytes);
    return 0;
}

static int cpu_chunk_write(ds4_backend *b, ds4_chunk_buf buf, int T, const float *in) {
    const size_t bytes = (size_t)T * ds4_chunk_floats(b->cfg, buf) * sizeof(float);
    void *to = ds4_cpu_scratch(b, chunk_ids[buf], bytes);
    if (!to) return -1;
    memcpy(to, in, bytes);
    return 0;
}

const ds4_backend_ops ds4_cpu_backend = {
    .name = "cpu",
    .open = cpu_open,
    .close = cpu_close,
    .describe = cpu_describe,
    .embed = ds4_cpu_embed,
    .hc_pre = ds4_cpu_hc_pre,
    .attn_project = ds4_cpu_attn_project,
    .kv_append = ds4_cpu_kv_append,
    .indexer_select = ds4_cpu_indexer_select,
    .attend = ds4_cpu_attend,
    .hc_post = ds4_cpu_hc_post,
    .ffn = ds4_cpu_ffn,
    .head = ds4_cpu_head,
    .state_reset = cpu_state_reset,
    .state_get = cpu_state_get,
    .state_set = cpu_state_set,
    .state_bytes = cpu_state_bytes,
    .probe_gbps = cpu_probe_gbps,
    .chunk_read = cpu_chunk_read,
    .chunk_write = cpu_chunk_write,
};
