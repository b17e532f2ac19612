/* parse.c - see parse.h. */
#include "parse.h"

#include <csv.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "files.h"

int ds4_parse_number(const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double x = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end || errno || !(x >= min && x <= max))
        return ds4_fail("'%s' is not a number in [%.15g, %.15g]", s ? s : "", min, max);
    *out = x;
    return 0;
}

static bool is_id_separator(char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int ds4_parse_token_ids(const char *s, int32_t **ids, size_t *n) {
    ds4_buf b = {0};
    for (const char *p = s;;) {
        while (is_id_separator(*p)) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long id = strtol(p, &end, 10);
        if (end == p || errno || id < 0 || id > INT32_MAX || (*end && !is_id_separator(*end))) {
            ds4_buf_free(&b);
            return ds4_fail("not a token id: '%.20s'", p);
        }
        int32_t v = (int32_t)id;
        if (ds4_buf_append(&b, &v, sizeof v) < 0) {
            ds4_buf_free(&b);
            return -1;
        }
        p = end;
    }
    *ids = (int32_t *)b.data;
    *n = b.len / sizeof **ids;
    return 0;
}

int ds4_csv_field(ds4_buf *b, const char *s) {
    size_t n = strlen(s), need = csv_write(NULL, 0, s, n);
    char *q = ds4_malloc(need);
    if (!q) return -1;
    csv_write(q, need, s, n);
    int rc = ds4_buf_append(b, q, need);
    free(q);
    return rc;
}

typedef struct {
    char (*fields)[DS4_CSV_FIELD];
    int max, n, row, want;
} row_reader;

static void on_field(void *s, size_t len, void *arg) {
    row_reader *r = arg;
    if (r->row != r->want || r->n >= r->max) return;
    const size_t k = len < DS4_CSV_FIELD - 1 ? len : DS4_CSV_FIELD - 1;
    memcpy(r->fields[r->n], s, k);
    r->fields[r->n++][k] = 0;
}

static void on_row(int c, void *arg) {
    (void)c;
    ((row_reader *)arg)->row++;
}

int ds4_csv_row(const char *path, int row, char (*fields)[DS4_CSV_FIELD], int max_fields) {
    size_t len = 0;
    char *text = ds4_read_file(path, &len);
    if (!text) return -1;
    struct csv_parser p;
    row_reader r = {fields, max_fields, 0, 0, row};
    int rc = csv_init(&p, CSV_APPEND_NULL) == 0 && csv_parse(&p, text, len, on_field, on_row, &r) == len ? 0 : -1;
    if (rc == 0) csv_fini(&p, on_field, on_row, &r);
    csv_free(&p);
    free(text);
    if (rc < 0) return ds4_fail("%s: not CSV", path);
    if (r.row <= row) return ds4_fail("%s: no row %d", path, row);
    return r.n;
}
