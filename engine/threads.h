/* threads.h - a minimal parallel-for over pthreads for data-parallel loops (tensor
 * conversion, later the matrix kernels). */
#ifndef DS4_THREADS_H
#define DS4_THREADS_H

#include <stdint.h>

/* Calls fn(ctx, begin, end, thread) on contiguous slices of [0, n) from up to
 * n_threads threads (the caller's thread included) and waits for all of them. */
typedef void (*ds4_range_fn)(void *ctx, uint64_t begin, uint64_t end, int thread);
void ds4_parallel_for(int n_threads, uint64_t n, ds4_range_fn fn, void *ctx);

#endif
