/* flags.h: what every tool does the same way: numeric flag values, the flags of the
 * context (--backend, --act), --version, unknown options and the exit status.
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
#include <stdbool.h>

#include "backend.h"
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

/* --backend NAME (which backend runs the model; refused at once when it is not in this
 * build), --device N (which GPU, for a GPU backend) and --act auto|f32|q8 (how matrix
 * products treat activations, backend.h): true when `flag` was one of them, its value
 * then in o. */
static inline bool flag_ctx(const char *tool, const char *flag, const char *value, ds4_ctx_opts *o) {
    if (!strcmp(flag, "--backend")) {
        if (!ds4_backend_find(value, NULL)) {
            fprintf(stderr, "%s: %s\n", tool, ds4_error());
            exit(2);
        }
        o->backend = value;
        return true;
    }
    if (!strcmp(flag, "--device")) {
        o->device = (int)flag_integer(tool, flag, value, 0, 255);
        return true;
    }
    if (!strcmp(flag, "--act")) {
        const int mode = ds4_act_mode_from_name(value);
        if (mode < 0) {
            fprintf(stderr, "%s: --act must be auto, f32 or q8, not '%s'\n", tool, value);
            exit(2);
        }
        o->act = (ds4_act_mode)mode;
        return true;
    }
    return false;
}

/* --version: the commit and the compiled backends. */
static inline int tool_version(const char *tool) {
    printf("%s (ds4) commit %s, backends: %s\n", tool, ds4_git_sha(), ds4_backend_names());
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
