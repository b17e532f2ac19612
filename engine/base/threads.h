/* threads.h - a minimal parallel-for over a pool of pthreads for data-parallel loops
 * (matrix products, attention, tensor conversion). */
#ifndef DS4_THREADS_H
#define DS4_THREADS_H

#include <stdint.h>

/* Calls fn(ctx, begin, end, thread) on n_threads contiguous slices of [0, n), from up to
 * n_threads threads (the caller's included), and returns when all have run. `thread`
 * names the thread that runs the call (0..n_threads-1, unique among calls running at
 * the same time), not the slice: a thread that finds a slice nobody has started runs it
 * too, so per-thread state must accumulate across calls. A loop started from inside fn
 * runs on the calling thread. */
typedef void (*ds4_range_fn)(void *ctx, uint64_t begin, uint64_t end, int thread);
void ds4_parallel_for(int n_threads, uint64_t n, ds4_range_fn fn, void *ctx);

/* The same for loops whose slices may take unequal time (memory-bound matrix rows on
 * cores that share the memory bus and a hypervisor): each thread takes chunks of grain
 * items from its own slice, front to back, and then from the other slices, so threads
 * finish together. fn gets at most grain items a call and may run many times per thread. */
void ds4_parallel_for_chunked(int n_threads, uint64_t n, uint64_t grain, ds4_range_fn fn, void *ctx);

#endif
