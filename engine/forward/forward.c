/* forward.c - the schedule of the forward pass (forward.h), written once for every
 * backend: a prompt goes in chunks of n_batch tokens, each chunk through the stages of
 * backend.h layer by layer; the context keeps the position, the profile and the
 * indexer's share of the time. */
#include "forward.h"

#include <stdlib.h>

#include "profile.h"
#include "util.h"

#define DEFAULT_BATCH 256

struct ds4_ctx {
    const ds4_model *model;
    const ds4_backend_ops *ops;
    ds4_backend *be;
    int n_batch;
    uint64_t pos, capacity;
    double indexer_seconds;
};

ds4_ctx *ds4_ctx_new(const ds4_model *m, const ds4_ctx_opts *opts) {
    const ds4_ctx_opts defaults = {0};
    if (!opts) opts = &defaults;
    const ds4_backend_ops *ops = ds4_backend_find(opts->backend, NULL);
    if (!ops) return NULL;
    ds4_ctx *c = ds4_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->model = m;
    c->ops = ops;
    c->n_batch = opts->n_batch > 0 ? opts->n_batch : DEFAULT_BATCH;
    c->capacity = opts->kv_capacity;
    if (ops->open(m, opts, &c->be) < 0) {
        free(c);
        return NULL;
    }
    return c;
}

void ds4_ctx_free(ds4_ctx *c) {
    if (!c) return;
    c->ops->close(c->be);
    free(c);
}

void ds4_ctx_reset(ds4_ctx *c) {
    c->ops->state_reset(c->be);
    c->pos = 0;
}

uint64_t ds4_ctx_pos(const ds4_ctx *c) { return c->pos; }
uint32_t ds4_ctx_vocab(const ds4_ctx *c) { return c->model->cfg.n_vocab; }
const ds4_model *ds4_ctx_model(const ds4_ctx *c) { return c->model; }
uint64_t ds4_ctx_kv_bytes(const ds4_ctx *c) { return c->ops->state_bytes(c->be); }
const char *ds4_ctx_backend(const ds4_ctx *c) { return c->ops->describe(c->be); }
double ds4_ctx_probe_gbps(ds4_ctx *c) { return c->ops->probe_gbps ? c->ops->probe_gbps(c->be) : 0; }
double ds4_ctx_indexer_seconds(const ds4_ctx *c) { return c->indexer_seconds; }

int ds4_ctx_state_get(ds4_ctx *c, ds4_kv_snapshot *s) {
    if (c->ops->state_get(c->be, s) < 0) return -1;
    s->pos = c->pos;
    return 0;
}

int ds4_ctx_state_set(ds4_ctx *c, const ds4_kv_snapshot *s) {
    ds4_ctx_reset(c);
    if (ds4_kv_snapshot_check(s, s->pos) < 0 || c->ops->state_set(c->be, s) < 0) {
        ds4_ctx_reset(c);
        return -1;
    }
    c->pos = s->pos;
    return 0;
}

/* One stage: timed for the profile, and the chunk stops at the first failure. */
#define STAGE(prof, call)                    \
    do {                                     \
        const double t0_ = ds4_prof_begin(); \
        const int rc_ = (call);              \
        ds4_prof_end(prof, t0_);             \
        if (rc_ < 0) return -1;              \
    } while (0)

static int eval_chunk(ds4_ctx *c, const int32_t *tokens, int T, float *logits, bool all_logits) {
    const ds4_backend_ops *ops = c->ops;
    ds4_backend *b = c->be;
    const ds4_config *cf = &c->model->cfg;
    const uint64_t pos0 = c->pos;
    STAGE(DS4_PROF_EMBED, ops->embed(b, tokens, T));
    for (int il = 0; il < (int)cf->n_layer; il++) {
        STAGE(DS4_PROF_HC_PRE, ops->hc_pre(b, il, DS4_SITE_ATTN, T));
        STAGE(DS4_PROF_ATTN_PROJ, ops->attn_project(b, il, T, pos0));
        STAGE(DS4_PROF_KV_APPEND, ops->kv_append(b, il, T, pos0));
        if (cf->kind[il] == DS4_LAYER_CSA) {
            const double t0 = ds4_time_now();
            STAGE(DS4_PROF_INDEXER, ops->indexer_select(b, il, T, pos0));
            c->indexer_seconds += ds4_time_now() - t0;
        }
        STAGE(DS4_PROF_ATTEND, ops->attend(b, il, T, pos0));
        STAGE(DS4_PROF_HC_POST, ops->hc_post(b, il, DS4_SITE_ATTN, T));
        STAGE(DS4_PROF_HC_PRE, ops->hc_pre(b, il, DS4_SITE_FFN, T));
        STAGE(DS4_PROF_FFN, ops->ffn(b, il, tokens, T));
        STAGE(DS4_PROF_HC_POST, ops->hc_post(b, il, DS4_SITE_FFN, T));
    }
    c->pos += (uint64_t)T;
    if (logits) STAGE(DS4_PROF_HEAD, ops->head(b, T, all_logits ? 0 : T - 1, logits));
    return 0;
}

int ds4_eval(ds4_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits) {
    const ds4_config *cf = &c->model->cfg;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= cf->n_vocab)
            return ds4_fail("token %d at index %d is outside the vocabulary (0..%u)", tokens[i], i, cf->n_vocab - 1);
    if (c->capacity && c->pos + (uint64_t)n > c->capacity)
        return ds4_fail("the context holds %llu tokens: %llu more do not fit after %llu",
                        (unsigned long long)c->capacity, (unsigned long long)n, (unsigned long long)c->pos);
    for (int done = 0; done < n;) {
        int T = n - done < c->n_batch ? n - done : c->n_batch;
        bool last = done + T == n;
        float *out = !logits ? NULL : all_logits ? logits + (size_t)done * cf->n_vocab : last ? logits : NULL;
        if (eval_chunk(c, tokens + done, T, out, all_logits) < 0) return -1;
        done += T;
    }
    return 0;
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
