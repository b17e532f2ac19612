/* batch.h - offline jobs: requests from a JSONL file, one JSON result line per request,
 * in input order.
 *
 * Input lines: {"id", "prompt" | "messages" | "prompt_ids", "max_tokens", "temperature",
 * "top_p", "seed", "think", "stop"}. Output lines: {"id", "text", "reasoning",
 * "tool_calls", "tokens", "finish_reason", "prompt_tokens", "completion_tokens",
 * "prefill_tps", "decode_tps", "cached_tokens", "error"}. A bad line gets a result with
 * "error" (and "line", its line number) and the job goes on.
 *
 * Every result line goes out in one write and is synced before the next request starts.
 * Rerunning with the same output resumes: a torn last line (a kill mid-write) is cut
 * off, requests whose id already has a line are skipped, so the output ends with
 * neither gaps nor duplicates. Through a KV cache (kvcache_disk.h: memory, and a
 * directory when given), prompts that share a prefix (the same system messages, or
 * leading prompt_ids shared with the request before) reuse its state: the state at that
 * prefix is saved the first time it is computed. */
#ifndef DS4_BATCH_H
#define DS4_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "kvcache_disk.h"
#include "tokenizer.h"

typedef struct {
    const char *in_path, *out_path;
    const char *csv_path;  /* per-request speeds of this run, or NULL */
    ds4_kvcache *kvcache;  /* or NULL: no reuse */
    int n_threads;
    int default_max_tokens;
} ds4_batch_opts;

typedef struct {
    uint64_t requests;   /* input lines with content */
    uint64_t skipped;    /* already in the output */
    uint64_t done, errors;
    uint64_t prompt_tokens, cached_tokens, completion_tokens;
    double seconds;
} ds4_batch_stats;

/* tok may be NULL (then only prompt_ids requests can run). -1 only when the job itself
 * cannot go on (unreadable input, unwritable output). */
int ds4_batch_run(const ds4_model *m, const ds4_tokenizer *tok, const ds4_batch_opts *o, ds4_batch_stats *st);

#endif
