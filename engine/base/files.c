/* files.c - see files.h. */
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "mem.h"

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

int ds4_outfile_skip(ds4_outfile *f, uint64_t n) {
    if (ftruncate(f->fd, (off_t)(f->written + n)) < 0 || lseek(f->fd, (off_t)n, SEEK_CUR) < 0)
        return ds4_fail("%s: cannot extend: %s", f->path, strerror(errno));
    f->written += n;
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

static void abort_all_signal_safe(void) {
    for (int i = 0; i < MAX_OPEN_OUTFILES; i++) {
        ds4_outfile *f = open_outfiles[i];
        if (f && f->tmp_path) unlink(f->tmp_path);
    }
}

static void cleanup_and_exit(int sig) {
    abort_all_signal_safe();
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

bool ds4_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

uint64_t ds4_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}
