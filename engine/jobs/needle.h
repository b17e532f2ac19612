/* needle.h - needle-in-a-haystack retrieval at long context, for real weights.
 *
 * A prompt of exactly `length` tokens: one user message (V4 chat template, thinking
 * off) holding a haystack of generated filler sentences with needles spliced in -
 * "The special magic number for <key> is <value>." - then the question for their
 * values. The prompt is assembled as token ids so that every length and depth is exact:
 * a needle at depth d starts after round(d * F) of the haystack's F filler tokens.
 * Optional distractors are the same sentence for other keys, at seeded depths. The
 * greedy answer passes when it holds every asked value as a whole number, and no
 * distractor's value.
 *
 * Random weights cannot find anything, so callers first check the model on plain
 * English (ds4_needle_english_nll): a trained model predicts it far better than chance. */
#ifndef DS4_NEEDLE_H
#define DS4_NEEDLE_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "tokenizer.h"

#define DS4_NEEDLE_MAX 16

typedef struct {
    uint64_t length;  /* prompt tokens in all */
    double depth;     /* of the first needle: 0 (the haystack's start) .. 1 (its end) */
    int needles;      /* 1..DS4_NEEDLE_MAX, the others spread evenly from `depth` on */
    bool distractors; /* two more sentences per needle, for other keys */
    uint64_t seed;    /* filler, keys, values and distractor depths */
} ds4_needle_spec;

typedef struct {
    char key[64], value[16];
    uint64_t pos, len;  /* the sentence's first token in the prompt, and its token count */
    uint64_t filler_before;
} ds4_needle;

typedef struct {
    int32_t *ids;
    uint64_t n;
    uint64_t haystack_start, haystack_len, filler_len;
    int n_needles, n_distractors;
    ds4_needle needle[DS4_NEEDLE_MAX], distractor[2 * DS4_NEEDLE_MAX];
    char question[2048];
} ds4_needle_prompt;

/* Builds the prompt; an error when the length cannot hold the template, the question
 * and the needles. Deterministic for a spec and tokenizer. */
int ds4_needle_build(const ds4_tokenizer *t, const ds4_needle_spec *s, ds4_needle_prompt *p);
void ds4_needle_prompt_free(ds4_needle_prompt *p);

/* Whether `value` (digits) appears in `answer` as a whole number: not part of a longer
 * run of digits, with digit-group separators (",", "_", " ", thin spaces) ignored. */
bool ds4_needle_answer_has(const char *answer, const char *value);

/* Mean negative log-likelihood (nats per token) of a fixed paragraph of plain English,
 * and chance level (the log of the vocabulary size). Resets the context. */
int ds4_needle_english_nll(ds4_ctx *ctx, const ds4_tokenizer *t, double *nll, double *chance);

typedef struct {
    int found;                        /* needles whose value the answer holds */
    bool found_each[DS4_NEEDLE_MAX];
    int distracted;                   /* distractor values it holds */
    bool pass;
    char answer[1024];                /* what was generated, cut to fit */
    double prefill_tps, decode_tps, seconds;
    uint64_t kv_bytes;
} ds4_needle_result;

/* Prefills the prompt (progress may be NULL), answers greedily for up to max_tokens or
 * the end-of-sequence token, and scores the answer. Resets the context first. */
int ds4_needle_run(ds4_ctx *ctx, const ds4_tokenizer *t, const ds4_needle_prompt *p, int max_tokens,
                   ds4_progress *progress, ds4_needle_result *r);

#endif
