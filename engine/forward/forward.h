/* forward.h - the DeepSeek-V4 forward pass over a per-sequence KV state: token
 * embedding, the hyper-connection residual streams, attention (sliding window, CSA with
 * its lightning indexer, HCA), the MoE feed-forward and the hyper-head, on the backend
 * the context was made with (backend.h).
 *
 * Tokens may be fed in chunks of any size: a chunk is computed as a batch for the
 * matrix products, then token by token for the state updates and attention, so chunked
 * prefill, token-by-token decode and one full pass give the same logits.
 *
 * A context may hold several sequences (opts.n_seq), each with its own KV state and
 * position, addressed through views (ds4_ctx_sequence): ds4_eval_many feeds tokens of
 * several of them in one step, the matrix products reading each weight once for all of
 * them, and every sequence gets the logits it would get alone. */
#ifndef DS4_FORWARD_H
#define DS4_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"
#include "progress.h"

typedef struct ds4_ctx ds4_ctx;

#define DS4_MAX_SEQ 1024

/* A context on the backend opts names (NULL: the defaults, the CPU); NULL with the
 * error set when the backend is not built or cannot take the model. */
ds4_ctx *ds4_ctx_new(const ds4_model *m, const ds4_ctx_opts *opts);
void ds4_ctx_free(ds4_ctx *c);
/* A view of sequence `seq` (< opts.n_seq) of the context: every function here then works
 * on that sequence. Freed with ds4_ctx_free, before the context it views. The context
 * ds4_ctx_new returns is sequence 0. */
ds4_ctx *ds4_ctx_sequence(ds4_ctx *c, int seq);
int ds4_ctx_n_seq(const ds4_ctx *c);
/* Forget the sequence (positions restart at 0); its memory is kept for the next one. */
void ds4_ctx_reset(ds4_ctx *c);

/* Feed n tokens at the current position. logits (may be NULL) receives n_vocab floats
 * per token when all_logits, else only for the last token. Token ids outside the
 * vocabulary, or more tokens than the context holds, are an error and leave the state
 * untouched. */
int ds4_eval(ds4_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits);

/* One step over several sequences of one context (distinct views): n tokens each
 * (prefill pieces and decoded tokens alike), logits as ds4_eval gives them. The whole
 * step is checked first; an error leaves every state untouched. */
typedef struct {
    ds4_ctx *seq;
    const int32_t *tokens;
    int n;
    float *logits; /* NULL: none */
    bool all_logits;
} ds4_eval_item;
int ds4_eval_many(const ds4_eval_item *items, int n_items);

/* ds4_eval of a long prompt (logits of its last token) in steps, reporting each step to
 * a progress line (may be NULL). */
int ds4_eval_progress(ds4_ctx *c, const int32_t *tokens, uint64_t n, float *logits, ds4_progress *progress);

uint64_t ds4_ctx_pos(const ds4_ctx *c);
uint32_t ds4_ctx_vocab(const ds4_ctx *c);
const ds4_model *ds4_ctx_model(const ds4_ctx *c);
uint64_t ds4_ctx_kv_bytes(const ds4_ctx *c);
/* What runs the context, for reports: "cpu-avx512". */
const char *ds4_ctx_backend(const ds4_ctx *c);
/* Read bandwidth of the memory its weights stream from, in GB/s (0: unknown). */
double ds4_ctx_probe_gbps(ds4_ctx *c);
/* The CPU threads it may use (ds4_ctx_opts.n_threads, or every CPU). */
int ds4_ctx_threads(const ds4_ctx *c);
/* Device memory in use by the backend's GPU (0 for the CPU). */
uint64_t ds4_ctx_device_bytes(ds4_ctx *c);
/* Wall seconds this context has spent in the lightning indexer (scoring every compressed
 * entry of CSA layers and keeping the top k), for reporting its share of the time. */
double ds4_ctx_indexer_seconds(const ds4_ctx *c);

/* The KV state in the neutral layout (kvstate.h): copied out into s (made with
 * ds4_model_kv_snapshot; its entries grow as needed), and in, after a check that its
 * counts fit its position. A failed set leaves the context reset. */
int ds4_ctx_state_get(ds4_ctx *c, ds4_kv_snapshot *s);
int ds4_ctx_state_set(ds4_ctx *c, const ds4_kv_snapshot *s);

#endif
