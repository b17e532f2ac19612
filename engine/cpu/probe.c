/* probe.c - see probe.h. */
#include "probe.h"

#include <stdlib.h>
#include <unistd.h>

#include "threads.h"
#include "util.h"
#include "vec.h"

typedef struct {
    const float *buf;
    uint64_t n;
    double *sums;
} probe_job;

/* Reads its slice once through the SIMD dot kernel (a vector dotted with itself: one
 * stream from memory), as the matrix kernels read weights. */
static void probe_slice(void *arg, uint64_t begin, uint64_t end, int thread) {
    probe_job *j = arg;
    double s = 0;
    for (uint64_t i = begin; i < end; i += 4096) {
        uint64_t len = end - i < 4096 ? end - i : 4096;
        s += ds4_dot(j->buf + i, j->buf + i, len);
    }
    j->sums[thread] += s; /* a thread may run several slices */
}

/* The last-level cache, so that the probe's buffer can be far larger: a server's L3
 * holds hundreds of MiB (300 on the Xeon that runs our GPU tests), and a buffer that
 * fits in it measures the cache, not the memory. */
static uint64_t last_level_cache_bytes(void) {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0) return (uint64_t)l3;
    char *text = ds4_read_file("/sys/devices/system/cpu/cpu0/cache/index3/size", NULL);
    uint64_t kib = text ? strtoull(text, NULL, 10) : 0;
    free(text);
    return kib * 1024;
}

double ds4_probe_read_gbps(int n_threads) {
    /* 256 MiB, or four times the last-level cache */
    const uint64_t llc = last_level_cache_bytes();
    const uint64_t n = (llc * 4 > (256ull << 20) ? llc * 4 : 256ull << 20) / sizeof(float);
    float *buf = malloc(n * sizeof *buf);
    double *sums = calloc(512, sizeof *sums);
    if (!buf || !sums) {
        free(buf);
        free(sums);
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    probe_job j = {buf, n, sums};
    /* Best pass of half a second of them (at least four): on a shared host a single pass
     * can land on a moment when another tenant takes most of the bus. */
    double best = 0;
    const double start = ds4_time_now();
    for (int pass_i = 0; pass_i < 4 || ds4_time_now() - start < 0.5; pass_i++) {
        double t0 = ds4_time_now();
        ds4_parallel_for(n_threads, n, probe_slice, &j);
        double dt = ds4_time_now() - t0;
        double gbps = (double)n * sizeof *buf / dt / 1e9;
        if (gbps > best) best = gbps;
    }
    free(buf);
    free(sums);
    /* The buffer is gone: restart the high-water mark of the resident set from here, so
     * that later peak readings are the engine's own. */
    ds4_peak_rss_restart();
    return best;
}
