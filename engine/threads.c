/* threads.c - see threads.h. */
#include "threads.h"

#include <pthread.h>
#include <stdbool.h>

#define MAX_THREADS 512

typedef struct {
    ds4_range_fn fn;
    void *ctx;
    uint64_t begin, end;
    int thread;
} slice;

static void *run_slice(void *arg) {
    slice *s = arg;
    s->fn(s->ctx, s->begin, s->end, s->thread);
    return NULL;
}

void ds4_parallel_for(int n_threads, uint64_t n, ds4_range_fn fn, void *ctx) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if ((uint64_t)n_threads > n) n_threads = n ? (int)n : 1;
    slice slices[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    bool started[MAX_THREADS];
    for (int t = 0; t < n_threads; t++) {
        slices[t] = (slice){fn, ctx, n * (uint64_t)t / (uint64_t)n_threads,
                            n * (uint64_t)(t + 1) / (uint64_t)n_threads, t};
        /* If a thread cannot be created its slice runs on this one. */
        started[t] = t > 0 && pthread_create(&tids[t], NULL, run_slice, &slices[t]) == 0;
    }
    for (int t = 0; t < n_threads; t++)
        if (!started[t]) run_slice(&slices[t]);
    for (int t = 1; t < n_threads; t++)
        if (started[t]) pthread_join(tids[t], NULL);
}
