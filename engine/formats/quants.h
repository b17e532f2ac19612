/* quants.h - the contents of ggml's tensor types: the block layouts (byte for byte as
 * ggml's), conversions of whole rows to and from F32, and the quantizers (quantize.c;
 * bit-identical to ggml's on the golden data). Rows are converted by a scalar reference
 * path and, where the CPU has them, AVX2 paths chosen at run time; tests hold the fast
 * paths to the scalar one. (The type ids, names and sizes: types.h.) */
#ifndef DS4_QUANTS_H
#define DS4_QUANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "types.h"

#define QK8_0 32
typedef struct {
    uint16_t d;          /* f16 scale */
    int8_t qs[QK8_0];
} block_q8_0;

/* The other block layouts, byte for byte as ggml's (FORMATS.md). */
#define QK_K 256
typedef struct { uint16_t d; uint8_t qs[16]; } block_q4_0;
typedef struct { uint8_t e; uint8_t qs[16]; } block_mxfp4;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } block_q2_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } block_q6_K;
typedef struct { uint16_t d; uint16_t qs[32]; } block_iq2_xxs;
/* Activations for the K-quant and IQ dot products: one F32 scale, int8 values and
 * the sums of each 16 (ggml's Q8_K). */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;

/* Quantize n floats (n % 32 == 0) to Q8_0, exactly as ggml's quantize_row_q8_0_ref. */
void ds4_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n);
void ds4_quantize_row_q8_0_scalar(const float *x, block_q8_0 *y, int64_t n);

/* Convert a row of n values of `type` to F32. Returns -1 (with ds4_error set) for a
 * type this build cannot dequantize. */
int ds4_row_to_f32(uint32_t type, const void *src, float *dst, int64_t n);
/* Convert n floats to a row of `type` without importance weights: F32, F16, BF16, Q8_0
 * (ds4_quantize_row below covers every type we write). */
int ds4_row_from_f32(uint32_t type, const float *src, void *dst, int64_t n);

/* Quantize one row of n floats to `type` (quantize.c): F32, F16, BF16, Q8_0, Q4_0,
 * MXFP4, Q2_K, Q4_K, Q6_K, IQ2_XXS. imatrix (n per-column importances, may be NULL
 * except for IQ2_XXS) weights the error the search minimises. -1 with ds4_error set
 * for an unsupported type, a bad length or a missing imatrix. */
int ds4_quantize_row(uint32_t type, const float *src, void *dst, int64_t n, const float *imatrix);
bool ds4_quantize_supported(uint32_t type);
bool ds4_quantize_needs_imatrix(uint32_t type);

/* Blocks of Q4_0, Q2_K..Q6_K or IQ2_XXS to F32 (dequant.c); -1 for other types. */
int ds4_dequant_blocks(uint32_t type, const uint8_t *src, float *dst, int64_t n);

/* Row r of a weight tensor as F32 (embedding lookup, small parameter tables). */
void ds4_tensor_row(const gguf_tensor *W, uint64_t r, float *out);
/* The whole tensor as a freshly allocated F32 array (for small tensors); NULL on error. */
float *ds4_tensor_f32(const gguf_tensor *W);

/* F32 <-> F16 rows; the dispatching versions use F16C where present. */
void ds4_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);
void ds4_f16_to_f32_row(const uint16_t *x, float *y, int64_t n);
void ds4_f32_to_f16_row_scalar(const float *x, uint16_t *y, int64_t n);
void ds4_f16_to_f32_row_scalar(const uint16_t *x, float *y, int64_t n);

#endif
