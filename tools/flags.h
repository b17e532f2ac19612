/* flags.h: the one way the tools read a numeric flag value (and the --act mode).
 *
 * A value that is not a number in range ends the program with status 2 and a line
 * naming the tool and the flag, so every tool rejects bad numbers alike. */
#ifndef DS4_TOOLS_FLAGS_H
#define DS4_TOOLS_FLAGS_H

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "ops.h"
#include "util.h"

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

#endif
