/* perplexity.h - a model scored over a corpus of token ids: perplexity, and against a
 * base file (basefile.h) of a higher-precision model, KL(base || model), top-1
 * agreement and how the true token's probability moved.
 *
 * The window strategy is llama-perplexity's: the corpus is cut into windows of ctx
 * tokens (what does not fill a last window is left out); each window starts from an
 * empty state, with its first token replaced by BOS when the vocabulary has one, and
 * the predictions of its second half are scored (the logits at positions ctx/2 .. ctx-2
 * against the tokens that follow them), so every scored token sees at least ctx/2
 * tokens of context. Windows are fed in pieces, so memory is one piece's logits.
 *
 * KL from the compact base: the base's kept tokens (enough for a share `mass` of its
 * probability, default 0.99999), then everything else as one bucket (its mass stored,
 * the model's mass of the same tokens computed), so
 * sum_k p_k log(p_k / q_k) + p_rest log(p_rest / q_rest): never above the
 * full-vocabulary KL, and short of it only by what the last 1e-5 of the base's
 * probability would add. */
#ifndef DS4_PERPLEXITY_H
#define DS4_PERPLEXITY_H

#include <stdbool.h>
#include <stdint.h>

#include "basefile.h"
#include "forward.h"
#include "progress.h"
#include "tokenizer.h"

#define DS4_PPL_KEEP_MAX 4096 /* tokens a base keeps per position at most */

typedef struct {
    uint32_t ctx;                 /* window length (>= 4) */
    int32_t bos;                  /* the first token of every window (-1: none) */
    ds4_base_writer *save;        /* store the model's predictions as a base (NULL: no) */
    uint32_t min_k, max_k;        /* with save: tokens kept per position */
    double mass;                  /* with save: keep tokens until they hold this share */
    ds4_base_file *base;          /* compare with this base (NULL: perplexity only) */
    ds4_progress *progress;       /* NULL: none */
} ds4_ppl_opts;

/* Statistics over some scored positions (a window, or all of them). */
typedef struct {
    uint64_t first_window, windows, tokens;
    double ppl, ppl_base;                          /* ppl_base: with a base */
    double kl_mean, kl_median, kl_p99, kl_max;     /* with a base */
    double top1;                                   /* fraction agreeing with the base's argmax */
    double dp_mean, dp_p01, dp_p99;                /* p_base(true) - p(true): mean and percentiles */
} ds4_ppl_stats;

/* Histograms of the per-position KL (decades from 1e-9 to 10, below and above) and of
 * p_base(true) - p(true) (40 bins of 0.05 over [-1, 1]). */
#define DS4_KL_BINS 12
#define DS4_DP_BINS 40
typedef struct {
    uint64_t kl[DS4_KL_BINS], dp[DS4_DP_BINS];
} ds4_ppl_hist;

/* Called after each window with its statistics (-1 stops the run). */
typedef int (*ds4_ppl_window_fn)(void *arg, const ds4_ppl_stats *window);

/* A corpus: a text file through the tokenizer (plain text: no BOS, special tokens as
 * text), or with ids_file a file of token ids separated by commas or whitespace. */
int ds4_corpus_read(const char *path, bool ids_file, const ds4_tokenizer *tok, int32_t **ids, uint64_t *n);

/* The windows the corpus makes at this length: n / ctx. */
uint64_t ds4_ppl_windows(uint64_t n_tokens, uint32_t ctx);
/* A hash of the corpus as the windows see it (the ids and ctx), for the base's header. */
uint64_t ds4_ppl_corpus_hash(const int32_t *ids, uint64_t n, uint32_t ctx);
/* The number of positions scored: windows x (ctx/2 - 1). */
uint64_t ds4_ppl_positions(uint64_t n_tokens, uint32_t ctx);

/* Score the corpus; with o->base its header must match the corpus, the window and the
 * vocabulary (checked by the caller: ds4_ppl_check_base). */
int ds4_perplexity(ds4_ctx *ctx, const int32_t *ids, uint64_t n, const ds4_ppl_opts *o, ds4_ppl_window_fn on_window,
                   void *arg, ds4_ppl_stats *overall, ds4_ppl_hist *hist);
/* -1 with the reason unless the base was made over this corpus, window and vocabulary. */
int ds4_ppl_check_base(const ds4_base_info *b, const int32_t *ids, uint64_t n, uint32_t ctx, uint32_t n_vocab,
                       uint64_t tokenizer_hash);

#endif
