/* quants.h - ggml tensor types: the table of block sizes and byte sizes every GGUF
 * reader needs, the block layouts (byte for byte as ggml's), conversions of whole rows
 * to and from F32, and the quantizers (quantize.c; bit-identical to ggml's on the golden
 * data). Rows are converted by a scalar reference path and, where the CPU has them,
 * AVX2 / AVX-512 paths chosen at run time; tests hold the fast paths to the scalar one. */
#ifndef DS4_QUANTS_H
#define DS4_QUANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml type ids as they appear in GGUF files. */
enum ggml_type {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10, GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14, GGML_TYPE_Q8_K = 15, GGML_TYPE_IQ2_XXS = 16, GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18, GGML_TYPE_IQ1_S = 19, GGML_TYPE_IQ4_NL = 20, GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22, GGML_TYPE_IQ4_XS = 23, GGML_TYPE_I8 = 24, GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26, GGML_TYPE_I64 = 27, GGML_TYPE_F64 = 28, GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30, GGML_TYPE_TQ1_0 = 34, GGML_TYPE_TQ2_0 = 35, GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40
};

typedef struct {
    const char *name;   /* ggml's lower-case name, e.g. "q8_0" */
    uint32_t block;     /* elements per block */
    uint32_t bytes;     /* bytes per block */
    bool to_f32;        /* this build can dequantize it */
} ggml_type_info;

/* Info for a type id, or NULL if the id is not a known ggml type. */
const ggml_type_info *ggml_type_get(uint32_t type);
const char *ggml_type_name(uint32_t type); /* "type#N" style for unknown ids */
int ggml_type_from_name(const char *name);  /* -1 if unknown */
/* Bytes of one row of n elements; 0 if n is not a multiple of the block size. */
uint64_t ggml_row_size(uint32_t type, uint64_t n);

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
void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n);
void quantize_row_q8_0_scalar(const float *x, block_q8_0 *y, int64_t n);

/* Convert a row of n values of `type` to F32. Returns -1 (with ds4_error set) for a
 * type this build cannot dequantize. */
int ggml_row_to_f32(uint32_t type, const void *src, float *dst, int64_t n);
/* Convert n floats to a row of `type` without importance weights: F32, F16, BF16, Q8_0
 * (ds4_quantize_row below covers every type we write). */
int ggml_row_from_f32(uint32_t type, const float *src, void *dst, int64_t n);

/* Quantize one row of n floats to `type` (quantize.c): F32, F16, BF16, Q8_0, Q4_0,
 * MXFP4, Q2_K, Q4_K, Q6_K, IQ2_XXS. imatrix (n per-column importances, may be NULL
 * except for IQ2_XXS) weights the error the search minimises. -1 with ds4_error set
 * for an unsupported type, a bad length or a missing imatrix. */
int ds4_quantize_row(uint32_t type, const float *src, void *dst, int64_t n, const float *imatrix);
bool ds4_quantize_supported(uint32_t type);
bool ds4_quantize_needs_imatrix(uint32_t type);

/* Blocks of Q4_0, Q2_K..Q6_K or IQ2_XXS to F32 (dequant.c); -1 for other types. */
int ds4_dequant_blocks(uint32_t type, const uint8_t *src, float *dst, int64_t n);

/* F32 <-> F16 rows; the dispatching versions use F16C where present. */
void ds4_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);
void ds4_f16_to_f32_row(const uint16_t *x, float *y, int64_t n);
void ds4_f32_to_f16_row_scalar(const float *x, uint16_t *y, int64_t n);
void ds4_f16_to_f32_row_scalar(const uint16_t *x, float *y, int64_t n);

#endif
