/* model.h - the DeepSeek-V4 model as described by a GGUF file: hyper-parameters read
 * from `deepseek4.*` metadata (never from constants, so the same code serves a 2 MB
 * test model and the 284B Flash), the set of tensors those parameters imply with their
 * ggml shapes, and validation that a file holds exactly that set in supported types.
 *
 * Tensor names and metadata keys are llama.cpp's `deepseek4` ones, which the original
 * ds4 engine shares; its differences (vocab_size present, MTP in `mtp.0.*`) and
 * llama.cpp's (no vocab_size, MTP as an extra `blk.L.nextn.*` block) are both accepted. */
#ifndef DS4_MODEL_H
#define DS4_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fill.h"
#include "gguf.h"
#include "kvstate.h"

#define DS4_ARCH "deepseek4"
#define DS4_MAX_LAYERS 256
#define DS4_HC_MAX 64 /* hyper-connection streams */

typedef enum { DS4_LAYER_SWA = 0, DS4_LAYER_CSA, DS4_LAYER_HCA } ds4_layer_kind;

/* Router scoring functions, numbered as llama.cpp's expert_gating_func. */
enum { DS4_GATING_SOFTMAX = 1, DS4_GATING_SIGMOID = 2, DS4_GATING_SQRT_SOFTPLUS = 4 };

typedef struct {
    uint32_t n_layer, n_embd, n_vocab;
    uint32_t n_head, n_head_kv, head_dim, value_dim, rope_dim;
    uint32_t q_lora_rank, o_groups, o_lora_rank, sliding_window;
    uint32_t n_expert, n_expert_used, n_expert_shared, expert_ff, n_hash_layers, gating_func;
    uint32_t hc_mult, hc_sinkhorn_iters;
    uint32_t indexer_heads, indexer_dim, indexer_topk;
    uint64_t context_length;
    uint32_t rope_orig_ctx;        /* YaRN original context (0: no YaRN) */
    float rms_eps, rope_base, compress_rope_base;
    float rope_scale, yarn_beta_fast, yarn_beta_slow; /* YaRN, compressed layers only */
    float expert_weights_scale, hc_eps;
    bool expert_weights_norm;
    uint32_t compress_ratio[DS4_MAX_LAYERS];
    ds4_layer_kind kind[DS4_MAX_LAYERS];
    float swiglu_limit[DS4_MAX_LAYERS];        /* routed experts */
    float swiglu_limit_shared[DS4_MAX_LAYERS]; /* shared expert */
} ds4_config;

/* Every tensor of the architecture. Global ones first, then per-layer ones. */
typedef enum {
    DS4_T_TOKEN_EMBD, DS4_T_OUTPUT_NORM, DS4_T_OUTPUT, DS4_T_OUTPUT_HC_FN, DS4_T_OUTPUT_HC_BASE,
    DS4_T_OUTPUT_HC_SCALE,
    DS4_T_ATTN_NORM, DS4_T_ATTN_Q_A, DS4_T_ATTN_Q_A_NORM, DS4_T_ATTN_Q_B, DS4_T_ATTN_KV,
    DS4_T_ATTN_KV_NORM, DS4_T_ATTN_OUT_A, DS4_T_ATTN_OUT_B, DS4_T_ATTN_SINKS,
    DS4_T_HC_ATTN_FN, DS4_T_HC_ATTN_BASE, DS4_T_HC_ATTN_SCALE,
    DS4_T_HC_FFN_FN, DS4_T_HC_FFN_BASE, DS4_T_HC_FFN_SCALE,
    DS4_T_COMP_KV, DS4_T_COMP_GATE, DS4_T_COMP_APE, DS4_T_COMP_NORM,
    DS4_T_IDX_Q_B, DS4_T_IDX_PROJ, DS4_T_IDX_COMP_KV, DS4_T_IDX_COMP_GATE, DS4_T_IDX_COMP_APE,
    DS4_T_IDX_COMP_NORM,
    DS4_T_FFN_NORM, DS4_T_FFN_GATE_INP, DS4_T_FFN_EXP_PROBS_B, DS4_T_FFN_TID2EID,
    DS4_T_FFN_GATE_EXPS, DS4_T_FFN_UP_EXPS, DS4_T_FFN_DOWN_EXPS,
    DS4_T_FFN_GATE_SHEXP, DS4_T_FFN_UP_SHEXP, DS4_T_FFN_DOWN_SHEXP,
    DS4_T_COUNT
} ds4_tensor_role;
#define DS4_T_FIRST_LAYER DS4_T_ATTN_NORM

/* How a tensor is stored and computed with. */
typedef enum {
    DS4_CLASS_VECTOR,  /* norms, sinks, biases, hc base/scale: F32 */
    DS4_CLASS_INDEX,   /* integer tables (tid2eid): I32 */
    DS4_CLASS_SMALL,   /* precision-sensitive matrices: hc fns, position biases, router */
    DS4_CLASS_MATRIX,  /* ordinary weight matrices */
    DS4_CLASS_EXPERTS, /* stacked routed experts */
} ds4_tensor_class;

typedef struct {
    char name[GGUF_MAX_NAME];
    ds4_tensor_role role;
    int layer; /* -1 for global tensors */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
} ds4_tensor_spec;

ds4_tensor_class ds4_role_class(ds4_tensor_role role);

/* The tensors a config implies, in canonical file order. Caller frees *specs. */
int ds4_expected_tensors(const ds4_config *c, ds4_tensor_spec **specs, size_t *n);

/* Read and check the hyper-parameters of a deepseek4 GGUF. */
int ds4_config_from_gguf(const gguf_file *f, ds4_config *c);
/* Write the config as deepseek4.* metadata (the inverse of ds4_config_from_gguf). */
int ds4_config_to_gguf(const ds4_config *c, gguf_writer *w);
/* DeepSeek V4 Flash's shape (shared/MODEL.md), with the number of layers and of
 * routed experts as given (0: Flash's 43 and 256), for size plans and Flash-shaped
 * synthetic models. */
void ds4_config_flash(ds4_config *c, uint32_t n_layer, uint32_t n_expert);

/* Consistency checks shared by the loader and the converter. */
int ds4_config_check(const ds4_config *c);

typedef struct {
    gguf_file *gguf;
    ds4_config cfg;
    const gguf_tensor **tensors; /* (n_layer + 1) * DS4_T_COUNT; index via ds4_model_tensor */
    uint64_t n_params;
    uint64_t n_mtp_tensors; /* next-token-prediction tensors present but not used */
    ds4_tensor_fill *fills; /* tensors the file leaves as holes, made by the backend (fill.h) */
    size_t n_fills;
} ds4_model;

/* Open, read the config and validate the tensor set; on failure the error lists every
 * missing or mismatching tensor (up to a limit). */
ds4_model *ds4_model_load(const char *path);
ds4_model *ds4_model_from_gguf(gguf_file *f); /* takes ownership of f */
void ds4_model_free(ds4_model *m);
/* The model takes the fills (and their pools) of a synthetic file's holes; -1 (the fills
 * freed) when one names no tensor of the model or does not match its size. */
int ds4_model_attach_fills(ds4_model *m, ds4_tensor_fill *fills, size_t n);
/* The fill that makes tensor t, or NULL (its bytes are in the file). */
const ds4_tensor_fill *ds4_model_fill(const ds4_model *m, const gguf_tensor *t);
const gguf_tensor *ds4_model_tensor(const ds4_model *m, int layer, ds4_tensor_role role);
void ds4_model_print_summary(const ds4_model *m, FILE *out);
/* Hash of the file's metadata and tensor table: what a saved state belongs to. */
uint64_t ds4_model_fingerprint(const ds4_model *m);
/* The KV state bytes a config implies after n tokens (kvstate.h's layout). */
uint64_t ds4_config_kv_bytes(const ds4_config *c, uint64_t n_tokens);
/* An empty KV state (kvstate.h) of the model's geometry. */
int ds4_model_kv_snapshot(const ds4_model *m, ds4_kv_snapshot *s);
/* Weight bytes one decoded token reads: every tensor once, except the embedding (one row)
 * and the routed experts (n_expert_used of n_expert per MoE layer). */
uint64_t ds4_model_bytes_per_token(const ds4_model *m);
/* The weight types as a short name: "q8_0", or the routed experts' type(s) and the other
 * matrices' for mixed files ("iq2_xxs/q2_K+q8_0", "mxfp4+q8_0"). */
const char *ds4_model_weight_type(const ds4_model *m);

#endif
