/* imatrix.h - importance matrices: for every weight matrix (every routed expert
 * separately) the mean square of each input column over calibration text, which the
 * quantizers use to spend their precision where activations are large.
 *
 * Files are GGUF in llama.cpp's imatrix layout, so either tool reads the other's:
 * `general.type = "imatrix"`, `imatrix.datasets`, `imatrix.chunk_count`,
 * `imatrix.chunk_size`; per weight tensor NAME, `NAME.in_sum2` (F32, [columns,
 * matrices]: summed squares) and `NAME.counts` (F32, [1, matrices]: rows summed). */
#ifndef DS4_IMATRIX_H
#define DS4_IMATRIX_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"

typedef struct ds4_imatrix ds4_imatrix;

/* Load an imatrix file; NULL with ds4_error set. */
ds4_imatrix *ds4_imatrix_load(const char *path);
void ds4_imatrix_free(ds4_imatrix *im);

/* Mean squares of the `cols` columns of matrix `mat` (the expert index, 0 for 2-D
 * tensors) of tensor `name` into out: 1 when filled, 0 when the file has nothing for
 * it (or the matrix saw no rows), -1 with the error set when the shapes disagree. */
int ds4_imatrix_get(const ds4_imatrix *im, const char *name, uint64_t mat, uint64_t cols, float *out);

/* Save a collected matrix; `chunk_size` is the tokens per calibration chunk, recorded. */
int ds4_imatrix_save(const ds4_imatrix *im, const char *path, const char *dataset, uint32_t chunks,
                     uint32_t chunk_size);
uint64_t ds4_imatrix_n_entries(const ds4_imatrix *im); /* matrices with data */

/* Collect over a calibration file: JSONL, one object per line with "prompt_ids"
 * (an array of token ids) or "text" (needs tok). Each line is cut into chunks of
 * chunk_size tokens, each run from an empty state in a context made with `opts` (whose
 * observer the collection takes). A malformed line is an error
 * naming the line. On success *chunks and *tokens say how much was seen. */
typedef struct ds4_tokenizer ds4_tokenizer;
ds4_imatrix *ds4_imatrix_calibrate(const ds4_model *m, const ds4_tokenizer *tok, const char *jsonl_path,
                                   const ds4_ctx_opts *opts, uint32_t chunk_size, bool progress, uint32_t *chunks,
                                   uint64_t *tokens);

#endif
