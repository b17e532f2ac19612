/* worker.c - see worker.h. */
#include "worker.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "ops.h"
#include "scheduler.h"
#include "util.h"

struct ds4_worker {
    pthread_mutex_t mu;
    pthread_cond_t wake;       /* the worker's: new jobs, cancellations, stop */
    pthread_t thread;
    ds4_ctx *ctx;
    const ds4_tokenizer *tok;
    ds4_kvcache *cache;
    ds4_sched *sched;
    ds4_job **running;         /* by slot */
    int n_slots, queue_limit, queued;
    ds4_job *head, *tail;
    bool stopping, cancel_all, quit;
};

ds4_job *ds4_job_new(void) {
    ds4_job *j = ds4_calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_cond_init(&j->cv, NULL);
    j->slot = -1;
    j->refs = 1;
    j->top_logprobs = -1;
    return j;
}

static void job_free(ds4_job *j) {
    pthread_cond_destroy(&j->cv);
    free(j->ids);
    for (int i = 0; i < j->n_stops; i++) free(j->stops[i]);
    free(j->stops);
    ds4_buf_free(&j->text);
    json_object_put(j->logprobs);
    ds4_gen_result_free(&j->result);
    free(j);
}

void ds4_job_release(ds4_worker *w, ds4_job *j) {
    pthread_mutex_lock(&w->mu);
    const bool last = --j->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (last) job_free(j);
}

void ds4_worker_lock(ds4_worker *w) { pthread_mutex_lock(&w->mu); }
void ds4_worker_unlock(ds4_worker *w) { pthread_mutex_unlock(&w->mu); }

void ds4_worker_wait(ds4_worker *w, ds4_job *j, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + seconds;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(&j->cv, &w->mu, &ts);
}

void ds4_worker_cancel(ds4_worker *w, ds4_job *j) {
    j->cancel = true;
    pthread_cond_signal(&w->wake);
}

void ds4_worker_load(ds4_worker *w, int *queued, int *running) {
    pthread_mutex_lock(&w->mu);
    *queued = w->queued;
    *running = 0;
    for (int i = 0; i < w->n_slots; i++) *running += w->running[i] != NULL;
    pthread_mutex_unlock(&w->mu);
}

int ds4_worker_submit(ds4_worker *w, ds4_job *j) {
    pthread_mutex_lock(&w->mu);
    if (w->stopping || w->queued >= w->queue_limit) {
        const int rc = w->stopping ? -2 : -1;
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    j->refs++;
    j->t_submit = ds4_time_now();
    j->next = NULL;
    if (w->tail) w->tail->next = j;
    else w->head = j;
    w->tail = j;
    w->queued++;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

/* ---- the generation's callbacks, on the worker thread ---- */

static json_object *logprob_entry(const ds4_tokenizer *tok, int32_t id, float lp) {
    json_object *e = json_object_new_object(), *bytes = json_object_new_array();
    const char *b = "";
    size_t n = 0;
    ds4_token_bytes(tok, id, &b, &n);
    json_object_object_add(e, "token", ds4_api_text(b, n));
    json_object_object_add(e, "logprob", json_object_new_double(lp));
    for (size_t i = 0; i < n; i++) json_object_array_add(bytes, json_object_new_int((unsigned char)b[i]));
    json_object_object_add(e, "bytes", bytes);
    return e;
}

typedef struct {
    ds4_worker *w;
    ds4_job *j;
} job_ctx;

/* OpenAI's logprobs: the token's log-probability and the top alternatives. */
static int on_sampled(void *arg, int32_t token, const float *logits, uint32_t V) {
    job_ctx *jc = arg;
    ds4_job *j = jc->j;
    if (j->top_logprobs < 0 || !jc->w->tok) return 0;
    const float lse = (float)ds4_logsumexp(logits, V);
    json_object *e = logprob_entry(jc->w->tok, token, logits[token] - lse), *top = json_object_new_array();
    /* the k most likely, kept sorted while the vocabulary goes by once (k is at most 20) */
    int32_t best[20];
    int nb = 0;
    const int k = j->top_logprobs < 20 ? j->top_logprobs : 20;
    for (uint32_t i = 0; k > 0 && i < V; i++) {
        if (nb == k && logits[i] <= logits[best[nb - 1]]) continue;
        int at = nb < k ? nb++ : nb - 1;
        while (at > 0 && logits[best[at - 1]] < logits[i]) {
            best[at] = best[at - 1];
            at--;
        }
        best[at] = (int32_t)i;
    }
    for (int q = 0; q < nb; q++) json_object_array_add(top, logprob_entry(jc->w->tok, best[q], logits[best[q]] - lse));
    json_object_object_add(e, "top_logprobs", top);
    pthread_mutex_lock(&jc->w->mu);
    if (!j->logprobs) j->logprobs = json_object_new_array();
    json_object_array_add(j->logprobs, e);
    pthread_mutex_unlock(&jc->w->mu);
    return 0;
}

static int on_emit(void *arg, int32_t token, const char *text, size_t len) {
    job_ctx *jc = arg;
    (void)token;
    if (!len) return 0;
    pthread_mutex_lock(&jc->w->mu);
    const int rc = ds4_buf_append(&jc->j->text, text, len);
    pthread_cond_broadcast(&jc->j->cv);
    pthread_mutex_unlock(&jc->w->mu);
    return rc;
}

static void on_done(void *arg, int rc, ds4_gen_result *r) {
    job_ctx *jc = arg;
    ds4_worker *w = jc->w;
    ds4_job *j = jc->j;
    pthread_mutex_lock(&w->mu);
    j->result = *r;
    j->done = true;
    j->failed = rc < 0;
    if (rc < 0) snprintf(j->error, sizeof j->error, "%s", ds4_error());
    if (j->slot >= 0) w->running[j->slot] = NULL;
    pthread_cond_broadcast(&j->cv);
    const bool last = --j->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (last) job_free(j);
    free(jc);
}

/* A job that ends before it started (the lock held): the worker's reference goes. */
static void end_unstarted(ds4_job *j, const char *why) {
    j->done = j->failed = true;
    snprintf(j->error, sizeof j->error, "%s", why);
    pthread_cond_broadcast(&j->cv);
    if (--j->refs == 0) job_free(j);
}

/* Start the queue's first job on a free sequence (the lock held; dropped meanwhile). */
static void admit(ds4_worker *w) {
    ds4_job *j = w->head;
    w->head = j->next;
    if (!w->head) w->tail = NULL;
    w->queued--;
    job_ctx *jc = ds4_malloc(sizeof *jc);
    if (j->cancel || !jc) {
        free(jc);
        end_unstarted(j, j->cancel ? "cancelled" : "out of memory");
        return;
    }
    jc->w = w;
    jc->j = j;
    const ds4_gen_opts go = {.cache = w->cache, .cache_period = 4096, .cache_stable = j->stable, .cache_reply = true,
                             .max_tokens = j->max_tokens, .temperature = (float)j->temperature,
                             .top_p = (float)j->top_p, .seed = j->seed, .tok = w->tok, .show_special = true,
                             .stops = (const char *const *)j->stops, .n_stops = j->n_stops, .emit = on_emit, .sampled = on_sampled,
                             .emit_arg = jc};
    pthread_mutex_unlock(&w->mu);
    j->t_start = ds4_time_now();
    const int slot = ds4_sched_add(w->sched, j->ids, j->n_ids, &go, on_done, jc);
    char err[256];
    if (slot < 0) snprintf(err, sizeof err, "%s", ds4_error());
    pthread_mutex_lock(&w->mu);
    if (slot < 0) {
        free(jc);
        end_unstarted(j, err);
        return;
    }
    j->slot = slot;
    j->cached = ds4_sched_cached(w->sched, slot);
    j->started = true;
    w->running[slot] = j;
    pthread_cond_broadcast(&j->cv);
}

static void *run(void *arg) {
    ds4_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        /* cancellations first: a slot they free may take a queued job */
        for (int i = 0; i < w->n_slots; i++) {
            ds4_job *j = w->running[i];
            if (j && (j->cancel || w->cancel_all)) {
                pthread_mutex_unlock(&w->mu);
                ds4_sched_cancel(w->sched, i); /* on_done takes the lock */
                pthread_mutex_lock(&w->mu);
            }
        }
        while (w->head && (w->cancel_all || ds4_sched_free_slots(w->sched) > 0)) {
            if (w->cancel_all) w->head->cancel = true;
            admit(w);
        }
        int active = 0;
        for (int i = 0; i < w->n_slots; i++) active += w->running[i] != NULL;
        if (!active) {
            if (w->quit) break;
            pthread_cond_wait(&w->wake, &w->mu);
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        ds4_sched_step(w->sched); /* a failed step ends its requests with the error */
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

ds4_worker *ds4_worker_start(ds4_ctx *ctx, const ds4_tokenizer *tok, ds4_kvcache *cache, int queue_limit) {
    ds4_worker *w = ds4_calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    w->ctx = ctx;
    w->tok = tok;
    w->cache = cache;
    w->queue_limit = queue_limit;
    w->n_slots = ds4_ctx_n_seq(ctx);
    w->running = ds4_calloc((size_t)w->n_slots, sizeof *w->running);
    w->sched = w->running ? ds4_sched_new(ctx, 0) : NULL;
    if (!w->sched || pthread_create(&w->thread, NULL, run, w) != 0) {
        if (w->sched) ds4_fail("cannot start the worker thread");
        ds4_sched_free(w->sched);
        free(w->running);
        free(w);
        return NULL;
    }
    return w;
}

void ds4_worker_stop(ds4_worker *w, double grace) {
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_mutex_unlock(&w->mu);
    const double t_end = ds4_time_now() + grace;
    for (;;) {
        int queued, running;
        ds4_worker_load(w, &queued, &running);
        if (!queued && !running) break;
        if (ds4_time_now() >= t_end) break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&w->mu);
    w->cancel_all = w->quit = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
}

void ds4_worker_free(ds4_worker *w) {
    if (!w) return;
    ds4_sched_free(w->sched);
    free(w->running);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    free(w);
}
