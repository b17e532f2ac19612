/* hf_config.c - see hf_config.h. Defaults are transformers' DeepseekV4Config defaults,
 * so a config.json that leaves a key out means what it means to transformers. */
#include "hf_config.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_object *get(json_object *o, const char *key) {
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null) ? v : NULL;
}

/* Integer key: must be a whole non-negative number if present. */
static int get_u32(json_object *o, const char *key, uint32_t *out, bool required, uint32_t def) {
    json_object *v = get(o, key);
    if (!v) {
        if (required) return ds4_fail("config.json: missing %s", key);
        *out = def;
        return 0;
    }
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return ds4_fail("config.json: %s is not a number", key);
    double d = json_object_get_double(v);
    if (d < 0 || d > UINT32_MAX || d != floor(d)) return ds4_fail("config.json: %s = %g is not a valid count", key, d);
    *out = (uint32_t)d;
    return 0;
}

static int get_f32(json_object *o, const char *key, float *out, float def) {
    json_object *v = get(o, key);
    *out = def;
    if (!v) return 0;
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return ds4_fail("config.json: %s is not a number", key);
    *out = (float)json_object_get_double(v);
    return 0;
}

static const char *get_str(json_object *o, const char *key) {
    json_object *v = get(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int64_t get_token_id(json_object *o, const char *key) {
    json_object *v = get(o, key);
    if (v && json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0)
        v = json_object_array_get_idx(v, 0);
    return v && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
}

/* Attention schedule: layer kinds and compress ratios. */
static int read_layer_kinds(json_object *root, ds4_config *c) {
    uint32_t csa_rate = 4, hca_rate = 128;
    json_object *rates = get(root, "compress_rates");
    if (rates && (get_u32(rates, "compressed_sparse_attention", &csa_rate, false, 4) < 0 ||
                  get_u32(rates, "heavily_compressed_attention", &hca_rate, false, 128) < 0))
        return -1;
    if (get_u32(root, "compress_rate_csa", &csa_rate, false, csa_rate) < 0 ||
        get_u32(root, "compress_rate_hca", &hca_rate, false, hca_rate) < 0)
        return -1;

    json_object *types = get(root, "layer_types"), *ratios = get(root, "compress_ratios");
    if (types) {
        if (!json_object_is_type(types, json_type_array) || json_object_array_length(types) < c->n_layer)
            return ds4_fail("config.json: layer_types must list every layer");
        for (uint32_t i = 0; i < c->n_layer; i++) {
            const char *t = json_object_get_string(json_object_array_get_idx(types, i));
            if (t && !strcmp(t, "sliding_attention")) { c->kind[i] = DS4_LAYER_SWA; c->compress_ratio[i] = 0; }
            else if (t && !strcmp(t, "compressed_sparse_attention")) { c->kind[i] = DS4_LAYER_CSA; c->compress_ratio[i] = csa_rate; }
            else if (t && !strcmp(t, "heavily_compressed_attention")) { c->kind[i] = DS4_LAYER_HCA; c->compress_ratio[i] = hca_rate; }
            else return ds4_fail("config.json: layer_types[%u] = '%s' is not a DeepSeek-V4 layer type", i, t ? t : "?");
        }
        return 0;
    }
    if (ratios) {
        /* The release lists one extra trailing entry for the MTP layer. */
        if (!json_object_is_type(ratios, json_type_array) || json_object_array_length(ratios) < c->n_layer)
            return ds4_fail("config.json: compress_ratios must list every layer");
        for (uint32_t i = 0; i < c->n_layer; i++) {
            json_object *v = json_object_array_get_idx(ratios, i);
            int64_t r = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
            if (r < 0 || r == 1 || r > (1 << 20)) return ds4_fail("config.json: compress_ratios[%u] is invalid", i);
            c->compress_ratio[i] = (uint32_t)r;
            c->kind[i] = r == 0 ? DS4_LAYER_SWA : (uint32_t)r == csa_rate ? DS4_LAYER_CSA : DS4_LAYER_HCA;
        }
        return 0;
    }
    /* transformers' default schedule: two HCA layers, then CSA and HCA interleaved. */
    for (uint32_t i = 0; i < c->n_layer; i++) {
        bool csa = i >= 2 && (i - 2) % 2 == 1;
        c->kind[i] = csa ? DS4_LAYER_CSA : DS4_LAYER_HCA;
        c->compress_ratio[i] = csa ? csa_rate : hca_rate;
    }
    return 0;
}

static int read_hash_layers(json_object *root, ds4_config *c) {
    json_object *types = get(root, "mlp_layer_types");
    if (!types) return get_u32(root, "num_hash_layers", &c->n_hash_layers, false, 3);
    if (!json_object_is_type(types, json_type_array) || json_object_array_length(types) < c->n_layer)
        return ds4_fail("config.json: mlp_layer_types must list every layer");
    c->n_hash_layers = 0;
    for (uint32_t i = 0; i < c->n_layer; i++) {
        const char *t = json_object_get_string(json_object_array_get_idx(types, i));
        bool hash = t && !strcmp(t, "hash_moe");
        if (!hash && !(t && !strcmp(t, "moe")))
            return ds4_fail("config.json: mlp_layer_types[%u] = '%s' is not hash_moe or moe", i, t ? t : "?");
        if (hash && c->n_hash_layers != i)
            return ds4_fail("config.json: hash_moe layers must come first (layer %u)", i);
        c->n_hash_layers += hash;
    }
    return 0;
}

/* RoPE: the compressed layers' YaRN parameters and the rotary dimension. */
static int read_rope(json_object *root, ds4_config *c) {
    json_object *rp = get(root, "rope_parameters"), *main = get(rp, "main"), *comp = get(rp, "compress");
    json_object *yarn = comp ? comp : get(root, "rope_scaling");
    if (!yarn && rp && !main) yarn = rp; /* flat rope_parameters */
    if (get_f32(root, "rope_theta", &c->rope_base, 10000.0f) < 0 ||
        get_f32(main, "rope_theta", &c->rope_base, c->rope_base) < 0 ||
        get_f32(root, "compress_rope_theta", &c->compress_rope_base, 160000.0f) < 0 ||
        get_f32(comp, "rope_theta", &c->compress_rope_base, c->compress_rope_base) < 0)
        return -1;
    const char *type = yarn ? get_str(yarn, "rope_type") : NULL;
    if (!type && yarn) type = get_str(yarn, "type");
    c->rope_scale = 1.0f;
    if (type && !strcmp(type, "yarn")) {
        if (get_f32(yarn, "factor", &c->rope_scale, 1.0f) < 0 ||
            get_u32(yarn, "original_max_position_embeddings", &c->rope_orig_ctx, true, 0) < 0 ||
            get_f32(yarn, "beta_fast", &c->yarn_beta_fast, 32.0f) < 0 ||
            get_f32(yarn, "beta_slow", &c->yarn_beta_slow, 1.0f) < 0)
            return -1;
    } else if (type && strcmp(type, "default")) {
        return ds4_fail("config.json: rope type '%s' is not supported (default or yarn)", type);
    }
    uint32_t rope_dim = 0;
    if (get_u32(root, "qk_rope_head_dim", &rope_dim, false, 0) < 0) return -1;
    if (!rope_dim) {
        float frac;
        if (get_f32(root, "partial_rotary_factor", &frac, 0.0f) < 0 ||
            (frac == 0.0f && get_f32(main, "partial_rotary_factor", &frac, 64.0f / 512.0f) < 0))
            return -1;
        rope_dim = (uint32_t)lroundf(frac * (float)c->head_dim);
    }
    c->rope_dim = rope_dim;
    return 0;
}

int ds4_hf_config_load(const char *path, ds4_hf_config *out) {
    memset(out, 0, sizeof *out);
    ds4_config *c = &out->cfg;
    char *text = ds4_read_file(path, NULL);
    if (!text) return -1;
    json_object *root = json_tokener_parse(text);
    free(text);
    if (!root || !json_object_is_type(root, json_type_object)) {
        if (root) json_object_put(root);
        return ds4_fail("%s: not a JSON object", path);
    }
    const char *type = get_str(root, "model_type");
    const char *scoring = get_str(root, "scoring_func");
    json_object *norm = get(root, "norm_topk_prob"), *qc = get(root, "quantization_config"), *blk = get(qc, "weight_block_size");
    int rc = -1;
    if (type && strcmp(type, "deepseek_v4")) {
        ds4_fail("model_type is '%s', expected 'deepseek_v4'", type);
        goto done;
    }
    uint32_t window;
    if (get_u32(root, "num_hidden_layers", &c->n_layer, true, 0) < 0 ||
        get_u32(root, "hidden_size", &c->n_embd, true, 0) < 0 ||
        get_u32(root, "vocab_size", &c->n_vocab, true, 0) < 0 ||
        get_u32(root, "num_attention_heads", &c->n_head, true, 0) < 0 ||
        get_u32(root, "num_key_value_heads", &c->n_head_kv, false, 1) < 0 ||
        get_u32(root, "head_dim", &c->head_dim, true, 0) < 0 ||
        get_u32(root, "q_lora_rank", &c->q_lora_rank, true, 0) < 0 ||
        get_u32(root, "o_groups", &c->o_groups, true, 0) < 0 ||
        get_u32(root, "o_lora_rank", &c->o_lora_rank, true, 0) < 0 ||
        get_u32(root, "window_size", &window, false, 128) < 0 ||
        get_u32(root, "sliding_window", &c->sliding_window, false, window) < 0 ||
        get_u32(root, "n_routed_experts", &c->n_expert, true, 0) < 0 ||
        get_u32(root, "num_experts_per_tok", &c->n_expert_used, true, 0) < 0 ||
        get_u32(root, "n_shared_experts", &c->n_expert_shared, false, 1) < 0 ||
        get_u32(root, "moe_intermediate_size", &c->expert_ff, true, 0) < 0 ||
        get_u32(root, "hc_mult", &c->hc_mult, false, 4) < 0 ||
        get_u32(root, "hc_sinkhorn_iters", &c->hc_sinkhorn_iters, false, 20) < 0 ||
        get_u32(root, "index_n_heads", &c->indexer_heads, false, 64) < 0 ||
        get_u32(root, "index_head_dim", &c->indexer_dim, false, 128) < 0 ||
        get_u32(root, "index_topk", &c->indexer_topk, false, 512) < 0 ||
        get_u32(root, "num_nextn_predict_layers", &out->n_nextn, false, 0) < 0 ||
        get_f32(root, "rms_norm_eps", &c->rms_eps, 1e-6f) < 0 ||
        get_f32(root, "hc_eps", &c->hc_eps, 1e-6f) < 0 ||
        get_f32(root, "routed_scaling_factor", &c->expert_weights_scale, 1.5f) < 0)
        goto done;
    if (c->n_layer == 0 || c->n_layer > DS4_MAX_LAYERS) {
        ds4_fail("num_hidden_layers %u is out of range (1..%d)", c->n_layer, DS4_MAX_LAYERS);
        goto done;
    }
    uint32_t max_pos;
    if (get_u32(root, "max_position_embeddings", &max_pos, false, 1048576) < 0) goto done;
    c->context_length = max_pos;
    c->value_dim = c->head_dim;
    c->expert_weights_norm = norm ? json_object_get_boolean(norm) : true;
    if (!scoring || !strcmp(scoring, "sqrtsoftplus")) c->gating_func = DS4_GATING_SQRT_SOFTPLUS;
    else if (!strcmp(scoring, "softmax")) c->gating_func = DS4_GATING_SOFTMAX;
    else if (!strcmp(scoring, "sigmoid")) c->gating_func = DS4_GATING_SIGMOID;
    else {
        ds4_fail("scoring_func '%s' is not supported", scoring);
        goto done;
    }
    float limit;
    if (get_f32(root, "swiglu_limit", &limit, 10.0f) < 0) goto done;
    for (uint32_t i = 0; i < c->n_layer; i++) c->swiglu_limit[i] = c->swiglu_limit_shared[i] = limit;
    out->fp8_block[0] = out->fp8_block[1] = 128;
    if (blk && json_object_is_type(blk, json_type_array) && json_object_array_length(blk) == 2) {
        for (int i = 0; i < 2; i++) {
            int64_t b = json_object_get_int64(json_object_array_get_idx(blk, i));
            if (b <= 0 || b > 65536) {
                ds4_fail("quantization_config.weight_block_size is invalid");
                goto done;
            }
            out->fp8_block[i] = (uint32_t)b;
        }
    }
    json_object *tie = get(root, "tie_word_embeddings");
    out->tied_embeddings = tie && json_object_get_boolean(tie);
    out->bos_id = get_token_id(root, "bos_token_id");
    out->eos_id = get_token_id(root, "eos_token_id");
    if (read_layer_kinds(root, c) < 0 || read_hash_layers(root, c) < 0 || read_rope(root, c) < 0 ||
        ds4_config_check(c) < 0)
        goto done;
    rc = 0;
done:
    json_object_put(root);
    if (rc < 0) ds4_error_prefix(path);
    return rc;
}
