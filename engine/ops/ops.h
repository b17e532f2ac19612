/* ops.h - the numeric operations of the DeepSeek-V4 forward pass, defined in plain C:
 * RMS norms, softmax, the activations, the interleaved partial RoPE (with YaRN for the
 * compressed layers), and the scalar forms of the dot products the matrix products and
 * attention run on. These define what every backend computes: the CPU backend calls them
 * where they are not its hot spots, its SIMD kernels (cpu/vec.h, cpu/qdot.h) are held to
 * them by the tests, and a GPU backend is held to the CPU stage by stage. */
#ifndef DS4_OPS_H
#define DS4_OPS_H

#include <stdbool.h>
#include <stdint.h>

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

/* Dot product of two F32 vectors, summed in index order. */
float ds4_dot_scalar(const float *a, const float *b, uint64_t n);
/* y += a * x, a multiply then an add per element (no FMA). */
void ds4_axpy_scalar(float a, const float *x, float *y, uint64_t n);
/* out[i] = w[0]*rows[0][i] + w[1]*rows[1][i] + ... (n_rows <= 65), each product rounded
 * and added left to right, starting from +0 when from_zero (the hyper-connections'
 * stream mixing). */
void ds4_weighted_sum_scalar(float *out, const float *const *rows, const float *w, int n_rows, uint64_t n,
                             bool from_zero);
/* A stored F16 or Q8_0 weight row times F32 activations, converting as it goes (Q8_0:
 * the sum of q*x per block, then times the block's scale). */
float ds4_rowdot_f16_scalar(const void *row, const float *x, uint64_t n);
float ds4_rowdot_q8_0_scalar(const void *row, const float *x, uint64_t n);

#endif
