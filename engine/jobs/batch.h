/* batch.h - offline jobs: requests from a JSONL file, one JSON result line per request,
 * in input order.
 *
 * Input lines: {"id", "prompt" | "messages" | "prompt_ids", "max_tokens", "temperature",
 * "top_p", "seed", "think", "stop"}. Output lines: {"id", "text", "reasoning",
 * "tool_calls", "tokens", "finish_reason", "prompt_tokens", "completion_tokens",
 * "prefill_tps", "decode_tps", "cached_tokens", "error"}. A bad line gets a result with
 * "error" (and "line", its line number) and the job goes on.
 *
 * Up to `parallel` requests run at once (continuous batching, scheduler.h: a finished
 * one makes room for the next line at once, new prompts prefill in pieces between the
 * others' decoded tokens); results still go out in input order, each in one write,
 * synced (appendfile.h; one job per output at a time, by a lock), and each is what the
 * request would get alone. Rerunning with the same output
 * resumes: a torn last line (a kill mid-write) is cut off, requests whose id already has
 * a line are skipped, so the output ends with neither gaps nor duplicates. Each result
 * records the model's fingerprint and a hash of its request ("model_fingerprint",
 * "request_hash"): a result made by another model, or for a request edited since, is
 * refused on resume, or with redo_stale removed (the output rewritten) and computed
 * again. An id that repeats in the input is reported and skipped. Through a KV cache
 * (kvcache_disk.h: memory, and a directory when given), prompts that share a prefix
 * (the same system messages, or leading prompt_ids shared with the request before)
 * reuse its state: the state at that prefix is saved the first time it is computed. */
#ifndef DS4_BATCH_H
#define DS4_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "kvcache_disk.h"
#include "tokenizer.h"

typedef struct {
    const char *in_path, *out_path;
    const char *csv_path;  /* per-request speeds, appended like the output, or NULL */
    ds4_kvcache *kvcache;  /* or NULL: no reuse */
    ds4_ctx_opts ctx;      /* the context the requests run in */
    int parallel;          /* requests in flight at once (0: 1) */
    uint64_t kv_max_bytes; /* KV memory the requests in flight may reach together (0: no limit) */
    bool quiet;            /* no progress line */
    int default_max_tokens;
    bool redo_stale;       /* compute again the results another model or request made */
} ds4_batch_opts;

#define DS4_BATCH_ERRORS_SHOWN 5
typedef struct {
    uint64_t requests;   /* input lines with content */
    uint64_t skipped;    /* already in the output */
    uint64_t duplicates; /* ids met before in the input */
    uint64_t done, errors;
    uint64_t prompt_tokens, cached_tokens, completion_tokens;
    double seconds;
    char first_errors[DS4_BATCH_ERRORS_SHOWN][256]; /* "id: why" of the first failed lines */
} ds4_batch_stats;

/* tok may be NULL (then only prompt_ids requests can run). A request that fails is an
 * error result, not a failure of the job. -2 when the job is refused before the first
 * request (unreadable input, an output that is the input or that another job holds,
 * stale results without redo_stale); -1 when it cannot go on (an output write fails:
 * a full disk). */
int ds4_batch_run(const ds4_model *m, const ds4_tokenizer *tok, const ds4_batch_opts *o, ds4_batch_stats *st);

#endif
