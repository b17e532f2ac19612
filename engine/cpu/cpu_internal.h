/* cpu_internal.h - private to the CPU backend (cpu_*.c): its instance, which holds the
 * per-layer weights as the stages use them (matrices straight from the mapped file,
 * small parameters copied to F32 once), the KV state in kvstate.h's layout, the
 * chunk's activations between stages, and work buffers that only grow, so that once
 * warm a decoded token allocates nothing. */
#ifndef DS4_CPU_INTERNAL_H
#define DS4_CPU_INTERNAL_H

#include <stdlib.h>

#include "backend.h"
#include "kvstate.h"
#include "matmul.h"
#include "model.h"
#include "util.h"
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
    float *exp_bias;            /* NULL on hash layers */
    const gguf_tensor *tid2eid; /* NULL unless hash layer */
    float limit, limit_shared;
} ds4_layer_weights;

/* Work buffers, one id for each that can be live at the same time as another. The
 * first group carries the chunk from one stage to the next. */
typedef enum {
    SB_STREAMS, SB_POST, SB_COMB, SB_X, SB_Y,                                     /* hyper-connections */
    SB_QRES, SB_Q, SB_KV, SB_CKV, SB_CGATE, SB_IKV, SB_IGATE, SB_IQ, SB_IW,       /* attention, between stages */
    SB_NENT, SB_WIN, SB_WINPOS, SB_OLDKV, SB_OLDPOS, SB_SEL, SB_NSEL, SB_ATT,
    SB_FLAT, SB_MIX, SB_TMP, SB_HEAD,                                             /* hc scratch */
    SB_GRP, SB_KEYS, SB_LOGITS, SB_KT, SB_HEAP, SB_TOPK,                          /* attention scratch */
    SB_ROUTER, SB_CHOICE, SB_WEIGHT, SB_ROWS, SB_SLOT, SB_OWNER, SB_XS, SB_YS, SB_HG, SB_HU, SB_SG, SB_SU, /* moe */
    SB_SCORE, SB_BIASED, SB_COUNT_E,
    SB_COUNT
} ds4_scratch_id;

struct ds4_backend {
    const ds4_model *model;
    const ds4_config *cfg;
    ds4_matmul_ctx mm;          /* threads, activation mode, observer */
    ds4_layer_weights *layers;
    ds4_kv_snapshot *states;    /* each sequence's KV state, in the neutral layout */
    int n_seq;
    float *out_norm, *head_base, *head_scale;
    float *rope_main, *rope_comp; /* inv_freq, rope_dim / 2 each */
    const float **old_kv;       /* kv_append -> attend: per segment, its window before the chunk */
    const int64_t **old_pos;
    char description[96];
    void *scratch[SB_COUNT];
    size_t scratch_cap[SB_COUNT];
};

/* A work buffer of at least `bytes` (contents kept only while its size is not
 * outgrown); NULL with the error set when memory runs out. */
static inline void *ds4_cpu_scratch(ds4_backend *b, ds4_scratch_id id, size_t bytes) {
    if (bytes > b->scratch_cap[id]) {
        free(b->scratch[id]);
        b->scratch_cap[id] = 0;
        if (!(b->scratch[id] = ds4_malloc(bytes))) return NULL;
        b->scratch_cap[id] = bytes;
    }
    return b->scratch[id];
}

/* A buffer an earlier stage of the chunk filled. */
static inline void *ds4_cpu_chunk(ds4_backend *b, ds4_scratch_id id) { return b->scratch[id]; }

/* The stages (backend.h), by file: cpu_hc.c, cpu_attention.c, cpu_moe.c. */
int ds4_cpu_embed(ds4_backend *b, const int32_t *tokens, int T);
int ds4_cpu_hc_pre(ds4_backend *b, int layer, ds4_hc_site site, int T);
int ds4_cpu_hc_post(ds4_backend *b, int layer, ds4_hc_site site, int T);
int ds4_cpu_head(ds4_backend *b, const int *rows, float *const *out, int n_rows);
int ds4_cpu_attn_project(ds4_backend *b, int layer, const ds4_chunk *c);
int ds4_cpu_kv_append(ds4_backend *b, int layer, const ds4_chunk *c);
int ds4_cpu_indexer_select(ds4_backend *b, int layer, const ds4_chunk *c);
int ds4_cpu_attend(ds4_backend *b, int layer, const ds4_chunk *c);
int ds4_cpu_ffn(ds4_backend *b, int layer, const int32_t *tokens, int T);

/* cpu_kv.c: one token into a layer's window; one token's projections into a
 * compressor, finishing an entry (RMSNorm by `norm`, RoPE) when it closes a window
 * (-1 when memory runs out). */
void ds4_cpu_window_push(ds4_kv_layer *l, const float *kv, int64_t pos);
int ds4_cpu_compressor_push(ds4_backend *b, ds4_kv_compressor *c, const float *kv, const float *gate,
                            const float *bias, const float *norm);

#endif
