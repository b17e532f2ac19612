/* plot.h: the one way the tools draw a PNG from a CSV, through gnuplot (from Debian;
 * make deps installs it). `commands` are gnuplot commands after the terminal and output
 * are set; the CSV separator is set to commas. */
#ifndef DS4_TOOLS_PLOT_H
#define DS4_TOOLS_PLOT_H

#include <stdio.h>
#include <stdlib.h>
#include "util.h"

static inline int tool_plot(const char *png, const char *commands) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "gnuplot -e \"set datafile separator ','; set terminal pngcairo size 900,540; set output '%s'; %s\"",
             png, commands);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        return ds4_fail("--plot needs gnuplot (make deps installs it)");
    if (system(cmd) != 0) return ds4_fail("gnuplot failed to draw %s", png);
    return 0;
}

#endif
