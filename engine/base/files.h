/* files.h - files: whole reads, memory maps, and outputs that appear only when complete
 * (a temporary file, fsync, rename), with the temporaries of killed or interrupted runs
 * removed. */
#ifndef DS4_FILES_H
#define DS4_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Read a whole (small) file into a NUL-terminated buffer. */
char *ds4_read_file(const char *path, size_t *len_out);

/* Whether two paths name one file (through links too: same device and inode). */
bool ds4_same_file(const char *a, const char *b);

/* Size of a file in bytes, 0 if it cannot be read. */
uint64_t ds4_file_size(const char *path);

/* Read-only memory map of a whole file. */
typedef struct { const uint8_t *data; size_t size; } ds4_mmap;
int ds4_mmap_open(ds4_mmap *m, const char *path);
void ds4_mmap_close(ds4_mmap *m);

/* Output file written under a temporary name (PATH.tmp.PID) and renamed into place
 * only when complete, so a failed or interrupted write never leaves a partial file at
 * `path`; opening one removes the temporary files that killed processes left. */
typedef struct {
    int fd;
    char *path, *tmp_path;
    uint64_t written;
} ds4_outfile;
int ds4_outfile_open(ds4_outfile *f, const char *path);
int ds4_outfile_write(ds4_outfile *f, const void *p, size_t n);
/* n bytes left as a hole (zeros that take no space where the filesystem is sparse). */
int ds4_outfile_skip(ds4_outfile *f, uint64_t n);
int ds4_outfile_commit(ds4_outfile *f); /* fsync, rename, fsync the directory */
void ds4_outfile_abort(ds4_outfile *f); /* remove the temporary file */
/* Write a whole file through ds4_outfile: complete or not at all. */
int ds4_write_file_atomic(const char *path, const void *data, size_t len);
/* Install SIGINT/SIGTERM/SIGHUP handlers that remove open temporary files and exit. */
void ds4_install_cleanup_handlers(void);

#endif
