/* quant_golden.c - see quant_golden.h. */
#include "quant_golden.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quants.h"
#include "util.h"

typedef struct {
    const uint8_t *p, *end;
} reader;

static const void *take(reader *r, uint64_t n) {
    if ((uint64_t)(r->end - r->p) < n) return NULL;
    const void *at = r->p;
    r->p += n;
    return at;
}

/* Squared error of a row, weighted by w where given. */
static double row_error(const float *a, const float *b, const float *w, uint32_t n) {
    double e = 0;
    for (uint32_t i = 0; i < n; i++) {
        const double d = (double)a[i] - b[i];
        e += (w ? w[i] : 1.0) * d * d;
    }
    return e;
}

/* Values are read out of the file with memcpy: nothing in it need be aligned. */
static float *copy_floats(const void *src, uint64_t n) {
    float *f = ds4_malloc(n * sizeof *f + 1);
    if (f) memcpy(f, src, n * sizeof *f);
    return f;
}

static int check_set(ds4_golden_set *s, const float *src, const float *imatrix, const uint8_t *q, const float *deq,
                     uint32_t row_bytes) {
    const uint32_t n = s->ncols;
    float *back = ds4_malloc((uint64_t)n * sizeof *back), *ours = ds4_malloc((uint64_t)n * sizeof *ours);
    uint8_t *mine = ds4_malloc(row_bytes);
    if (!back || !ours || !mine) {
        free(back); free(ours); free(mine);
        return -1;
    }
    const ds4_type_info *info = ds4_type_get(s->type);
    s->dequant_checked = info && info->to_f32 && ds4_row_size(s->type, n) == row_bytes;
    s->quant_checked = s->dequant_checked && ds4_quantize_supported(s->type);
    double src2 = 0, ours2 = 0, ggml2 = 0;
    for (uint32_t r = 0; r < s->nrows; r++) {
        const float *x = src + (uint64_t)r * n, *g = deq + (uint64_t)r * n;
        const uint8_t *gq = q + (uint64_t)r * row_bytes;
        if (s->dequant_checked) {
            if (ds4_row_to_f32(s->type, gq, back, n) != 0 || memcmp(back, g, (size_t)n * 4)) s->dequant_bad_rows++;
        }
        if (!s->quant_checked) continue;
        const double t0 = ds4_time_now();
        if (ds4_quantize_row(s->type, x, mine, n, imatrix) != 0) {
            s->quant_checked = false; /* e.g. no imatrix for a type that needs one */
            continue;
        }
        s->quant_seconds += ds4_time_now() - t0;
        s->identical_rows += !memcmp(mine, gq, row_bytes);
        ds4_row_to_f32(s->type, mine, ours, n);
        const double eo = row_error(ours, x, imatrix, n), eg = row_error(g, x, imatrix, n);
        const double ratio = eg > 0 ? eo / eg : (eo > 0 ? INFINITY : 1.0);
        if (ratio > s->worst_ratio) s->worst_ratio = ratio;
        s->ours_werr += eo;
        s->ggml_werr += eg;
        for (uint32_t i = 0; i < n; i++) src2 += (double)x[i] * x[i];
        ours2 += row_error(ours, x, NULL, n);
        ggml2 += row_error(g, x, NULL, n);
    }
    if (src2 > 0) {
        s->ours_rel_rmse = sqrt(ours2 / src2);
        s->ggml_rel_rmse = sqrt(ggml2 / src2);
    }
    s->pass = s->dequant_bad_rows == 0 && (!s->quant_checked || s->worst_ratio <= DS4_GOLDEN_MAX_RATIO);
    free(back); free(ours); free(mine);
    return 0;
}

int ds4_golden_check(const char *path, ds4_golden_set **sets_out, size_t *n_out) {
    *sets_out = NULL;
    *n_out = 0;
    ds4_mmap m;
    if (ds4_mmap_open(&m, path) < 0) return -1;
    reader r = {m.data, m.data + m.size};
    const uint8_t *head = take(&r, 16);
    uint32_t version, n_sets;
    if (!head || memcmp(head, "DS4QGOLD", 8)) {
        ds4_mmap_close(&m);
        return ds4_fail("%s: not a golden quantization file (no DS4QGOLD header)", path);
    }
    memcpy(&version, head + 8, 4);
    memcpy(&n_sets, head + 12, 4);
    if (version != 1 || n_sets == 0 || n_sets > 4096) {
        ds4_mmap_close(&m);
        return ds4_fail("%s: unsupported golden file (version %u, %u sets)", path, version, n_sets);
    }
    ds4_golden_set *sets = calloc(n_sets, sizeof *sets);
    int rc = sets ? 0 : ds4_fail("out of memory");
    for (uint32_t i = 0; i < n_sets && rc == 0; i++) {
        const uint8_t *h = take(&r, 20);
        uint32_t f[5];
        if (!h) { rc = ds4_fail("%s: truncated in the header of set %u", path, i); break; }
        memcpy(f, h, 20);
        ds4_golden_set *s = &sets[i];
        s->type = f[0];
        s->nrows = f[1];
        s->ncols = f[2];
        s->has_imatrix = f[3] != 0;
        const uint32_t row_bytes = f[4];
        if (!s->nrows || !s->ncols || s->nrows > (1u << 20) || s->ncols > (1u << 24) || !row_bytes ||
            row_bytes > (1u << 28)) {
            rc = ds4_fail("%s: set %u has implausible sizes (%u x %u, %u bytes per row)", path, i, s->nrows,
                          s->ncols, row_bytes);
            break;
        }
        const uint64_t cells = (uint64_t)s->nrows * s->ncols;
        const void *src = take(&r, cells * 4), *imat = s->has_imatrix ? take(&r, (uint64_t)s->ncols * 4) : NULL;
        const void *q = take(&r, (uint64_t)s->nrows * row_bytes), *deq = take(&r, cells * 4);
        if (!src || (s->has_imatrix && !imat) || !q || !deq) {
            rc = ds4_fail("%s: truncated in set %u (%s)", path, i, ds4_type_name(s->type));
            break;
        }
        float *fsrc = copy_floats(src, cells), *fdeq = copy_floats(deq, cells);
        float *fimat = imat ? copy_floats(imat, s->ncols) : NULL;
        if (!fsrc || !fdeq || (imat && !fimat) || check_set(s, fsrc, fimat, q, fdeq, row_bytes) < 0)
            rc = ds4_fail("out of memory checking set %u", i);
        free(fsrc); free(fdeq); free(fimat);
    }
    ds4_mmap_close(&m);
    if (rc < 0) {
        free(sets);
        return -1;
    }
    *sets_out = sets;
    *n_out = n_sets;
    return 0;
}

void ds4_golden_print(const ds4_golden_set *sets, size_t n, FILE *out) {
    fprintf(out, "%-8s %-7s %-9s %-22s %-10s %-10s %-11s %-9s %s\n", "type", "imatrix", "dequant", "quantize",
             "ours_rmse", "ggml_rmse", "worst_row", "same_rows", "result");
    for (size_t i = 0; i < n; i++) {
        const ds4_golden_set *s = &sets[i];
        char dq[32], qt[32], worst[32], same[32];
        snprintf(dq, sizeof dq, "%s", !s->dequant_checked ? "no path" : s->dequant_bad_rows ? "DIFFERS" : "exact");
        if (s->quant_checked) {
            snprintf(qt, sizeof qt, "%.0f rows/s", s->quant_seconds > 0 ? s->nrows / s->quant_seconds : 0.0);
            snprintf(worst, sizeof worst, "%.4fx", s->worst_ratio);
            snprintf(same, sizeof same, "%d/%u", s->identical_rows, s->nrows);
        } else {
            snprintf(qt, sizeof qt, "not checked");
            snprintf(worst, sizeof worst, "-");
            snprintf(same, sizeof same, "-");
        }
        fprintf(out, "%-8s %-7s %-9s %-22s %-10.5f %-10.5f %-11s %-9s %s\n", ds4_type_name(s->type),
                s->has_imatrix ? "yes" : "no", dq, qt, s->ours_rel_rmse, s->ggml_rel_rmse, worst, same,
                s->pass ? "pass" : "FAIL");
    }
}

int ds4_golden_write_csv(const ds4_golden_set *sets, size_t n, const char *path) {
    ds4_buf b = {0};
    char line[512];
    static const char header[] = "type,imatrix,rows,cols,dequant_exact,quantized,ours_rel_rmse,ggml_rel_rmse,"
                                 "ours_weighted_err,ggml_weighted_err,worst_row_ratio,identical_rows,pass\n";
    int rc = ds4_buf_append(&b, header, sizeof header - 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const ds4_golden_set *s = &sets[i];
        int len = snprintf(line, sizeof line, "%s,%d,%u,%u,%s,%d,%.6f,%.6f,%.6g,%.6g,%.6f,%d,%d\n",
                           ds4_type_name(s->type), s->has_imatrix, s->nrows, s->ncols,
                           !s->dequant_checked ? "" : s->dequant_bad_rows ? "0" : "1", s->quant_checked,
                           s->ours_rel_rmse, s->ggml_rel_rmse, s->ours_werr, s->ggml_werr,
                           s->quant_checked ? s->worst_ratio : 0.0, s->identical_rows, s->pass);
        rc = ds4_buf_append(&b, line, (size_t)len);
    }
    if (rc == 0) rc = ds4_write_file_atomic(path, b.data, b.len);
    ds4_buf_free(&b);
    return rc;
}
