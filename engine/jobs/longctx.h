/* longctx.h - long-context self-consistency: the same tokens computed different ways
 * must give the same logits, at any length, with any weights (random ones included).
 *
 * For a length L it compares, at sampled positions: one prefill (stopping only at the
 * samples, the last stretch of 16 tokens one chunk); a chunked prefill whose chunk sizes
 * cycle through 1, 7, 64, 509 and 4096, then token-by-token decode over the stretch;
 * and, in a fresh process (fork, one thread, a new context; a second context in this
 * process on a GPU, whose context does not survive fork), the prefill's state saved
 * before the stretch, restored from a KV state file and decoded. Two prefills of L
 * tokens in all, which is what a 1M-token run costs. It also checks
 * that the KV state's size is what the architecture implies: per layer the raw window,
 * and for compressed layers the compressor buffers plus one entry per `ratio` tokens
 * (CSA: also the indexer's buffers and keys), never anything per raw token. */
#ifndef DS4_LONGCTX_H
#define DS4_LONGCTX_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"


typedef struct {
    uint64_t length;
    double max_dlogit_chunked, max_dlogit_decode, max_dlogit_restored; /* vs the full prefill */
    uint64_t kv_bytes, kv_bytes_expected;
    double prefill_tps, decode_tps, seconds;
    double indexer_share; /* of the reference prefill's wall time */
    int positions;
    char backend[32]; /* what ran it (ds4_ctx_backend) */
    bool pass; /* every difference <= tol and kv_bytes == expected */
} ds4_longctx_result;

/* Run the check for one length (seeded random token ids) in contexts made with opts,
 * with tolerance tol; tmpdir
 * holds the state file. -1 with the error set when it cannot run at all. */
int ds4_longctx_consistency(const ds4_model *m, const ds4_ctx_opts *opts, uint64_t length, uint64_t seed, double tol,
                            const char *tmpdir, ds4_longctx_result *r);

#endif
