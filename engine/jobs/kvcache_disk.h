/* kvcache_disk.h - saved KV states (kvfile.h) in memory and in a directory, so prompts
 * that share a prefix (a system prompt, a long document) are prefilled once across
 * requests and runs. A stored state is written through to disk and kept in memory while
 * it fits the memory limit, so reuse within a process reads no file.
 *
 * Each state is `<sha1>.kv`, the SHA-1 of the token ids it stands for. A new prompt gets
 * the longest cached prefix: for each cached length the prompt's own prefix is hashed and
 * looked up, and the file's token list is compared with the prompt before it is trusted.
 * The directory stays under a space limit by evicting the least recently used states
 * (file times record use, so the order survives restarts). Writes are atomic (temp file,
 * fsync, rename); a corrupt, truncated or foreign file is reported, removed and never
 * loaded. Files are read and written with plain I/O, not mapped. */
#ifndef DS4_KVCACHE_DISK_H
#define DS4_KVCACHE_DISK_H

#include <stdint.h>

#include "forward.h"

typedef struct ds4_kvcache ds4_kvcache;

typedef struct {
    uint64_t hits, tokens_restored, stores, evictions, rejected;
    uint64_t entries, bytes; /* now */
} ds4_kvcache_stats;

/* Called with a one-line message for every file rejected or evicted (may be NULL). */
typedef void (*ds4_kvcache_warn_fn)(const char *msg);

/* Open (creating the directory if needed; NULL: memory only) with limits in bytes for
 * the directory and for the states also kept in memory; scans what is there. */
ds4_kvcache *ds4_kvcache_open(const char *dir, uint64_t space_bytes, uint64_t mem_bytes, const ds4_model *m,
                              ds4_kvcache_warn_fn warn);
void ds4_kvcache_close(ds4_kvcache *c);

/* Restore into ctx the longest cached prefix of tokens[0..n) no longer than max_tokens
 * tokens. Returns its length (0: nothing cached, ctx reset), or -1 on an I/O error. */
int64_t ds4_kvcache_restore(ds4_kvcache *c, ds4_ctx *ctx, const int32_t *tokens, uint64_t n, uint64_t max_tokens);
/* Save ctx's state, which has consumed tokens[0..n), then evict to the limit. */
int ds4_kvcache_store(ds4_kvcache *c, ds4_ctx *ctx, const int32_t *tokens, uint64_t n);
ds4_kvcache_stats ds4_kvcache_get_stats(const ds4_kvcache *c);

/* How many leading ids two prompts share (the prefix a state saved for one would give
 * the other). */
uint64_t ds4_shared_prefix(const int32_t *a, uint64_t na, const int32_t *b, uint64_t nb);

/* A one-line message to the cache's warning callback (a state that could not be saved). */
void ds4_kvcache_warn(const ds4_kvcache *c, const char *msg);

#endif
