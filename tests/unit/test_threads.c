/* The thread pool: every index covered exactly once; a loop on a host with fewer free
 * CPUs than threads does not wait for descheduled workers; idle workers use no CPU
 * time; default thread counts respect a cgroup CPU quota. */
#include <dirent.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "threads.h"
#include "util.h"

/* The thread pool covers every index exactly once, for any size and thread count, in
 * slices or in chunks, also when a loop is started from inside another. */
static _Atomic int hits[1000];
static void count_range(void *ctx, uint64_t b, uint64_t e, int t) {
    (void)ctx; (void)t;
    for (uint64_t i = b; i < e; i++) hits[i]++;
}
static void nested_range(void *ctx, uint64_t b, uint64_t e, int t) {
    (void)t;
    for (uint64_t i = b; i < e; i++) ds4_parallel_for(4, 1, count_range, ctx);
}
typedef struct {
    uint64_t grain;
    int threads;
    _Atomic int bad_chunks;
} chunk_check;
static void chunk_range(void *ctx, uint64_t b, uint64_t e, int t) {
    chunk_check *c = ctx;
    if (e - b > c->grain || t < 0 || t >= c->threads) c->bad_chunks++;
    count_range(NULL, b, e, t);
}
static void parallel_for_covers_once(void) {
    const uint64_t sizes[] = {0, 1, 2, 3, 7, 64, 999, 1000};
    const int threads[] = {1, 2, 3, 8};
    int bad = 0;
    for (size_t a = 0; a < sizeof sizes / sizeof sizes[0]; a++)
        for (size_t b = 0; b < sizeof threads / sizeof threads[0]; b++)
            for (int rep = 0; rep < 20; rep++) {
                for (int i = 0; i < 1000; i++) hits[i] = 0;
                ds4_parallel_for(threads[b], sizes[a], count_range, NULL);
                for (uint64_t i = 0; i < 1000; i++) bad += hits[i] != (i < sizes[a]);
            }
    CHECKF(bad == 0, "%d indices not covered exactly once", bad);
    const uint64_t grains[] = {1, 3, 64, 5000};
    chunk_check c = {0};
    for (size_t a = 0; a < sizeof sizes / sizeof sizes[0]; a++)
        for (size_t b = 0; b < sizeof threads / sizeof threads[0]; b++)
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
                c.grain = grains[g];
                c.threads = threads[b];
                for (int i = 0; i < 1000; i++) hits[i] = 0;
                ds4_parallel_for_chunked(threads[b], sizes[a], grains[g], chunk_range, &c);
                for (uint64_t i = 0; i < 1000; i++) bad += hits[i] != (i < sizes[a]);
            }
    CHECKF(bad == 0, "chunked: %d indices not covered exactly once", bad);
    CHECKF(c.bad_chunks == 0, "chunked: %d chunks over the grain or with a bad thread id", (int)c.bad_chunks);
    for (int i = 0; i < 1000; i++) hits[i] = 0;
    ds4_parallel_for(2, 10, nested_range, NULL);
    CHECK(hits[0] == 10); /* each of the 10 outer indices ran the 1-element inner loop inline */
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* About 20 microseconds of arithmetic per index. */
static _Atomic unsigned sink;
static void busy_range(void *ctx, uint64_t b, uint64_t e, int t) {
    (void)ctx; (void)t;
    unsigned x = 1;
    for (uint64_t i = b; i < e; i++)
        for (int k = 0; k < 20000; k++) x = x * 1664525u + 1013904223u;
    sink += x;
}

/* Pins every thread of the process to `cpus` (NULL: back to all of them). */
static void pin_all(const cpu_set_t *cpus) {
    static cpu_set_t all;
    static int saved;
    if (!saved) {
        sched_getaffinity(0, sizeof all, &all);
        saved = 1;
    }
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') sched_setaffinity(atoi(e->d_name), sizeof all, cpus ? cpus : &all);
    if (d) closedir(d);
}

/* Four threads on one CPU: a worker that is not running never holds up a loop, because
 * the caller runs what it has not started (a caller that spins until the workers have
 * run waits a scheduler time slice per loop, tens of times longer). */
static void loops_do_not_wait_for_descheduled_workers(void) {
    ds4_parallel_for(4, 64, busy_range, NULL); /* make the workers */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    pin_all(&one);
    double t0 = ds4_time_now();
    for (int i = 0; i < 200; i++) busy_range(NULL, 0, 4, 0);
    const double alone = ds4_time_now() - t0;
    t0 = ds4_time_now();
    for (int i = 0; i < 200; i++) ds4_parallel_for(4, 4, busy_range, NULL);
    const double pooled = ds4_time_now() - t0;
    pin_all(NULL);
    CHECKF(pooled < 3 * alone + 0.05, "200 loops on one CPU: %.3f s with 4 threads, %.3f s alone", pooled, alone);
}

/* After a loop, idle workers spin briefly and then sleep: they use no CPU time. */
static void idle_workers_use_no_cpu(void) {
    ds4_parallel_for(4, 256, busy_range, NULL);
    sleep_ms(50);
    const double c0 = cpu_seconds();
    sleep_ms(200);
    const double used = cpu_seconds() - c0;
    CHECKF(used < 0.01, "idle pool used %.3f s of CPU in 0.2 s", used);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[600], cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) return;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ds4_write_file_atomic(path, text, strlen(text));
}

/* cgroup v2 (cpu.max, the tightest limit on the way up) and v1 (cfs quota/period). */
static void cpu_quota_from_cgroups(void) {
    char root[400], dir[500];
    snprintf(root, sizeof root, "%s/cg2", test_tmpdir());
    snprintf(dir, sizeof dir, "%s/proc/self", root);
    write_text(dir, "cgroup", "0::/box/job\n");
    snprintf(dir, sizeof dir, "%s/sys/fs/cgroup/box", root);
    write_text(dir, "cpu.max", "300000 100000\n");
    snprintf(dir, sizeof dir, "%s/sys/fs/cgroup/box/job", root);
    write_text(dir, "cpu.max", "max 100000\n");
    CHECKF(ds4_cpu_quota(root) == 3, "v2: %d", ds4_cpu_quota(root));
    write_text(dir, "cpu.max", "150000 100000\n");
    CHECKF(ds4_cpu_quota(root) == 2, "v2 nested, rounded up: %d", ds4_cpu_quota(root));
    snprintf(root, sizeof root, "%s/cg1", test_tmpdir());
    snprintf(dir, sizeof dir, "%s/proc/self", root);
    write_text(dir, "cgroup", "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n1:cpuset:/\n");
    snprintf(dir, sizeof dir, "%s/sys/fs/cgroup/cpu,cpuacct/docker/abc", root);
    write_text(dir, "cpu.cfs_quota_us", "200000\n");
    write_text(dir, "cpu.cfs_period_us", "100000\n");
    CHECKF(ds4_cpu_quota(root) == 2, "v1: %d", ds4_cpu_quota(root));
    write_text(dir, "cpu.cfs_quota_us", "-1\n");
    CHECK(ds4_cpu_quota(root) == 0);
    snprintf(root, sizeof root, "%s/none", test_tmpdir());
    CHECK(ds4_cpu_quota(root) == 0);
    const int n = ds4_cpu_count();
    CHECK(n >= 1 && (ds4_cpu_quota("") == 0 || n <= ds4_cpu_quota("")));
}

const test_case threads_tests[] = {
    {"parallel_for_covers_once", parallel_for_covers_once},
    {"loops_do_not_wait_for_descheduled_workers", loops_do_not_wait_for_descheduled_workers},
    {"idle_workers_use_no_cpu", idle_workers_use_no_cpu},
    {"cpu_quota_from_cgroups", cpu_quota_from_cgroups},
    {0, 0},
};
