/* util.h - error reporting, checked arithmetic, small containers and file helpers
 * shared by every module of the ds4 engine.
 *
 * Errors: library functions that fail return NULL or -1 and leave a one-line,
 * human-readable message (naming the file and the problem) in a thread-local
 * buffer that ds4_error() returns. Tools print it and exit non-zero. */
#ifndef DS4_UTIL_H
#define DS4_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DS4_ERROR_MAX 1024

/* Record an error (printf-style). Always returns -1 so callers can `return ds4_fail(...)`.
 * Control bytes in the message (from names in files, paths) are written as escapes, so
 * an error is always one line. */
int ds4_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefix the current error with "prefix: " (used to add a file name as errors propagate). */
void ds4_error_prefix(const char *prefix);
const char *ds4_error(void);

/* Untrusted text (names from a file) made safe for a one-line message: non-printable
 * bytes become '?', long text is cut with "...". Writes into buf and returns it. */
const char *ds4_printable(char *buf, size_t cap, const char *s, size_t n);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool ds4_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline uint64_t ds4_align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Allocation that reports failure through ds4_fail (callers still check for NULL). */
void *ds4_malloc(size_t n);
void *ds4_calloc(size_t n, size_t size);
void *ds4_realloc(void *p, size_t n);
char *ds4_strndup(const char *s, size_t n);

/* Arena: many small allocations freed together (parsed file structures). */
typedef struct ds4_arena_block ds4_arena_block;
typedef struct { ds4_arena_block *head; } ds4_arena;
void *ds4_arena_alloc(ds4_arena *a, size_t n);
char *ds4_arena_strndup(ds4_arena *a, const char *s, size_t n);
void ds4_arena_free(ds4_arena *a);

/* Open-addressing map from byte strings to indices (names of tensors and keys). */
typedef struct {
    const char **keys;
    size_t *lens;
    uint64_t *vals;
    size_t cap, count;
} ds4_strmap;
int ds4_strmap_init(ds4_strmap *m, size_t expected);
/* Insert; returns 1 if inserted, 0 if the key already existed (value untouched), -1 on OOM.
 * The key bytes are not copied and must outlive the map. */
int ds4_strmap_put(ds4_strmap *m, const char *key, size_t len, uint64_t val);
bool ds4_strmap_get(const ds4_strmap *m, const char *key, size_t len, uint64_t *val);
void ds4_strmap_free(ds4_strmap *m);

/* Growable byte buffer. */
typedef struct { uint8_t *data; size_t len, cap; } ds4_buf;
int ds4_buf_append(ds4_buf *b, const void *p, size_t n);
void ds4_buf_free(ds4_buf *b);

/* A list of problems found while validating something, reported as one error line
 * ("N problems with WHAT: a; b; c; ..."), the first DS4_PROBLEMS_SHOWN of them spelled out. */
#define DS4_PROBLEMS_SHOWN 12
typedef struct { ds4_buf msg; int count; } ds4_problems;
void ds4_problem(ds4_problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* If any problems were recorded: set the error and return -1; frees the list either way. */
int ds4_problems_report(ds4_problems *p, const char *what);

/* Append s as one CSV field (quoted and escaped by libcsv). */
int ds4_csv_field(ds4_buf *b, const char *s);

/* Parse all of s as a number in [min, max]; -1 with the error set otherwise. */
int ds4_parse_number(const char *s, double min, double max, double *out);

/* Parse token ids (decimal, 0..INT32_MAX) separated by commas or whitespace into a new
 * array the caller frees. An empty list is valid: *n is 0. */
int ds4_parse_token_ids(const char *s, int32_t **ids, size_t *n);

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
int ds4_outfile_commit(ds4_outfile *f); /* fsync, rename, fsync the directory */
void ds4_outfile_abort(ds4_outfile *f); /* remove the temporary file */
/* Write a whole file through ds4_outfile: complete or not at all. */
int ds4_write_file_atomic(const char *path, const void *data, size_t len);
/* Remove every temporary file still open (called from signal handlers of tools). */
void ds4_outfile_abort_all_signal_safe(void);
/* Install SIGINT/SIGTERM/SIGHUP handlers that remove open temporary files and exit. */
void ds4_install_cleanup_handlers(void);

double ds4_time_now(void);
/* CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (a
 * container started with --cpus=2 on a 64-core host counts 2). */
int ds4_cpu_count(void);
/* The cgroup CPU quota of this process in whole CPUs, 0 for none; `root` prefixes the
 * /proc and /sys paths read ("" for the real ones). */
int ds4_cpu_quota(const char *root);

#endif
