/* kvcache_disk.c - see kvcache_disk.h. */
#include "kvcache_disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "state.h"
#include "hash.h"
#include "util.h"

typedef struct {
    char hex[41];
    uint64_t n_tokens;
    uint64_t bytes;       /* the file's size, 0 when it is not on disk */
    uint8_t *blob;        /* the same bytes in memory, or NULL */
    size_t blob_len;
    struct timespec used; /* last use (on disk: the file's modification time) */
} entry;

struct ds4_kvcache {
    char *dir; /* NULL: memory only */
    uint64_t space, mem_space, mem_bytes;
    const ds4_model *model;
    ds4_kvcache_warn_fn warn;
    entry *e;
    size_t n, cap;
    ds4_kvcache_stats st;
};

static void entry_path(const ds4_kvcache *c, const char *hex, char *out, size_t size) {
    snprintf(out, size, "%s/%s.kv", c->dir, hex);
}

static void warnf(const ds4_kvcache *c, const char *fmt, const char *a, const char *b) {
    if (!c->warn) return;
    char msg[DS4_ERROR_MAX + 4352]; /* a path and an error */
    snprintf(msg, sizeof msg, fmt, a, b);
    c->warn(msg);
}

static void forget_blob(ds4_kvcache *c, entry *e) {
    c->mem_bytes -= e->blob_len;
    free(e->blob);
    e->blob = NULL;
    e->blob_len = 0;
}

static void drop(ds4_kvcache *c, size_t i) {
    c->st.bytes -= c->e[i].bytes;
    forget_blob(c, &c->e[i]);
    c->e[i] = c->e[--c->n];
}

/* Reject a file: say why, remove it, forget it. */
static void reject(ds4_kvcache *c, size_t i, const char *why) {
    char path[4096];
    entry_path(c, c->e[i].hex, path, sizeof path);
    warnf(c, "kv cache: removing %s: %s", c->e[i].bytes ? path : c->e[i].hex, why);
    if (c->e[i].bytes) unlink(path);
    c->st.rejected++;
    drop(c, i);
}

static entry *add(ds4_kvcache *c, const char *hex, uint64_t n_tokens, uint64_t bytes, struct timespec used) {
    if (c->n == c->cap) {
        const size_t cap = c->cap ? 2 * c->cap : 16;
        entry *grown = realloc(c->e, cap * sizeof *grown);
        if (!grown) {
            ds4_fail("out of memory");
            return NULL;
        }
        c->e = grown;
        c->cap = cap;
    }
    entry *e = &c->e[c->n++];
    *e = (entry){.n_tokens = n_tokens, .bytes = bytes, .used = used};
    snprintf(e->hex, sizeof e->hex, "%s", hex);
    c->st.bytes += bytes;
    return e;
}

static bool is_key_name(const char *name) {
    if (strlen(name) != 43 || strcmp(name + 40, ".kv")) return false;
    for (int i = 0; i < 40; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return false;
    return true;
}

static bool older(struct timespec a, struct timespec b) {
    return a.tv_sec != b.tv_sec ? a.tv_sec < b.tv_sec : a.tv_nsec < b.tv_nsec;
}

/* Mark an entry used now, on disk too, so the order survives a restart. */
static void touch(ds4_kvcache *c, entry *e) {
    clock_gettime(CLOCK_REALTIME, &e->used);
    if (!e->bytes) return;
    char path[4096];
    entry_path(c, e->hex, path, sizeof path);
    const struct timespec times[2] = {e->used, e->used};
    utimensat(AT_FDCWD, path, times, 0);
}

static size_t least_recent(const ds4_kvcache *c, bool on_disk) {
    size_t lru = c->n;
    for (size_t i = 0; i < c->n; i++)
        if ((on_disk ? c->e[i].bytes > 0 : c->e[i].blob != NULL) && (lru == c->n || older(c->e[i].used, c->e[lru].used)))
            lru = i;
    return lru;
}

/* Evict least recently used states until both tiers fit their limits: from memory (a
 * state also on disk stays there), and from disk (a state also in memory stays there). */
static void evict(ds4_kvcache *c) {
    while (c->mem_bytes > c->mem_space) {
        const size_t i = least_recent(c, false);
        if (i == c->n) break;
        forget_blob(c, &c->e[i]);
        if (!c->e[i].bytes) {
            c->st.evictions++;
            drop(c, i);
        }
    }
    while (c->st.bytes > c->space) {
        const size_t i = least_recent(c, true);
        if (i == c->n) break;
        char path[4096];
        entry_path(c, c->e[i].hex, path, sizeof path);
        warnf(c, "kv cache: evicting %s (%s)", path, "least recently used, over the space limit");
        unlink(path);
        c->st.bytes -= c->e[i].bytes;
        c->e[i].bytes = 0;
        c->st.evictions++;
        if (!c->e[i].blob) drop(c, i);
    }
}

ds4_kvcache *ds4_kvcache_open(const char *dir, uint64_t space_bytes, uint64_t mem_bytes, const ds4_model *m,
                              ds4_kvcache_warn_fn warn) {
    ds4_kvcache *c = ds4_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->space = space_bytes;
    c->mem_space = mem_bytes;
    c->model = m;
    c->warn = warn;
    if (!dir) return c;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        ds4_fail("%s: cannot create the cache directory: %s", dir, strerror(errno));
        free(c);
        return NULL;
    }
    DIR *d = opendir(dir);
    if (!d || !(c->dir = ds4_strndup(dir, strlen(dir)))) {
        if (d) closedir(d);
        else ds4_fail("%s: cannot open the cache directory: %s", dir, strerror(errno));
        free(c);
        return NULL;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_key_name(de->d_name)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        uint64_t n_tokens;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) continue;
        if (ds4_kv_peek(path, m, &n_tokens) < 0) {
            warnf(c, "kv cache: removing %s: %s", path, ds4_error());
            unlink(path);
            c->st.rejected++;
            continue;
        }
        char hex[41];
        memcpy(hex, de->d_name, 40);
        hex[40] = 0;
        if (!add(c, hex, n_tokens, (uint64_t)st.st_size, st.st_mtim)) break;
    }
    closedir(d);
    evict(c);
    return c;
}

void ds4_kvcache_close(ds4_kvcache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) free(c->e[i].blob);
    free(c->dir);
    free(c->e);
    free(c);
}

uint64_t ds4_shared_prefix(const int32_t *a, uint64_t na, const int32_t *b, uint64_t nb) {
    uint64_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

int64_t ds4_kvcache_restore(ds4_kvcache *c, ds4_ctx *ctx, const int32_t *tokens, uint64_t n, uint64_t max_tokens) {
    ds4_ctx_reset(ctx);
    if (max_tokens > n) max_tokens = n;
    /* Longest first; a length whose hash matches nothing costs one hash. */
    for (;;) {
        size_t best = c->n;
        for (size_t i = 0; i < c->n; i++) {
            if (c->e[i].n_tokens == 0 || c->e[i].n_tokens > max_tokens) continue;
            if (best == c->n || c->e[i].n_tokens > c->e[best].n_tokens) best = i;
        }
        if (best == c->n) return 0;
        const uint64_t len = c->e[best].n_tokens;
        char hex[41];
        ds4_sha1_tokens_hex(tokens, len, hex);
        size_t hit = c->n;
        for (size_t i = 0; i < c->n; i++)
            if (c->e[i].n_tokens == len && !strcmp(c->e[i].hex, hex)) hit = i;
        if (hit == c->n) {
            max_tokens = len - 1; /* nothing of this length is our prefix: try shorter ones */
            continue;
        }
        char path[4096];
        entry_path(c, hex, path, sizeof path);
        int32_t *saved = NULL;
        uint64_t n_saved = 0;
        entry *e = &c->e[hit];
        const int loaded = e->blob ? ds4_kv_decode(ctx, e->blob, e->blob_len, e->hex, &saved, &n_saved)
                                   : ds4_kv_load(ctx, path, &saved, &n_saved);
        if (loaded < 0) {
            reject(c, hit, ds4_error());
            continue;
        }
        const bool same = n_saved == len && !memcmp(saved, tokens, len * sizeof *tokens);
        free(saved);
        if (!same) {
            ds4_ctx_reset(ctx);
            reject(c, hit, "its token ids are not the ones its name stands for");
            continue;
        }
        touch(c, &c->e[hit]);
        c->st.hits++;
        c->st.tokens_restored += len;
        return (int64_t)len;
    }
}

int ds4_kvcache_store(ds4_kvcache *c, ds4_ctx *ctx, const int32_t *tokens, uint64_t n) {
    char hex[41], path[4096];
    ds4_sha1_tokens_hex(tokens, n, hex);
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].hex, hex)) {
            touch(c, &c->e[i]);
            return 0;
        }
    ds4_buf bytes = {0};
    if (ds4_kv_encode(ctx, tokens, n, &bytes) < 0) return -1;
    uint64_t on_disk = 0;
    if (c->dir) {
        entry_path(c, hex, path, sizeof path);
        if (ds4_write_file_atomic(path, bytes.data, bytes.len) < 0) {
            ds4_buf_free(&bytes);
            return -1;
        }
        on_disk = bytes.len;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    entry *e = add(c, hex, n, on_disk, now);
    if (!e) {
        ds4_buf_free(&bytes);
        return -1;
    }
    if (bytes.len <= c->mem_space) { /* keep it in memory too: the next restore reads no file */
        e->blob = bytes.data;
        e->blob_len = bytes.len;
        c->mem_bytes += bytes.len;
    } else {
        ds4_buf_free(&bytes);
    }
    c->st.stores++;
    evict(c);
    return 0;
}

void ds4_kvcache_warn(const ds4_kvcache *c, const char *msg) { warnf(c, "%s%s", msg, ""); }

ds4_kvcache_stats ds4_kvcache_get_stats(const ds4_kvcache *c) {
    ds4_kvcache_stats s = c->st;
    s.entries = c->n;
    return s;
}
