/* perplexity.c - see perplexity.h. */
#include "perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "ops.h"
#include "util.h"

#define PIECE 64 /* scored positions fed per forward call: memory is PIECE x vocabulary logits */

int ds4_corpus_read(const char *path, bool ids_file, const ds4_tokenizer *tok, int32_t **ids, uint64_t *n) {
    size_t len;
    char *text = ds4_read_file(path, &len);
    *ids = NULL;
    *n = 0;
    if (!text) return -1;
    size_t count = 0;
    int rc;
    if (ids_file) {
        rc = ds4_parse_token_ids(text, ids, &count);
        if (rc < 0) ds4_error_prefix(path);
    } else if (!tok) {
        rc = ds4_fail("%s: a text corpus needs a model with a tokenizer (or give token ids: --ids)", path);
    } else {
        rc = ds4_tokenize(tok, text, len, false, ids, &count);
    }
    free(text);
    *n = count;
    return rc;
}

uint64_t ds4_ppl_windows(uint64_t n_tokens, uint32_t ctx) { return ctx ? n_tokens / ctx : 0; }

static uint64_t scored_per_window(uint32_t ctx) { return ctx - 1 - ctx / 2; }

uint64_t ds4_ppl_positions(uint64_t n_tokens, uint32_t ctx) {
    return ds4_ppl_windows(n_tokens, ctx) * scored_per_window(ctx);
}

uint64_t ds4_ppl_corpus_hash(const int32_t *ids, uint64_t n, uint32_t ctx) {
    const uint64_t used = ds4_ppl_windows(n, ctx) * ctx;
    return ds4_fnv1a(ds4_fnv1a(DS4_FNV_START, &ctx, sizeof ctx), ids, used * sizeof *ids);
}

int ds4_ppl_check_base(const ds4_base_info *b, const int32_t *ids, uint64_t n, uint32_t ctx, uint32_t n_vocab,
                       uint64_t tokenizer_hash) {
    if (b->n_vocab != n_vocab)
        return ds4_fail("the base was made with a vocabulary of %u tokens, this model has %u", b->n_vocab, n_vocab);
    if (b->tokenizer_hash != tokenizer_hash) return ds4_fail("the base was made with another tokenizer");
    if (b->ctx != ctx) return ds4_fail("the base was made with --ctx %u, not %u", b->ctx, ctx);
    if (b->corpus_hash != ds4_ppl_corpus_hash(ids, n, ctx) || b->n_positions != ds4_ppl_positions(n, ctx))
        return ds4_fail("the base was made over another corpus (its token ids differ)");
    return 0;
}

/* What the run keeps per scored position (for medians and percentiles). */
typedef struct {
    double *kl, *dp;
    uint64_t n, cap;
    double nll, nll_base;
    uint64_t top1;
} samples;

static int keep(samples *s, double kl, double dp) {
    if (s->n == s->cap) {
        const uint64_t cap = s->cap ? 2 * s->cap : 4096;
        double *k = realloc(s->kl, cap * sizeof *k);
        if (k) s->kl = k;
        double *d = k ? realloc(s->dp, cap * sizeof *d) : NULL;
        if (!d) return ds4_fail("out of memory for %llu positions", (unsigned long long)cap);
        s->dp = d;
        s->cap = cap;
    }
    s->kl[s->n] = kl;
    s->dp[s->n++] = dp;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The value below which a fraction q of the sorted values lie (nearest rank). */
static double rank(const double *sorted, uint64_t n, double q) {
    if (!n) return 0;
    uint64_t i = (uint64_t)ceil(q * (double)n);
    return sorted[(i ? i : 1) - 1];
}

static int summarize(const samples *s, uint64_t from, bool with_base, ds4_ppl_stats *st) {
    const uint64_t n = s->n - from;
    st->tokens = n;
    if (!n) return 0;
    double *kl = ds4_malloc(n * sizeof *kl), *dp = ds4_malloc(n * sizeof *dp);
    if (!kl || !dp) {
        free(kl);
        free(dp);
        return -1;
    }
    memcpy(kl, s->kl + from, n * sizeof *kl);
    memcpy(dp, s->dp + from, n * sizeof *dp);
    double kl_sum = 0, dp_sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        kl_sum += kl[i];
        dp_sum += dp[i];
    }
    qsort(kl, n, sizeof *kl, cmp_double);
    qsort(dp, n, sizeof *dp, cmp_double);
    if (with_base) {
        st->kl_mean = kl_sum / (double)n;
        st->kl_median = rank(kl, n, 0.5);
        st->kl_p99 = rank(kl, n, 0.99);
        st->kl_max = kl[n - 1];
        st->dp_mean = dp_sum / (double)n;
        st->dp_p01 = rank(dp, n, 0.01);
        st->dp_p99 = rank(dp, n, 0.99);
    }
    free(kl);
    free(dp);
    return 0;
}

/* The most likely tokens, largest first (the lower id first among equals), at least
 * min_k and then until they hold `mass` of the probability, at most max_k. The
 * log-probabilities go into buckets first, so only the buckets the answer reaches are
 * sorted. p is scratch for V probabilities; returns how many were kept. */
#define BUCKETS 4096

static int cmp_by_logit(const void *a, const void *b, void *arg) {
    const float *l = arg;
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return l[x] > l[y] ? -1 : l[x] < l[y] ? 1 : (x > y) - (x < y);
}

static uint32_t keep_tokens(const float *l, uint32_t V, double lse, const ds4_ppl_opts *o, double *p, int32_t *ids) {
    double lo = 0, hi = -INFINITY, bucket_mass[BUCKETS] = {0};
    uint32_t bucket_count[BUCKETS] = {0};
    for (uint32_t v = 0; v < V; v++) {
        const double lp = (double)l[v] - lse;
        p[v] = exp(lp);
        lo = fmin(lo, lp);
        hi = fmax(hi, lp);
    }
    const double scale = hi > lo ? (BUCKETS - 1) / (hi - lo) : 0;
#define BUCKET(v) ((int)(((double)l[v] - lse - lo) * scale))
    for (uint32_t v = 0; v < V; v++) {
        bucket_mass[BUCKET(v)] += p[v];
        bucket_count[BUCKET(v)]++;
    }
    /* the lowest bucket the kept tokens reach (or that holds the max_k-th) */
    int last = BUCKETS - 1;
    for (double m = 0, c = 0; last > 0; last--) {
        m += bucket_mass[last];
        c += bucket_count[last];
        if ((m >= o->mass && c >= o->min_k) || c >= o->max_k) break;
    }
    uint32_t n = 0;
    for (uint32_t v = 0; v < V; v++)
        if (BUCKET(v) >= last) ids[n++] = (int32_t)v;
#undef BUCKET
    qsort_r(ids, n, sizeof *ids, cmp_by_logit, (void *)l);
    /* the shortest prefix that holds the mass, and at least min_k */
    uint32_t keep = 0;
    for (double m = 0; keep < n && (keep < o->min_k || m < o->mass); keep++) m += p[ids[keep]];
    return keep < o->max_k ? keep : o->max_k;
}

/* Probability mass of the tokens not among `ids`; `mark` is V zero bytes, left zero. */
static double rest_mass(const float *l, uint32_t V, double lse, const int32_t *ids, uint32_t k, uint8_t *mark) {
    for (uint32_t i = 0; i < k; i++) mark[ids[i]] = 1;
    double rest = 0;
    for (uint32_t v = 0; v < V; v++)
        if (!mark[v]) rest += exp((double)l[v] - lse);
    for (uint32_t i = 0; i < k; i++) mark[ids[i]] = 0;
    return rest;
}

/* One scored position: logits l predicting token `truth`. */
static int score(const float *l, uint32_t V, int32_t truth, const ds4_ppl_opts *o, samples *s, ds4_ppl_hist *hist,
                 uint8_t *mark, int32_t *ids, float *lps, double *probs) {
    const double lse = ds4_logsumexp(l, V), lp_true = (double)l[truth] - lse;
    s->nll -= lp_true;
    if (o->save) {
        const uint32_t n = keep_tokens(l, V, lse, o, probs, ids);
        for (uint32_t i = 0; i < n; i++) lps[i] = (float)((double)l[ids[i]] - lse);
        const double rest = rest_mass(l, V, lse, ids, n, mark);
        const ds4_base_pos bp = {n, ids, lps, rest > 0 ? (float)log(rest) : -INFINITY, (float)lp_true};
        if (ds4_base_put(o->save, &bp) < 0) return -1;
    }
    if (!o->base) return keep(s, 0, 0);
    const ds4_base_pos b = ds4_base_next(o->base);
    for (uint32_t i = 0; i < b.n; i++)
        if (b.id[i] < 0 || (uint32_t)b.id[i] >= V) return ds4_fail("the base holds token id %d", b.id[i]);
    /* The model's logprobs rounded to F32 as the base's were, so that a model compared
     * with its own base gives 0, not the rounding of the file. */
    double kl = 0;
    for (uint32_t i = 0; i < b.n; i++) {
        const double p = exp((double)b.lp[i]), q = (float)((double)l[b.id[i]] - lse);
        if (p > 0) kl += p * ((double)b.lp[i] - q);
    }
    const double p_rest = exp((double)b.log_rest);
    if (p_rest > 0) {
        const double q_rest = rest_mass(l, V, lse, b.id, b.n, mark);
        kl += p_rest * ((double)b.log_rest - (float)log(q_rest > 0 ? q_rest : 1e-300));
    }
    if (kl < 0) kl = 0; /* rounding; a NaN stays one */
    uint32_t arg = 0;
    for (uint32_t v = 1; v < V; v++)
        if (l[v] > l[arg]) arg = v;
    s->top1 += (int32_t)arg == b.id[0];
    s->nll_base -= b.lp_true;
    const double dp = exp((double)b.lp_true) - exp(lp_true);
    int kb = kl < 1e-9 ? 0 : kl >= 10 ? DS4_KL_BINS - 1 : 1 + (int)floor(log10(kl) + 9);
    kb = kb < 0 ? 0 : kb >= DS4_KL_BINS ? DS4_KL_BINS - 1 : kb;
    int db = (int)floor((dp + 1.0) / 0.05);
    db = db < 0 ? 0 : db >= DS4_DP_BINS ? DS4_DP_BINS - 1 : db;
    hist->kl[kb]++;
    hist->dp[db]++;
    return keep(s, kl, dp);
}

static void finish_stats(const samples *s, uint64_t from, double nll0, double nllb0, uint64_t top10, bool base,
                         ds4_ppl_stats *st) {
    const double n = (double)(s->n - from);
    st->ppl = n > 0 ? exp((s->nll - nll0) / n) : 0;
    if (base) {
        st->ppl_base = n > 0 ? exp((s->nll_base - nllb0) / n) : 0;
        st->top1 = n > 0 ? (double)(s->top1 - top10) / n : 0;
    }
}

int ds4_perplexity(ds4_ctx *ctx, const int32_t *ids, uint64_t n, const ds4_ppl_opts *o, ds4_ppl_window_fn on_window,
                   void *arg, ds4_ppl_stats *overall, ds4_ppl_hist *hist) {
    memset(overall, 0, sizeof *overall);
    memset(hist, 0, sizeof *hist);
    const uint32_t C = o->ctx, V = ds4_ctx_vocab(ctx), half = C / 2;
    const uint64_t windows = ds4_ppl_windows(n, C);
    if (C < 4) return ds4_fail("--ctx %u is too short (at least 4)", C);
    if (!windows) return ds4_fail("the corpus has %llu tokens, fewer than one window of %u", (unsigned long long)n, C);
    for (uint64_t i = 0; i < windows * C; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= V)
            return ds4_fail("corpus token %d at %llu is outside the vocabulary", ids[i], (unsigned long long)i);
    float *logits = ds4_malloc((size_t)PIECE * V * sizeof *logits), *lps = ds4_malloc(V * sizeof *lps);
    int32_t *win = ds4_malloc(C * sizeof *win), *top = ds4_malloc(V * sizeof *top);
    double *p = o->save ? ds4_malloc(V * sizeof *p) : NULL;
    uint8_t *mark = ds4_calloc(V, 1);
    samples s = {0};
    int rc = logits && lps && win && top && mark && (p || !o->save) ? 0 : -1;
    if (o->base) ds4_base_rewind(o->base);
    for (uint64_t w = 0; w < windows && rc == 0; w++) {
        memcpy(win, ids + w * C, C * sizeof *win);
        if (o->bos >= 0) win[0] = o->bos;
        const uint64_t from = s.n, top10 = s.top1;
        const double nll0 = s.nll, nllb0 = s.nll_base;
        ds4_ctx_reset(ctx);
        rc = ds4_eval(ctx, win, (int)half, NULL, false);
        for (uint32_t j = half; rc == 0 && j + 1 < C; j += PIECE) {
            const uint32_t m = C - 1 - j < PIECE ? C - 1 - j : PIECE;
            rc = ds4_eval(ctx, win + j, (int)m, logits, true);
            for (uint32_t i = 0; rc == 0 && i < m; i++)
                rc = score(logits + (size_t)i * V, V, win[j + i + 1], o, &s, hist, mark, top, lps, p);
        }
        if (o->progress) ds4_progress_add(o->progress, C);
        ds4_ppl_stats st = {.first_window = w, .windows = 1};
        if (rc == 0) rc = summarize(&s, from, o->base != NULL, &st);
        finish_stats(&s, from, nll0, nllb0, top10, o->base != NULL, &st);
        if (rc == 0 && on_window) rc = on_window(arg, &st);
    }
    if (rc == 0) {
        overall->windows = windows;
        rc = summarize(&s, 0, o->base != NULL, overall);
        finish_stats(&s, 0, 0, 0, 0, o->base != NULL, overall);
    }
    free(s.kl);
    free(s.dp);
    free(logits);
    free(lps);
    free(win);
    free(top);
    free(p);
    free(mark);
    return rc;
}
