/* progress.h - a progress line on stderr for long jobs (conversion, quantization, long
 * prefills):
 * percentage, throughput and ETA, redrawn at most a few times a second, and only when
 * stderr is a terminal so logs stay clean. */
#ifndef DS4_PROGRESS_H
#define DS4_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *label, *unit; /* unit NULL: bytes, shown as MiB/s */
    uint64_t total, done;
    double start, last_draw;
    bool tty;
} ds4_progress;

void ds4_progress_begin(ds4_progress *p, const char *label, uint64_t total_bytes);
/* The same for a count of something else (tokens: unit "tok"). */
void ds4_progress_begin_count(ds4_progress *p, const char *label, uint64_t total, const char *unit);
void ds4_progress_add(ds4_progress *p, uint64_t bytes);
void ds4_progress_end(ds4_progress *p);

#endif
