/* matmul.h - the CPU's matrix products against GGUF weight tensors of any readable type:
 * y = W x for a chunk of activation rows, threaded over output rows, with several
 * products in one parallel loop where they are small (a decoded token's). F32 weights
 * and the 16-bit and Q8_0 ones multiply F32 activations (read per block for one or two
 * activation rows, converted once per row for more); the sub-8-bit formats run int8
 * kernels (qdot.h) against activations quantized once per product, as ggml does. */
#ifndef DS4_MATMUL_H
#define DS4_MATMUL_H

#include <stdint.h>

#include "gguf.h"

/* How matrix products treat activations. F32: every weight row is dequantized and
 * multiplied with F32 activations (the reference). Q8: for every weight type with an
 * int8 kernel (qdot.h) the activations are quantized to 8 bits once per product, as
 * ggml does. AUTO (the default): Q8 for the sub-8-bit formats, F32 for Q8_0, F16,
 * BF16 and F32 weights, so a Q8_0 model stays within float rounding of a reference
 * that rounds its weights the same way. */
typedef enum { DS4_ACT_AUTO = 0, DS4_ACT_F32, DS4_ACT_Q8 } ds4_act_mode;
void ds4_set_act_mode(ds4_act_mode mode); /* process-wide; set before running */
ds4_act_mode ds4_get_act_mode(void);
int ds4_act_mode_from_name(const char *name); /* "auto", "f32", "q8"; -1 otherwise */

/* An observer sees the input of every matrix product before it runs (importance-matrix
 * collection). One at a time; NULL removes it. */
typedef void (*ds4_matmul_observer)(void *ctx, const gguf_tensor *W, uint64_t row0, const float *x, uint64_t ldx,
                                    int T);
void ds4_matmul_set_observer(ds4_matmul_observer fn, void *ctx);

/* y[t*ldy + o] = sum_i W[row0 + o][i] * x[t*ldx + i] for o < n_out, t < T.
 * W's rows hold ne[0] values; any type ds4_row_to_f32 reads. */
void ds4_matmul(const gguf_tensor *W, uint64_t row0, uint64_t n_out, const float *x, uint64_t ldx, int T,
                float *y, uint64_t ldy, int n_threads);

/* Several products in one parallel loop (saves a loop's start and end per product:
 * the many small products of a decoded token): each computed exactly as ds4_matmul
 * computes it alone. */
typedef struct {
    const gguf_tensor *W;
    uint64_t row0, n_out;
    const float *x;
    uint64_t ldx;
    int T;
    float *y;
    uint64_t ldy;
} ds4_matmul_part;
void ds4_matmul_batch(const ds4_matmul_part *parts, int n, int n_threads);

#endif
