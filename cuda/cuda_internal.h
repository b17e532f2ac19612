/* cuda_internal.h - private to the C side of the CUDA backend (cuda_backend.c, cuda_forward.c,
 * cuda_state.c): the instance, which holds every weight and the KV state of every
 * sequence in device memory, and the chunk's activations there between the stages. */
#ifndef DS4_CUDA_INTERNAL_H
#define DS4_CUDA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "backend.h"
#include "cuda_stages.h"
#include "model.h"

typedef struct {
    ds4_cuda_matrix fn;   /* [mix, hc*D] */
    float *base, *scale;  /* device: mix, 3 */
} cuda_hc_weights;

/* A layer's weights as the stages use them: matrices in the arena, small parameters as
 * F32 in device memory. */
typedef struct {
    ds4_layer_kind kind;
    uint32_t ratio;
    float *attn_norm, *q_a_norm, *kv_norm, *sinks, *ffn_norm;
    float *comp_ape, *comp_norm, *idx_ape, *idx_norm;
    ds4_cuda_matrix q_a, q_b, kv, out_a, out_b, comp_kv, comp_gate, idx_q_b, idx_proj, idx_kv, idx_gate;
    cuda_hc_weights hc_attn, hc_ffn;
    ds4_cuda_ffn_layer ffn;
    const gguf_tensor *tid2eid; /* hash layers: the choices, read on the host */
} cuda_layer;

/* A sequence's KV state: each layer's buffers (kvstate.h's layout), the room for
 * compressed entries, and the tokens each layer has taken. */
typedef struct {
    ds4_cuda_kv_layer *layers;
    uint64_t *comp_cap, *idx_cap; /* entries each compressor has room for */
    uint64_t *pos;
    void *fixed;                  /* the windows and buffers, one allocation */
} cuda_seq;

/* Device buffers, one id for each that can be live at the same time as another. */
typedef enum {
    CB_STREAMS, CB_POST, CB_COMB, CB_X, CB_Y, CB_FLAT, CB_MIX,
    CB_QRES, CB_Q, CB_KV, CB_CKV, CB_CGATE, CB_IKV, CB_IGATE, CB_IQ, CB_IW,
    CB_SEGS, CB_OLDKV, CB_OLDPOS, CB_ROWPOS, CB_ROWSEG, CB_SCORES, CB_SEL, CB_NSEL, CB_ATTPART, CB_ATTML, CB_ATT, CB_GRP,
    CB_TOKENS, CB_CHOICE, CB_ROWS, CB_HEADX, CB_HEADOUT,
    CB_COUNT
} cuda_buf_id;

typedef struct {
    const gguf_tensor *host;
    uint64_t offset;
} cuda_resident;

/* The profile's timing marks (cuda_forward.c): the end of a stage, or the start and end
 * of a batch of products with the bytes each weight type read. */
#define CUDA_MARK_TYPES 4
typedef struct {
    enum { MARK_BASE, MARK_STAGE, MARK_PRODUCTS, MARK_PRODUCTS_END } kind;
    int stage, n_types;
    uint32_t type[CUDA_MARK_TYPES];
    uint64_t bytes[CUDA_MARK_TYPES];
} cuda_mark;

struct ds4_backend {
    const ds4_model *model;
    const ds4_config *cfg;
    ds4_cuda *dev;
    char name[96];
    cuda_resident *weights; /* by tensor */
    size_t n_weights;
    cuda_layer *layers;
    ds4_cuda_matrix embd, head_fn, output;
    float *out_norm, *head_base, *head_scale, *rope_main, *rope_comp; /* device */
    int n_seq;
    cuda_seq *seqs;
    void *buf[CB_COUNT];
    size_t cap[CB_COUNT];
    /* the chunk whose row positions and segments are on the device */
    ds4_segment *chunk_seg;
    int chunk_n_seg, chunk_T;
    cuda_mark marks[DS4_CUDA_MARKS];
    int n_marks;
    char err[320];
};

/* A device buffer of at least `bytes` (contents kept only while it is not outgrown);
 * NULL with the error set. */
void *ds4_cuda_buf(ds4_backend *b, cuda_buf_id id, size_t bytes);
/* Launch errors since the last check, as the backend's error (-1). */
int ds4_cuda_stage_done(ds4_backend *b, const char *what);

/* The stages (cuda_forward.c) and the state (cuda_state.c), for the table. */
int ds4_cuda_embed(ds4_backend *b, const int32_t *tokens, int T);
int ds4_cuda_hc_pre_stage(ds4_backend *b, int layer, ds4_hc_site site, int T);
int ds4_cuda_hc_post_stage(ds4_backend *b, int layer, ds4_hc_site site, int T);
int ds4_cuda_attn_project(ds4_backend *b, int layer, const ds4_chunk *c);
int ds4_cuda_kv_append_stage(ds4_backend *b, int layer, const ds4_chunk *c);
int ds4_cuda_indexer_select(ds4_backend *b, int layer, const ds4_chunk *c);
int ds4_cuda_attend_stage(ds4_backend *b, int layer, const ds4_chunk *c);
int ds4_cuda_ffn_stage(ds4_backend *b, int layer, const int32_t *tokens, int T);
int ds4_cuda_head(ds4_backend *b, const int *rows, float *const *out, int n_rows);
int ds4_cuda_chunk_read(ds4_backend *b, ds4_chunk_buf buf, int T, float *out);
int ds4_cuda_chunk_write(ds4_backend *b, ds4_chunk_buf buf, int T, const float *in);

int ds4_cuda_states_open(ds4_backend *b);
void ds4_cuda_states_close(ds4_backend *b);
/* Room for every compressed entry a sequence's layer holds after `pos` tokens. */
int ds4_cuda_state_reserve(ds4_backend *b, int seq, int layer, uint64_t pos);
void ds4_cuda_state_reset(ds4_backend *b, int seq);
int ds4_cuda_state_get(ds4_backend *b, int seq, ds4_kv_snapshot *out);
int ds4_cuda_state_set(ds4_backend *b, int seq, const ds4_kv_snapshot *in);
uint64_t ds4_cuda_state_bytes(const ds4_backend *b, int seq);

#endif
