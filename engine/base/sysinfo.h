/* sysinfo.h - facts about the machine and the process: a monotonic clock, the CPUs this
 * process may use (affinity and cgroup quota), and its peak resident memory. */
#ifndef DS4_SYSINFO_H
#define DS4_SYSINFO_H

#include <stdint.h>

double ds4_time_now(void);
/* CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (a
 * container started with --cpus=2 on a 64-core host counts 2). */
int ds4_cpu_count(void);
/* The cgroup CPU quota of this process in whole CPUs, 0 for none; `root` prefixes the
 * /proc and /sys paths read ("" for the real ones). */
int ds4_cpu_quota(const char *root);
/* The most memory this process has held resident (VmHWM; ds4_peak_rss_restart resets it). */
uint64_t ds4_peak_rss_bytes(void);
/* Restart the high-water mark from the current resident set (after a large temporary
 * buffer that should not count). */
void ds4_peak_rss_restart(void);

#endif
