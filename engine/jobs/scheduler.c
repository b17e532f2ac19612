/* scheduler.c - see scheduler.h. */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>

#include "threads.h"

#define DEFAULT_BUDGET 256
#define MIN_PIECE 16 /* prompt tokens a prefilling request gets per step at least */

typedef struct {
    ds4_ctx *seq;
    ds4_gen *gen;           /* NULL: free */
    ds4_sched_done_fn done;
    void *arg;
} slot;

struct ds4_sched {
    slot *slots;
    int n, budget, next_first; /* next_first: where the next step starts sharing prompt rows */
    int threads;               /* the context's, for drawing the sequences' tokens */
    ds4_eval_item *items;
    int *item_slot;
};

ds4_sched *ds4_sched_new(ds4_ctx *ctx, int budget) {
    ds4_sched *s = ds4_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = ds4_ctx_n_seq(ctx);
    s->threads = ds4_ctx_threads(ctx);
    s->budget = budget > 0 ? budget : DEFAULT_BUDGET;
    s->slots = ds4_calloc((size_t)s->n, sizeof *s->slots);
    s->items = ds4_calloc((size_t)s->n, sizeof *s->items);
    s->item_slot = ds4_calloc((size_t)s->n, sizeof *s->item_slot);
    if (!s->slots || !s->items || !s->item_slot) {
        ds4_sched_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n; i++)
        if (!(s->slots[i].seq = ds4_ctx_sequence(ctx, i))) {
            ds4_sched_free(s);
            return NULL;
        }
    return s;
}

/* The request in slot i ends: its result to its callback, the slot freed. */
static void end(ds4_sched *s, int i, int rc) {
    slot *sl = &s->slots[i];
    ds4_gen_result r;
    ds4_gen_take(sl->gen, &r);
    ds4_gen_free(sl->gen);
    sl->gen = NULL;
    sl->done(sl->arg, rc, &r);
}

void ds4_sched_cancel(ds4_sched *s, int i) {
    if (i < 0 || i >= s->n || !s->slots[i].gen) return;
    ds4_gen_checkpoint(s->slots[i].gen);
    ds4_fail("cancelled");
    end(s, i, -1);
}

void ds4_sched_free(ds4_sched *s) {
    if (!s) return;
    for (int i = 0; s->slots && i < s->n; i++) {
        ds4_sched_cancel(s, i);
        ds4_ctx_free(s->slots[i].seq);
    }
    free(s->slots);
    free(s->items);
    free(s->item_slot);
    free(s);
}

int ds4_sched_active(const ds4_sched *s) {
    int n = 0;
    for (int i = 0; i < s->n; i++) n += s->slots[i].gen != NULL;
    return n;
}

uint64_t ds4_sched_cached(const ds4_sched *s, int i) {
    return i >= 0 && i < s->n && s->slots[i].gen ? ds4_gen_cached(s->slots[i].gen) : 0;
}

int ds4_sched_free_slots(const ds4_sched *s) { return s->n - ds4_sched_active(s); }

int ds4_sched_add(ds4_sched *s, const int32_t *prompt, uint64_t n, const ds4_gen_opts *o, ds4_sched_done_fn done,
                  void *arg) {
    for (int i = 0; i < s->n; i++) {
        slot *sl = &s->slots[i];
        if (sl->gen) continue;
        if (!(sl->gen = ds4_gen_start(sl->seq, prompt, n, o))) return -1;
        sl->done = done;
        sl->arg = arg;
        return i;
    }
    return ds4_fail("no free sequence");
}

static void draw_range(void *arg, uint64_t k0, uint64_t k1, int thread) {
    (void)thread;
    ds4_sched *s = arg;
    for (uint64_t k = k0; k < k1; k++) ds4_gen_draw(s->slots[s->item_slot[k]].gen);
}

int ds4_sched_step(ds4_sched *s) {
    int decoding = 0, prefilling = 0, n_items = 0;
    for (int i = 0; i < s->n; i++)
        if (s->slots[i].gen) {
            if (ds4_gen_prefilling(s->slots[i].gen)) prefilling++;
            else decoding++;
        }
    if (!decoding && !prefilling) return 0;
    /* the rows left after the decoded tokens, shared out among the prefilling requests,
     * starting with a different one each step */
    int left = s->budget - decoding;
    const int share = prefilling ? (left / prefilling > MIN_PIECE ? left / prefilling : MIN_PIECE) : 0;
    for (int k = 0; k < s->n; k++) {
        const int i = (s->next_first + k) % s->n;
        ds4_gen *g = s->slots[i].gen;
        if (!g) continue;
        const bool pre = ds4_gen_prefilling(g);
        if (pre && left <= 0) continue;
        ds4_gen_next(g, pre ? (share < left ? share : left) : 1, &s->items[n_items]);
        left -= pre ? s->items[n_items].n : 0;
        s->item_slot[n_items++] = i;
    }
    s->next_first = (s->next_first + 1) % s->n;
    const int rc = ds4_eval_many(s->items, n_items);
    /* each sequence's next token drawn on its own thread (a vocabulary's softmax apiece) */
    if (rc == 0 && n_items > 1)
        ds4_parallel_for(s->threads < n_items ? s->threads : n_items, (uint64_t)n_items, draw_range, s);
    for (int k = 0; k < n_items; k++) {
        const int i = s->item_slot[k];
        const int r = rc == 0 ? ds4_gen_advance(s->slots[i].gen) : -1;
        if (r < 0 || ds4_gen_done(s->slots[i].gen)) end(s, i, r);
    }
    return rc;
}
