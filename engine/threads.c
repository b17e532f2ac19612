/* threads.c - see threads.h. A pool of worker threads made on first use and kept: a
 * decoded token runs a few hundred parallel loops, and creating threads for each cost
 * more than some of the loops themselves. Workers spin briefly for the next loop, then
 * sleep on a condition variable. */
#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define MAX_THREADS 512
#define SPIN_ROUNDS 20000

typedef struct {
    ds4_range_fn fn;
    void *ctx;
    uint64_t n;
    uint64_t grain; /* 0: one slice per thread */
    int n_threads;
} job;

/* The next unclaimed item of each thread's slice of a chunked loop, a cache line each
 * so a thread claims its own chunks without touching the others' lines. */
static struct {
    _Alignas(64) atomic_uint_fast64_t next;
} cursor[MAX_THREADS];

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER; /* one loop at a time */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int n_workers;            /* threads made so far (the caller is thread 0) */
static job current;
static atomic_uint generation;   /* bumped for each loop */
static atomic_int pending;       /* slices of the current loop not yet finished */
static _Thread_local bool in_worker;

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static uint64_t slice_begin(const job *j, int t) { return j->n * (uint64_t)t / (uint64_t)j->n_threads; }

static void run_slice(const job *j, int t) {
    if (!j->grain) {
        j->fn(j->ctx, slice_begin(j, t), slice_begin(j, t + 1), t);
        return;
    }
    /* Own slice first, then whatever is left of the others'. */
    for (int k = 0; k < j->n_threads; k++) {
        const int owner = (t + k) % j->n_threads;
        const uint64_t end = slice_begin(j, owner + 1);
        for (;;) {
            const uint64_t begin = atomic_fetch_add(&cursor[owner].next, j->grain);
            if (begin >= end) break;
            j->fn(j->ctx, begin, end - begin > j->grain ? begin + j->grain : end, t);
        }
    }
}

static unsigned worker_start[MAX_THREADS]; /* the generation each worker was made in */

static void *worker(void *arg) {
    const int id = (int)(intptr_t)arg;
    unsigned seen = worker_start[id]; /* not the current value: a job may already be posted */
    in_worker = true;
    for (;;) {
        for (int spin = 0; atomic_load(&generation) == seen && spin < SPIN_ROUNDS; spin++) cpu_relax();
        /* The job and its generation are read together, under the lock they are set under. */
        pthread_mutex_lock(&wake_lock);
        while (atomic_load(&generation) == seen) pthread_cond_wait(&wake, &wake_lock);
        seen = atomic_load(&generation);
        const job j = current;
        pthread_mutex_unlock(&wake_lock);
        if (id < j.n_threads) {
            run_slice(&j, id);
            atomic_fetch_sub(&pending, 1);
        }
    }
    return NULL;
}

static void parallel_run(int n_threads, uint64_t n, uint64_t grain, ds4_range_fn fn, void *ctx) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if ((uint64_t)n_threads > n) n_threads = n ? (int)n : 1;
    /* One slice, or a loop started from inside another: run it here. */
    if (n_threads == 1 || in_worker) {
        if (!grain) fn(ctx, 0, n, 0);
        else
            for (uint64_t b = 0; b < n; b += grain) fn(ctx, b, n - b > grain ? b + grain : n, 0);
        return;
    }
    pthread_mutex_lock(&pool_lock);
    while (n_workers < n_threads - 1) {
        pthread_t t;
        worker_start[n_workers + 1] = atomic_load(&generation);
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)(n_workers + 1)) != 0) break;
        pthread_detach(t);
        n_workers++;
    }
    if (n_threads > n_workers + 1) n_threads = n_workers + 1; /* could not make more */
    const job j = {fn, ctx, n, grain, n_threads};
    for (int t = 0; grain && t < n_threads; t++) atomic_store(&cursor[t].next, slice_begin(&j, t));
    atomic_store(&pending, n_threads - 1);
    pthread_mutex_lock(&wake_lock);
    current = j;
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&wake_lock);
    run_slice(&j, 0);
    while (atomic_load(&pending) > 0) cpu_relax();
    pthread_mutex_unlock(&pool_lock);
}

void ds4_parallel_for(int n_threads, uint64_t n, ds4_range_fn fn, void *ctx) {
    parallel_run(n_threads, n, 0, fn, ctx);
}

void ds4_parallel_for_chunked(int n_threads, uint64_t n, uint64_t grain, ds4_range_fn fn, void *ctx) {
    parallel_run(n_threads, n, grain ? grain : 1, fn, ctx);
}
