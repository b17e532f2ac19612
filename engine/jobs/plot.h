/* plot.h - PNG charts drawn by gnuplot (from Debian; make deps installs it) from a CSV
 * the caller has written. gnuplot runs without a shell and reads its script on stdin;
 * paths and titles go into the script as quoted gnuplot strings, so no character of a
 * file name can break it or run a command. The PNG is an output like any other: opened
 * (as a temporary file beside it) before the work starts, so a missing gnuplot or an
 * unwritable path fails at once, and renamed into place only once drawn. */
#ifndef DS4_PLOT_H
#define DS4_PLOT_H

#include <stddef.h>

#include "util.h"

typedef struct {
    ds4_outfile png;
} ds4_plot;

int ds4_plot_open(ds4_plot *p, const char *png_path);
/* Runs `commands` (gnuplot, after the terminal, the output and a ',' CSV separator are
 * set) and moves the PNG into place; the plot is closed either way. */
int ds4_plot_draw(ds4_plot *p, const char *commands);
void ds4_plot_abort(ds4_plot *p);

/* s as a gnuplot single-quoted string ('it''s'), in buf; NULL if it does not fit or
 * holds a line break, which no gnuplot string can. */
const char *ds4_plot_quote(const char *s, char *buf, size_t cap);

#endif
