/* threads.c - see threads.h. A pool of worker threads made on first use and kept: a
 * decoded token runs a few hundred parallel loops, and creating threads for each cost
 * more than some of the loops themselves.
 *
 * A loop is a set of pieces (a thread's slice, or chunks of grain items of it) that
 * any thread may claim: workers claim their own slice's pieces first, then the others',
 * and the caller does the same. So a worker that the host has descheduled, or that is
 * still waking up, never holds up a loop: the caller takes over what it has not
 * claimed and waits only for pieces already running. Idle workers spin briefly for the
 * next loop, then sleep; the caller spins briefly for running pieces, then sleeps, so
 * on a busy host neither burns a core that another thread needs.
 *
 * Claims are tagged with the loop's generation, so a worker that wakes up late for a
 * loop that has ended claims nothing: its compare-and-swap fails. */
#include "threads.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "profile.h"

#define MAX_THREADS 512
#define WORKER_SPIN_NS 200000 /* the longest an idle worker watches for the next loop */
#define CALLER_SPIN_NS 50000  /* the caller waits this long for running pieces, then sleeps */
#define RING 4                /* loops whose descriptions stay readable (see worker) */
#define IDLE_LOOPS 8          /* loops in a row that workers did not help with ... */
#define PROBE_EVERY 64        /* ... after which sleeping workers are woken this rarely */

typedef struct {
    ds4_range_fn fn;
    void *ctx;
    uint64_t n, grain; /* grain 0: a slice is one piece */
    int n_threads;
} job;

/* A claim cursor per slice: the loop's generation in the high half, the next unclaimed
 * item of the slice in the low half. A cache line each, so a thread working through its
 * own slice touches no other thread's line. */
static struct {
    _Alignas(64) _Atomic uint64_t next;
} cursor[MAX_THREADS];

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER; /* one loop at a time */
static pthread_mutex_t adapt_lock = PTHREAD_MUTEX_INITIALIZER;
static job jobs[RING];               /* loop g is described in jobs[g % RING] */
static _Atomic uint32_t generation;  /* of the current loop */
static _Alignas(64) _Atomic uint64_t done_items;  /* finished items of the current loop */
static int n_workers;                /* threads made so far (the caller is thread 0) */
static int cursors_set;              /* cursors the last loop tagged */
static uint32_t unhelped;            /* loops in a row the caller ran alone */
static _Thread_local bool in_loop;   /* a pool thread, or a caller inside a loop */

/* Sleeping: workers between loops, the caller at the end of one. */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_workers = PTHREAD_COND_INITIALIZER;
static pthread_cond_t wake_caller = PTHREAD_COND_INITIALIZER;
static _Atomic int sleeping_workers;
static _Atomic int caller_sleeping;

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t slice_begin(const job *j, int t) { return j->n * (uint64_t)t / (uint64_t)j->n_threads; }

/* Claims the next piece of slice `owner` for loop `gen`: its range, or false when the
 * slice is used up or the loop is no longer `gen`. */
static bool claim(const job *j, uint32_t gen, int owner, uint64_t *begin, uint64_t *end) {
    const uint64_t stop = slice_begin(j, owner + 1);
    uint64_t c = atomic_load_explicit(&cursor[owner].next, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(c >> 32) != gen) return false;
        const uint64_t at = c & 0xffffffffu;
        if (at >= stop) return false;
        uint64_t len = stop - at;
        if (j->grain) {
            /* Guided: at most a grain, and half of what the slice has left (two items at
             * least), so that pieces shrink towards the end and the last ones of a loop
             * end close together. */
            len = len / 2 > 2 ? len / 2 : len > 2 ? 2 : len;
            if (len > j->grain) len = j->grain;
        }
        const uint64_t to = at + len;
        if (atomic_compare_exchange_weak_explicit(&cursor[owner].next, &c, ((uint64_t)gen << 32) | to,
                                                  memory_order_acq_rel, memory_order_acquire)) {
            *begin = at;
            *end = to;
            return true;
        }
    }
}

/* Runs pieces of loop `gen` as thread t, its own slice first, and reports how many
 * items it finished (the caller is told when the last one is); returns that number. */
static uint64_t work(const job *j, uint32_t gen, int t) {
    uint64_t finished = 0, b, e;
    for (int k = 0; k < j->n_threads; k++) {
        const int owner = (t + k) % j->n_threads;
        while (claim(j, gen, owner, &b, &e)) {
            j->fn(j->ctx, b, e, t);
            finished += e - b;
        }
    }
    if (!finished) return 0;
    if (atomic_fetch_add(&done_items, finished) + finished == j->n && atomic_load(&caller_sleeping)) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_signal(&wake_caller);
        pthread_mutex_unlock(&sleep_lock);
    }
    return finished;
}

static void *worker(void *arg) {
    const int id = (int)(intptr_t)arg;
    uint32_t seen = 0; /* loops before this worker existed are over: their claims fail */
    /* How long to watch for the next loop: all of WORKER_SPIN_NS while this worker gets
     * work, halved each time it comes too late to get any (its loops are too small, or
     * the host runs it too seldom), so that it stops taking CPU time it cannot use. */
    uint64_t spin_ns = WORKER_SPIN_NS;
    in_loop = true;
    for (;;) {
        uint32_t gen = atomic_load(&generation);
        const uint64_t spin_end = now_ns() + spin_ns;
        for (int i = 1; gen == seen && spin_ns; i++, gen = atomic_load(&generation)) {
            cpu_relax();
            if (i % 64 == 0 && now_ns() > spin_end) break;
        }
        if (gen == seen) {
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add(&sleeping_workers, 1);
            while ((gen = atomic_load(&generation)) == seen) pthread_cond_wait(&wake_workers, &sleep_lock);
            atomic_fetch_sub(&sleeping_workers, 1);
            pthread_mutex_unlock(&sleep_lock);
        }
        seen = gen;
        /* The description may be rewritten while it is copied only if RING - 1 newer loops
         * have started meanwhile; then every claim for `gen` fails and the copy is unused. */
        const job j = jobs[gen % RING];
        if (id < j.n_threads) spin_ns = work(&j, gen, id) ? WORKER_SPIN_NS : spin_ns / 2 < 1000 ? 0 : spin_ns / 2;
    }
    return NULL;
}

/* Starts workers until there are want - 1 of them (or no more can be made). */
static void grow_pool(int want) {
    while (n_workers < want - 1 && n_workers + 1 < MAX_THREADS) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)(n_workers + 1)) != 0) break;
        pthread_detach(t);
        n_workers++;
    }
}

static void run_inline(uint64_t n, uint64_t grain, ds4_range_fn fn, void *ctx) {
    if (!grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    for (uint64_t b = 0; b < n; b += grain) fn(ctx, b, n - b > grain ? b + grain : n, 0);
}

/* A part of a loop too long for the cursors, at its offset in the whole. */
#define PART ((uint64_t)1 << 31)
typedef struct {
    ds4_range_fn fn;
    void *ctx;
    uint64_t offset;
} shifted;

static void shifted_range(void *arg, uint64_t begin, uint64_t end, int thread) {
    const shifted *s = arg;
    s->fn(s->ctx, s->offset + begin, s->offset + end, thread);
}

/* Threads beyond the cores the host gives us only take turns with each other: every
 * ADAPT_NS the caller reads how long it waited for a CPU while runnable (the kernel's
 * run-queue delay). Above CROWDED of the time, the pool uses one thread fewer. After a
 * while it tries one more again (after RETRY_NS, doubling up to RETRY_MAX_NS while the
 * tries fail), and keeps it while the waits stay low. */
#define ADAPT_NS 20000000ull
#define RETRY_NS 1000000000ull
#define RETRY_MAX_NS 32000000000ull
#define CROWDED 0.15
#define QUIET 0.05
static struct {
    int cap, widest;          /* threads a loop may use; most requested since the last look */
    uint64_t at, wall, waited, cut, retry;
    pid_t tid;
} adapt = {MAX_THREADS, 1, 0, 0, 0, 0, RETRY_NS, 0};

/* Nanoseconds this thread has spent runnable but waiting for a CPU; false where the
 * kernel does not say. */
static bool runqueue_wait(uint64_t *ns) {
    char buf[128];
    const int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) return false;
    buf[got] = 0;
    unsigned long long run, wait;
    if (sscanf(buf, "%llu %llu", &run, &wait) != 2) return false;
    *ns = wait;
    return true;
}

static void adapt_threads(uint64_t now) {
    uint64_t waited;
    const pid_t tid = (pid_t)syscall(SYS_gettid);
    if (!runqueue_wait(&waited)) {
        adapt.at = UINT64_MAX; /* no way to tell: keep every thread */
        return;
    }
    if (tid == adapt.tid && now > adapt.wall) {
        const double crowded = (double)(waited - adapt.waited) / (double)(now - adapt.wall);
        const int in_use = adapt.cap < adapt.widest ? adapt.cap : adapt.widest;
        if (crowded > CROWDED && in_use > 1) {
            /* a cut right after a try: the try failed, wait longer before the next */
            if (now - adapt.cut < 2 * ADAPT_NS && adapt.retry < RETRY_MAX_NS) adapt.retry *= 2;
            adapt.cap = in_use - 1;
            adapt.cut = now;
        } else if (crowded < QUIET && adapt.cap < MAX_THREADS && now - adapt.cut > adapt.retry) {
            adapt.cap = adapt.cap + 1 >= adapt.widest ? MAX_THREADS : adapt.cap + 1;
            adapt.cut = now;
        } else if (crowded < QUIET && now - adapt.cut > 2 * ADAPT_NS) {
            adapt.retry = RETRY_NS; /* the last try held */
        }
    }
    adapt.tid = tid;
    adapt.wall = now;
    adapt.waited = waited;
    adapt.widest = 1;
    adapt.at = now + ADAPT_NS;
}

/* The threads this loop may use, after a look at the host now and then. */
static int threads_allowed(int n_threads) {
    if (pthread_mutex_trylock(&adapt_lock) != 0) return n_threads;
    if (n_threads > adapt.widest) adapt.widest = n_threads;
    const uint64_t now = now_ns();
    if (now >= adapt.at) adapt_threads(now);
    if (n_threads > adapt.cap) n_threads = adapt.cap;
    pthread_mutex_unlock(&adapt_lock);
    return n_threads;
}

static void parallel_run(int n_threads, uint64_t n, uint64_t grain, ds4_range_fn fn, void *ctx) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if ((uint64_t)n_threads > n) n_threads = n ? (int)n : 1;
    if (n_threads > 1 && !in_loop) n_threads = threads_allowed(n_threads);
    /* One slice, or a loop started from inside another: run it here. */
    if (n_threads == 1 || in_loop) {
        run_inline(n, grain, fn, ctx);
        return;
    }
    /* Cursors hold 32-bit item indices: larger loops go in parts. */
    if (n > 0xffffffffu) {
        shifted s = {fn, ctx, 0};
        for (; s.offset < n; s.offset += PART)
            parallel_run(n_threads, n - s.offset < PART ? n - s.offset : PART, grain, shifted_range, &s);
        return;
    }
    ds4_prof_loop();
    pthread_mutex_lock(&pool_lock);
    grow_pool(n_threads);
    if (n_threads > n_workers + 1) n_threads = n_workers + 1;
    const uint32_t gen = atomic_load(&generation) + 1;
    job *j = &jobs[gen % RING];
    *j = (job){fn, ctx, n, grain, n_threads};
    /* Tag every cursor the last loop used too, so none still carries an old generation. */
    const int tag = n_threads > cursors_set ? n_threads : cursors_set;
    for (int t = 0; t < tag; t++) {
        const uint64_t at = t < n_threads ? slice_begin(j, t) : 0xffffffffu;
        atomic_store_explicit(&cursor[t].next, ((uint64_t)gen << 32) | at, memory_order_relaxed);
    }
    cursors_set = n_threads;
    atomic_store(&done_items, 0);
    atomic_store(&generation, gen); /* publishes the job and the cursors */
    /* Waking sleepers costs a system call and their CPU time: when they have not helped
     * for a while (a busy host, or loops too small to share), wake them only now and then
     * to see whether they can again. */
    if (atomic_load(&sleeping_workers) > 0 && (unhelped < IDLE_LOOPS || gen % PROBE_EVERY == 0)) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake_workers);
        pthread_mutex_unlock(&sleep_lock);
    }
    in_loop = true;
    const bool alone = work(j, gen, 0) == n;
    in_loop = false;
    unhelped = alone ? unhelped + 1 : 0;
    /* What is left is running on workers: wait for it, briefly spinning, then asleep. */
    const uint64_t spin_end = now_ns() + CALLER_SPIN_NS;
    for (int i = 1; atomic_load(&done_items) < n; i++) {
        cpu_relax();
        if (i % 64 == 0 && now_ns() > spin_end) {
            pthread_mutex_lock(&sleep_lock);
            atomic_store(&caller_sleeping, 1);
            while (atomic_load(&done_items) < n) pthread_cond_wait(&wake_caller, &sleep_lock);
            atomic_store(&caller_sleeping, 0);
            pthread_mutex_unlock(&sleep_lock);
        }
    }
    pthread_mutex_unlock(&pool_lock);
}

void ds4_parallel_for(int n_threads, uint64_t n, ds4_range_fn fn, void *ctx) {
    parallel_run(n_threads, n, 0, fn, ctx);
}

void ds4_parallel_for_chunked(int n_threads, uint64_t n, uint64_t grain, ds4_range_fn fn, void *ctx) {
    parallel_run(n_threads, n, grain ? grain : 1, fn, ctx);
}
