/* util.c - see util.h. */
#include "util.h"

#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char error_buf[DS4_ERROR_MAX];

/* Copies text into dst (cap bytes, NUL-terminated) with every control byte written as
 * an escape (\n, \t, \r, \xNN): errors quote names and paths taken from files and
 * command lines, and an error must stay one line whatever they hold. */
static size_t escape_into(char *dst, size_t cap, const char *src) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)src; *s && o + 5 < cap; s++) {
        if (*s >= 0x20 && *s != 0x7f) {
            dst[o++] = (char)*s;
        } else if (*s == '\n' || *s == '\t' || *s == '\r') {
            dst[o++] = '\\';
            dst[o++] = *s == '\n' ? 'n' : *s == '\t' ? 't' : 'r';
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[*s >> 4];
            dst[o++] = hex[*s & 15];
        }
    }
    dst[o] = 0;
    return o;
}

int ds4_fail(const char *fmt, ...) {
    char raw[DS4_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    escape_into(error_buf, sizeof error_buf, raw);
    return -1;
}

void ds4_error_prefix(const char *prefix) {
    char tmp[DS4_ERROR_MAX];
    size_t n = escape_into(tmp, DS4_ERROR_MAX / 2, prefix);
    memcpy(tmp + n, ": ", 3);
    snprintf(tmp + n + 2, sizeof tmp - n - 2, "%s", error_buf);
    memcpy(error_buf, tmp, sizeof error_buf);
}

const char *ds4_error(void) { return error_buf[0] ? error_buf : "unknown error"; }

const char *ds4_printable(char *buf, size_t cap, const char *s, size_t n) {
    size_t o = 0, keep = cap > 4 ? cap - 4 : 0;
    for (size_t i = 0; i < n && o < keep; i++) buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (o < n && cap >= 4) memcpy(buf + o, "...", 3), o += 3;
    if (cap) buf[o < cap ? o : cap - 1] = 0;
    return buf;
}

void *ds4_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) ds4_fail("out of memory allocating %zu bytes", n);
    return p;
}

void *ds4_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) ds4_fail("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *ds4_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) ds4_fail("out of memory allocating %zu bytes", n);
    return q;
}

char *ds4_strndup(const char *s, size_t n) {
    char *p = ds4_malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- arena ---- */

struct ds4_arena_block {
    ds4_arena_block *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
};

void *ds4_arena_alloc(ds4_arena *a, size_t n) {
    n = ds4_align_up(n ? n : 1, 16);
    ds4_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = ds4_malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *ds4_arena_strndup(ds4_arena *a, const char *s, size_t n) {
    char *p = ds4_arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void ds4_arena_free(ds4_arena *a) {
    while (a->head) {
        ds4_arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

/* ---- string map (FNV-1a, linear probing, load factor <= 1/2) ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return h;
}

int ds4_strmap_init(ds4_strmap *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 1) cap *= 2;
    memset(m, 0, sizeof *m);
    m->cap = cap;
    m->keys = ds4_calloc(cap, sizeof *m->keys);
    m->lens = ds4_calloc(cap, sizeof *m->lens);
    m->vals = ds4_calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->lens || !m->vals) {
        ds4_strmap_free(m);
        return -1;
    }
    return 0;
}

static size_t strmap_slot(const ds4_strmap *m, const char *key, size_t len) {
    size_t i = hash_bytes(key, len) & (m->cap - 1);
    while (m->keys[i] && !(m->lens[i] == len && memcmp(m->keys[i], key, len) == 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int strmap_grow(ds4_strmap *m) {
    ds4_strmap bigger;
    if (ds4_strmap_init(&bigger, m->cap) < 0) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) ds4_strmap_put(&bigger, m->keys[i], m->lens[i], m->vals[i]);
    ds4_strmap_free(m);
    *m = bigger;
    return 0;
}

int ds4_strmap_put(ds4_strmap *m, const char *key, size_t len, uint64_t val) {
    if ((m->count + 1) * 2 > m->cap && strmap_grow(m) < 0) return -1;
    size_t i = strmap_slot(m, key, len);
    if (m->keys[i]) return 0;
    m->keys[i] = key;
    m->lens[i] = len;
    m->vals[i] = val;
    m->count++;
    return 1;
}

bool ds4_strmap_get(const ds4_strmap *m, const char *key, size_t len, uint64_t *val) {
    if (!m->cap) return false;
    size_t i = strmap_slot(m, key, len);
    if (!m->keys[i]) return false;
    if (val) *val = m->vals[i];
    return true;
}

void ds4_strmap_free(ds4_strmap *m) {
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- buffers and files ---- */

int ds4_buf_append(ds4_buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = ds4_realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void ds4_buf_free(ds4_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void ds4_problem(ds4_problems *p, const char *fmt, ...) {
    if (++p->count > DS4_PROBLEMS_SHOWN) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p->msg.len) ds4_buf_append(&p->msg, "; ", 2);
    ds4_buf_append(&p->msg, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
}

int ds4_problems_report(ds4_problems *p, const char *what) {
    int rc = 0;
    if (p->count) {
        ds4_buf_append(&p->msg, "", 1);
        rc = ds4_fail("%d problem%s with %s: %s%s", p->count, p->count > 1 ? "s" : "", what,
                      p->msg.data ? (char *)p->msg.data : "", p->count > DS4_PROBLEMS_SHOWN ? "; ..." : "");
    }
    ds4_buf_free(&p->msg);
    return rc;
}

int ds4_parse_number(const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double x = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end || errno || !(x >= min && x <= max))
        return ds4_fail("'%s' is not a number in [%.15g, %.15g]", s ? s : "", min, max);
    *out = x;
    return 0;
}

static bool is_id_separator(char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int ds4_parse_token_ids(const char *s, int32_t **ids, size_t *n) {
    ds4_buf b = {0};
    for (const char *p = s;;) {
        while (is_id_separator(*p)) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long id = strtol(p, &end, 10);
        if (end == p || errno || id < 0 || id > INT32_MAX || (*end && !is_id_separator(*end))) {
            ds4_buf_free(&b);
            return ds4_fail("not a token id: '%.20s'", p);
        }
        int32_t v = (int32_t)id;
        if (ds4_buf_append(&b, &v, sizeof v) < 0) {
            ds4_buf_free(&b);
            return -1;
        }
        p = end;
    }
    *ids = (int32_t *)b.data;
    *n = b.len / sizeof **ids;
    return 0;
}

int ds4_csv_field(ds4_buf *b, const char *s) {
    size_t n = strlen(s), need = csv_write(NULL, 0, s, n);
    char *q = ds4_malloc(need);
    if (!q) return -1;
    csv_write(q, need, s, n);
    int rc = ds4_buf_append(b, q, need);
    free(q);
    return rc;
}

char *ds4_read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        ds4_fail("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    ds4_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (ds4_buf_append(&b, chunk, n) < 0) break;
    int bad = ferror(f);
    fclose(f);
    if (bad || ds4_buf_append(&b, "", 1) < 0) {
        if (bad) ds4_fail("%s: read error", path);
        ds4_buf_free(&b);
        return NULL;
    }
    if (len_out) *len_out = b.len - 1;
    return (char *)b.data;
}

int ds4_mmap_open(ds4_mmap *m, const char *path) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ds4_fail("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ds4_fail("%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size == 0) {
        close(fd);
        m->data = (const uint8_t *)"";
        return 0;
    }
    void *p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return ds4_fail("%s: mmap failed: %s", path, strerror(errno));
    m->data = p;
    return 0;
}

void ds4_mmap_close(ds4_mmap *m) {
    if (m->size) munmap((void *)m->data, m->size);
    memset(m, 0, sizeof *m);
}

/* Temporary files still open, so a signal handler can remove them. Fixed-size so the
 * handler touches no allocator. */
#define MAX_OPEN_OUTFILES 16
static ds4_outfile *volatile open_outfiles[MAX_OPEN_OUTFILES];

static void track_outfile(ds4_outfile *f, bool add) {
    for (int i = 0; i < MAX_OPEN_OUTFILES; i++) {
        if (add && !open_outfiles[i]) { open_outfiles[i] = f; return; }
        if (!add && open_outfiles[i] == f) { open_outfiles[i] = NULL; return; }
    }
}

/* Removes PATH.tmp.PID files whose process is gone (a kill -9 mid-write leaves them). */
static void remove_stale_temps(const char *path) {
    char *copy = ds4_strndup(path, strlen(path)), *copy2 = ds4_strndup(path, strlen(path));
    if (!copy || !copy2) {
        free(copy);
        free(copy2);
        return;
    }
    const char *dir = dirname(copy), *base = basename(copy2);
    const size_t blen = strlen(base);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *name = e->d_name;
        if (strncmp(name, base, blen) || strncmp(name + blen, ".tmp.", 5)) continue;
        char *end;
        const long pid = strtol(name + blen + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char stale[PATH_MAX];
        if (snprintf(stale, sizeof stale, "%s/%s", dir, name) < (int)sizeof stale) unlink(stale);
    }
    if (d) closedir(d);
    free(copy);
    free(copy2);
}

int ds4_outfile_open(ds4_outfile *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    size_t n = strlen(path);
    f->path = ds4_strndup(path, n);
    f->tmp_path = ds4_malloc(n + 32);
    if (!f->path || !f->tmp_path) goto fail;
    remove_stale_temps(path);
    snprintf(f->tmp_path, n + 32, "%s.tmp.%ld", path, (long)getpid());
    f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        ds4_fail("%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    track_outfile(f, true);
    return 0;
fail:
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
    return -1;
}

int ds4_outfile_write(ds4_outfile *f, const void *p, size_t n) {
    const uint8_t *s = p;
    while (n) {
        ssize_t w = write(f->fd, s, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return ds4_fail("%s: write failed: %s", f->path, strerror(w < 0 ? errno : ENOSPC));
        s += w;
        n -= (size_t)w;
        f->written += (uint64_t)w;
    }
    return 0;
}

static void outfile_release(ds4_outfile *f) {
    track_outfile(f, false);
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int ds4_outfile_commit(ds4_outfile *f) {
    if (fsync(f->fd) < 0) {
        ds4_fail("%s: fsync failed: %s", f->path, strerror(errno));
        ds4_outfile_abort(f);
        return -1;
    }
    if (rename(f->tmp_path, f->path) < 0) {
        ds4_fail("%s: rename failed: %s", f->path, strerror(errno));
        ds4_outfile_abort(f);
        return -1;
    }
    char *dir = ds4_strndup(f->path, strlen(f->path));
    if (dir) {
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    outfile_release(f);
    return 0;
}

void ds4_outfile_abort(ds4_outfile *f) {
    if (f->tmp_path) unlink(f->tmp_path);
    outfile_release(f);
}

int ds4_write_file_atomic(const char *path, const void *data, size_t len) {
    ds4_outfile f;
    if (ds4_outfile_open(&f, path) < 0) return -1;
    if (ds4_outfile_write(&f, data, len) < 0) {
        ds4_outfile_abort(&f);
        return -1;
    }
    return ds4_outfile_commit(&f);
}

void ds4_outfile_abort_all_signal_safe(void) {
    for (int i = 0; i < MAX_OPEN_OUTFILES; i++) {
        ds4_outfile *f = open_outfiles[i];
        if (f && f->tmp_path) unlink(f->tmp_path);
    }
}

static void cleanup_and_exit(int sig) {
    ds4_outfile_abort_all_signal_safe();
    static const char msg[] = "\ninterrupted: partial output removed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

void ds4_install_cleanup_handlers(void) {
    signal(SIGINT, cleanup_and_exit);
    signal(SIGTERM, cleanup_and_exit);
    signal(SIGHUP, cleanup_and_exit);
}

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

bool ds4_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

uint64_t ds4_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}
