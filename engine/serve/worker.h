/* worker.h - the server's model thread: requests (jobs) wait in a bounded queue, take a
 * free sequence of the context and advance together through the scheduler, one step at
 * a time. Connection threads submit jobs and read what they produce; everything a job
 * shares between the two is guarded by the worker's one lock, and each job has a
 * condition the worker signals when there is something new. */
#ifndef DS4_WORKER_H
#define DS4_WORKER_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "generate.h"
#include "kvcache_disk.h"

typedef struct ds4_worker ds4_worker;

typedef struct ds4_job {
    /* set by the submitter */
    int32_t *ids;
    uint64_t n_ids, stable;    /* stable: a prefix worth a checkpoint of its own */
    int max_tokens;
    double temperature, top_p;
    uint64_t seed;
    char **stops;              /* owned */
    int n_stops;
    int top_logprobs;          /* -1: none */
    /* filled by the worker, under its lock */
    pthread_cond_t cv;
    bool started, done, failed;
    uint64_t cached;
    ds4_buf text;              /* generated text so far (the reader takes it from `read`) */
    size_t read;
    json_object *logprobs;     /* entries not taken yet (an array), NULL without */
    ds4_gen_result result;     /* once done */
    char error[256];
    double t_submit, t_start;
    /* set by the reader */
    bool cancel;
    /* the worker's */
    int slot, refs;
    struct ds4_job *next;
} ds4_job;

/* Over a context of n_seq sequences; cache may be NULL. */
ds4_worker *ds4_worker_start(ds4_ctx *ctx, const ds4_tokenizer *tok, ds4_kvcache *cache, int queue_limit);
/* Let what runs finish for `grace` seconds, then cancel the rest (their states saved);
 * the thread ends. */
void ds4_worker_stop(ds4_worker *w, double grace);
void ds4_worker_free(ds4_worker *w);

ds4_job *ds4_job_new(void);
/* Queue a job (the worker then holds a reference): 0, -1 when the queue is full, -2
 * when the server is stopping. */
int ds4_worker_submit(ds4_worker *w, ds4_job *j);
/* The reader's side: lock, wait (up to `seconds`) for news, unlock. */
void ds4_worker_lock(ds4_worker *w);
void ds4_worker_unlock(ds4_worker *w);
void ds4_worker_wait(ds4_worker *w, ds4_job *j, double seconds);
/* Ask the worker to end the job (the client went away); with the lock held. */
void ds4_worker_cancel(ds4_worker *w, ds4_job *j);
/* Drop a reference (the reader's, when it is done with the job). */
void ds4_job_release(ds4_worker *w, ds4_job *j);
/* Jobs waiting and running now. */
void ds4_worker_load(ds4_worker *w, int *queued, int *running);

#endif
