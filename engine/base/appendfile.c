/* appendfile.c - see appendfile.h. */
#include "appendfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int ds4_appendfile_open(ds4_appendfile *f, const char *path, bool resume, const char *header) {
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f->fd < 0) return ds4_fail("%s: cannot open for writing: %s", path, strerror(errno));
    struct stat st;
    const char *why = NULL;
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) why = "not a regular file";
    /* One writer at a time, by an advisory lock that dies with its process. */
    else if (flock(f->fd, LOCK_EX | LOCK_NB) < 0)
        why = errno == EWOULDBLOCK ? "another process is writing it (a lock is held)" : strerror(errno);
    else if (!resume && ftruncate(f->fd, 0) < 0) why = strerror(errno);
    if (why) {
        close(f->fd);
        f->fd = -1;
        return ds4_fail("%s: %s", path, why);
    }
    if (!resume) st.st_size = 0;
    if (!(f->path = ds4_strndup(path, strlen(path)))) {
        close(f->fd);
        f->fd = -1;
        return -1;
    }
    /* Cut a torn last line: scan back from the end for the last newline. */
    uint64_t whole = (uint64_t)st.st_size;
    char buf[4096];
    while (whole > 0) {
        const uint64_t from = whole > sizeof buf ? whole - sizeof buf : 0;
        const ssize_t got = pread(f->fd, buf, (size_t)(whole - from), (off_t)from);
        if (got != (ssize_t)(whole - from)) {
            ds4_appendfile_close(f);
            return ds4_fail("%s: cannot read: %s", path, strerror(errno));
        }
        ssize_t i = got;
        while (i > 0 && buf[i - 1] != '\n') i--;
        if (i > 0) {
            whole = from + (uint64_t)i;
            break;
        }
        whole = from;
    }
    if (whole < (uint64_t)st.st_size && ftruncate(f->fd, (off_t)whole) < 0) {
        ds4_appendfile_close(f);
        return ds4_fail("%s: cannot cut the torn last line: %s", path, strerror(errno));
    }
    f->size = whole;
    if (header && !whole && ds4_appendfile_write(f, header, strlen(header)) < 0) {
        ds4_appendfile_close(f);
        return -1;
    }
    return 0;
}

int ds4_appendfile_write(ds4_appendfile *f, const char *text, size_t n) {
    size_t at = 0;
    int err = 0;
    while (at < n) {
        const ssize_t w = pwrite(f->fd, text + at, n - at, (off_t)(f->size + at));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err = w < 0 ? errno : ENOSPC;
            break;
        }
        at += (size_t)w;
    }
    if (!err && fdatasync(f->fd) < 0) err = errno;
    if (err) {
        /* what did go out is a torn line: take it back */
        if (ftruncate(f->fd, (off_t)f->size) < 0) {}
        return ds4_fail("%s: cannot write: %s", f->path, strerror(err));
    }
    f->size += n;
    return 0;
}

void ds4_appendfile_close(ds4_appendfile *f) {
    if (f->path) close(f->fd);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int ds4_appendfile_replace(ds4_appendfile *f, const char *text, size_t n) {
    ds4_appendfile next;
    size_t len = strlen(f->path);
    char *tmp = ds4_malloc(len + 32);
    if (!tmp) return -1;
    snprintf(tmp, len + 32, "%s.tmp.%ld", f->path, (long)getpid());
    int rc = ds4_appendfile_open(&next, tmp, false, NULL);
    if (rc == 0 && n) rc = ds4_appendfile_write(&next, text, n);
    if (rc == 0 && rename(tmp, f->path) < 0) rc = ds4_fail("%s: cannot replace: %s", f->path, strerror(errno));
    if (rc < 0) {
        if (next.path) {
            unlink(tmp);
            ds4_appendfile_close(&next);
        }
        free(tmp);
        return -1;
    }
    /* the new file is locked by `next` all along: keep it, under the old name */
    free(next.path);
    next.path = f->path;
    f->path = NULL;
    close(f->fd);
    *f = next;
    free(tmp);
    return 0;
}
