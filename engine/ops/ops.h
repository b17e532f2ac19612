/* ops.h - the numeric building blocks of the forward pass, in F32: matrix products
 * against GGUF weight tensors of any readable type (threaded over output rows), RMS
 * norms, softmax, activations and the interleaved partial RoPE of DeepSeek V4 (with
 * YaRN for the compressed layers). Plain C loops: the reference that faster kernels
 * are tested against. */
#ifndef DS4_OPS_H
#define DS4_OPS_H

#include <stdbool.h>
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
 * W's rows hold ne[0] values; any type ggml_row_to_f32 reads. */
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

/* Dot product of two F32 vectors: AVX-512 or AVX2+FMA where the CPU has them (more
 * partial sums, so the last bits differ from the scalar reference's), else scalar. */
float ds4_dot(const float *a, const float *b, uint64_t n);
float ds4_dot_scalar(const float *a, const float *b, uint64_t n);
/* The kernel of one level (for tests), NULL if this CPU or build lacks it. */
typedef float (*ds4_dot_fn)(const float *, const float *, uint64_t);
ds4_dot_fn ds4_dot_for_level(int level);

/* y += a * x, vectorized; bit-identical to the scalar loop at every level (no FMA). */
void ds4_axpy(float a, const float *x, float *y, uint64_t n);
void ds4_axpy_scalar(float a, const float *x, float *y, uint64_t n);
typedef void (*ds4_axpy_fn)(float, const float *, float *, uint64_t);
ds4_axpy_fn ds4_axpy_for_level(int level);

/* A stored F16 or Q8_0 weight row times F32 activations, converting as it goes (the
 * decode path; Q8_0 adds q*x per block, then scales). NULL for other types or levels
 * this CPU lacks. */
typedef float (*ds4_rowdot_fn)(const void *row, const float *x, uint64_t n);
ds4_rowdot_fn ds4_rowdot_for_level(uint32_t type, int level);

/* Row r of a weight tensor as F32 (embedding lookup, small parameter tables). */
void ds4_tensor_row(const gguf_tensor *W, uint64_t r, float *out);
/* The whole tensor as a freshly allocated F32 array (for small tensors); NULL on error. */
float *ds4_tensor_f32(const gguf_tensor *W);

void ds4_rmsnorm(float *x, int n, const float *weight, float eps); /* weight may be NULL */
void ds4_softmax(float *x, int n);
/* log(sum(exp(x))) in double, shifted by the maximum. */
double ds4_logsumexp(const float *x, uint64_t n);
float ds4_silu(float x);
float ds4_sigmoid(float x);
float ds4_softplus(float x);

/* RoPE frequencies for a rotary dimension `dim` (even): plain, or YaRN when factor > 1
 * and orig_ctx > 0, computed as transformers does (float32 throughout). */
void ds4_rope_freqs(float *inv_freq, int dim, float base, float factor, uint32_t orig_ctx, float beta_fast,
                    float beta_slow);
/* Rotate the trailing `dim` values of x (length n) by position pos; sign -1 undoes it. */
void ds4_rope_apply(float *x, int n, int dim, const float *inv_freq, int64_t pos, int sign);
/* The same in two steps, for many vectors at one position (every head of a token):
 * the cosines and sines of the position (dim floats, dim <= DS4_ROPE_MAX), then the
 * rotation by them; the same bits as ds4_rope_apply. */
#define DS4_ROPE_MAX 1024
void ds4_rope_table(float *cs, int dim, const float *inv_freq, int64_t pos);
void ds4_rope_apply_table(float *x, int n, int dim, const float *cs, int sign);

/* out[i] = w[0]*rows[0][i] + w[1]*rows[1][i] + ... (n_rows <= 65), each product rounded
 * and added left to right, starting from +0 when from_zero: at every level the bits of
 * that scalar loop (the hyper-connections' stream mixing). */
typedef void (*ds4_weighted_sum_fn)(float *out, const float *const *rows, const float *w, int n_rows, uint64_t n,
                                    bool from_zero);
void ds4_weighted_sum(float *out, const float *const *rows, const float *w, int n_rows, uint64_t n, bool from_zero);
void ds4_weighted_sum_scalar(float *out, const float *const *rows, const float *w, int n_rows, uint64_t n,
                             bool from_zero);
ds4_weighted_sum_fn ds4_weighted_sum_for_level(int level);

#endif
