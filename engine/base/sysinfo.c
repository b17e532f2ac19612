/* sysinfo.c - see sysinfo.h. */
#include "sysinfo.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "files.h"

double ds4_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The quota of one cgroup directory in whole CPUs (rounded up), 0 for none: v2's
 * cpu.max ("QUOTA PERIOD" or "max PERIOD"), else v1's cfs files. */
static int quota_in(const char *dir) {
    char path[4300], *text;
    long long quota = -1, period = 0;
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    if ((text = ds4_read_file(path, NULL))) {
        if (sscanf(text, "%lld %lld", &quota, &period) != 2) quota = -1;
        free(text);
    } else {
        snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
        if ((text = ds4_read_file(path, NULL))) {
            quota = atoll(text);
            free(text);
            snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
            if ((text = ds4_read_file(path, NULL))) {
                period = atoll(text);
                free(text);
            }
        }
    }
    if (quota <= 0 || period <= 0) return 0;
    return (int)((quota + period - 1) / period);
}

int ds4_cpu_quota(const char *root) {
    char path[4200];
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    char *groups = ds4_read_file(path, NULL);
    if (!groups) return 0;
    int limit = 0;
    /* Lines "ID:CONTROLLERS:PATH": v2's has no controllers, v1's that matters names cpu.
     * A limit of any directory on the way up to the root applies. */
    char *save = NULL;
    for (char *line = strtok_r(groups, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *ctl = strchr(line, ':'), *rel = ctl ? strchr(ctl + 1, ':') : NULL;
        if (!rel) continue;
        *rel++ = 0;
        ctl++;
        const char *mount = NULL;
        if (!*ctl) mount = "/sys/fs/cgroup";
        else if (!strcmp(ctl, "cpu,cpuacct") || !strcmp(ctl, "cpu")) mount = !strcmp(ctl, "cpu") ? "/sys/fs/cgroup/cpu" : "/sys/fs/cgroup/cpu,cpuacct";
        if (!mount) continue;
        for (;;) {
            snprintf(path, sizeof path, "%s%s%s", root, mount, rel);
            const int q = quota_in(path);
            if (q > 0 && (limit == 0 || q < limit)) limit = q;
            char *slash = rel[0] ? strrchr(rel, '/') : NULL;
            if (!slash) break;
            *slash = 0; /* "/a/b" -> "/a" -> "" (the mount itself) */
        }
    }
    free(groups);
    return limit;
}

int ds4_cpu_count(void) {
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) {
        const long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (int)online : 1;
    }
    /* A container limited to k CPUs of a bigger host runs k CPUs' worth of threads. */
    const int quota = ds4_cpu_quota("");
    return quota > 0 && quota < n ? quota : n;
}

uint64_t ds4_peak_rss_bytes(void) {
    char *status = ds4_read_file("/proc/self/status", NULL);
    const char *hwm = status ? strstr(status, "VmHWM:") : NULL;
    const uint64_t kib = hwm ? strtoull(hwm + 6, NULL, 10) : 0;
    free(status);
    if (kib) return kib * 1024;
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0;
}

void ds4_peak_rss_restart(void) {
    const int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (write(fd, "5", 1) < 0) {}
        close(fd);
    }
}
