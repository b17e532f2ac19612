/* flags.h: what every tool does the same way: numeric flag values, the --act mode,
 * --version, unknown options and the exit status.
 *
 * Exit status of every tool: 0 when it did what was asked; 1 when a check failed or
 * the work failed; 2 for bad usage or unreadable input (a file that does not open or
 * does not parse). A value that is not a number in range ends the program with status 2
 * and a line naming the tool and the flag, so every tool rejects bad numbers alike. */
#ifndef DS4_TOOLS_FLAGS_H
#define DS4_TOOLS_FLAGS_H

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "matmul.h"
#include "ops.h"
#include "util.h"
#include "version.h"

#define EXIT_STATUS_HELP "exit status: 0 done; 1 a check failed or the work failed; 2 bad usage or unreadable input\n"

static inline double flag_number(const char *tool, const char *flag, const char *value, double min, double max) {
    double x;
    if (ds4_parse_number(value, min, max, &x) < 0) {
        fprintf(stderr, "%s: %s: %s\n", tool, flag, ds4_error());
        exit(2);
    }
    return x;
}

static inline long flag_integer(const char *tool, const char *flag, const char *value, long min, long max) {
    double x = flag_number(tool, flag, value, (double)min, (double)max);
    if (x != (double)(long)x) {
        fprintf(stderr, "%s: %s wants an integer, not '%s'\n", tool, flag, value);
        exit(2);
    }
    return (long)x;
}

/* --act auto|f32|q8: how matrix products treat activations (ops.h). */
static inline void flag_act(const char *tool, const char *value) {
    const int mode = ds4_act_mode_from_name(value);
    if (mode < 0) {
        fprintf(stderr, "%s: --act must be auto, f32 or q8, not '%s'\n", tool, value);
        exit(2);
    }
    ds4_set_act_mode((ds4_act_mode)mode);
}

/* --version: the commit and the compiled backends. */
static inline int tool_version(const char *tool) {
    printf("%s (ds4) commit %s, backends: %s\n", tool, ds4_git_sha(), ds4_backends());
    return 0;
}

/* An option the tool does not know: one line and a pointer to --help; status 2. */
static inline int tool_unknown_option(const char *tool, const char *opt) {
    fprintf(stderr, "%s: unknown option '%s' (%s --help lists the options)\n", tool, opt, tool);
    return 2;
}

/* A flag given without its value. */
static inline int tool_missing_value(const char *tool, const char *flag) {
    fprintf(stderr, "%s: %s needs a value (%s --help lists the options)\n", tool, flag, tool);
    return 2;
}

#endif
