/* model.c - see model.h. */
#include "model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "ops.h"
#include "quants.h"

static const struct {
    const char *gguf;
    ds4_tensor_class cls;
} roles[DS4_T_COUNT] = {
    [DS4_T_TOKEN_EMBD] = {"token_embd.weight", DS4_CLASS_MATRIX},
    [DS4_T_OUTPUT_NORM] = {"output_norm.weight", DS4_CLASS_VECTOR},
    [DS4_T_OUTPUT] = {"output.weight", DS4_CLASS_MATRIX},
    [DS4_T_OUTPUT_HC_FN] = {"output_hc_fn.weight", DS4_CLASS_SMALL},
    [DS4_T_OUTPUT_HC_BASE] = {"output_hc_base.weight", DS4_CLASS_VECTOR},
    [DS4_T_OUTPUT_HC_SCALE] = {"output_hc_scale.weight", DS4_CLASS_VECTOR},
    [DS4_T_ATTN_NORM] = {"blk.%d.attn_norm.weight", DS4_CLASS_VECTOR},
    [DS4_T_ATTN_Q_A] = {"blk.%d.attn_q_a.weight", DS4_CLASS_MATRIX},
    [DS4_T_ATTN_Q_A_NORM] = {"blk.%d.attn_q_a_norm.weight", DS4_CLASS_VECTOR},
    [DS4_T_ATTN_Q_B] = {"blk.%d.attn_q_b.weight", DS4_CLASS_MATRIX},
    [DS4_T_ATTN_KV] = {"blk.%d.attn_kv.weight", DS4_CLASS_MATRIX},
    [DS4_T_ATTN_KV_NORM] = {"blk.%d.attn_kv_a_norm.weight", DS4_CLASS_VECTOR},
    [DS4_T_ATTN_OUT_A] = {"blk.%d.attn_output_a.weight", DS4_CLASS_MATRIX},
    [DS4_T_ATTN_OUT_B] = {"blk.%d.attn_output_b.weight", DS4_CLASS_MATRIX},
    [DS4_T_ATTN_SINKS] = {"blk.%d.attn_sinks.weight", DS4_CLASS_VECTOR},
    [DS4_T_HC_ATTN_FN] = {"blk.%d.hc_attn_fn.weight", DS4_CLASS_SMALL},
    [DS4_T_HC_ATTN_BASE] = {"blk.%d.hc_attn_base.weight", DS4_CLASS_VECTOR},
    [DS4_T_HC_ATTN_SCALE] = {"blk.%d.hc_attn_scale.weight", DS4_CLASS_VECTOR},
    [DS4_T_HC_FFN_FN] = {"blk.%d.hc_ffn_fn.weight", DS4_CLASS_SMALL},
    [DS4_T_HC_FFN_BASE] = {"blk.%d.hc_ffn_base.weight", DS4_CLASS_VECTOR},
    [DS4_T_HC_FFN_SCALE] = {"blk.%d.hc_ffn_scale.weight", DS4_CLASS_VECTOR},
    [DS4_T_COMP_KV] = {"blk.%d.attn_compressor_kv.weight", DS4_CLASS_SMALL},
    [DS4_T_COMP_GATE] = {"blk.%d.attn_compressor_gate.weight", DS4_CLASS_SMALL},
    [DS4_T_COMP_APE] = {"blk.%d.attn_compressor_ape.weight", DS4_CLASS_SMALL},
    [DS4_T_COMP_NORM] = {"blk.%d.attn_compressor_norm.weight", DS4_CLASS_VECTOR},
    [DS4_T_IDX_Q_B] = {"blk.%d.indexer.attn_q_b.weight", DS4_CLASS_SMALL},
    [DS4_T_IDX_PROJ] = {"blk.%d.indexer.proj.weight", DS4_CLASS_SMALL},
    [DS4_T_IDX_COMP_KV] = {"blk.%d.indexer_compressor_kv.weight", DS4_CLASS_SMALL},
    [DS4_T_IDX_COMP_GATE] = {"blk.%d.indexer_compressor_gate.weight", DS4_CLASS_SMALL},
    [DS4_T_IDX_COMP_APE] = {"blk.%d.indexer_compressor_ape.weight", DS4_CLASS_SMALL},
    [DS4_T_IDX_COMP_NORM] = {"blk.%d.indexer_compressor_norm.weight", DS4_CLASS_VECTOR},
    [DS4_T_FFN_NORM] = {"blk.%d.ffn_norm.weight", DS4_CLASS_VECTOR},
    [DS4_T_FFN_GATE_INP] = {"blk.%d.ffn_gate_inp.weight", DS4_CLASS_SMALL},
    [DS4_T_FFN_EXP_PROBS_B] = {"blk.%d.exp_probs_b.bias", DS4_CLASS_VECTOR},
    [DS4_T_FFN_TID2EID] = {"blk.%d.ffn_gate_tid2eid.weight", DS4_CLASS_INDEX},
    [DS4_T_FFN_GATE_EXPS] = {"blk.%d.ffn_gate_exps.weight", DS4_CLASS_EXPERTS},
    [DS4_T_FFN_UP_EXPS] = {"blk.%d.ffn_up_exps.weight", DS4_CLASS_EXPERTS},
    [DS4_T_FFN_DOWN_EXPS] = {"blk.%d.ffn_down_exps.weight", DS4_CLASS_EXPERTS},
    [DS4_T_FFN_GATE_SHEXP] = {"blk.%d.ffn_gate_shexp.weight", DS4_CLASS_MATRIX},
    [DS4_T_FFN_UP_SHEXP] = {"blk.%d.ffn_up_shexp.weight", DS4_CLASS_MATRIX},
    [DS4_T_FFN_DOWN_SHEXP] = {"blk.%d.ffn_down_shexp.weight", DS4_CLASS_MATRIX},
};

ds4_tensor_class ds4_role_class(ds4_tensor_role role) { return roles[role].cls; }

static const char *layer_kind_name(ds4_layer_kind kind) {
    return kind == DS4_LAYER_CSA ? "csa" : kind == DS4_LAYER_HCA ? "hca" : "swa";
}

/* ---- the tensor set ---- */

/* Shape of a role in layer `il`; returns 0 when the layer has no such tensor. */
static uint32_t role_shape(const ds4_config *c, ds4_tensor_role role, int il, uint64_t ne[4]) {
    const uint64_t D = c->n_embd, H = c->n_head, d = c->head_dim, r = c->q_lora_rank;
    const uint64_t G = c->o_groups, R = c->o_lora_rank, hc = c->hc_mult, mix = (2 + hc) * hc;
    const uint64_t E = c->n_expert, I = c->expert_ff, Is = c->expert_ff * c->n_expert_shared;
    const uint64_t Ih = c->indexer_heads, Id = c->indexer_dim, V = c->n_vocab;
    const ds4_layer_kind kind = il >= 0 ? c->kind[il] : DS4_LAYER_SWA;
    const uint64_t rho = il >= 0 ? c->compress_ratio[il] : 0;
    const uint64_t cw = kind == DS4_LAYER_CSA ? 2 * d : d; /* compressor width */
    const bool hash = il >= 0 && (uint32_t)il < c->n_hash_layers;
#define SHAPE(n, a, b, e) (ne[0] = (a), ne[1] = (b), ne[2] = (e), ne[3] = 1, (n))
    switch (role) {
    case DS4_T_TOKEN_EMBD: case DS4_T_OUTPUT: return SHAPE(2, D, V, 1);
    case DS4_T_OUTPUT_NORM: case DS4_T_ATTN_NORM: case DS4_T_FFN_NORM: return SHAPE(1, D, 1, 1);
    case DS4_T_OUTPUT_HC_FN: return SHAPE(2, hc * D, hc, 1);
    case DS4_T_OUTPUT_HC_BASE: return SHAPE(1, hc, 1, 1);
    case DS4_T_OUTPUT_HC_SCALE: return SHAPE(1, 1, 1, 1);
    case DS4_T_ATTN_Q_A: return SHAPE(2, D, r, 1);
    case DS4_T_ATTN_Q_A_NORM: return SHAPE(1, r, 1, 1);
    case DS4_T_ATTN_Q_B: return SHAPE(2, r, H * d, 1);
    case DS4_T_ATTN_KV: return SHAPE(2, D, d, 1);
    case DS4_T_ATTN_KV_NORM: return SHAPE(1, d, 1, 1);
    case DS4_T_ATTN_OUT_A: return SHAPE(2, H * d / G, G * R, 1);
    case DS4_T_ATTN_OUT_B: return SHAPE(2, G * R, D, 1);
    case DS4_T_ATTN_SINKS: return SHAPE(1, H, 1, 1);
    case DS4_T_HC_ATTN_FN: case DS4_T_HC_FFN_FN: return SHAPE(2, hc * D, mix, 1);
    case DS4_T_HC_ATTN_BASE: case DS4_T_HC_FFN_BASE: return SHAPE(1, mix, 1, 1);
    case DS4_T_HC_ATTN_SCALE: case DS4_T_HC_FFN_SCALE: return SHAPE(1, 3, 1, 1);
    case DS4_T_COMP_KV: case DS4_T_COMP_GATE: return kind == DS4_LAYER_SWA ? 0 : SHAPE(2, D, cw, 1);
    case DS4_T_COMP_APE: return kind == DS4_LAYER_SWA ? 0 : SHAPE(2, cw, rho, 1);
    case DS4_T_COMP_NORM: return kind == DS4_LAYER_SWA ? 0 : SHAPE(1, d, 1, 1);
    case DS4_T_IDX_Q_B: return kind != DS4_LAYER_CSA ? 0 : SHAPE(2, r, Ih * Id, 1);
    case DS4_T_IDX_PROJ: return kind != DS4_LAYER_CSA ? 0 : SHAPE(2, D, Ih, 1);
    case DS4_T_IDX_COMP_KV: case DS4_T_IDX_COMP_GATE: return kind != DS4_LAYER_CSA ? 0 : SHAPE(2, D, 2 * Id, 1);
    case DS4_T_IDX_COMP_APE: return kind != DS4_LAYER_CSA ? 0 : SHAPE(2, 2 * Id, rho, 1);
    case DS4_T_IDX_COMP_NORM: return kind != DS4_LAYER_CSA ? 0 : SHAPE(1, Id, 1, 1);
    case DS4_T_FFN_GATE_INP: return SHAPE(2, D, E, 1);
    case DS4_T_FFN_EXP_PROBS_B: return hash ? 0 : SHAPE(1, E, 1, 1);
    case DS4_T_FFN_TID2EID: return hash ? SHAPE(2, c->n_expert_used, V, 1) : 0;
    case DS4_T_FFN_GATE_EXPS: case DS4_T_FFN_UP_EXPS: return SHAPE(3, D, I, E);
    case DS4_T_FFN_DOWN_EXPS: return SHAPE(3, I, D, E);
    case DS4_T_FFN_GATE_SHEXP: case DS4_T_FFN_UP_SHEXP: return Is ? SHAPE(2, D, Is, 1) : 0;
    case DS4_T_FFN_DOWN_SHEXP: return Is ? SHAPE(2, Is, D, 1) : 0;
    default: return 0;
    }
#undef SHAPE
}

static void add_spec(ds4_tensor_spec *s, size_t *n, const ds4_config *c, ds4_tensor_role role, int il) {
    ds4_tensor_spec *t = &s[*n];
    t->n_dims = role_shape(c, role, il, t->ne);
    if (!t->n_dims) return;
    t->role = role;
    t->layer = il;
    snprintf(t->name, sizeof t->name, roles[role].gguf, il);
    (*n)++;
}

int ds4_expected_tensors(const ds4_config *c, ds4_tensor_spec **specs, size_t *n) {
    ds4_tensor_spec *s = ds4_calloc((size_t)(c->n_layer + 1) * DS4_T_COUNT, sizeof *s);
    if (!s) return -1;
    *n = 0;
    /* llama.cpp's order: embeddings, then the blocks, then the output head. */
    add_spec(s, n, c, DS4_T_TOKEN_EMBD, -1);
    for (int il = 0; il < (int)c->n_layer; il++)
        for (int r = DS4_T_FIRST_LAYER; r < DS4_T_COUNT; r++) add_spec(s, n, c, (ds4_tensor_role)r, il);
    for (int r = DS4_T_OUTPUT_NORM; r < DS4_T_FIRST_LAYER; r++) add_spec(s, n, c, (ds4_tensor_role)r, -1);
    *specs = s;
    return 0;
}

/* ---- config ---- */

#define KEY(k) DS4_ARCH "." k

static int need_u32(const gguf_file *f, const char *key, uint32_t *out) {
    uint64_t v;
    if (!ds4_gguf_get(f, key)) return ds4_fail("missing metadata %s", key);
    if (!ds4_gguf_get_u64(f, key, &v) || v > UINT32_MAX)
        return ds4_fail("metadata %s is not a non-negative 32-bit integer", key);
    *out = (uint32_t)v;
    return 0;
}

static int opt_u32(const gguf_file *f, const char *key, uint32_t *out, uint32_t def) {
    *out = def;
    return ds4_gguf_get(f, key) ? need_u32(f, key, out) : 0;
}

static int opt_f32(const gguf_file *f, const char *key, float *out, float def) {
    double v;
    *out = def;
    if (!ds4_gguf_get(f, key)) return 0;
    if (!ds4_gguf_get_f64(f, key, &v)) return ds4_fail("metadata %s is not a number", key);
    *out = (float)v;
    return 0;
}

/* A per-layer array, or a scalar that applies to every layer. */
static int per_layer_f32(const gguf_file *f, const char *key, uint32_t n_layer, float *out, float def) {
    const gguf_value *v = ds4_gguf_get(f, key);
    double x;
    for (uint32_t i = 0; i < n_layer; i++) out[i] = def;
    if (!v) return 0;
    if (v->type != GGUF_TYPE_ARRAY) {
        if (!ds4_gguf_value_to_f64(v, &x)) return ds4_fail("metadata %s is not a number", key);
        for (uint32_t i = 0; i < n_layer; i++) out[i] = (float)x;
        return 0;
    }
    if (v->arr.n < n_layer) return ds4_fail("metadata %s has %llu entries for %u layers", key,
                                            (unsigned long long)v->arr.n, n_layer);
    for (uint32_t i = 0; i < n_layer; i++) {
        if (!ds4_gguf_arr_f64(v, i, &x)) return ds4_fail("metadata %s[%u] is not a number", key, i);
        out[i] = (float)x;
    }
    return 0;
}

static int read_vocab(const gguf_file *f, ds4_config *c) {
    if (ds4_gguf_get(f, KEY("vocab_size"))) return need_u32(f, KEY("vocab_size"), &c->n_vocab);
    const gguf_value *toks = ds4_gguf_get(f, "tokenizer.ggml.tokens");
    if (toks && toks->type == GGUF_TYPE_ARRAY && toks->arr.n <= UINT32_MAX) {
        c->n_vocab = (uint32_t)toks->arr.n;
        return 0;
    }
    const gguf_tensor *emb = ds4_gguf_find_tensor(f, "token_embd.weight");
    if (emb && emb->n_dims == 2 && emb->ne[1] <= UINT32_MAX) {
        c->n_vocab = (uint32_t)emb->ne[1];
        return 0;
    }
    return ds4_fail("cannot tell the vocabulary size (no %s, no tokenizer, no token_embd)", KEY("vocab_size"));
}

/* CSA layers carry an indexer; the compressor of a CSA layer is twice as wide. */
static ds4_layer_kind layer_kind(const gguf_file *f, const ds4_config *c, uint32_t il) {
    if (c->compress_ratio[il] == 0) return DS4_LAYER_SWA;
    char name[GGUF_MAX_NAME];
    snprintf(name, sizeof name, roles[DS4_T_IDX_PROJ].gguf, (int)il);
    if (ds4_gguf_find_tensor(f, name)) return DS4_LAYER_CSA;
    snprintf(name, sizeof name, roles[DS4_T_COMP_KV].gguf, (int)il);
    const gguf_tensor *kv = ds4_gguf_find_tensor(f, name);
    if (kv && kv->n_dims == 2 && kv->ne[1] == 2ull * c->head_dim) return DS4_LAYER_CSA;
    return DS4_LAYER_HCA;
}

void ds4_config_flash(ds4_config *c, uint32_t n_layer, uint32_t n_expert) {
    memset(c, 0, sizeof *c);
    *c = (ds4_config){
        .n_layer = n_layer ? n_layer : 43, .n_embd = 4096, .n_vocab = 129280, .n_head = 64, .n_head_kv = 1,
        .head_dim = 512, .value_dim = 512, .rope_dim = 64, .q_lora_rank = 1024, .o_groups = 8,
        .o_lora_rank = 1024, .sliding_window = 128, .n_expert = n_expert ? n_expert : 256, .n_expert_used = 6,
        .n_expert_shared = 1, .expert_ff = 2048, .n_hash_layers = 3, .gating_func = DS4_GATING_SQRT_SOFTPLUS,
        .hc_mult = 4, .hc_sinkhorn_iters = 20, .indexer_heads = 64, .indexer_dim = 128, .indexer_topk = 512,
        .context_length = 1048576, .rope_orig_ctx = 65536, .rms_eps = 1e-6f, .rope_base = 10000.0f,
        .compress_rope_base = 160000.0f, .rope_scale = 16.0f, .yarn_beta_fast = 32.0f, .yarn_beta_slow = 1.0f,
        .expert_weights_scale = 1.5f, .hc_eps = 1e-6f, .expert_weights_norm = true,
    };
    if (c->n_expert_used > c->n_expert) c->n_expert_used = c->n_expert;
    if (c->n_hash_layers > c->n_layer) c->n_hash_layers = c->n_layer;
    for (uint32_t i = 0; i < c->n_layer; i++) {
        c->compress_ratio[i] = i < 2 ? 0 : i % 2 == 0 ? 4 : 128;
        c->kind[i] = i < 2 ? DS4_LAYER_SWA : i % 2 == 0 ? DS4_LAYER_CSA : DS4_LAYER_HCA;
        c->swiglu_limit[i] = c->swiglu_limit_shared[i] = 10.0f;
    }
}

int ds4_config_check(const ds4_config *c) {
    if (c->n_layer == 0 || c->n_layer > DS4_MAX_LAYERS)
        return ds4_fail("block_count %u is out of range (1..%d)", c->n_layer, DS4_MAX_LAYERS);
#define POSITIVE(x) if (!(c->x)) return ds4_fail(#x " must be positive")
    POSITIVE(n_embd); POSITIVE(n_vocab); POSITIVE(n_head); POSITIVE(head_dim); POSITIVE(q_lora_rank);
    POSITIVE(o_groups); POSITIVE(o_lora_rank); POSITIVE(sliding_window); POSITIVE(n_expert);
    POSITIVE(n_expert_used); POSITIVE(expert_ff); POSITIVE(hc_mult);
#undef POSITIVE
    if (c->n_head_kv != 1) return ds4_fail("head_count_kv is %u; DeepSeek V4 has one shared KV head", c->n_head_kv);
    if (c->value_dim != c->head_dim) return ds4_fail("value_length %u differs from key_length %u", c->value_dim, c->head_dim);
    if (c->rope_dim > c->head_dim || c->rope_dim % 2)
        return ds4_fail("rope dimension %u must be even and at most head_dim %u", c->rope_dim, c->head_dim);
    if (c->n_head % c->o_groups) return ds4_fail("head_count %u is not a multiple of output_group_count %u", c->n_head, c->o_groups);
    if (c->n_expert_used > c->n_expert) return ds4_fail("expert_used_count %u exceeds expert_count %u", c->n_expert_used, c->n_expert);
    if (c->n_hash_layers > c->n_layer) return ds4_fail("hash_layer_count %u exceeds block_count %u", c->n_hash_layers, c->n_layer);
    if (c->hc_mult > DS4_HC_MAX) return ds4_fail("hyper_connection.count %u is implausible", c->hc_mult);
    /* Sizes that no tensor shape bounds (window, top-k, ratios, iterations) size buffers
     * and loops: bound every dimension far above Flash's, so that products of a few of
     * them stay within int and size_t arithmetic. */
    const struct { const char *name; uint32_t value, max; } dims[] = {
        {"embedding_length", c->n_embd, 1u << 20},       {"vocab_size", c->n_vocab, 1u << 24},
        {"attention.head_count", c->n_head, 1u << 14},   {"attention.key_length", c->head_dim, 1u << 14},
        {"attention.q_lora_rank", c->q_lora_rank, 1u << 20},
        {"attention.output_lora_rank", c->o_lora_rank, 1u << 20},
        {"attention.sliding_window", c->sliding_window, 1u << 20},
        {"expert_count", c->n_expert, 1u << 16},         {"expert_used_count", c->n_expert_used, 1u << 10},
        {"expert_shared_count", c->n_expert_shared, 1u << 10},
        {"expert_feed_forward_length", c->expert_ff, 1u << 20},
        {"hyper_connection.sinkhorn_iterations", c->hc_sinkhorn_iters, 1u << 16},
        {"attention.indexer.head_count", c->indexer_heads, 1u << 14},
        {"attention.indexer.key_length", c->indexer_dim, 1u << 14},
        {"attention.indexer.top_k", c->indexer_topk, 1u << 20},
        {"rope.dimension_count", c->rope_dim, DS4_ROPE_MAX},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].value > dims[i].max)
            return ds4_fail("%s %u is implausibly large (at most %u)", dims[i].name, dims[i].value, dims[i].max);
    if ((uint64_t)c->n_head * c->head_dim > (1u << 24) || (uint64_t)c->indexer_heads * c->indexer_dim > (1u << 24) ||
        (uint64_t)c->expert_ff * c->n_expert_shared > (1u << 24))
        return ds4_fail("model dimensions are implausibly large");
    bool csa = false;
    for (uint32_t i = 0; i < c->n_layer; i++) {
        if (c->kind[i] != DS4_LAYER_SWA && (c->compress_ratio[i] < 2 || c->compress_ratio[i] > (1u << 16)))
            return ds4_fail("layer %u: compress ratio %u (2..65536)", i, c->compress_ratio[i]);
        csa |= c->kind[i] == DS4_LAYER_CSA;
    }
    if (csa && (!c->indexer_heads || !c->indexer_dim || !c->indexer_topk))
        return ds4_fail("CSA layers need attention.indexer.head_count, key_length and top_k");
    /* Every tensor must stay addressable: bound the largest one. */
    uint64_t n;
    if (!ds4_mul_ok((uint64_t)c->n_embd * c->expert_ff, c->n_expert, &n) ||
        !ds4_mul_ok((uint64_t)c->n_embd * c->hc_mult, (uint64_t)(2 + c->hc_mult) * c->hc_mult, &n) ||
        !ds4_mul_ok((uint64_t)c->n_embd, c->n_vocab, &n) || n > ((uint64_t)1 << 50))
        return ds4_fail("model dimensions are implausibly large");
    return 0;
}

int ds4_config_from_gguf(const gguf_file *f, ds4_config *c) {
    memset(c, 0, sizeof *c);
    gguf_str arch;
    if (!ds4_gguf_get_str(f, "general.architecture", &arch)) return ds4_fail("missing general.architecture");
    if (!ds4_gguf_str_eq(arch, DS4_ARCH))
        return ds4_fail("architecture is '%.*s', expected '%s'", (int)(arch.len > 40 ? 40 : arch.len), arch.ptr, DS4_ARCH);
    if (need_u32(f, KEY("block_count"), &c->n_layer) < 0 || need_u32(f, KEY("embedding_length"), &c->n_embd) < 0 ||
        need_u32(f, KEY("attention.head_count"), &c->n_head) < 0 ||
        opt_u32(f, KEY("attention.head_count_kv"), &c->n_head_kv, 1) < 0 ||
        need_u32(f, KEY("attention.key_length"), &c->head_dim) < 0 ||
        opt_u32(f, KEY("attention.value_length"), &c->value_dim, c->head_dim) < 0 ||
        need_u32(f, KEY("attention.q_lora_rank"), &c->q_lora_rank) < 0 ||
        need_u32(f, KEY("attention.output_group_count"), &c->o_groups) < 0 ||
        need_u32(f, KEY("attention.output_lora_rank"), &c->o_lora_rank) < 0 ||
        need_u32(f, KEY("attention.sliding_window"), &c->sliding_window) < 0 ||
        need_u32(f, KEY("rope.dimension_count"), &c->rope_dim) < 0 ||
        need_u32(f, KEY("expert_count"), &c->n_expert) < 0 ||
        need_u32(f, KEY("expert_used_count"), &c->n_expert_used) < 0 ||
        opt_u32(f, KEY("expert_shared_count"), &c->n_expert_shared, 1) < 0 ||
        need_u32(f, KEY("expert_feed_forward_length"), &c->expert_ff) < 0 ||
        opt_u32(f, KEY("hash_layer_count"), &c->n_hash_layers, 0) < 0 ||
        opt_u32(f, KEY("expert_gating_func"), &c->gating_func, DS4_GATING_SQRT_SOFTPLUS) < 0 ||
        need_u32(f, KEY("hyper_connection.count"), &c->hc_mult) < 0 ||
        opt_u32(f, KEY("hyper_connection.sinkhorn_iterations"), &c->hc_sinkhorn_iters, 20) < 0 ||
        opt_u32(f, KEY("attention.indexer.head_count"), &c->indexer_heads, 0) < 0 ||
        opt_u32(f, KEY("attention.indexer.key_length"), &c->indexer_dim, 0) < 0 ||
        opt_u32(f, KEY("attention.indexer.top_k"), &c->indexer_topk, 0) < 0 ||
        opt_u32(f, KEY("rope.scaling.original_context_length"), &c->rope_orig_ctx, 0) < 0 ||
        opt_f32(f, KEY("attention.layer_norm_rms_epsilon"), &c->rms_eps, 1e-6f) < 0 ||
        opt_f32(f, KEY("rope.freq_base"), &c->rope_base, 10000.0f) < 0 ||
        opt_f32(f, KEY("attention.compress_rope_freq_base"), &c->compress_rope_base, c->rope_base) < 0 ||
        opt_f32(f, KEY("rope.scaling.factor"), &c->rope_scale, 1.0f) < 0 ||
        opt_f32(f, KEY("rope.scaling.yarn_beta_fast"), &c->yarn_beta_fast, 32.0f) < 0 ||
        opt_f32(f, KEY("rope.scaling.yarn_beta_slow"), &c->yarn_beta_slow, 1.0f) < 0 ||
        opt_f32(f, KEY("expert_weights_scale"), &c->expert_weights_scale, 1.0f) < 0 ||
        opt_f32(f, KEY("hyper_connection.epsilon"), &c->hc_eps, 1e-6f) < 0 ||
        read_vocab(f, c) < 0)
        return -1;
    uint64_t ctx = 0;
    if (ds4_gguf_get(f, KEY("context_length")) && !ds4_gguf_get_u64(f, KEY("context_length"), &ctx))
        return ds4_fail("metadata %s is not an integer", KEY("context_length"));
    c->context_length = ctx;
    c->expert_weights_norm = true;
    if (ds4_gguf_get(f, KEY("expert_weights_norm")) && !ds4_gguf_get_bool(f, KEY("expert_weights_norm"), &c->expert_weights_norm))
        return ds4_fail("metadata %s is not a bool", KEY("expert_weights_norm"));
    if (c->gating_func != DS4_GATING_SQRT_SOFTPLUS && c->gating_func != DS4_GATING_SOFTMAX &&
        c->gating_func != DS4_GATING_SIGMOID)
        return ds4_fail("unsupported expert_gating_func %u", c->gating_func);
    /* llama.cpp counts its next-token-prediction blocks in block_count; ds4 does not. */
    uint32_t nextn = 0;
    if (opt_u32(f, KEY("nextn_predict_layers"), &nextn, 0) < 0) return -1;
    if (nextn && nextn < c->n_layer) {
        char name[GGUF_MAX_NAME];
        snprintf(name, sizeof name, "blk.%u.nextn.eh_proj.weight", c->n_layer - 1);
        if (ds4_gguf_find_tensor(f, name)) c->n_layer -= nextn;
    }
    if (c->n_layer == 0 || c->n_layer > DS4_MAX_LAYERS)
        return ds4_fail("block_count %u is out of range (1..%d)", c->n_layer, DS4_MAX_LAYERS);

    const gguf_value *ratios = ds4_gguf_get(f, KEY("attention.compress_ratios"));
    if (!ratios) return ds4_fail("missing metadata %s", KEY("attention.compress_ratios"));
    if (ratios->type != GGUF_TYPE_ARRAY || ratios->arr.n < c->n_layer)
        return ds4_fail("metadata %s must be an array with one entry per layer", KEY("attention.compress_ratios"));
    for (uint32_t i = 0; i < c->n_layer; i++) {
        uint64_t r;
        if (!ds4_gguf_arr_u64(ratios, i, &r) || r > (1u << 20))
            return ds4_fail("metadata %s[%u] is not a valid ratio", KEY("attention.compress_ratios"), i);
        c->compress_ratio[i] = (uint32_t)r;
        c->kind[i] = layer_kind(f, c, i);
    }
    if (per_layer_f32(f, KEY("swiglu_clamp_exp"), c->n_layer, c->swiglu_limit, 0.0f) < 0 ||
        per_layer_f32(f, KEY("swiglu_clamp_shexp"), c->n_layer, c->swiglu_limit_shared, 0.0f) < 0)
        return -1;
    return ds4_config_check(c);
}

/* ---- writing ---- */

int ds4_config_to_gguf(const ds4_config *c, gguf_writer *w) {
    uint32_t ratios[DS4_MAX_LAYERS];
    for (uint32_t i = 0; i < c->n_layer; i++) ratios[i] = c->compress_ratio[i];
    int rc = 0;
    rc |= ds4_gguf_writer_kv_u32(w, KEY("block_count"), c->n_layer);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("context_length"), (uint32_t)c->context_length);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("embedding_length"), c->n_embd);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("embedding_length_out"), c->n_embd * c->hc_mult);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("vocab_size"), c->n_vocab);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.head_count"), c->n_head);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.head_count_kv"), c->n_head_kv);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.key_length"), c->head_dim);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.value_length"), c->value_dim);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.q_lora_rank"), c->q_lora_rank);
    rc |= ds4_gguf_writer_kv_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.sliding_window"), c->sliding_window);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.output_group_count"), c->o_groups);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.output_lora_rank"), c->o_lora_rank);
    rc |= ds4_gguf_writer_kv_arr(w, KEY("attention.compress_ratios"), GGUF_TYPE_UINT32, ratios, c->n_layer);
    rc |= ds4_gguf_writer_kv_f32(w, KEY("attention.compress_rope_freq_base"), c->compress_rope_base);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.indexer.head_count"), c->indexer_heads);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.indexer.key_length"), c->indexer_dim);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("attention.indexer.top_k"), c->indexer_topk);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("rope.dimension_count"), c->rope_dim);
    rc |= ds4_gguf_writer_kv_f32(w, KEY("rope.freq_base"), c->rope_base);
    if (c->rope_orig_ctx) {
        rc |= ds4_gguf_writer_kv_str(w, KEY("rope.scaling.type"), "yarn");
        rc |= ds4_gguf_writer_kv_f32(w, KEY("rope.scaling.factor"), c->rope_scale);
        rc |= ds4_gguf_writer_kv_u32(w, KEY("rope.scaling.original_context_length"), c->rope_orig_ctx);
        rc |= ds4_gguf_writer_kv_f32(w, KEY("rope.scaling.yarn_beta_fast"), c->yarn_beta_fast);
        rc |= ds4_gguf_writer_kv_f32(w, KEY("rope.scaling.yarn_beta_slow"), c->yarn_beta_slow);
    }
    rc |= ds4_gguf_writer_kv_u32(w, KEY("expert_count"), c->n_expert);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("expert_used_count"), c->n_expert_used);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("expert_shared_count"), c->n_expert_shared);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("expert_feed_forward_length"), c->expert_ff);
    rc |= ds4_gguf_writer_kv_f32(w, KEY("expert_weights_scale"), c->expert_weights_scale);
    rc |= ds4_gguf_writer_kv_bool(w, KEY("expert_weights_norm"), c->expert_weights_norm);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("expert_gating_func"), c->gating_func);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("expert_group_count"), 1);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("expert_group_used_count"), 1);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("hash_layer_count"), c->n_hash_layers);
    rc |= ds4_gguf_writer_kv_arr(w, KEY("swiglu_clamp_exp"), GGUF_TYPE_FLOAT32, c->swiglu_limit, c->n_layer);
    rc |= ds4_gguf_writer_kv_arr(w, KEY("swiglu_clamp_shexp"), GGUF_TYPE_FLOAT32, c->swiglu_limit_shared, c->n_layer);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("hyper_connection.count"), c->hc_mult);
    rc |= ds4_gguf_writer_kv_u32(w, KEY("hyper_connection.sinkhorn_iterations"), c->hc_sinkhorn_iters);
    rc |= ds4_gguf_writer_kv_f32(w, KEY("hyper_connection.epsilon"), c->hc_eps);
    return rc ? -1 : 0;
}

/* ---- loading and validation ---- */

static bool type_allowed(ds4_tensor_class cls, uint32_t type) {
    const ds4_type_info *t = ds4_type_get(type);
    switch (cls) {
    case DS4_CLASS_VECTOR: return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
    case DS4_CLASS_INDEX: return type == GGML_TYPE_I32;
    default: return t && t->to_f32;
    }
}

static void shape_str(char *buf, size_t n, uint32_t n_dims, const uint64_t *ne) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%llu", d ? ", " : "", (unsigned long long)ne[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Tensors of the next-token-prediction head, which ds4 keeps as `mtp.*` and llama.cpp as
 * an extra block past the main ones. */
static bool is_mtp_tensor(const char *name, uint32_t n_layer) {
    if (!strncmp(name, "mtp.", 4)) return true;
    unsigned il;
    int used = 0;
    return sscanf(name, "blk.%u.%n", &il, &used) == 1 && used > 0 && il >= n_layer;
}

/* The expert ids of every hash-routed layer must name experts of the model: they index
 * the expert tensors. A repeated id is valid (transformers counts it once per slot). */
static int check_hash_tables(const ds4_model *m) {
    const uint32_t E = m->cfg.n_expert, K = m->cfg.n_expert_used;
    for (uint32_t il = 0; il < m->cfg.n_hash_layers; il++) {
        const gguf_tensor *t = ds4_model_tensor(m, (int)il, DS4_T_FFN_TID2EID);
        const uint8_t *p = t->data;
        for (uint64_t i = 0; i < ds4_gguf_tensor_nelements(t); i++) {
            int32_t id;
            memcpy(&id, p + i * sizeof id, sizeof id);
            if (id < 0 || (uint32_t)id >= E)
                return ds4_fail("%s: token %llu, slot %llu names expert %d, outside 0..%u", t->name,
                                (unsigned long long)(i / K), (unsigned long long)(i % K), id, E - 1);
        }
    }
    return 0;
}

static int validate(ds4_model *m) {
    ds4_tensor_spec *specs;
    size_t n;
    if (ds4_expected_tensors(&m->cfg, &specs, &n) < 0) return -1;
    ds4_problems p = {0};
    const gguf_file *f = m->gguf;
    for (size_t i = 0; i < n; i++) {
        const ds4_tensor_spec *s = &specs[i];
        const gguf_tensor *t = ds4_gguf_find_tensor(f, s->name);
        char want[96], got[96];
        if (!t) {
            ds4_problem(&p, "missing %s", s->name);
            continue;
        }
        bool same = t->n_dims == s->n_dims;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) same = same && t->ne[d] == s->ne[d];
        if (!same) {
            shape_str(want, sizeof want, s->n_dims, s->ne);
            shape_str(got, sizeof got, t->n_dims, t->ne);
            ds4_problem(&p, "%s has shape %s, expected %s", s->name, got, want);
        } else if (!type_allowed(roles[s->role].cls, t->type)) {
            ds4_problem(&p, "%s has type %s, which this build cannot use there", s->name, ds4_type_name(t->type));
        }
        m->tensors[(size_t)(s->layer + 1) * DS4_T_COUNT + s->role] = t;
        m->n_params += ds4_gguf_tensor_nelements(t);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        if (is_mtp_tensor(name, m->cfg.n_layer)) {
            m->n_mtp_tensors++;
            continue;
        }
        bool known = false;
        for (size_t k = 0; k < n && !known; k++) known = !strcmp(specs[k].name, name);
        if (!known) ds4_problem(&p, "unexpected tensor %s", name);
    }
    free(specs);
    if (ds4_problems_report(&p, "the tensor set") < 0) return -1;
    return check_hash_tables(m);
}

ds4_model *ds4_model_from_gguf(gguf_file *f) {
    ds4_model *m = ds4_calloc(1, sizeof *m);
    if (!m) {
        ds4_gguf_close(f);
        return NULL;
    }
    m->gguf = f;
    if (ds4_config_from_gguf(f, &m->cfg) < 0 ||
        !(m->tensors = ds4_calloc((size_t)(m->cfg.n_layer + 1) * DS4_T_COUNT, sizeof *m->tensors)) ||
        validate(m) < 0) {
        ds4_error_prefix(f->path);
        ds4_model_free(m);
        return NULL;
    }
    return m;
}

ds4_model *ds4_model_load(const char *path) {
    gguf_file *f = ds4_gguf_open(path);
    return f ? ds4_model_from_gguf(f) : NULL;
}

int ds4_model_attach_fills(ds4_model *m, ds4_tensor_fill *fills, size_t n) {
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        ds4_tensor_fill *f = &fills[i];
        f->tensor = ds4_gguf_find_tensor(m->gguf, f->name);
        if (!f->tensor || f->tensor->size != f->n_rows * f->row_bytes || !f->block_bytes || !f->pool_blocks ||
            f->row_bytes % f->block_bytes)
            rc = ds4_fail("fill for '%s': no such tensor of that size", f->name);
    }
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) free(fills[i].pool);
        free(fills);
        return -1;
    }
    m->fills = fills;
    m->n_fills = n;
    return 0;
}

const ds4_tensor_fill *ds4_model_fill(const ds4_model *m, const gguf_tensor *t) {
    for (size_t i = 0; i < m->n_fills; i++)
        if (m->fills[i].tensor == t) return &m->fills[i];
    return NULL;
}

void ds4_model_free(ds4_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_fills; i++) free(m->fills[i].pool);
    free(m->fills);
    ds4_gguf_close(m->gguf);
    free(m->tensors);
    free(m);
}

const gguf_tensor *ds4_model_tensor(const ds4_model *m, int layer, ds4_tensor_role role) {
    return m->tensors[(size_t)(layer + 1) * DS4_T_COUNT + role];
}

uint64_t ds4_model_fingerprint(const ds4_model *m) {
    /* the file up to its tensor data: header, metadata and tensor table */
    const gguf_file *f = m->gguf;
    return ds4_fnv1a(DS4_FNV_START, f->base, f->data_offset < f->size ? f->data_offset : f->size);
}

int ds4_model_kv_snapshot(const ds4_model *m, ds4_kv_snapshot *s) {
    const ds4_config *c = &m->cfg;
    ds4_kv_geometry g[DS4_MAX_LAYERS];
    for (uint32_t il = 0; il < c->n_layer; il++)
        g[il] = (ds4_kv_geometry){.window = c->sliding_window, .dim = c->head_dim,
                                  .ratio = c->kind[il] == DS4_LAYER_SWA ? 0 : c->compress_ratio[il],
                                  .indexer_dim = c->indexer_dim, .csa = c->kind[il] == DS4_LAYER_CSA};
    return ds4_kv_snapshot_init(s, c->n_layer, g);
}

uint64_t ds4_config_kv_bytes(const ds4_config *c, uint64_t n) {
    uint64_t b = 0;
    for (uint32_t il = 0; il < c->n_layer; il++) {
        b += (uint64_t)c->sliding_window * c->head_dim * 4; /* the raw window */
        const uint64_t r = c->compress_ratio[il];
        if (c->kind[il] == DS4_LAYER_SWA || !r) continue;
        const bool csa = c->kind[il] == DS4_LAYER_CSA;
        /* pending tokens (kv + gate, twice as wide when windows overlap), the carried
         * first half of the last window, and one entry per `ratio` tokens */
        const uint64_t d = c->head_dim, Id = c->indexer_dim;
        b += 2 * r * (csa ? 2 : 1) * d * 4 + (csa ? 2 * r * d * 4 : 0) + n / r * d * 4;
        if (csa) b += 2 * r * 2 * Id * 4 + 2 * r * Id * 4 + n / r * Id * 4; /* the indexer's keys */
    }
    return b;
}

uint64_t ds4_model_bytes_per_token(const ds4_model *m) {
    const ds4_config *c = &m->cfg;
    uint64_t total = 0;
    for (int il = -1; il < (int)c->n_layer; il++)
        for (int r = 0; r < DS4_T_COUNT; r++) {
            const gguf_tensor *t = ds4_model_tensor(m, il, (ds4_tensor_role)r);
            if (!t) continue;
            if (r == DS4_T_TOKEN_EMBD) total += t->size / t->ne[1];
            else if (ds4_role_class((ds4_tensor_role)r) == DS4_CLASS_EXPERTS)
                total += t->size / c->n_expert * c->n_expert_used;
            else total += t->size;
        }
    return total;
}

/* The most common type by bytes among the tensors of some roles. */
static uint32_t main_type(const ds4_model *m, bool experts) {
    uint64_t bytes[GGML_TYPE_COUNT] = {0};
    for (int il = 0; il < (int)m->cfg.n_layer; il++)
        for (int r = DS4_T_FIRST_LAYER; r < DS4_T_COUNT; r++) {
            const gguf_tensor *t = ds4_model_tensor(m, il, (ds4_tensor_role)r);
            const ds4_tensor_class cls = ds4_role_class((ds4_tensor_role)r);
            if (t && t->type < GGML_TYPE_COUNT && (experts ? cls == DS4_CLASS_EXPERTS : cls == DS4_CLASS_MATRIX))
                bytes[t->type] += t->size;
        }
    uint32_t best = 0;
    for (uint32_t t = 1; t < GGML_TYPE_COUNT; t++)
        if (bytes[t] > bytes[best]) best = t;
    return best;
}

const char *ds4_model_weight_type(const ds4_model *m) {
    static _Thread_local char buf[64];
    const gguf_tensor *gate = ds4_model_tensor(m, (int)m->cfg.n_layer - 1, DS4_T_FFN_GATE_EXPS);
    const gguf_tensor *down = ds4_model_tensor(m, (int)m->cfg.n_layer - 1, DS4_T_FFN_DOWN_EXPS);
    const uint32_t rest = main_type(m, false), experts = main_type(m, true);
    if (gate && down && gate->type != down->type)
        snprintf(buf, sizeof buf, "%s/%s+%s", ds4_type_name(gate->type), ds4_type_name(down->type),
                 ds4_type_name(rest));
    else if (experts != rest)
        snprintf(buf, sizeof buf, "%s+%s", ds4_type_name(experts), ds4_type_name(rest));
    else
        snprintf(buf, sizeof buf, "%s", ds4_type_name(rest));
    return buf;
}

void ds4_model_print_summary(const ds4_model *m, FILE *out) {
    const ds4_config *c = &m->cfg;
    uint64_t weight_bytes = 0;
    for (int il = -1; il < (int)c->n_layer; il++)
        for (int r = 0; r < DS4_T_COUNT; r++) {
            const gguf_tensor *t = ds4_model_tensor(m, il, (ds4_tensor_role)r);
            if (t) weight_bytes += t->size;
        }
    fprintf(out, "model: %s (DeepSeek V4, %u layers, %.3g M parameters, %.3g MiB file, %.3f bits per weight)\n",
            m->gguf->path, c->n_layer, (double)m->n_params / 1e6, (double)m->gguf->size / (1 << 20),
            m->n_params ? 8.0 * (double)weight_bytes / (double)m->n_params : 0.0);
    fprintf(out, "  hidden %u, vocab %u, context %llu, hyper-connection streams %u (sinkhorn %u)\n", c->n_embd,
            c->n_vocab, (unsigned long long)c->context_length, c->hc_mult, c->hc_sinkhorn_iters);
    fprintf(out, "  attention: %u heads x %u (rope %u), q_lora %u, output %u groups x %u, window %u\n",
            c->n_head, c->head_dim, c->rope_dim, c->q_lora_rank, c->o_groups, c->o_lora_rank, c->sliding_window);
    fprintf(out, "  indexer: %u heads x %u, top-k %u; rope base %g, compressed %g, yarn x%g from %u\n",
            c->indexer_heads, c->indexer_dim, c->indexer_topk, c->rope_base, c->compress_rope_base,
            c->rope_scale, c->rope_orig_ctx);
    fprintf(out, "  moe: %u experts (%u used, %u shared) x %u, %u hash layers, scale %g\n", c->n_expert,
            c->n_expert_used, c->n_expert_shared, c->expert_ff, c->n_hash_layers, c->expert_weights_scale);
    fprintf(out, "  layers:");
    for (uint32_t i = 0; i < c->n_layer; i++) {
        if (c->kind[i] == DS4_LAYER_SWA) fprintf(out, " swa");
        else fprintf(out, " %s/%u", layer_kind_name(c->kind[i]), c->compress_ratio[i]);
    }
    fprintf(out, "\n");
    uint64_t bytes[GGML_TYPE_COUNT] = {0}, count[GGML_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        bytes[m->gguf->tensors[i].type] += m->gguf->tensors[i].size;
        count[m->gguf->tensors[i].type]++;
    }
    fprintf(out, "  tensors:");
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (count[t]) fprintf(out, " %s %llu (%.3g MiB)", ds4_type_name((uint32_t)t), (unsigned long long)count[t],
                              (double)bytes[t] / (1 << 20));
    if (m->n_mtp_tensors) fprintf(out, "; %llu MTP tensors (unused)", (unsigned long long)m->n_mtp_tensors);
    fprintf(out, "\n");
}
