/* kvfile.h - a sequence's KV state as a file, so a long prompt is never computed twice:
 * header (magic, version, model fingerprint, token count, payload sizes, checksum), the
 * token ids the state stands for, then the state itself, zstd-compressed. Written
 * through a temporary file (fsync, rename); a corrupt, truncated or foreign file is
 * refused with a clear error and never loaded. */
#ifndef DS4_KVFILE_H
#define DS4_KVFILE_H

#include <stdint.h>

#include "forward.h"
#include "util.h"

/* Hash of a model's metadata and tensor table: what a saved state belongs to. */
uint64_t ds4_model_fingerprint(const ds4_model *m);

/* Save the state of ctx, which has consumed the n tokens given. */
int ds4_kv_save(const ds4_ctx *ctx, const int32_t *tokens, uint64_t n, const char *path);
/* The same as bytes appended to out, and back (path names the bytes in errors). */
int ds4_kv_encode(const ds4_ctx *ctx, const int32_t *tokens, uint64_t n, ds4_buf *out);
int ds4_kv_decode(ds4_ctx *ctx, const void *data, size_t len, const char *path, int32_t **tokens, uint64_t *n);

/* Read only the header: a state file of this model (magic, version, fingerprint), and
 * how many tokens it stands for. -1 with the error set otherwise. */
int ds4_kv_peek(const char *path, const ds4_model *m, uint64_t *n_tokens);
/* Load a saved state into ctx (reset first). *tokens (malloc'd) and *n receive the ids it
 * stands for. On any error ctx is left reset. */
int ds4_kv_load(ds4_ctx *ctx, const char *path, int32_t **tokens, uint64_t *n);

#endif
