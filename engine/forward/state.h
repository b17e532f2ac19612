/* state.h - a context's KV state as a state file (kvfile.h) or its bytes, so a long
 * prompt is never computed twice: saved through a temporary file (fsync, rename), and
 * loaded only after the whole file checks out. The state passes through the neutral
 * layout, so a file saved on one backend restores on another. */
#ifndef DS4_STATE_H
#define DS4_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "util.h"

/* Save the state of ctx, which has consumed the n tokens given. */
int ds4_kv_save(ds4_ctx *ctx, const int32_t *tokens, uint64_t n, const char *path);
/* The same as bytes appended to out, and back (path names the bytes in errors). */
int ds4_kv_encode(ds4_ctx *ctx, const int32_t *tokens, uint64_t n, ds4_buf *out);
int ds4_kv_decode(ds4_ctx *ctx, const void *data, size_t len, const char *path, int32_t **tokens, uint64_t *n);
/* Load a saved state into ctx. *tokens (malloc'd) and *n receive the ids it stands for.
 * On any error ctx is left reset. */
int ds4_kv_load(ds4_ctx *ctx, const char *path, int32_t **tokens, uint64_t *n);
/* Read only the header: a state file of this model, and how many tokens it stands for.
 * -1 with the error set otherwise. */
int ds4_kv_peek(const char *path, const ds4_model *m, uint64_t *n_tokens);

#endif
