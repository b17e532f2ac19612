/* matmul.h - the CPU's matrix products against GGUF weight tensors of any readable type:
 * y = W x for a chunk of activation rows, threaded over output rows, with several
 * products in one parallel loop where they are small (a decoded token's). F32 weights
 * and the 16-bit and Q8_0 ones multiply F32 activations (read per block for one or two
 * activation rows, converted once per row for more); the sub-8-bit formats run int8
 * kernels (qdot.h) against activations quantized once per product, as ggml does. */
#ifndef DS4_MATMUL_H
#define DS4_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "cpufeatures.h"
#include "gguf.h"

typedef struct ds4_matmul_part ds4_matmul_part;

/* Matrix products run by another device that holds the weights (a GPU: cuda/), while the
 * CPU computes the rest of each stage around them. `run` computes parts[0..n) as
 * ds4_matmul_batch would (within float rounding) and returns true, or false when it
 * cannot (a weight it does not hold): then the CPU runs them. */
typedef struct {
    bool (*run)(void *ctx, const ds4_matmul_part *parts, int n);
    void *ctx;
} ds4_matmul_offload;

/* How the products of one context run: its threads, the SIMD level of its kernels (at
 * most ds4_cpu_detect()'s), its activation mode (backend.h), the observer that sees
 * every product's input (NULL: none) and where they run (NULL: here). */
typedef struct {
    int n_threads;
    ds4_cpu_level level;
    ds4_act_mode act;
    ds4_matmul_observer observer;
    void *observer_ctx;
    const ds4_matmul_offload *offload;
} ds4_matmul_ctx;

/* y[t*ldy + o] = sum_i W[row0 + o][i] * x[t*ldx + i] for o < n_out, t < T.
 * W's rows hold ne[0] values; any type ds4_row_to_f32 reads. */
void ds4_matmul(const ds4_matmul_ctx *mc, const gguf_tensor *W, uint64_t row0, uint64_t n_out, const float *x,
                uint64_t ldx, int T, float *y, uint64_t ldy);

/* Several products in one parallel loop (saves a loop's start and end per product:
 * the many small products of a decoded token): each computed exactly as ds4_matmul
 * computes it alone. */
struct ds4_matmul_part {
    const gguf_tensor *W;
    uint64_t row0, n_out;
    const float *x;
    uint64_t ldx;
    int T;
    float *y;
    uint64_t ldy;
};
void ds4_matmul_batch(const ds4_matmul_ctx *mc, const ds4_matmul_part *parts, int n);

#endif
