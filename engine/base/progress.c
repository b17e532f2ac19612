/* progress.c - see progress.h. */
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "util.h"

static void draw(ds4_progress *p, double now) {
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    double secs = now - p->start;
    double rate = secs > 0 ? (double)p->done / secs : 0;
    double eta = rate > 0 ? (double)(p->total - p->done) / rate : 0;
    int width = 30, fill = (int)(frac * width);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f %s/s  ETA %02d:%02d ", p->label, bar, frac * 100.0,
            p->unit ? rate : rate / (1 << 20), p->unit ? p->unit : "MiB", (int)eta / 60, (int)eta % 60);
    fflush(stderr);
    p->last_draw = now;
}

void ds4_progress_begin_count(ds4_progress *p, const char *label, uint64_t total, const char *unit) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->start = p->last_draw = ds4_time_now();
    p->tty = isatty(2);
    if (p->tty) draw(p, p->start);
}

void ds4_progress_begin(ds4_progress *p, const char *label, uint64_t total_bytes) {
    ds4_progress_begin_count(p, label, total_bytes, NULL);
}

void ds4_progress_add(ds4_progress *p, uint64_t bytes) {
    p->done += bytes;
    if (p->done > p->total) p->done = p->total;
    double now = ds4_time_now();
    if (p->tty && now - p->last_draw > 0.2) draw(p, now);
}

void ds4_progress_end(ds4_progress *p) {
    if (!p->tty) return;
    draw(p, ds4_time_now());
    fputc('\n', stderr);
}
