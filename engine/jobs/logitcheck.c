/* logitcheck.c - see logitcheck.h. */
#include "logitcheck.h"

#include <dirent.h>
#include <gsl/gsl_statistics_double.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat.h"
#include "ops.h"
#include "util.h"

#define MAX_TOP 64
#define MISFIT (-2) /* the vectors were made for another vocabulary */
#define UNREPORTED (-1000.0) /* below this a reference logprob is the API's "too small" (-9999) */

typedef struct { int32_t id[MAX_TOP]; double lp[MAX_TOP]; int n; } ref_top;

typedef struct {
    double kl_sum, kl_max, dlp_max, overlap_sum, spearman_sum;
    int n, top1;
} accum;

static int parse_top(json_object *row, ref_top *t, const char *where) {
    if (!json_object_is_type(row, json_type_array)) return ds4_fail("%s: a top list is not an array", where);
    t->n = (int)json_object_array_length(row);
    if (t->n < 1 || t->n > MAX_TOP) return ds4_fail("%s: a top list has %d entries (1..%d)", where, t->n, MAX_TOP);
    for (int k = 0; k < t->n; k++) {
        json_object *pair = json_object_array_get_idx(row, k);
        if (!json_object_is_type(pair, json_type_array) || json_object_array_length(pair) != 2)
            return ds4_fail("%s: top entries must be [id, logprob]", where);
        t->id[k] = json_object_get_int(json_object_array_get_idx(pair, 0));
        t->lp[k] = json_object_get_double(json_object_array_get_idx(pair, 1));
    }
    return 0;
}

/* Compare one of our distributions (raw logits) with a reference top list. */
static int compare(const float *logits, uint32_t V, const ref_top *ref, accum *a, const char *where) {
    uint32_t arg = 0;
    float best = -INFINITY;
    for (uint32_t v = 0; v < V; v++)
        if (logits[v] > best) best = logits[v], arg = v;
    const double lse = ds4_logsumexp(logits, V);
    double ours[MAX_TOP], p_ref[MAX_TOP], p_ours[MAX_TOP], zr = 0, zo = 0;
    for (int k = 0; k < ref->n; k++) {
        if (ref->id[k] < 0 || (uint32_t)ref->id[k] >= V) {
            ds4_fail("%s: reference token id %d is outside the vocabulary (0..%u)", where, ref->id[k], V - 1);
            return MISFIT;
        }
        ours[k] = logits[ref->id[k]] - lse;
        if (ref->lp[k] > UNREPORTED) a->dlp_max = fmax(a->dlp_max, fabs(ours[k] - ref->lp[k]));
        zr += (p_ref[k] = exp(ref->lp[k]));
        zo += (p_ours[k] = exp(ours[k]));
    }
    /* KL between the two distributions restricted (and renormalised) to the support. */
    double kl = 0;
    for (int k = 0; k < ref->n; k++) {
        double p = p_ref[k] / zr, q = p_ours[k] / zo;
        if (p > 0) kl += p * (log(p) - log(q));
    }
    kl = kl > 0 ? kl : 0;
    a->kl_sum += kl;
    a->kl_max = fmax(a->kl_max, kl);
    a->top1 += (int32_t)arg == ref->id[0];
    /* A reference id is in our top-n if fewer than n tokens have a higher logit. */
    int in_ours = 0;
    for (int k = 0; k < ref->n; k++) {
        int above = 0;
        for (uint32_t v = 0; v < V && above < ref->n; v++) above += logits[v] > logits[ref->id[k]];
        in_ours += above < ref->n;
    }
    a->overlap_sum += (double)in_ours / ref->n;
    double work[2 * MAX_TOP];
    a->spearman_sum += ref->n > 1 ? gsl_stats_spearman(ref->lp, 1, ours, 1, (size_t)ref->n, work) : 1.0;
    a->n++;
    return 0;
}

/* A case's statistics from what its positions added up. */
static void take_stats(const accum *a, ds4_lc_case *cs) {
    cs->n_positions = a->n;
    cs->kl_mean = a->n ? a->kl_sum / a->n : 0;
    cs->kl_max = a->kl_max;
    cs->max_dlogprob = a->dlp_max;
    cs->top1 = a->n ? (double)a->top1 / a->n : 0;
    cs->overlap = a->n ? a->overlap_sum / a->n : 0;
    cs->spearman = a->n ? a->spearman_sum / a->n : 0;
}

static json_object *field(json_object *o, const char *k) {
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* Full-logit comparison at the stored positions (raw little-endian f32, V per position). */
static int compare_full(json_object *full, const char *dir, const float *logits, int n_prompt, uint32_t V,
                        ds4_lc_case *cs) {
    json_object *pos = field(full, "positions"), *file = field(full, "file");
    if (!pos || !file || !json_object_is_type(pos, json_type_array))
        return ds4_fail("%s: full_logits needs positions and file", cs->id);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, json_object_get_string(file));
    size_t len;
    char *raw = ds4_read_file(path, &len);
    if (!raw) return -1;
    const int np = (int)json_object_array_length(pos);
    int rc = 0;
    if (len != (size_t)np * V * sizeof(float)) {
        ds4_fail("%s: %zu bytes, expected %d positions x %u logits (vectors for another vocabulary?)", path, len,
                 np, V);
        rc = MISFIT;
    }
    double sum = 0;
    for (int k = 0; k < np && rc == 0; k++) {
        int p = json_object_get_int(json_object_array_get_idx(pos, k));
        if (p < 0 || p >= n_prompt) {
            rc = ds4_fail("%s: full-logit position %d is outside the prompt", cs->id, p);
            break;
        }
        for (uint32_t v = 0; v < V; v++) {
            float ref;
            memcpy(&ref, raw + ((size_t)k * V + v) * sizeof(float), sizeof ref);
            double d = fabs((double)logits[(size_t)p * V + v] - ref);
            cs->max_dlogit = fmax(cs->max_dlogit, d);
            sum += d;
        }
        cs->full_positions++;
    }
    if (cs->full_positions) cs->mean_dlogit = sum / ((double)cs->full_positions * V);
    free(raw);
    return rc;
}

/* ---- what a case asks for, whatever its source format ---- */

typedef struct {
    int32_t *prompt;
    size_t n_prompt;
    json_object *prompt_top;  /* per prompt position (our JSONL), or NULL */
    int32_t *cont;            /* reference continuation */
    ref_top *cont_top;        /* per continuation step, or NULL */
    size_t n_cont;
    json_object *full;        /* full_logits, or NULL */
} case_spec;

/* What a run compares: ctx against the vectors, or against ref (another backend on the
 * same model) when ref is set; gen: the reference continuation's length there for cases
 * without one. */
typedef struct {
    ds4_ctx *ctx, *ref;
    int gen;
    const ds4_tokenizer *tok;
} lc_run;

static void spec_free(case_spec *s) {
    free(s->prompt);
    free(s->cont);
    free(s->cont_top);
}

static int append_id(int32_t **ids, size_t *n, int32_t id) {
    int32_t *p = realloc(*ids, (*n + 1) * sizeof *p);
    if (!p) return ds4_fail("out of memory");
    *ids = p;
    p[(*n)++] = id;
    return 0;
}

/* A chat prompt: the messages through the V4 template, with the generation prompt. */
static int chat_prompt(const ds4_tokenizer *tok, json_object *msgs, bool think, case_spec *s, const char *id) {
    if (!tok) return ds4_fail("%s: a chat prompt needs a model with a tokenizer", id);
    ds4_chat_opts co = {.thinking = think, .add_generation_prompt = true};
    ds4_buf b = {0};
    int rc = ds4_chat_render(msgs, &co, &b);
    if (rc == 0) rc = ds4_tokenize(tok, (const char *)b.data, b.len, true, &s->prompt, &s->n_prompt);
    ds4_buf_free(&b);
    if (rc < 0) ds4_error_prefix(id);
    return rc;
}

/* The prompt: token ids, or text (BOS + literal text), or chat messages (+ "think"). */
static int resolve_prompt(const ds4_tokenizer *tok, json_object *o, case_spec *s, const char *id) {
    json_object *ids = field(o, "prompt_ids"), *text = field(o, "prompt"), *msgs = field(o, "messages");
    if (ids) {
        if (!json_object_is_type(ids, json_type_array) || json_object_array_length(ids) == 0)
            return ds4_fail("%s: prompt_ids must be a non-empty array", id);
        for (size_t i = 0; i < json_object_array_length(ids); i++)
            if (append_id(&s->prompt, &s->n_prompt, json_object_get_int(json_object_array_get_idx(ids, i))) < 0) return -1;
        return 0;
    }
    if (!text && !msgs) return ds4_fail("%s: needs prompt_ids, prompt or messages", id);
    if (!tok) return ds4_fail("%s: a text prompt needs a model with a tokenizer", id);
    if (!text) {
        json_object *think = field(o, "think");
        return chat_prompt(tok, msgs, think && json_object_get_boolean(think), s, id);
    }
    if (ds4_tokenizer_bos(tok) >= 0 && append_id(&s->prompt, &s->n_prompt, ds4_tokenizer_bos(tok)) < 0) return -1;
    return ds4_tokenize(tok, json_object_get_string(text), (size_t)json_object_get_string_len(text), false,
                        &s->prompt, &s->n_prompt);
}

/* A token of an API response ("token" text, optional "bytes") as an id. */
static int api_token(const ds4_tokenizer *tok, json_object *t, int32_t *out, const char *id) {
    json_object *bytes = field(t, "bytes"), *text = field(t, "token") ? field(t, "token") : field(t, "text");
    char buf[1024];
    size_t n = 0;
    if (bytes && json_object_is_type(bytes, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(bytes) && n < sizeof buf; i++)
            buf[n++] = (char)json_object_get_int(json_object_array_get_idx(bytes, i));
    } else if (text && json_object_is_type(text, json_type_string)) {
        n = (size_t)json_object_get_string_len(text);
        if (n > sizeof buf) n = sizeof buf;
        memcpy(buf, json_object_get_string(text), n);
    }
    *out = ds4_token_from_bytes(tok, buf, n);
    if (*out < 0) {
        /* DeepSeek's API writes special tokens with their bar doubled
         * ("<｜｜end▁of▁sentence｜｜>"): the vocabulary's token has one. */
        static const char bar[] = "\xef\xbd\x9c"; /* U+FF5C */
        char one[sizeof buf];
        size_t m = 0;
        for (size_t i = 0; i < n;) {
            const bool twice = i + 6 <= n && !memcmp(buf + i, bar, 3) && !memcmp(buf + i + 3, bar, 3);
            memcpy(one + m, buf + i, twice ? 3 : 1);
            m += twice ? 3 : 1;
            i += twice ? 6 : 1;
        }
        if (m < n) *out = ds4_token_from_bytes(tok, one, m);
    }
    if (*out < 0) return ds4_fail("%s: API token '%.*s' is not a token of this vocabulary", id, (int)(n > 40 ? 40 : n), buf);
    return 0;
}

/* DeepSeek API (OpenAI chat completions) response: choices[0].logprobs.content[]. */
static int resolve_api(const ds4_tokenizer *tok, json_object *resp, case_spec *s, const char *id) {
    json_object *choices = field(resp, "choices");
    json_object *content = field(field(json_object_array_get_idx(choices, 0), "logprobs"), "content");
    if (!content || !json_object_is_type(content, json_type_array))
        return ds4_fail("%s: response has no choices[0].logprobs.content (request logprobs and top_logprobs)", id);
    if (!tok) return ds4_fail("%s: API responses need a model with a tokenizer", id);
    size_t n = json_object_array_length(content);
    s->cont_top = ds4_calloc(n ? n : 1, sizeof *s->cont_top);
    if (!s->cont_top) return -1;
    for (size_t i = 0; i < n; i++) {
        json_object *step = json_object_array_get_idx(content, i), *tops = field(step, "top_logprobs");
        int32_t chosen;
        if (api_token(tok, step, &chosen, id) < 0 || append_id(&s->cont, &s->n_cont, chosen) < 0) return -1;
        ref_top *rt = &s->cont_top[i];
        size_t k = tops && json_object_is_type(tops, json_type_array) ? json_object_array_length(tops) : 0;
        if (k == 0) {
            rt->id[0] = chosen;
            rt->lp[0] = json_object_get_double(field(step, "logprob"));
            rt->n = 1;
        }
        for (size_t j = 0; j < k && j < MAX_TOP; j++) {
            json_object *e = json_object_array_get_idx(tops, j);
            if (api_token(tok, e, &rt->id[j], id) < 0) return -1;
            rt->lp[j] = json_object_get_double(field(e, "logprob"));
            rt->n++;
        }
    }
    return 0;
}

#define OFFICIAL_SCHEMA "ds4-official-logprobs-v1"

/* A top list sorted by logprob, best first (the API's order is not promised). */
static void sort_top(ref_top *t) {
    for (int i = 1; i < t->n; i++) {
        const int32_t id = t->id[i];
        const double lp = t->lp[i];
        int j = i;
        for (; j > 0 && lp > t->lp[j - 1]; j--) {
            t->id[j] = t->id[j - 1];
            t->lp[j] = t->lp[j - 1];
        }
        t->id[j] = id;
        t->lp[j] = lp;
    }
}

/* An official capture (OFFICIAL_SCHEMA, vectors/official/): the request's messages and
 * thinking mode, then per generated step the chosen token and the top-20 (tokens by
 * their bytes; the API writes -9999 for a logprob too small to report). */
static int resolve_official(const ds4_tokenizer *tok, json_object *o, case_spec *s, const char *id) {
    json_object *req = field(o, "request"), *steps = field(o, "steps");
    json_object *msgs = field(req, "messages"), *thinking = field(field(req, "thinking"), "type");
    if (!msgs || !json_object_is_type(msgs, json_type_array) || !steps || !json_object_is_type(steps, json_type_array))
        return ds4_fail("%s: an official capture needs request.messages and steps", id);
    const bool think = thinking && !strcmp(json_object_get_string(thinking), "enabled");
    if (chat_prompt(tok, msgs, think, s, id) < 0) return -1;
    const size_t n = json_object_array_length(steps);
    if (!(s->cont_top = ds4_calloc(n ? n : 1, sizeof *s->cont_top))) return -1;
    for (size_t i = 0; i < n; i++) {
        json_object *step = json_object_array_get_idx(steps, i), *tops = field(step, "top_logprobs");
        int32_t chosen;
        if (api_token(tok, field(step, "token"), &chosen, id) < 0 || append_id(&s->cont, &s->n_cont, chosen) < 0)
            return -1;
        ref_top *rt = &s->cont_top[i];
        const size_t k = tops && json_object_is_type(tops, json_type_array) ? json_object_array_length(tops) : 0;
        for (size_t j = 0; j < k && j < MAX_TOP; j++) {
            json_object *e = json_object_array_get_idx(tops, j);
            if (api_token(tok, field(e, "token"), &rt->id[rt->n], id) < 0) return -1;
            rt->lp[rt->n++] = json_object_get_double(field(e, "logprob"));
        }
        if (rt->n == 0) {
            rt->id[0] = chosen;
            rt->lp[0] = json_object_get_double(field(step, "logprob"));
            rt->n = 1;
        }
        sort_top(rt);
    }
    return 0;
}

static int resolve_case(const ds4_tokenizer *tok, json_object *o, case_spec *s, const char *id) {
    json_object *schema = field(o, "schema");
    if (schema && !strcmp(json_object_get_string(schema), OFFICIAL_SCHEMA)) return resolve_official(tok, o, s, id);
    if (resolve_prompt(tok, o, s, id) < 0) return -1;
    json_object *resp = field(o, "response");
    if (resp) return resolve_api(tok, resp, s, id);
    s->prompt_top = field(o, "top");
    s->full = field(o, "full_logits");
    if (s->prompt_top && (!json_object_is_type(s->prompt_top, json_type_array) ||
                          json_object_array_length(s->prompt_top) != s->n_prompt))
        return ds4_fail("%s: needs one top list per prompt position", id);
    json_object *greedy = field(o, "greedy"), *gtop = field(o, "greedy_top");
    size_t g = greedy && json_object_is_type(greedy, json_type_array) ? json_object_array_length(greedy) : 0;
    if (g && !(s->cont_top = ds4_calloc(g, sizeof *s->cont_top))) return -1;
    for (size_t i = 0; i < g; i++) {
        if (append_id(&s->cont, &s->n_cont, json_object_get_int(json_object_array_get_idx(greedy, i))) < 0) return -1;
        if (gtop && i < json_object_array_length(gtop) &&
            parse_top(json_object_array_get_idx(gtop, i), &s->cont_top[i], id) < 0)
            return -1;
    }
    return 0;
}

/* The reference's distribution as a top list: its MAX_TOP likeliest tokens, best first,
 * with their logprobs. */
static void top_of(const float *logits, uint32_t V, ref_top *t) {
    float best[MAX_TOP];
    t->n = 0;
    for (uint32_t v = 0; v < V; v++) {
        if (t->n == MAX_TOP && !(logits[v] > best[MAX_TOP - 1])) continue;
        int j = t->n < MAX_TOP ? t->n++ : MAX_TOP - 1;
        for (; j > 0 && logits[v] > best[j - 1]; j--) {
            t->id[j] = t->id[j - 1];
            best[j] = best[j - 1];
        }
        t->id[j] = (int32_t)v;
        best[j] = logits[v];
    }
    const double lse = ds4_logsumexp(logits, V);
    for (int k = 0; k < t->n; k++) t->lp[k] = best[k] - lse;
}

/* One position against the reference backend: |dlogit| over the whole vocabulary and
 * the usual statistics over the reference's top list. */
static int compare_ref(const float *ours, const float *theirs, uint32_t V, accum *a, double *dsum, ds4_lc_case *cs) {
    for (uint32_t v = 0; v < V; v++) {
        const double d = fabs((double)ours[v] - theirs[v]);
        cs->max_dlogit = fmax(cs->max_dlogit, d);
        *dsum += d;
    }
    cs->full_positions++;
    ref_top t;
    top_of(theirs, V, &t);
    return compare(ours, V, &t, a, cs->id);
}

static uint32_t argmax(const float *x, uint32_t V) {
    uint32_t best = 0;
    for (uint32_t v = 1; v < V; v++)
        if (x[v] > x[best]) best = v;
    return best;
}

/* The prompt on both backends, every position compared, then the reference's greedy
 * continuation of n_cont tokens, both teacher-forced along it. */
static int run_ref(const lc_run *run, const int32_t *prompt, int n, int n_cont, ds4_lc_case *cs) {
    const uint32_t V = ds4_ctx_vocab(run->ctx);
    float *ours = ds4_malloc((size_t)n * V * sizeof *ours), *theirs = ds4_malloc((size_t)n * V * sizeof *theirs);
    accum a = {0};
    double dsum = 0;
    int rc = ours && theirs ? 0 : -1;
    cs->n_prompt = n;
    ds4_ctx_reset(run->ctx);
    ds4_ctx_reset(run->ref);
    double t0 = ds4_time_now();
    if (rc == 0) rc = ds4_eval(run->ctx, prompt, n, ours, true);
    cs->prefill_seconds = ds4_time_now() - t0;
    if (rc == 0) rc = ds4_eval(run->ref, prompt, n, theirs, true);
    for (int i = 0; i < n && rc == 0; i++)
        rc = compare_ref(ours + (size_t)i * V, theirs + (size_t)i * V, V, &a, &dsum, cs);
    float *step_o = ours + (size_t)(n - 1) * V, *step_r = theirs + (size_t)(n - 1) * V;
    bool agreeing = true;
    cs->greedy_len = n_cont;
    t0 = ds4_time_now();
    double ref_seconds = 0;
    for (int i = 0; i < n_cont && rc == 0; i++) {
        if (i > 0) rc = compare_ref(step_o, step_r, V, &a, &dsum, cs);
        const int32_t next = (int32_t)argmax(step_r, V);
        agreeing = agreeing && (int32_t)argmax(step_o, V) == next;
        cs->greedy_match += agreeing;
        if (rc == 0 && i + 1 < n_cont) {
            rc = ds4_eval(run->ctx, &next, 1, ours, false);
            const double r0 = ds4_time_now();
            if (rc == 0) rc = ds4_eval(run->ref, &next, 1, theirs, false);
            ref_seconds += ds4_time_now() - r0;
            step_o = ours;
            step_r = theirs;
        }
    }
    cs->decode_seconds = ds4_time_now() - t0 - ref_seconds;
    take_stats(&a, cs);
    cs->mean_dlogit = cs->full_positions ? dsum / ((double)cs->full_positions * V) : 0;
    if (rc < 0 && rc != MISFIT) ds4_error_prefix(cs->id);
    free(ours);
    free(theirs);
    return rc;
}

static int run_case(const lc_run *run, json_object *o, const char *dir, ds4_lc_case *cs) {
    ds4_ctx *ctx = run->ctx;
    const ds4_tokenizer *tok = run->tok;
    const uint32_t V = ds4_ctx_vocab(ctx);
    json_object *id = field(o, "id");
    snprintf(cs->id, sizeof cs->id, "%s", id ? json_object_get_string(id) : "?");
    case_spec sp = {0};
    float *logits = NULL;
    accum a = {0};
    ref_top ref;
    int rc = -1;
    if (resolve_case(tok, o, &sp, cs->id) < 0) goto done;
    const int n = (int)sp.n_prompt;
    for (size_t i = 0; i < sp.n_prompt + sp.n_cont; i++) {
        const int32_t t = i < sp.n_prompt ? sp.prompt[i] : sp.cont[i - sp.n_prompt];
        if (t < 0 || (uint32_t)t >= V) {
            ds4_fail("%s: token id %d is outside the vocabulary (0..%u)", cs->id, t, V - 1);
            rc = MISFIT;
            goto done;
        }
    }
    if (run->ref) {
        rc = run_ref(run, sp.prompt, n, sp.n_cont ? (int)sp.n_cont : run->gen, cs);
        goto done;
    }
    if (!(logits = ds4_malloc((size_t)n * V * sizeof *logits))) goto done;
    cs->n_prompt = n;

    ds4_ctx_reset(ctx);
    double t0 = ds4_time_now();
    if (ds4_eval(ctx, sp.prompt, n, logits, true) < 0) {
        ds4_error_prefix(cs->id);
        goto done;
    }
    cs->prefill_seconds = ds4_time_now() - t0;
    for (int i = 0; sp.prompt_top && i < n; i++)
        if (parse_top(json_object_array_get_idx(sp.prompt_top, i), &ref, cs->id) < 0 ||
            (rc = compare(logits + (size_t)i * V, V, &ref, &a, cs->id)) < 0)
            goto done;
    if (sp.full && (rc = compare_full(sp.full, dir, logits, n, V, cs)) < 0) goto done;
    rc = -1;

    /* The continuation, teacher-forced along the reference tokens: every step's
     * distribution is compared; greedy agreement is the prefix where our argmax is the
     * reference's token. The first step's distribution is the last prompt position's. */
    cs->greedy_len = (int)sp.n_cont;
    float *step = logits + (size_t)(n - 1) * V;
    bool agreeing = true;
    t0 = ds4_time_now();
    for (size_t i = 0; i < sp.n_cont; i++) {
        if (sp.cont_top && sp.cont_top[i].n && (i > 0 || !sp.prompt_top) &&
            (rc = compare(step, V, &sp.cont_top[i], &a, cs->id)) < 0)
            goto done;
        rc = -1;
        agreeing = agreeing && (int32_t)argmax(step, V) == sp.cont[i];
        cs->greedy_match += agreeing;
        if (i + 1 < sp.n_cont && ds4_eval(ctx, &sp.cont[i], 1, logits, false) < 0) goto done;
        step = logits;
    }
    cs->decode_seconds = ds4_time_now() - t0;
    take_stats(&a, cs);
    rc = 0;
done:
    spec_free(&sp);
    free(logits);
    return rc;
}

/* Room for one more case at the report's end, zeroed (counted once it ran); NULL when
 * memory runs out. */
static ds4_lc_case *next_case(ds4_lc_report *r) {
    ds4_lc_case *cases = ds4_realloc(r->cases, (size_t)(r->n_cases + 1) * sizeof *cases);
    if (!cases) return NULL;
    r->cases = cases;
    memset(&cases[r->n_cases], 0, sizeof *cases);
    return &cases[r->n_cases];
}

/* Appends one case (a JSON object) to the report. `skip_misfits`: a case made for
 * another vocabulary is recorded as skipped, with the reason, instead of failing. */
static int add_case(const lc_run *run, json_object *o, const char *dir, bool skip_misfits, ds4_lc_report *r) {
    ds4_lc_case *c = next_case(r);
    if (!c) return -1;
    int rc = run_case(run, o, dir, c);
    if (rc == MISFIT && skip_misfits) {
        char keep[sizeof c->id];
        snprintf(keep, sizeof keep, "%s", c->id);
        memset(c, 0, sizeof *c);
        snprintf(c->id, sizeof c->id, "%s", keep);
        snprintf(c->skipped, sizeof c->skipped, "%s", ds4_error());
        rc = 0;
    }
    if (rc == 0) r->n_cases++;
    return rc < 0 ? -1 : 0;
}

static bool ends_with(const char *s, const char *tail) {
    const size_t n = strlen(s), m = strlen(tail);
    return n > m && !strcmp(s + n - m, tail);
}

/* The cases of one file: a JSONL file, one case per line, or an official capture
 * (*.official.json, one pretty-printed object). */
static int run_file(const lc_run *run, const char *path, bool skip_misfits, ds4_lc_report *r) {
    char *text = ds4_read_file(path, NULL);
    if (!text) return -1;
    char *dir = ds4_strndup(path, strlen(path));
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) *slash = 0;
    else if (dir) strcpy(dir, ".");
    int rc = 0;
    if (ends_with(path, ".official.json")) {
        json_object *o = json_tokener_parse(text);
        if (!o || !json_object_is_type(o, json_type_object)) rc = ds4_fail("%s: not a JSON object", path);
        else rc = add_case(run, o, dir ? dir : ".", skip_misfits, r);
        if (rc < 0) ds4_error_prefix(path);
        if (o) json_object_put(o);
    }
    int line_no = 0;
    char *save = NULL;
    for (char *line = ends_with(path, ".official.json") ? NULL : strtok_r(text, "\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        if (!*line) continue;
        json_object *o = json_tokener_parse(line);
        if (!o || !json_object_is_type(o, json_type_object)) rc = ds4_fail("%s:%d: not a JSON object", path, line_no);
        else rc = add_case(run, o, dir ? dir : ".", skip_misfits, r);
        if (o) json_object_put(o);
    }
    free(dir);
    free(text);
    return rc;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_path(const lc_run *run, const char *path, ds4_lc_report *r) {
    struct stat st;
    if (stat(path, &st) < 0) return ds4_fail("%s: no such file or directory", path);
    if (!S_ISDIR(st.st_mode)) return run_file(run, path, false, r);
    DIR *d = opendir(path);
    if (!d) return ds4_fail("%s: cannot open directory", path);
    char **names = NULL;
    int n = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (!ends_with(e->d_name, ".jsonl") && !ends_with(e->d_name, ".official.json")) continue;
        char **p = ds4_realloc(names, (size_t)(n + 1) * sizeof *names);
        if (!p) { rc = -1; break; }
        names = p;
        names[n++] = ds4_strndup(e->d_name, len);
    }
    closedir(d);
    if (rc == 0 && n == 0) rc = ds4_fail("%s: no .jsonl or .official.json vector files", path);
    if (names) qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (int i = 0; i < n && rc == 0; i++) {
        char file[PATH_MAX];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        rc = run_file(run, file, true, r);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int ds4_logitcheck_path(ds4_ctx *ctx, const ds4_tokenizer *tok, const char *path, ds4_lc_report *r) {
    const lc_run run = {ctx, NULL, 0, tok};
    return run_path(&run, path, r);
}

int ds4_logitcheck_path_ref(ds4_ctx *ctx, ds4_ctx *ref, int gen, const ds4_tokenizer *tok, const char *path,
                            ds4_lc_report *r) {
    const lc_run run = {ctx, ref, gen, tok};
    return run_path(&run, path, r);
}

int ds4_logitcheck_ids_ref(ds4_ctx *ctx, ds4_ctx *ref, int gen, const char *name, const int32_t *ids, size_t n,
                           ds4_lc_report *r) {
    const uint32_t V = ds4_ctx_vocab(ctx);
    if (n == 0) return ds4_fail("%s: no tokens", name);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= V)
            return ds4_fail("%s: token id %d is outside the vocabulary (0..%u)", name, ids[i], V - 1);
    ds4_lc_case *c = next_case(r);
    if (!c) return -1;
    snprintf(c->id, sizeof c->id, "%s", name);
    const lc_run run = {ctx, ref, gen, NULL};
    if (run_ref(&run, ids, (int)n, gen, c) < 0) return -1;
    r->n_cases++;
    return 0;
}

void ds4_lc_report_free(ds4_lc_report *r) {
    free(r->cases);
    r->cases = NULL;
    r->n_cases = 0;
}

ds4_lc_case ds4_lc_overall(const ds4_lc_report *r) {
    ds4_lc_case o = {0};
    snprintf(o.id, sizeof o.id, "overall");
    double wsum = 0, full_sum = 0;
    for (int i = 0; i < r->n_cases; i++) {
        const ds4_lc_case *c = &r->cases[i];
        if (c->skipped[0]) continue;
        double w = c->n_positions;
        o.n_prompt += c->n_prompt;
        o.n_positions += c->n_positions;
        o.full_positions += c->full_positions;
        o.max_dlogit = fmax(o.max_dlogit, c->max_dlogit);
        o.max_dlogprob = fmax(o.max_dlogprob, c->max_dlogprob);
        o.kl_max = fmax(o.kl_max, c->kl_max);
        o.kl_mean += c->kl_mean * w;
        o.top1 += c->top1 * w;
        o.overlap += c->overlap * w;
        o.spearman += c->spearman * w;
        full_sum += c->mean_dlogit * c->full_positions;
        wsum += w;
        o.greedy_len += c->greedy_len;
        o.greedy_match += c->greedy_match;
        o.prefill_seconds += c->prefill_seconds;
        o.decode_seconds += c->decode_seconds;
    }
    if (wsum > 0) {
        o.kl_mean /= wsum;
        o.top1 /= wsum;
        o.overlap /= wsum;
        o.spearman /= wsum;
    }
    if (o.full_positions) o.mean_dlogit = full_sum / o.full_positions;
    return o;
}
