/* vec.h - the CPU's F32 vector kernels: dot products, y += a*x, the weighted row sums
 * of the hyper-connections, and a stored F16 or Q8_0 row times F32 activations, each in
 * scalar (ops.h), AVX2 and AVX-512 versions chosen once at run time (cpufeatures.h). The
 * vector dot products keep more partial sums than the scalar one (their last bits
 * differ; tests hold them within 1e-5 of the sum of |a_i b_i|); axpy and the weighted
 * sums give the scalar loop's bits at every level. */
#ifndef DS4_VEC_H
#define DS4_VEC_H

#include <stdbool.h>
#include <stdint.h>

float ds4_dot(const float *a, const float *b, uint64_t n);
/* The kernel of one level (for tests), NULL if this CPU or build lacks it. */
typedef float (*ds4_dot_fn)(const float *, const float *, uint64_t);
ds4_dot_fn ds4_dot_for_level(int level);

/* The level's dot product of two weight rows (w0, w1) with four activation rows at once
 * (x, x + ldx, ...), each result that level's ds4_dot bits; NULL for the scalar level or
 * one this CPU lacks. */
typedef void (*ds4_dot2x4_fn)(const float *w0, const float *w1, const float *x, uint64_t ldx, uint64_t n,
                              float out[2][4]);
ds4_dot2x4_fn ds4_dot2x4_for_level(int level);

void ds4_axpy(float a, const float *x, float *y, uint64_t n);
typedef void (*ds4_axpy_fn)(float, const float *, float *, uint64_t);
ds4_axpy_fn ds4_axpy_for_level(int level);

typedef void (*ds4_weighted_sum_fn)(float *out, const float *const *rows, const float *w, int n_rows, uint64_t n,
                                    bool from_zero);
void ds4_weighted_sum(float *out, const float *const *rows, const float *w, int n_rows, uint64_t n, bool from_zero);
ds4_weighted_sum_fn ds4_weighted_sum_for_level(int level);

/* A stored F16 or Q8_0 weight row times F32 activations; NULL for other types or for
 * levels this CPU lacks. */
typedef float (*ds4_rowdot_fn)(const void *row, const float *x, uint64_t n);
ds4_rowdot_fn ds4_rowdot_for_level(uint32_t type, int level);
/* Two stored rows of such a type times four activation rows, each result the level's
 * ds4_dot2x4 bits over the converted rows (so ds4_dot's); NULL where there is none (Q8_0
 * at AVX2 and AVX-512 has one). */
typedef void (*ds4_rowdot2x4_fn)(const void *w0, const void *w1, const float *x, uint64_t ldx, uint64_t n,
                                 float out[2][4]);
ds4_rowdot2x4_fn ds4_rowdot2x4_for_level(uint32_t type, int level);

#endif
