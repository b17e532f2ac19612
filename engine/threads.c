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
    int n_threads;
} job;

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

static void run_slice(const job *j, int t) {
    const uint64_t begin = j->n * (uint64_t)t / (uint64_t)j->n_threads;
    const uint64_t end = j->n * (uint64_t)(t + 1) / (uint64_t)j->n_threads;
    j->fn(j->ctx, begin, end, t);
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

void ds4_parallel_for(int n_threads, uint64_t n, ds4_range_fn fn, void *ctx) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if ((uint64_t)n_threads > n) n_threads = n ? (int)n : 1;
    /* One slice, or a loop started from inside another: run it here. */
    if (n_threads == 1 || in_worker) {
        const job j = {fn, ctx, n, 1};
        run_slice(&j, 0);
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
    atomic_store(&pending, n_threads - 1);
    pthread_mutex_lock(&wake_lock);
    current = (job){fn, ctx, n, n_threads};
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&wake_lock);
    const job j = {fn, ctx, n, n_threads};
    run_slice(&j, 0);
    while (atomic_load(&pending) > 0) cpu_relax();
    pthread_mutex_unlock(&pool_lock);
}
