/* forward.c - the schedule of the forward pass (forward.h), written once for every
 * backend: the tokens of one or more sequences go in chunks of at most n_batch rows,
 * each chunk through the stages of backend.h layer by layer; the context keeps each
 * sequence's position, the profile and the indexer's share of the time. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "sysinfo.h"
#include "util.h"

#define DEFAULT_BATCH 256

/* What the views of one context share: the backend and its sequences. */
typedef struct {
    const ds4_model *model;
    const ds4_backend_ops *ops;
    ds4_backend *be;
    int n_batch, n_seq, n_threads;
    uint64_t capacity;
    uint64_t *pos; /* per sequence */
} ds4_core;

struct ds4_ctx {
    ds4_core *core;
    bool owner; /* the context ds4_ctx_new made (frees the core) */
    int seq;
    double indexer_seconds;
};

ds4_ctx *ds4_ctx_new(const ds4_model *m, const ds4_ctx_opts *opts) {
    const ds4_ctx_opts defaults = {0};
    if (!opts) opts = &defaults;
    const ds4_backend_ops *ops = ds4_backend_find(opts->backend, NULL);
    if (!ops) return NULL;
    if (opts->n_seq < 0 || opts->n_seq > DS4_MAX_SEQ) {
        ds4_fail("%d sequences: 1 to %d", opts->n_seq, DS4_MAX_SEQ);
        return NULL;
    }
    ds4_ctx *c = ds4_calloc(1, sizeof *c);
    ds4_core *core = ds4_calloc(1, sizeof *core);
    const int n_seq = opts->n_seq > 0 ? opts->n_seq : 1;
    uint64_t *pos = ds4_calloc((size_t)n_seq, sizeof *pos);
    if (!c || !core || !pos) goto fail;
    ds4_ctx_opts o = *opts;
    o.n_seq = n_seq;
    *core = (ds4_core){m, ops, NULL, opts->n_batch > 0 ? opts->n_batch : DEFAULT_BATCH, n_seq,
                       opts->n_threads > 0 ? opts->n_threads : ds4_cpu_count(), opts->kv_capacity, pos};
    if (ops->open(m, &o, &core->be) < 0) goto fail;
    c->core = core;
    c->owner = true;
    return c;
fail:
    free(pos);
    free(core);
    free(c);
    return NULL;
}

ds4_ctx *ds4_ctx_sequence(ds4_ctx *c, int seq) {
    if (seq < 0 || seq >= c->core->n_seq) {
        ds4_fail("sequence %d: this context holds %d", seq, c->core->n_seq);
        return NULL;
    }
    ds4_ctx *v = ds4_calloc(1, sizeof *v);
    if (v) *v = (ds4_ctx){c->core, false, seq, 0};
    return v;
}

void ds4_ctx_free(ds4_ctx *c) {
    if (!c) return;
    if (c->owner) {
        c->core->ops->close(c->core->be);
        free(c->core->pos);
        free(c->core);
    }
    free(c);
}

void ds4_ctx_reset(ds4_ctx *c) {
    c->core->ops->state_reset(c->core->be, c->seq);
    c->core->pos[c->seq] = 0;
}

uint64_t ds4_ctx_pos(const ds4_ctx *c) { return c->core->pos[c->seq]; }
uint32_t ds4_ctx_vocab(const ds4_ctx *c) { return c->core->model->cfg.n_vocab; }
const ds4_model *ds4_ctx_model(const ds4_ctx *c) { return c->core->model; }
int ds4_ctx_n_seq(const ds4_ctx *c) { return c->core->n_seq; }
uint64_t ds4_ctx_kv_bytes(const ds4_ctx *c) { return c->core->ops->state_bytes(c->core->be, c->seq); }
const char *ds4_ctx_backend(const ds4_ctx *c) { return c->core->ops->describe(c->core->be); }
double ds4_ctx_indexer_seconds(const ds4_ctx *c) { return c->indexer_seconds; }

int ds4_ctx_threads(const ds4_ctx *c) { return c->core->n_threads; }

uint64_t ds4_ctx_device_bytes(ds4_ctx *c) {
    return c->core->ops->device_bytes ? c->core->ops->device_bytes(c->core->be) : 0;
}

double ds4_ctx_probe_gbps(ds4_ctx *c) {
    return c->core->ops->probe_gbps ? c->core->ops->probe_gbps(c->core->be) : 0;
}

int ds4_ctx_state_get(ds4_ctx *c, ds4_kv_snapshot *s) {
    if (c->core->ops->state_get(c->core->be, c->seq, s) < 0) return -1;
    s->pos = ds4_ctx_pos(c);
    return 0;
}

int ds4_ctx_state_set(ds4_ctx *c, const ds4_kv_snapshot *s) {
    ds4_ctx_reset(c);
    if (ds4_kv_snapshot_check(s, s->pos) < 0 || c->core->ops->state_set(c->core->be, c->seq, s) < 0) {
        ds4_ctx_reset(c);
        return -1;
    }
    c->core->pos[c->seq] = s->pos;
    return 0;
}

/* One stage: timed for the profile (by the backend when it keeps a device clock), and the
 * chunk stops at the first failure. */
#define STAGE(prof, call)                                    \
    do {                                                     \
        const double t0_ = ds4_prof_begin_stage(prof);       \
        const int rc_ = (call);                              \
        ds4_prof_end(prof, ops->device_clock ? -1.0 : t0_);  \
        if (rc_ < 0) return -1;                              \
    } while (0)

/* A chunk: its rows' tokens, segments, and the rows whose logits go out (and where). */
typedef struct {
    int32_t *tokens;
    ds4_segment *seg;
    int n_seg, T;
    int *rows;
    float **out;
    int n_out;
} chunk;

static int eval_chunk(ds4_core *core, const chunk *k, double *indexer_seconds) {
    const ds4_backend_ops *ops = core->ops;
    ds4_backend *b = core->be;
    const ds4_config *cf = &core->model->cfg;
    const ds4_chunk c = {k->seg, k->n_seg, k->T};
    const int T = k->T;
    STAGE(DS4_PROF_EMBED, ops->embed(b, k->tokens, T));
    for (int il = 0; il < (int)cf->n_layer; il++) {
        STAGE(DS4_PROF_HC_PRE, ops->hc_pre(b, il, DS4_SITE_ATTN, T));
        STAGE(DS4_PROF_ATTN_PROJ, ops->attn_project(b, il, &c));
        STAGE(DS4_PROF_KV_APPEND, ops->kv_append(b, il, &c));
        if (cf->kind[il] == DS4_LAYER_CSA) {
            const double t0 = ds4_time_now();
            STAGE(DS4_PROF_INDEXER, ops->indexer_select(b, il, &c));
            *indexer_seconds += ds4_time_now() - t0;
        }
        STAGE(DS4_PROF_ATTEND, ops->attend(b, il, &c));
        STAGE(DS4_PROF_HC_POST, ops->hc_post(b, il, DS4_SITE_ATTN, T));
        STAGE(DS4_PROF_HC_PRE, ops->hc_pre(b, il, DS4_SITE_FFN, T));
        STAGE(DS4_PROF_FFN, ops->ffn(b, il, k->tokens, T));
        STAGE(DS4_PROF_HC_POST, ops->hc_post(b, il, DS4_SITE_FFN, T));
    }
    if (k->n_out) STAGE(DS4_PROF_HEAD, ops->head(b, k->rows, k->out, k->n_out));
    return 0;
}

int ds4_eval_many(const ds4_eval_item *items, int n_items) {
    if (n_items < 1) return 0;
    ds4_core *core = items[0].seq->core;
    const ds4_config *cf = &core->model->cfg;
    uint64_t total = 0;
    for (int i = 0; i < n_items; i++) {
        const ds4_eval_item *it = &items[i];
        if (it->seq->core != core) return ds4_fail("the sequences of one step must share a context");
        for (int j = 0; j < i; j++)
            if (items[j].seq->seq == it->seq->seq) return ds4_fail("sequence %d twice in one step", it->seq->seq);
        if (it->n < 0) return ds4_fail("a negative token count");
        for (int t = 0; t < it->n; t++)
            if (it->tokens[t] < 0 || (uint32_t)it->tokens[t] >= cf->n_vocab)
                return ds4_fail("token %d at index %d is outside the vocabulary (0..%u)", it->tokens[t], t,
                                cf->n_vocab - 1);
        const uint64_t pos = core->pos[it->seq->seq];
        if (core->capacity && pos + (uint64_t)it->n > core->capacity)
            return ds4_fail("the context holds %llu tokens: %d more do not fit after %llu",
                            (unsigned long long)core->capacity, it->n, (unsigned long long)pos);
        total += (uint64_t)it->n;
    }
    const int B = core->n_batch;
    chunk k = {ds4_malloc((size_t)B * sizeof *k.tokens), ds4_malloc((size_t)n_items * sizeof *k.seg), 0, 0,
               ds4_malloc((size_t)B * sizeof *k.rows), ds4_malloc((size_t)B * sizeof *k.out), 0};
    int *done = ds4_calloc((size_t)n_items, sizeof *done), rc = 0;
    if (!k.tokens || !k.seg || !k.rows || !k.out || !done) rc = -1;
    /* Rows go in item order: each chunk takes what is left of the items, up to B rows. */
    for (uint64_t fed = 0; rc == 0 && fed < total;) {
        k.n_seg = k.T = k.n_out = 0;
        for (int i = 0; i < n_items && k.T < B; i++) {
            const ds4_eval_item *it = &items[i];
            const int take = it->n - done[i] < B - k.T ? it->n - done[i] : B - k.T;
            if (take <= 0) continue;
            const int s = it->seq->seq;
            k.seg[k.n_seg++] = (ds4_segment){s, k.T, take, core->pos[s]};
            memcpy(k.tokens + k.T, it->tokens + done[i], (size_t)take * sizeof *k.tokens);
            for (int t = 0; t < take && it->logits; t++) {
                const int idx = done[i] + t;
                if (!it->all_logits && idx != it->n - 1) continue;
                k.rows[k.n_out] = k.T + t;
                k.out[k.n_out++] = it->logits + (it->all_logits ? (size_t)idx * cf->n_vocab : 0);
            }
            k.T += take;
            done[i] += take;
        }
        double idx_seconds = 0;
        rc = eval_chunk(core, &k, &idx_seconds);
        for (int s = 0; s < k.n_seg; s++) core->pos[k.seg[s].seq] += (uint64_t)k.seg[s].n;
        for (int i = 0; i < n_items; i++) items[i].seq->indexer_seconds += idx_seconds / (double)n_items;
        fed += (uint64_t)k.T;
    }
    free(k.tokens);
    free(k.seg);
    free(k.rows);
    free(k.out);
    free(done);
    return rc;
}

int ds4_eval(ds4_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits) {
    const ds4_eval_item it = {c, tokens, n, logits, all_logits};
    return ds4_eval_many(&it, 1);
}

int ds4_eval_progress(ds4_ctx *c, const int32_t *tokens, uint64_t n, float *logits, ds4_progress *progress) {
    const uint64_t step = 65536;
    for (uint64_t done = 0; done < n;) {
        const uint64_t m = n - done < step ? n - done : step;
        if (ds4_eval(c, tokens + done, (int)m, done + m == n ? logits : NULL, false) < 0) return -1;
        if (progress) ds4_progress_add(progress, m);
        done += m;
    }
    return 0;
}
