/* basefile.h - what a higher-precision "base" model predicts over a corpus, compactly,
 * so a quantized file can be judged against it later without running both at once
 * (llama-perplexity's --kl-divergence-base, in a smaller form). Per scored position: the
 * base's most likely tokens, at least min_k of them and more until they hold a given
 * share of the probability (at most max_k), with their logprobs (F32); the log of the
 * probability mass of all other tokens; and the logprob of the corpus's true next
 * token: 8 bytes per kept token + 12 (a peaked distribution keeps few, a flat one many).
 *
 * The header records what a comparison must share with the base: the vocabulary (its
 * size and a hash of the tokenizer), the window length, and a hash of the corpus's token
 * ids; also the base model's fingerprint, for the record. A trailing checksum covers
 * everything; a truncated, corrupt or foreign file is refused in one line. */
#ifndef DS4_BASEFILE_H
#define DS4_BASEFILE_H

#include <stdint.h>

#include "util.h"

typedef struct {
    uint32_t min_k, max_k;  /* tokens kept per position */
    float mass;             /* the share of probability they hold, when max_k allows */
    uint32_t n_vocab, ctx;
    uint64_t n_positions;
    uint64_t model_fingerprint, tokenizer_hash, corpus_hash;
} ds4_base_info;

/* One scored position. */
typedef struct {
    uint32_t n;         /* tokens kept */
    const int32_t *id;  /* most likely first */
    const float *lp;    /* their logprobs */
    float log_rest;     /* log of the mass outside them (-inf when none) */
    float lp_true;      /* logprob of the true next token */
} ds4_base_pos;

/* Writing: the header first, then exactly info->n_positions positions, then finish
 * (checksum, fsync, rename). Nothing appears at path unless finish succeeds. */
typedef struct ds4_base_writer ds4_base_writer;
ds4_base_writer *ds4_base_create(const char *path, const ds4_base_info *info);
int ds4_base_put(ds4_base_writer *w, const ds4_base_pos *pos);
int ds4_base_finish(ds4_base_writer *w);
void ds4_base_abort(ds4_base_writer *w);

/* Reading: the whole file checked (size, magic, version, every record's bounds, the
 * checksum) when opened; then the positions in order. */
typedef struct {
    ds4_mmap map;
    ds4_base_info info;
    uint64_t next;      /* offset of the next position */
} ds4_base_file;
int ds4_base_open(ds4_base_file *f, const char *path);
/* The next position (the first after open or rewind). */
ds4_base_pos ds4_base_next(ds4_base_file *f);
void ds4_base_rewind(ds4_base_file *f);
void ds4_base_close(ds4_base_file *f);

#endif
