/* generate.c - see generate.h. */
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

#define ALONE_PIECE 65536 /* prompt tokens per step when a sequence runs alone */

struct ds4_gen {
    ds4_ctx *ctx;
    ds4_gen_opts o;
    int32_t *prompt;
    uint64_t n, pos;       /* prompt tokens, and how many the sequence holds */
    uint64_t fed_to;       /* the end of the piece fed in the last step */
    ds4_kvcache *cache;    /* NULL when resuming a state */
    float *logits, *probs;
    int32_t *idx, next;    /* next: the token sampled, to feed */
    int32_t drawn;         /* a token ds4_gen_draw picked ahead of advance, or -1 */
    ds4_sampler sampler;
    int32_t eos;
    size_t sent;           /* text bytes released */
    int max;
    bool prefilled, done;
    double t0, t1;
    ds4_gen_result r;
};

/* The first stop string in the text (in the order given), cutting the text there. */
static int cut_at_stop(ds4_buf *text, const ds4_gen_opts *o) {
    for (int k = 0; k < o->n_stops; k++) {
        const size_t sl = strlen(o->stops[k]);
        const char *hit = sl && text->len >= sl ? memmem(text->data, text->len, o->stops[k], sl) : NULL;
        if (hit) {
            text->len = (size_t)(hit - (const char *)text->data);
            return k;
        }
    }
    return -1;
}

/* How much of the text may go out: whole characters, short of a tail that could begin
 * a stop string. */
static size_t releasable(const ds4_buf *text, const ds4_gen_opts *o) {
    size_t end = ds4_utf8_complete((const char *)text->data, text->len);
    for (int k = 0; k < o->n_stops; k++) {
        const size_t sl = strlen(o->stops[k]);
        for (size_t keep = sl > 1 ? sl - 1 : 0; keep > 0; keep--)
            if (keep <= text->len && !memcmp((const char *)text->data + text->len - keep, o->stops[k], keep)) {
                if (text->len - keep < end) end = text->len - keep;
                break;
            }
    }
    return end;
}

ds4_gen *ds4_gen_start(ds4_ctx *ctx, const int32_t *prompt, uint64_t n, const ds4_gen_opts *o) {
    if (n == 0) {
        ds4_fail("an empty prompt");
        return NULL;
    }
    ds4_gen *g = ds4_calloc(1, sizeof *g);
    if (!g) return NULL;
    const uint32_t V = ds4_ctx_vocab(ctx);
    g->ctx = ctx;
    g->o = *o;
    g->n = n;
    g->max = o->max_tokens > 0 ? o->max_tokens : 0;
    g->r.finish = "length";
    g->r.stop_index = -1;
    g->drawn = -1;
    g->prompt = ds4_malloc(n * sizeof *g->prompt);
    g->logits = ds4_malloc(V * sizeof *g->logits);
    g->probs = ds4_malloc(V * sizeof *g->probs);
    g->idx = ds4_malloc(V * sizeof *g->idx);
    g->r.tokens = ds4_malloc(((size_t)g->max + 1) * sizeof *g->r.tokens);
    if (!g->prompt || !g->logits || !g->probs || !g->idx || !g->r.tokens) {
        ds4_gen_free(g);
        return NULL;
    }
    memcpy(g->prompt, prompt, n * sizeof *prompt);
    ds4_sampler_init(&g->sampler, o->temperature, o->top_p, o->seed);
    g->eos = o->tok && !o->ignore_eos ? ds4_tokenizer_eos(o->tok) : -1;
    g->t0 = ds4_time_now();
    /* Restore the prompt's longest cached prefix (never all of it: the last token is
     * computed, for its logits), or resume the state the sequence holds. */
    g->cache = o->resume ? NULL : o->cache;
    g->pos = o->resume;
    if (g->cache) {
        const int64_t got = ds4_kvcache_restore(g->cache, ctx, prompt, n, n - 1);
        if (got < 0) {
            ds4_gen_free(g);
            return NULL;
        }
        g->pos = g->r.cached = (uint64_t)got;
    } else if (!o->resume) {
        ds4_ctx_reset(ctx);
    }
    if (o->progress) ds4_progress_add(o->progress, g->pos);
    return g;
}

bool ds4_gen_done(const ds4_gen *g) { return g->done; }
bool ds4_gen_prefilling(const ds4_gen *g) { return !g->prefilled; }
uint64_t ds4_gen_cached(const ds4_gen *g) { return g->r.cached; }

void ds4_gen_next(ds4_gen *g, int budget, ds4_eval_item *item) {
    if (g->prefilled) {
        *item = (ds4_eval_item){g->ctx, &g->next, 1, g->logits, false};
        return;
    }
    /* to the next save point: the stable prefix, a multiple of the period, the prompt
     * but its last token (so that the same prompt again restores all but one token),
     * the end; at most `budget` tokens */
    const uint64_t pos = g->pos, n = g->n;
    uint64_t end = n;
    if (g->cache && n - 1 > pos) end = n - 1;
    if (g->cache && g->o.cache_period && (pos / g->o.cache_period + 1) * g->o.cache_period < end)
        end = (pos / g->o.cache_period + 1) * g->o.cache_period;
    if (g->cache && g->o.cache_stable > pos && g->o.cache_stable < end) end = g->o.cache_stable;
    if (end - pos > (uint64_t)budget) end = pos + (uint64_t)budget;
    g->fed_to = end;
    *item = (ds4_eval_item){g->ctx, g->prompt + pos, (int)(end - pos), end == n ? g->logits : NULL, false};
}

/* Sample the next token from the logits, record, emit and check the stops; `done` when
 * the sequence ends. */
static int sample(ds4_gen *g) {
    const uint32_t V = ds4_ctx_vocab(g->ctx);
    const ds4_gen_opts *o = &g->o;
    ds4_gen_result *r = &g->r;
    if (r->n_tokens >= g->max) {
        g->done = true;
        return 0;
    }
    const int32_t next = g->drawn >= 0 ? g->drawn : ds4_sample(&g->sampler, g->logits, V, g->probs, g->idx);
    g->drawn = -1;
    if (o->sampled && o->sampled(o->emit_arg, next, g->logits, V) < 0) return -1;
    if (next == g->eos) {
        r->finish = "stop";
        g->done = true;
        return 0;
    }
    r->tokens[r->n_tokens++] = next;
    bool stopped = false;
    int rc = 0;
    if (o->tok) {
        rc = ds4_detokenize(o->tok, &next, 1, o->show_special, &r->text);
        if (rc == 0) r->stop_index = cut_at_stop(&r->text, o);
        stopped = r->stop_index >= 0;
    }
    const size_t ready = stopped ? r->text.len : releasable(&r->text, o);
    if (rc == 0 && o->emit && ready >= g->sent) {
        rc = o->emit(o->emit_arg, next, o->tok ? (const char *)r->text.data + g->sent : NULL, ready - g->sent);
        g->sent = ready;
    }
    if (stopped) r->finish = "stop";
    g->done = stopped || r->n_tokens >= g->max;
    g->next = next;
    return rc;
}

/* Save the state for ids[0..n); a failure only costs a later prefill: a warning. */
static void store(ds4_gen *g, const int32_t *ids, uint64_t n) {
    if (ids && ds4_kvcache_store(g->cache, g->ctx, ids, n) == 0) return;
    char msg[DS4_ERROR_MAX + 32];
    snprintf(msg, sizeof msg, "kv cache: not saved: %s", ds4_error());
    ds4_kvcache_warn(g->cache, msg);
}

void ds4_gen_checkpoint(ds4_gen *g) {
    if (!g->cache || !g->prefilled) return;
    /* the sequence holds the prompt and a generated token per decode step (the last one
     * sampled is not fed yet) */
    const uint64_t fed = (uint64_t)g->r.decode_steps;
    int32_t *ids = ds4_malloc((g->n + fed + 1) * sizeof *ids);
    if (ids) {
        memcpy(ids, g->prompt, g->n * sizeof *ids);
        memcpy(ids + g->n, g->r.tokens, fed * sizeof *ids);
    }
    store(g, ids, g->n + fed);
    free(ids);
}

static void finish(ds4_gen *g) {
    g->r.decode_seconds = g->prefilled ? ds4_time_now() - g->t1 : 0;
}

void ds4_gen_draw(ds4_gen *g) {
    const bool samples = !g->done && (g->prefilled || g->fed_to >= g->n) && g->r.n_tokens < g->max;
    if (samples && g->drawn < 0) g->drawn = ds4_sample(&g->sampler, g->logits, ds4_ctx_vocab(g->ctx), g->probs, g->idx);
}

int ds4_gen_advance(ds4_gen *g) {
    int rc = 0;
    if (!g->prefilled) {
        const uint64_t fed = g->fed_to - g->pos;
        g->pos = g->fed_to;
        if (g->o.progress) ds4_progress_add(g->o.progress, fed);
        if (g->cache && g->pos < g->n) store(g, g->prompt, g->pos);
        if (g->pos < g->n) return 0;
        g->prefilled = true;
        if (g->o.prefilled) rc = g->o.prefilled(g->o.prefilled_arg, g->ctx);
        g->t1 = ds4_time_now();
        g->r.prefill_seconds = g->t1 - g->t0;
    } else {
        g->r.decode_steps++;
        if (g->o.cache_reply && g->o.cache_period && g->r.decode_steps % g->o.cache_period == 0) ds4_gen_checkpoint(g);
    }
    if (rc == 0) rc = sample(g);
    if (rc < 0) g->done = true;
    if (g->done) {
        /* what was held back: a partial character, or what turned out not to be a stop */
        const ds4_gen_opts *o = &g->o;
        if (rc == 0 && o->emit && o->tok && g->r.text.len > g->sent)
            rc = o->emit(o->emit_arg, -1, (const char *)g->r.text.data + g->sent, g->r.text.len - g->sent);
        g->sent = g->r.text.len;
        if (g->o.cache_reply) ds4_gen_checkpoint(g);
        finish(g);
    }
    return rc;
}

void ds4_gen_take(ds4_gen *g, ds4_gen_result *r) {
    if (!g->done) finish(g);
    *r = g->r;
    memset(&g->r, 0, sizeof g->r);
}

void ds4_gen_free(ds4_gen *g) {
    if (!g) return;
    free(g->prompt);
    free(g->logits);
    free(g->probs);
    free(g->idx);
    ds4_gen_result_free(&g->r);
    free(g);
}

int ds4_generate(ds4_ctx *ctx, const int32_t *prompt, uint64_t n, const ds4_gen_opts *o, ds4_gen_result *r) {
    memset(r, 0, sizeof *r);
    r->finish = "length";
    r->stop_index = -1;
    ds4_gen *g = ds4_gen_start(ctx, prompt, n, o);
    if (!g) return -1;
    int rc = 0;
    while (rc == 0 && !ds4_gen_done(g)) {
        ds4_eval_item it;
        ds4_gen_next(g, ALONE_PIECE, &it);
        rc = ds4_eval_many(&it, 1);
        if (rc == 0) rc = ds4_gen_advance(g);
    }
    ds4_gen_take(g, r);
    ds4_gen_free(g);
    return rc;
}

void ds4_gen_result_free(ds4_gen_result *r) {
    free(r->tokens);
    ds4_buf_free(&r->text);
    memset(r, 0, sizeof *r);
}
