/* probe.h - a STREAM-like probe of the memory bandwidth that CPU decode speed is bounded
 * by, so benchmarks can state decode as a fraction of what the machine can stream. */
#ifndef DS4_PROBE_H
#define DS4_PROBE_H

/* Read bandwidth of this machine in GB/s: n_threads threads summing a buffer much larger
 * than the caches (256 MiB, or four times the last-level cache where that is larger),
 * the best of at least half a second of passes. Its buffer does not
 * count in later ds4_peak_rss_bytes readings. */
double ds4_probe_read_gbps(int n_threads);

#endif
