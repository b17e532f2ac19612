/* forward_impl.h - private to the forward pass (forward.c, attention.c, moe.c): the
 * per-layer weights as the code uses them and the context. */
#ifndef DS4_FORWARD_IMPL_H
#define DS4_FORWARD_IMPL_H

#include "forward.h"
#include "kvstate.h"
#include "matmul.h"
#include "ops.h"
#include "vec.h"

typedef struct {
    const gguf_tensor *fn;  /* [mix, hc*D] */
    float *base, *scale;    /* mix, 3 */
} ds4_hc_weights;

typedef struct {
    ds4_layer_kind kind;
    int ratio;
    float *attn_norm, *q_a_norm, *kv_norm, *sinks, *ffn_norm;
    const gguf_tensor *q_a, *q_b, *kv, *out_a, *out_b;
    const gguf_tensor *comp_kv, *comp_gate, *idx_q_b, *idx_proj, *idx_kv, *idx_gate;
    float *comp_ape, *comp_norm, *idx_ape, *idx_norm;
    ds4_hc_weights hc_attn, hc_ffn;
    const gguf_tensor *gate_inp, *gate_exps, *up_exps, *down_exps, *gate_sh, *up_sh, *down_sh;
    float *exp_bias;           /* NULL on hash layers */
    const gguf_tensor *tid2eid; /* NULL unless hash layer */
    float limit, limit_shared;
} ds4_layer_weights;

/* Per-call work buffers of the forward pass, owned by the context and only grown, so
 * that once warm a decoded token allocates nothing. One id per buffer that can be live
 * at the same time as another. */
typedef enum {
    SB_STREAMS, SB_FLAT, SB_MIX, SB_POST, SB_COMB, SB_X, SB_Y, SB_TMP,                       /* forward.c */
    SB_QRES, SB_Q, SB_KV, SB_ATT, SB_GRP, SB_CKV, SB_CGATE, SB_IKV, SB_IGATE, SB_IQ, SB_IW, /* attention.c */
    SB_NENT, SB_WIN, SB_WINPOS, SB_KEYS, SB_LOGITS, SB_KT, SB_HEAP, SB_TOPK, SB_SEL, SB_NSEL,
    SB_ROUTER, SB_CHOICE, SB_WEIGHT, SB_ROWS, SB_SLOT, SB_OWNER, SB_XS, SB_YS, SB_HG, SB_HU, SB_SG, SB_SU, /* moe.c */
    SB_SCORE, SB_BIASED, SB_COUNT_E,
    SB_COUNT
} ds4_scratch_id;

struct ds4_ctx {
    const ds4_model *model;
    const ds4_config *cfg;
    int n_threads, n_batch;
    ds4_layer_weights *layers;
    ds4_layer_state *state;
    float *out_norm, *head_base, *head_scale;
    float *rope_main, *rope_comp; /* inv_freq, rope_dim / 2 each */
    uint64_t pos;
    double indexer_seconds;
    void *scratch[SB_COUNT];
    size_t scratch_cap[SB_COUNT];
};

/* A work buffer of at least `bytes` (contents not kept across calls); NULL with the
 * error set when memory runs out. */
void *ds4_ctx_scratch(ds4_ctx *c, ds4_scratch_id id, size_t bytes);

/* attention.c: x [T][D] (normalized) -> out [T][D] for tokens at positions pos0.. */
int ds4_attention(ds4_ctx *c, int il, const float *x, int T, uint64_t pos0, float *out);
/* moe.c: x [T][D] -> out [T][D] */
int ds4_moe(ds4_ctx *c, int il, const float *x, const int32_t *tokens, int T, float *out);

#endif
