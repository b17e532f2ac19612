/* logitcheck.h - compare this engine's logits with reference vectors (the JSONL format
 * of FORMATS.md): teacher-forced over each case's prompt, then a greedy continuation.
 * Statistics per case: |delta logit| where full logits are stored, KL(ref||ours) over
 * the reference top-k support, top-1 agreement, top-k overlap, Spearman rank
 * correlation (GSL), and where our greedy continuation first leaves the reference's. */
#ifndef DS4_LOGITCHECK_H
#define DS4_LOGITCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "tokenizer.h"

typedef struct {
    char id[160];
    int n_prompt;
    int n_positions;            /* distributions compared (prompt + matching greedy steps) */
    int full_positions;         /* positions with full reference logits */
    double max_dlogit, mean_dlogit;
    double max_dlogprob;        /* over the reference top-k support */
    double kl_mean, kl_max;
    double top1;                /* fraction of positions whose argmax agrees */
    double overlap;             /* mean fraction of the reference top-k in ours */
    double spearman;            /* mean rank correlation over the top-k support */
    int greedy_len, greedy_match; /* reference continuation length, agreeing prefix */
    double prefill_seconds, decode_seconds;
    char skipped[512];          /* why the case did not run (vectors for another vocabulary), or "" */
} ds4_lc_case;

typedef struct {
    ds4_lc_case *cases;
    int n_cases;
} ds4_lc_report;

/* Run every case of a .jsonl file (or every .jsonl file of a directory, sorted); the
 * caller picks vectors made for its model. A case is our JSONL format (prompt_ids, or a
 * text "prompt", or chat "messages" with "think"; top, full_logits, greedy, greedy_top)
 * or a DeepSeek API capture: {"id", "messages", "think": false, "response": <chat
 * completion with logprobs and top_logprobs>}. Text needs tok (may be NULL otherwise).
 * Appends to report. Returns -1 on unreadable or malformed vectors. In a directory,
 * a case whose ids or logits do not fit the model's vocabulary is recorded as skipped
 * (with the reason) and the run goes on; a single file that does not fit is an error. */
int ds4_logitcheck_path(ds4_ctx *ctx, const ds4_tokenizer *tok, const char *path, ds4_lc_report *report);

/* The same cases against another backend instead of their stored references
 * (ds4-logitcheck --ref-backend): ref, a context on the same model, runs each case's
 * prompt too, and its logits at every position are the reference (|dlogit| over the
 * whole vocabulary, the other statistics over its 64 likeliest tokens); then its greedy
 * continuation, as long as the case's own or `gen` tokens where the case has none, with
 * both contexts teacher-forced along it. The stored logits are not read. */
int ds4_logitcheck_path_ref(ds4_ctx *ctx, ds4_ctx *ref, int gen, const ds4_tokenizer *tok, const char *path,
                            ds4_lc_report *report);
/* One prompt of token ids the same way, as a case called `name`. */
int ds4_logitcheck_ids_ref(ds4_ctx *ctx, ds4_ctx *ref, int gen, const char *name, const int32_t *ids, size_t n,
                           ds4_lc_report *report);
void ds4_lc_report_free(ds4_lc_report *r);

/* Aggregate over the cases that ran (max of maxima, means of means weighted by positions). */
ds4_lc_case ds4_lc_overall(const ds4_lc_report *r);

#endif
