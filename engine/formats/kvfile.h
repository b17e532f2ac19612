/* kvfile.h - a sequence's KV state (kvstate.h's layout) as bytes, so a long prompt is
 * never computed twice: header (magic, version, model fingerprint, token count, payload
 * sizes, checksum), the token ids the state stands for, then the state itself,
 * zstd-compressed. A corrupt, truncated or foreign file, or one whose counts do not fit
 * its position, is refused with a clear error; the format is the same from version 1
 * on, whichever backend made the state. (Files: forward/state.h.) */
#ifndef DS4_KVFILE_H
#define DS4_KVFILE_H

#include <stddef.h>
#include <stdint.h>

#include "kvstate.h"
#include "util.h"

/* The state (which has seen the n tokens given) of a model with this fingerprint, as
 * bytes appended to out. */
int ds4_kvfile_encode(const ds4_kv_snapshot *s, uint64_t fingerprint, const int32_t *tokens, uint64_t n, ds4_buf *out);
/* Back into s, which has the geometry of the model (path names the bytes in errors).
 * *tokens (malloc'd) and *n receive the ids it stands for. */
int ds4_kvfile_decode(const void *data, size_t len, const char *path, uint64_t fingerprint, uint32_t n_vocab,
                  ds4_kv_snapshot *s, int32_t **tokens, uint64_t *n);
/* Read only the header: a state file of this model (magic, version, fingerprint), and
 * how many tokens it stands for. -1 with the error set otherwise. */
int ds4_kvfile_peek(const char *path, uint64_t fingerprint, uint64_t *n_tokens);

#endif
