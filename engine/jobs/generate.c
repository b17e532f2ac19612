/* generate.c - see generate.h. */
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

/* Prefill through the cache (c may be NULL): restore the prompt's longest cached prefix
 * (never all of it: the last token is computed, for its logits), compute the rest, and
 * store the state at `stable` tokens, every `period` tokens and before the prompt's
 * last token (so the same prompt again reuses all but that token). A failure to store
 * is a warning through the cache, not an error. */
static int prefill(ds4_ctx *ctx, const int32_t *tokens, uint64_t n, float *logits, const ds4_gen_opts *o,
                   uint64_t *cached) {
    ds4_kvcache *c = o->resume ? NULL : o->cache;
    *cached = 0;
    uint64_t pos = o->resume;
    if (c) {
        const int64_t got = ds4_kvcache_restore(c, ctx, tokens, n, n - 1);
        if (got < 0) return -1;
        *cached = (uint64_t)got;
        pos = (uint64_t)got;
    } else if (!o->resume) {
        ds4_ctx_reset(ctx);
    }
    if (o->progress) ds4_progress_add(o->progress, pos);
    while (pos < n) {
        /* to the next save point: the stable prefix, a multiple of the period, the prompt
         * but its last token, the end */
        uint64_t end = n;
        if (c && n - 1 > pos) end = n - 1;
        if (c && o->cache_period && (pos / o->cache_period + 1) * o->cache_period < end)
            end = (pos / o->cache_period + 1) * o->cache_period;
        if (c && o->cache_stable > pos && o->cache_stable < end) end = o->cache_stable;
        if (ds4_eval_progress(ctx, tokens + pos, end - pos, end == n ? logits : NULL, o->progress) < 0) return -1;
        pos = end;
        if (c && pos < n && ds4_kvcache_store(c, ctx, tokens, pos) < 0) {
            char msg[DS4_ERROR_MAX + 32];
            snprintf(msg, sizeof msg, "kv cache: not saved: %s", ds4_error());
            ds4_kvcache_warn(c, msg);
        }
    }
    return 0;
}

/* The first stop string in the text (in the order given), cutting the text there. */
static bool cut_at_stop(ds4_buf *text, const ds4_gen_opts *o) {
    for (int k = 0; k < o->n_stops; k++) {
        const size_t sl = strlen(o->stops[k]);
        const char *hit = sl && text->len >= sl ? memmem(text->data, text->len, o->stops[k], sl) : NULL;
        if (hit) {
            text->len = (size_t)(hit - (const char *)text->data);
            return true;
        }
    }
    return false;
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

int ds4_generate(ds4_ctx *ctx, const int32_t *prompt, uint64_t n, const ds4_gen_opts *o, ds4_gen_result *r) {
    memset(r, 0, sizeof *r);
    r->finish = "length";
    if (n == 0) return ds4_fail("an empty prompt");
    const uint32_t V = ds4_ctx_vocab(ctx);
    const int max = o->max_tokens > 0 ? o->max_tokens : 0;
    float *logits = ds4_malloc(V * sizeof *logits), *probs = ds4_malloc(V * sizeof *probs);
    int32_t *idx = ds4_malloc(V * sizeof *idx);
    r->tokens = ds4_malloc(((size_t)max + 1) * sizeof *r->tokens);
    int rc = logits && probs && idx && r->tokens ? 0 : -1;
    const double t0 = ds4_time_now();
    if (rc == 0) rc = prefill(ctx, prompt, n, logits, o, &r->cached);
    if (rc == 0 && o->prefilled) rc = o->prefilled(o->prefilled_arg, ctx);
    const double t1 = ds4_time_now();
    r->prefill_seconds = t1 - t0;
    ds4_sampler s;
    ds4_sampler_init(&s, o->temperature, o->top_p, o->seed);
    const int32_t eos = o->tok && !o->ignore_eos ? ds4_tokenizer_eos(o->tok) : -1;
    size_t sent = 0; /* text bytes released */
    for (int i = 0; i < max && rc == 0; i++) {
        const int32_t next = ds4_sample(&s, logits, V, probs, idx);
        if (next == eos) {
            r->finish = "stop";
            break;
        }
        r->tokens[r->n_tokens++] = next;
        bool stopped = false;
        if (o->tok) {
            rc = ds4_detokenize(o->tok, &next, 1, o->show_special, &r->text);
            stopped = rc == 0 && cut_at_stop(&r->text, o);
        }
        const size_t ready = stopped ? r->text.len : releasable(&r->text, o);
        if (rc == 0 && o->emit && ready >= sent) {
            rc = o->emit(o->emit_arg, next, o->tok ? (const char *)r->text.data + sent : NULL, ready - sent);
            sent = ready;
        }
        if (stopped) {
            r->finish = "stop";
            break;
        }
        if (rc == 0 && i + 1 < max) {
            rc = ds4_eval(ctx, &next, 1, logits, false);
            r->decode_steps++;
        }
    }
    /* what was held back: a partial character, or what turned out not to be a stop */
    if (rc == 0 && o->emit && o->tok && r->text.len > sent)
        rc = o->emit(o->emit_arg, -1, (const char *)r->text.data + sent, r->text.len - sent);
    r->decode_seconds = ds4_time_now() - t1;
    free(logits);
    free(probs);
    free(idx);
    return rc;
}

void ds4_gen_result_free(ds4_gen_result *r) {
    free(r->tokens);
    ds4_buf_free(&r->text);
    memset(r, 0, sizeof *r);
}
