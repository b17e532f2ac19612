/* problems.c - see problems.h. */
#include "problems.h"

#include <stdarg.h>
#include <stdio.h>

#include "error.h"

void ds4_problem(ds4_problems *p, const char *fmt, ...) {
    if (++p->count > DS4_PROBLEMS_SHOWN) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p->msg.len) ds4_buf_append(&p->msg, "; ", 2);
    ds4_buf_append(&p->msg, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
}

int ds4_problems_report(ds4_problems *p, const char *what) {
    int rc = 0;
    if (p->count) {
        ds4_buf_append(&p->msg, "", 1);
        rc = ds4_fail("%d problem%s with %s: %s%s", p->count, p->count > 1 ? "s" : "", what,
                      p->msg.data ? (char *)p->msg.data : "", p->count > DS4_PROBLEMS_SHOWN ? "; ..." : "");
    }
    ds4_buf_free(&p->msg);
    return rc;
}
