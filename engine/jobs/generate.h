/* generate.h - the one generation loop of every tool (ds4 run, ds4 batch, the needle
 * test, ds4-bench, the server): the prompt prefilled through the KV cache
 * (kvcache_disk.h) or from a state already in the context, then one token at a time
 * sampled (greedy, or temperature + top-p), until max_tokens, the end-of-sequence token
 * or a stop string. Each token goes to a callback as it is made, with the text it
 * completes in whole UTF-8 characters; text that may be the start of a stop string is
 * held back until it is not. Timings of both phases come back.
 *
 * The loop is a state machine (ds4_gen) that says what to feed its sequence next and
 * takes the step's result, so one sequence runs alone (ds4_generate) or many run
 * together, a step each (scheduler.h). */
#ifndef DS4_GENERATE_H
#define DS4_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "kvcache_disk.h"
#include "progress.h"
#include "tokenizer.h"
#include "util.h"

typedef struct {
    /* prefill */
    ds4_kvcache *cache;        /* restore the longest cached prefix and store states (NULL: none) */
    uint64_t cache_period;     /* store every this many prompt tokens of a long prefill (0: never) */
    uint64_t cache_stable;     /* store at this prefix too, one other prompts share (0: none) */
    bool cache_reply;          /* store the state at the end too (prompt and reply: the next turn
                                  of a conversation starts with them), and every cache_period
                                  generated tokens */
    uint64_t resume;           /* leading prompt tokens the context holds already (a restored
                                  state): the prefill starts there, without the cache */
    ds4_progress *progress;    /* prefill progress (NULL: none) */
    /* Called once the prompt is in the context (ds4 run saves the state there); NULL: none. */
    int (*prefilled)(void *arg, ds4_ctx *ctx);
    void *prefilled_arg;

    /* decode */
    int max_tokens;
    float temperature, top_p;  /* temperature 0: greedy */
    uint64_t seed;
    const ds4_tokenizer *tok;  /* NULL: token ids only (no end of sequence, stops or text) */
    bool ignore_eos;           /* exactly max_tokens tokens (benchmarks) */
    bool show_special;         /* the text keeps control tokens (chat replies parse them) */
    const char *const *stops;  /* stop strings (the text ends before the first one found) */
    int n_stops;
    /* Each sampled token with the logits it was drawn from (log-probabilities), before it
     * is emitted; NULL: none. */
    int (*sampled)(void *arg, int32_t token, const float *logits, uint32_t n_vocab);
    /* Each token and the text it releases (may be empty; NULL without a tokenizer), and
     * at the end token -1 with what was held back; returning -1 stops the loop with an
     * error. NULL: none. */
    int (*emit)(void *arg, int32_t token, const char *text, size_t len);
    void *emit_arg;
} ds4_gen_opts;

typedef struct {
    uint64_t cached;           /* prompt tokens restored from the cache, not computed */
    int n_tokens;              /* generated, the end-of-sequence token not among them */
    int32_t *tokens;           /* their ids */
    ds4_buf text;              /* their text (with a tokenizer), cut before a stop string */
    const char *finish;        /* "length" or "stop" */
    int stop_index;            /* the stop string that ended it, or -1 (end of sequence, length) */
    double prefill_seconds, decode_seconds;
    int decode_steps;          /* forward passes of one token (n_tokens - 1 unless stopped) */
} ds4_gen_result;

/* Prefill prompt[0..n) (n > 0) and generate. -1 with the error set when the context
 * fails (r then holds what was made before). */
int ds4_generate(ds4_ctx *ctx, const int32_t *prompt, uint64_t n, const ds4_gen_opts *o, ds4_gen_result *r);
void ds4_gen_result_free(ds4_gen_result *r);

/* The state machine: started on a sequence (the prompt is copied; the cache is
 * consulted now), then, until done, `next` fills an item of the next step (a piece of
 * the prompt of at most `budget` tokens, or the token just sampled) and `advance` takes
 * its result once the step ran (cache states stored, the next token sampled, emitted,
 * the stop conditions checked). */
typedef struct ds4_gen ds4_gen;
ds4_gen *ds4_gen_start(ds4_ctx *seq, const int32_t *prompt, uint64_t n, const ds4_gen_opts *o);
bool ds4_gen_done(const ds4_gen *g);
bool ds4_gen_prefilling(const ds4_gen *g);
uint64_t ds4_gen_cached(const ds4_gen *g); /* prompt tokens restored from the cache */
void ds4_gen_next(ds4_gen *g, int budget, ds4_eval_item *item);
int ds4_gen_advance(ds4_gen *g);
/* After a step, before advance: pick the token advance would sample (if this step's
 * result is one it samples from), touching nothing but the generator's own sampler and
 * buffers, so the generators of one step draw on several threads; advance then uses it.
 * The same tokens as without it. */
void ds4_gen_draw(ds4_gen *g);
/* Store the sequence's state (the prompt and the reply so far) in the cache, between
 * steps: the scheduler does it for a request it cancels. A failure is a cache warning. */
void ds4_gen_checkpoint(ds4_gen *g);
/* What it made so far; the caller takes the result (the generator keeps nothing). */
void ds4_gen_take(ds4_gen *g, ds4_gen_result *r);
void ds4_gen_free(ds4_gen *g);

#endif
