/* quant_golden.h - checks our block formats against ggml's own output, read from a
 * file in the golden format of shared/golden/README.md: for each set (a ggml type,
 * with or without an importance matrix) dequantizing ggml's bytes must give ggml's
 * floats exactly, and quantizing the inputs ourselves must lose no more than ggml
 * did, row by row (importance-weighted when the set has an imatrix). */
#ifndef DS4_QUANT_GOLDEN_H
#define DS4_QUANT_GOLDEN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The quality bound: our row error may be at most this multiple of ggml's. */
#define DS4_GOLDEN_MAX_RATIO 1.02

typedef struct {
    uint32_t type, nrows, ncols;
    bool has_imatrix;
    bool dequant_checked, quant_checked; /* false: this build has no such path */
    int dequant_bad_rows;                /* rows that dequantize differently */
    int identical_rows;                  /* rows whose bytes equal ggml's */
    double worst_ratio;                  /* max over rows of our error / ggml's */
    double ours_rel_rmse, ggml_rel_rmse; /* sqrt(sum err^2 / sum src^2), unweighted */
    double ours_werr, ggml_werr;         /* summed (weighted) squared error */
    double quant_seconds;
    bool pass;
} ds4_golden_set;

/* Read and check every set; *sets is allocated (caller frees). -1 with ds4_error for
 * an unreadable or malformed file. */
int ds4_golden_check(const char *path, ds4_golden_set **sets, size_t *n_sets);

/* A table for people, and CSV rows (with a header) for results/quant-error.csv. */
void ds4_golden_print(const ds4_golden_set *sets, size_t n, FILE *out);
int ds4_golden_write_csv(const ds4_golden_set *sets, size_t n, const char *path);

#endif
