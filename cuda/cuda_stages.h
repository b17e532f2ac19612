/* cuda_stages.h - the device side of the CUDA backend's stages other than the matrix
 * products (cuda_matmul.h): device memory and copies, the hyper-connections (cuda_hc.cu)
 * and attention with its KV state (cuda_attention.cu). Every pointer is device memory
 * unless it says host; every call is queued on the device's stream, and launch errors
 * surface at the next ds4_cuda_check or ds4_cuda_to_host. Each kernel computes what the
 * CPU stage of the same name computes (engine/cpu/), in the same order where a sum's
 * order is the CPU's and in a fixed order where it is a reduction, so a result is the
 * same bits on every run. */
#ifndef DS4_CUDA_STAGES_H
#define DS4_CUDA_STAGES_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_matmul.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- memory (cuda_memory.cu) ---- */

/* bytes of device memory (NULL with err set); freed by ds4_cuda_free (NULL is fine). */
void *ds4_cuda_malloc(ds4_cuda *c, uint64_t bytes, char *err, size_t cap);
void ds4_cuda_free(ds4_cuda *c, void *p);
/* host -> device (the host bytes may be reused on return), device -> device, zero bytes
 * (0xff bytes when ones: -1 for every int64). */
void ds4_cuda_to_device(ds4_cuda *c, void *dst, const void *host, uint64_t bytes);
void ds4_cuda_copy(ds4_cuda *c, void *dst, const void *src, uint64_t bytes);
void ds4_cuda_set(ds4_cuda *c, void *dst, int ones, uint64_t bytes);
/* device -> host, waiting for everything queued before; -1 with err (naming `what`) when
 * the device failed. */
int ds4_cuda_to_host(ds4_cuda *c, void *host, const void *src, uint64_t bytes, const char *what, char *err, size_t cap);
/* -1 with err when a launch failed since the last check. */
int ds4_cuda_check(ds4_cuda *c, const char *what, char *err, size_t cap);

/* ---- decode steps as graphs (cuda_graph.cu) ---- */

/* The work queued from ds4_cuda_graph_begin to ds4_cuda_graph_end is captured and then
 * launched as one CUDA graph, kept for the slot (a layer of the step) and updated in
 * place by its next capture; begin is a no-op while a capture runs. What cannot be
 * captured ends it first: allocating or freeing device memory, the host waiting for the
 * device (ds4_cuda_to_host, the grouped MoE), an upload that finds no staging room. Off
 * with DS4_CUDA_NO_GRAPHS=1 (and in the profile, whose marks need each stage live). */
void ds4_cuda_graph_begin(ds4_cuda *c, int slot, int key); /* key: what else shapes it (the rows) */
int ds4_cuda_graph_end(ds4_cuda *c, char *err, size_t cap);

/* ---- timing marks, for the profile (cuda_memory.cu) ---- */

/* Mark i (< DS4_CUDA_MARKS) recorded on the stream after everything queued so far; the
 * seconds from mark `from` to mark `to` once the device has passed `to` (it waits). */
#define DS4_CUDA_MARKS 4096
int ds4_cuda_mark(ds4_cuda *c, int i, char *err, size_t cap);
double ds4_cuda_mark_seconds(ds4_cuda *c, int from, int to);

/* ---- hyper-connections (cuda_hc.cu) ---- */

/* dst[r] = src[rows ? rows[r] : r] RMS-normalised over n values (times weight when not
 * NULL); rows ld_dst and ld_src floats apart; dst may be src. */
void ds4_cuda_rmsnorm(ds4_cuda *c, float *dst, uint64_t ld_dst, const float *src, uint64_t ld_src, const int32_t *rows,
                      int n_rows, int n, const float *weight, float eps);

/* A site's mixing weights and the collapse of the streams (cpu_hc.c): for each row r of
 * mix (nm = (2 + hc) * hc floats; the head's: hc; with norm_mix the mixer's product of
 * the raw streams, scaled here by their inverse RMS), pre = sigmoid(mix * scale[0] + base)
 * + hc_eps; with post/comb not NULL also the post weights and the Sinkhorn-normalised
 * combination; then x[r] = RMSNorm(sum_j pre[j] * streams[row][j]) times norm. */
typedef struct {
    int hc, D, sinkhorn_iters, nm, norm_mix;
    float hc_eps, rms_eps;
    const float *scale, *base, *norm;
} ds4_cuda_hc_site;
void ds4_cuda_hc_pre(ds4_cuda *c, const ds4_cuda_hc_site *s, const float *mix, const float *streams,
                     const int32_t *rows, int n_rows, float *post, float *comb, float *x);
/* streams[t][k] = post[t][k] * y[t] + sum_j comb[t][j][k] * streams[t][j]. */
void ds4_cuda_hc_post(ds4_cuda *c, int hc, int D, int T, float *streams, const float *y, const float *post,
                      const float *comb);
/* x[i] *= s for n floats. */
void ds4_cuda_scale(ds4_cuda *c, float *x, uint64_t n, float s);

/* ---- attention (cuda_attention.cu) ---- */

/* For each of T rows of `heads` vectors of n floats: RMSNorm (when norm; times weight
 * when not NULL), then the trailing rope_dim values rotated by the row's position
 * (pos[t]) with inv_freq (not rotated when NULL). */
void ds4_cuda_norm_rope(ds4_cuda *c, float *x, int T, int heads, int n, int norm, const float *weight, float eps,
                        int rope_dim, const float *inv_freq, const int64_t *pos);

/* A compressor's state on the device (kvstate.h's, the counts implied by the position). */
typedef struct {
    float *buf_kv, *buf_gate;   /* ratio x proj */
    float *prev_kv, *prev_gate; /* ratio x width (overlap) */
    float *entries;             /* room for every entry the chunk makes */
} ds4_cuda_comp;

/* A sequence's layer state. */
typedef struct {
    float *window_kv;           /* cap x dim */
    int64_t *window_pos;
    ds4_cuda_comp comp, indexer;
} ds4_cuda_kv_layer;

/* A segment of the chunk for the attention kernels: its rows, its first position, its
 * sequence's layer state, and the window as it was before the chunk (old_kv/old_pos: a
 * copy the append makes when the segment has several tokens, else the window itself). */
typedef struct {
    ds4_cuda_kv_layer st;
    float *old_kv;
    int64_t *old_pos;
    int32_t row0, n;
    int64_t pos0;
} ds4_cuda_seg;

/* A compressor's geometry and weights (width 0: none). */
typedef struct {
    uint32_t width, ratio;
    int overlap;
    const float *ape, *norm;    /* ratio x proj position biases, width norm weights */
} ds4_cuda_comp_params;

/* The chunk's tokens into the windows and compressors, segment by segment in order
 * (cpu_kv.c): kv rows of dim floats, the compressor's projections ckv/cgate (proj
 * floats a row) and the indexer's ikv/igate. */
typedef struct {
    const ds4_cuda_seg *segs;   /* device */
    int n_seg;
    uint32_t cap, dim, rope_dim;
    float rms_eps;
    const float *rope;          /* the compressed layers' inv_freq */
    const float *kv, *ckv, *cgate, *ikv, *igate;
    ds4_cuda_comp_params comp, indexer;
} ds4_cuda_append;
void ds4_cuda_kv_append(ds4_cuda *c, const ds4_cuda_append *a);

/* Per row of the chunk (device arrays the backend keeps for a chunk): its segment and
 * position. */
typedef struct {
    const ds4_cuda_seg *segs;
    const int32_t *row_seg;
    const int64_t *row_pos;
    int T;
} ds4_cuda_rows_of;

/* The lightning indexer (indexer.c): row t's scores sum_h relu(q_h . k) / sqrt(Id) *
 * w[h] over the (pos + 1) / ratio indexer entries it sees, each a chain of fused
 * multiply-adds in index order as on the CPU, into scores (ld_scores floats a row); then
 * its top-k by indexer.h's ranking, as increasing indices into sel (topk a row), the
 * count into n_sel. */
void ds4_cuda_indexer(ds4_cuda *c, const ds4_cuda_rows_of *r, const float *iq, const float *iw, int heads, int dim,
                      uint32_t ratio, uint32_t topk, uint64_t max_entries, float *scores, int32_t *sel,
                      int32_t *n_sel);

/* Attention (cpu_attention.c's attend, before the output projection): row t, head h:
 * softmax with the head's sink over its window keys (ring slot order) then its
 * compressed entries (HCA: all (pos + 1) / ratio; CSA: sel), K = V, output rotated back
 * by -pos, into att (heads x dim a row). Each row's keys are taken in `splits` ranges
 * (ds4_cuda_attend_splits), whose partial results go to part (T x heads x splits x dim)
 * and part_ml (T x heads x splits x 2). */
typedef struct {
    int heads, dim, rope_dim;
    uint32_t cap, ratio;
    int kind;                   /* 0 window only, 1 CSA (sel), 2 HCA (every entry) */
    const float *q, *kv, *sinks, *rope;
    const int32_t *sel, *n_sel;
    uint32_t topk;
    int splits;
    float *part, *part_ml, *att;
} ds4_cuda_attend_job;
void ds4_cuda_attend(ds4_cuda *c, const ds4_cuda_rows_of *r, const ds4_cuda_attend_job *j);
/* Ranges to split each row's keys into (at most max_keys of them), so that a chunk of T
 * rows fills the device. */
int ds4_cuda_attend_splits(const ds4_cuda *c, int T, int heads, uint64_t max_keys);

#ifdef __cplusplus
}
#endif

#endif
