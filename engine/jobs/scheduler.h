/* scheduler.h - continuous batching: the generations of up to n_seq requests (the
 * context's sequences) advance together, one ds4_eval_many per step, so a decoded token
 * reads the weights once for every request in flight. Each step every active request
 * either feeds a piece of its prompt or its next token: decoding ones a token each, the
 * rest of the step's row budget shared out among the prefilling ones, so no request
 * waits for another's long prefill. A request that finishes frees its sequence for the
 * next at once. What each request computes is what it would compute alone. */
#ifndef DS4_SCHEDULER_H
#define DS4_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "generate.h"

typedef struct ds4_sched ds4_sched;

/* Called once per request when it ends: rc 0 (done) or -1 (failed, the error set; or
 * cancelled). The callee owns r. */
typedef void (*ds4_sched_done_fn)(void *arg, int rc, ds4_gen_result *r);

/* Over every sequence of ctx (made with opts.n_seq); budget: rows per step (0: 256). */
ds4_sched *ds4_sched_new(ds4_ctx *ctx, int budget);
void ds4_sched_free(ds4_sched *s); /* cancels what is in flight */

int ds4_sched_free_slots(const ds4_sched *s);
int ds4_sched_active(const ds4_sched *s);
/* Start a request on a free sequence: its slot, or -1 with the error set (no free slot,
 * or the cache could not be read). The prompt is copied. */
int ds4_sched_add(ds4_sched *s, const int32_t *prompt, uint64_t n, const ds4_gen_opts *o, ds4_sched_done_fn done,
                  void *arg);
/* Prompt tokens the request in `slot` restored from the cache. */
uint64_t ds4_sched_cached(const ds4_sched *s, int slot);
/* End a request early (its callback gets rc -1, the error "cancelled"). */
void ds4_sched_cancel(ds4_sched *s, int slot);
/* One step of every active request. -1 when the step itself fails: then every request
 * in it ends with that error. */
int ds4_sched_step(ds4_sched *s);

#endif
