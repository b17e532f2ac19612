/* error.h - how the engine reports failure: functions that fail return NULL or -1 and
 * leave a one-line, human-readable message (naming the file and the problem) in a
 * thread-local buffer that ds4_error() returns; tools print it and exit non-zero. */
#ifndef DS4_ERROR_H
#define DS4_ERROR_H

#include <stddef.h>

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

#endif
