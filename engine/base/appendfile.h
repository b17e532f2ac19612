/* appendfile.h - an output that grows by whole lines and survives interruption: a CSV
 * of measurements written as they are made, a JSONL of results. Every line goes out in
 * one write and is synced before the call returns, so a kill loses at most the line
 * being written, and a failed write (a full disk) is undone: the file never ends in a
 * torn line. Opening for resumption cuts a torn last line left by an earlier kill. One
 * process writes a file at a time: it holds an advisory lock (flock), which the kernel
 * drops when the process dies, so a second writer is refused and a rerun after a kill
 * goes on. */
#ifndef DS4_APPENDFILE_H
#define DS4_APPENDFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;
    char *path;
    uint64_t size; /* bytes of whole lines */
} ds4_appendfile;

/* Opens path for lines: `resume` keeps what it holds (but a torn last line), else it
 * starts empty. `header` (may be NULL) is written first when the file is empty. */
int ds4_appendfile_open(ds4_appendfile *f, const char *path, bool resume, const char *header);
/* Appends n bytes (one or more whole lines, ending in '\n') and syncs them. */
int ds4_appendfile_write(ds4_appendfile *f, const char *text, size_t n);
/* Replaces everything the file holds with n bytes of whole lines, atomically (a
 * temporary file renamed over it), keeping the lock. */
int ds4_appendfile_replace(ds4_appendfile *f, const char *text, size_t n);
/* Closes an opened file; a zeroed one that never opened is left alone. */
void ds4_appendfile_close(ds4_appendfile *f);

#endif
