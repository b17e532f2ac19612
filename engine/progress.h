/* progress.h - a progress line on stderr for long jobs (conversion, quantization):
 * percentage, throughput and ETA, redrawn at most a few times a second, and only when
 * stderr is a terminal so logs stay clean. */
#ifndef DS4_PROGRESS_H
#define DS4_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *label;
    uint64_t total, done;
    double start, last_draw;
    bool tty;
} ds4_progress;

void ds4_progress_begin(ds4_progress *p, const char *label, uint64_t total_bytes);
void ds4_progress_add(ds4_progress *p, uint64_t bytes);
void ds4_progress_end(ds4_progress *p);

#endif
