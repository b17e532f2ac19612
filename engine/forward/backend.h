/* backend.h - the boundary between the schedule of the forward pass (forward.c, written
 * once) and the machines that run it. A backend is a table of model-shaped stages plus
 * its KV state; each backend owns its kernels, fusion, buffers, weight residency (the
 * CPU reads the mapped file, a GPU uploads the weights once) and thread or stream
 * policy. A backend holds the states of n_seq sequences (slots), and a chunk is T
 * token rows from one or more of them: segments of consecutive tokens of one sequence
 * each, rows in segment order. forward.c calls, for a chunk:
 *
 *   embed; per layer: hc_pre(attention), attn_project, kv_append, indexer_select (CSA
 *   layers), attend, hc_post(attention), hc_pre(ffn), ffn, hc_post(ffn); then head.
 *
 * Row-wise stages (embed, hc_pre, hc_post, ffn, head and attention's projections) see
 * every row at once, so a weight is read once for all the chunk's sequences; attention
 * runs each segment against its own sequence's state. Each row's result is what the row
 * would get alone.
 *
 * The chunk's activations (the hyper-connection streams, the sublayer input and output,
 * attention's projections and selections) live in the backend between the calls; only
 * token ids go in and logits come out. A stage returns -1 with the error set (a device
 * out of memory, say); the schedule stops there and the context's state is left as the
 * backend left it. The CPU backend (cpu/) defines what every stage computes; others are
 * held to it stage by stage and on whole models.
 *
 * Backends register in backend.c: a known backend not compiled in ("metal") is refused
 * in one line, an unknown name lists the compiled ones, and there is no silent fallback
 * to the CPU. */
#ifndef DS4_BACKEND_H
#define DS4_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "kvstate.h"
#include "model.h"

/* How matrix products treat activations. F32: every weight row is dequantized and
 * multiplied with F32 activations (the reference). Q8: for every weight type with an
 * int8 kernel the activations are quantized to 8 bits once per product, as ggml does.
 * AUTO (the default): Q8 for the sub-8-bit formats, F32 for Q8_0, F16, BF16 and F32
 * weights, so a Q8_0 model stays within float rounding of a reference that rounds its
 * weights the same way. */
typedef enum { DS4_ACT_AUTO = 0, DS4_ACT_F32, DS4_ACT_Q8 } ds4_act_mode;
int ds4_act_mode_from_name(const char *name); /* "auto", "f32", "q8"; -1 otherwise */

/* An observer sees the input of every matrix product before it runs (importance-matrix
 * collection): the weight, its first row, T activation rows of ldx floats. */
typedef void (*ds4_matmul_observer)(void *ctx, const gguf_tensor *W, uint64_t row0, const float *x, uint64_t ldx,
                                    int T);

/* What a context is made with (ds4_ctx_new); zero values are the defaults. */
typedef struct {
    const char *backend;          /* "cpu" (the default), "cuda", "metal" */
    int device;                   /* which GPU, for GPU backends */
    int n_threads;                /* CPU threads (0: every CPU this process may use) */
    const char *cpu_level;        /* CPU kernels at most "scalar", "avx2" or "avx512" (NULL: the
                                     best this CPU has; tests compare the levels) */
    int n_batch;                  /* tokens per chunk of a prefill (0: 256) */
    ds4_act_mode act;
    ds4_matmul_observer observer; /* NULL: none */
    void *observer_ctx;
    int n_seq;                    /* sequences the context holds at once (0: 1) */
    uint64_t kv_capacity;         /* tokens a sequence may hold (0: as many as memory allows; a
                                     backend that reserves its state up front reserves the
                                     model's context length) */
} ds4_ctx_opts;

typedef enum { DS4_SITE_ATTN = 0, DS4_SITE_FFN = 1 } ds4_hc_site;

/* n tokens of sequence `seq` at positions pos0..pos0+n-1, rows row0..row0+n-1 of the chunk. */
typedef struct {
    int seq, row0, n;
    uint64_t pos0;
} ds4_segment;

typedef struct {
    const ds4_segment *seg;
    int n_seg, T;
} ds4_chunk;

/* The chunk's activations between stages, by name, for tests that run one stage on two
 * backends from the same inputs (ggml's test-backend-ops idea): per token the streams
 * (hc*D floats), the sublayer's input x and output y (D), attention's queries (H*d) and
 * K=V row (d). */
typedef enum { DS4_CHUNK_STREAMS, DS4_CHUNK_X, DS4_CHUNK_Y, DS4_CHUNK_Q, DS4_CHUNK_KV } ds4_chunk_buf;
uint64_t ds4_chunk_floats(const ds4_config *c, ds4_chunk_buf buf); /* per token */

typedef struct ds4_backend ds4_backend;

typedef struct {
    const char *name;
    /* The backend times its stages itself for the profile (ds4_prof_stage_time: a device's
     * events, without waiting for it stage by stage); the schedule then only counts them. */
    bool device_clock;
    /* Bind the model's weights and make an empty state; -1 with the error set. */
    int (*open)(const ds4_model *m, const ds4_ctx_opts *o, ds4_backend **out);
    void (*close)(ds4_backend *b);
    /* What runs it, for reports: "cpu-avx512", "cuda-H200". */
    const char *(*describe)(const ds4_backend *b);

    /* The stages, in the order forward.c calls them. */
    int (*embed)(ds4_backend *b, const int32_t *tokens, int T);
    /* Mix the streams (mixer, Sinkhorn), collapse them into the sublayer input, norm it. */
    int (*hc_pre)(ds4_backend *b, int layer, ds4_hc_site site, int T);
    /* Low-rank Q, the shared K=V head and the compressor and indexer inputs, normed and
     * rotated. */
    int (*attn_project)(ds4_backend *b, int layer, const ds4_chunk *c);
    /* The window and the compressors take the chunk's tokens, in order. */
    int (*kv_append)(ds4_backend *b, int layer, const ds4_chunk *c);
    /* CSA layers: each token's top-k compressed entries by the lightning indexer. */
    int (*indexer_select)(ds4_backend *b, int layer, const ds4_chunk *c);
    /* Softmax with sinks over each token's keys, inverse RoPE, grouped output projection. */
    int (*attend)(ds4_backend *b, int layer, const ds4_chunk *c);
    /* Write the sublayer's output back into the streams. */
    int (*hc_post)(ds4_backend *b, int layer, ds4_hc_site site, int T);
    /* Router, shared and routed experts (hash-routed layers look up `tokens`). */
    int (*ffn)(ds4_backend *b, int layer, const int32_t *tokens, int T);
    /* Hyper-head, final norm and LM head for the chunk's rows listed (increasing): V
     * floats for rows[i] into host memory at out[i]. */
    int (*head)(ds4_backend *b, const int *rows, float *const *out, int n_rows);

    /* A sequence's KV state: forgotten (its memory kept for the next), copied out into a
     * snapshot of the model's geometry (its entries grown as needed), copied in (checked
     * already), and its size. */
    void (*state_reset)(ds4_backend *b, int seq);
    int (*state_get)(ds4_backend *b, int seq, ds4_kv_snapshot *out);
    int (*state_set)(ds4_backend *b, int seq, const ds4_kv_snapshot *in);
    uint64_t (*state_bytes)(const ds4_backend *b, int seq);

    /* Read bandwidth of the memory the weights stream from, in GB/s (0: unknown). */
    double (*probe_gbps)(ds4_backend *b);
    /* Bytes of a GPU's memory in use (the weights, the state, the buffers); NULL for the
     * CPU, whose memory the process's resident size reports. */
    uint64_t (*device_bytes)(ds4_backend *b);

    /* For tests: a chunk buffer of T tokens copied out (after the stage that fills it)
     * or in (before a stage that reads it). */
    int (*chunk_read)(ds4_backend *b, ds4_chunk_buf buf, int T, float *out);
    int (*chunk_write)(ds4_backend *b, ds4_chunk_buf buf, int T, const float *in);
} ds4_backend_ops;

/* The backend called `name` (NULL: "cpu"); NULL with the error set when it is not in
 * this build. `*not_built` tells a known backend missing here from an unknown name. */
const ds4_backend_ops *ds4_backend_find(const char *name, bool *not_built);
/* The names of the compiled backends, comma-separated: "cpu" or "cpu, cuda". */
const char *ds4_backend_names(void);

#endif
