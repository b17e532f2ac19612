/* error.c - see error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char error_buf[DS4_ERROR_MAX];

/* Copies text into dst (cap bytes, NUL-terminated) with every control byte written as
 * an escape (\n, \t, \r, \xNN): errors quote names and paths taken from files and
 * command lines, and an error must stay one line whatever they hold. */
static size_t escape_into(char *dst, size_t cap, const char *src) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)src; *s && o + 5 < cap; s++) {
        if (*s >= 0x20 && *s != 0x7f) {
            dst[o++] = (char)*s;
        } else if (*s == '\n' || *s == '\t' || *s == '\r') {
            dst[o++] = '\\';
            dst[o++] = *s == '\n' ? 'n' : *s == '\t' ? 't' : 'r';
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[*s >> 4];
            dst[o++] = hex[*s & 15];
        }
    }
    dst[o] = 0;
    return o;
}

int ds4_fail(const char *fmt, ...) {
    char raw[DS4_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    escape_into(error_buf, sizeof error_buf, raw);
    return -1;
}

void ds4_error_prefix(const char *prefix) {
    char tmp[DS4_ERROR_MAX];
    size_t n = escape_into(tmp, DS4_ERROR_MAX / 2, prefix);
    memcpy(tmp + n, ": ", 3);
    snprintf(tmp + n + 2, sizeof tmp - n - 2, "%s", error_buf);
    memcpy(error_buf, tmp, sizeof error_buf);
}

const char *ds4_error(void) { return error_buf[0] ? error_buf : "unknown error"; }

const char *ds4_printable(char *buf, size_t cap, const char *s, size_t n) {
    size_t o = 0, keep = cap > 4 ? cap - 4 : 0;
    for (size_t i = 0; i < n && o < keep; i++) buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (o < n && cap >= 4) memcpy(buf + o, "...", 3), o += 3;
    if (cap) buf[o < cap ? o : cap - 1] = 0;
    return buf;
}
