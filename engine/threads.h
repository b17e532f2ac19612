/* threads.h - a minimal parallel-for over a pool of pthreads for data-parallel loops
 * (matrix products, attention, tensor conversion). */
#ifndef DS4_THREADS_H
#define DS4_THREADS_H

#include <stdint.h>

/* Calls fn(ctx, begin, end, thread) on contiguous slices of [0, n) from up to
 * n_threads threads (the caller's thread included) and waits for all of them. */
typedef void (*ds4_range_fn)(void *ctx, uint64_t begin, uint64_t end, int thread);
void ds4_parallel_for(int n_threads, uint64_t n, ds4_range_fn fn, void *ctx);

/* The same for loops whose slices may take unequal time (memory-bound matrix rows on
 * cores that share the memory bus and a hypervisor): each thread takes chunks of grain
 * items from its own slice, front to back, and then from the other slices, so threads
 * finish together. fn gets at most grain items a call and may run many times per thread;
 * thread ids stay unique. */
void ds4_parallel_for_chunked(int n_threads, uint64_t n, uint64_t grain, ds4_range_fn fn, void *ctx);

#endif
