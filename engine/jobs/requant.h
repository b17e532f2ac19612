/* requant.h - a deepseek4 GGUF to another GGUF under a quantization recipe: every
 * tensor read row by row (any type we read), quantized with its importance-matrix
 * rows where given, and written in a single streaming pass on all cores. Memory stays
 * at a few row chunks whatever the model size; input pages are dropped once used; the
 * output appears only when complete. Tensors the model does not use (MTP) are copied.
 *
 * Also the per-tensor quantization loss, measured on the fly against the F32 rows:
 * relative RMSE, importance-weighted where an imatrix applies. */
#ifndef DS4_REQUANT_H
#define DS4_REQUANT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "imatrix.h"
#include "recipe.h"

typedef struct ds4_tensor_loss {
    char name[96];
    uint32_t type_in, type_out;
    uint64_t n_elements, bytes_out;
    double rel_rmse;   /* sqrt(sum err^2 / sum x^2) */
    double rel_wrmse;  /* the same weighted by the importance matrix (= rel_rmse without one) */
    bool imatrix;      /* importance rows were found for it */
    double seconds;
} ds4_tensor_loss;

typedef struct {
    const char *in_path, *out_path;
    const ds4_recipe *recipe;
    const ds4_imatrix *imatrix; /* may be NULL */
    int n_threads;              /* 0: all cores */
    bool progress;
    bool allow_requantize;      /* requantize tensors already below 8 bits */
} ds4_requant_opts;

typedef struct {
    uint64_t n_tensors, n_copied, n_fallback, bytes_in, bytes_out, f32_bytes;
    double seconds;
    ds4_tensor_loss *loss; /* one per tensor, in file order (caller frees) */
} ds4_requant_stats;

int ds4_requant(const ds4_requant_opts *opts, ds4_requant_stats *stats);

/* One thread's state for quantizing rows of one tensor (also used by convert.c). */
typedef struct {
    const ds4_imatrix *imatrix;
    const char *tensor;
    uint32_t type;
    uint64_t cols;
    float *importance, *back; /* cols each */
    int64_t mat;              /* matrix whose importance is loaded; -1: none yet */
    int have;                 /* importance holds real data */
    double sum_x2, sum_e2, sum_wx2, sum_we2;
    bool used_imatrix;
} ds4_row_quantizer;

int ds4_row_quantizer_init(ds4_row_quantizer *q, const ds4_imatrix *im, const char *tensor, uint32_t type,
                           uint64_t cols);
/* Quantize row x of matrix `mat` (expert index) to dst and add its loss to the sums.
 * Types that need an importance matrix get uniform importance where none is known. */
int ds4_row_quantize(ds4_row_quantizer *q, uint64_t mat, const float *x, void *dst);
/* Add up the losses of n per-thread quantizers of one tensor into l, and free them. */
void ds4_row_quantizers_finish(ds4_row_quantizer *q, int n, ds4_tensor_loss *l);

/* The per-tensor losses as CSV (atomic write). */
int ds4_tensor_loss_write_csv(const ds4_tensor_loss *loss, uint64_t n, const char *path);

#endif
