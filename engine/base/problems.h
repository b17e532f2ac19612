/* problems.h - the problems found while validating something (a model's tensor set, a
 * checkpoint), gathered and reported as one error line (error.h). */
#ifndef DS4_PROBLEMS_H
#define DS4_PROBLEMS_H

#include "mem.h"

/* A list of problems found while validating something, reported as one error line
 * ("N problems with WHAT: a; b; c; ..."), the first DS4_PROBLEMS_SHOWN of them spelled out. */
#define DS4_PROBLEMS_SHOWN 12
typedef struct { ds4_buf msg; int count; } ds4_problems;
void ds4_problem(ds4_problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* If any problems were recorded: set the error and return -1; frees the list either way. */
int ds4_problems_report(ds4_problems *p, const char *what);

#endif
