/* qdot.h - dot products of quantized weight rows with int8-quantized activations,
 * the kernels a matrix-vector product over Q8_0, Q4_0, MXFP4, Q2_K, Q4_K, Q6_K and
 * IQ2_XXS weights runs on. Activations are quantized once per input vector: to Q8_0
 * (blocks of 32) for the 32-blocked weight types, to Q8_K (blocks of 256 with sums of
 * each 16) for the K-quants and IQ2_XXS, as ggml does, so the integer work of a block
 * happens in 8-bit lanes and only one float multiply-add per block remains.
 *
 * IQ2_XXS takes Q8_K regrouped (DS4_ACT_Q8_K_IQ2): its weights come in groups of 32
 * made of four parts of 8, each part one grid entry, and the fastest kernel decodes part
 * k of all eight groups of a block together, so the activations are stored that way.
 *
 * Each kernel has a scalar reference (plain C, integer sums exact) and AVX2 and
 * AVX-512 VNNI versions chosen at run time (for IQ2_XXS on CPUs with AVX-512 VBMI,
 * BITALG and GFNI, a kernel that decodes a whole block in vector registers); those
 * differ from the scalar one only in the order the per-block float terms are added
 * (tests hold them to it). */
#ifndef DS4_QDOT_H
#define DS4_QDOT_H

#include <stddef.h>
#include <stdint.h>

/* Q8_K blocks whose values are regrouped: value 32g + 8k + j (group g, part k, element
 * j) is stored at 64k + 8g + j. Scale and sums are Q8_K's. */
#define DS4_ACT_Q8_K_IQ2 1015

/* The activation format a weight type's kernel takes (GGML_TYPE_Q8_0, GGML_TYPE_Q8_K
 * or DS4_ACT_Q8_K_IQ2), or -1 if there is no int8 kernel for it. */
int ds4_qdot_act_type(uint32_t weight_type);
/* Whether products over weight_type quantize their activations under an --act mode
 * (ds4_act_mode): f32 never, auto for every type with an int8 kernel but Q8_0 (whose
 * F32 products stay within float rounding of a reference), q8 for all of them. The
 * backends follow it, so a file's products see the same activations on each. */
int ds4_qdot_act_applies(int act_mode, uint32_t weight_type);
/* Bytes of n activations in that format. */
size_t ds4_qdot_act_size(int act_type, int64_t n);
/* Quantize n activations (n a multiple of the format's block) into act. */
void ds4_qdot_quantize_act(int act_type, const float *x, void *act, int64_t n);

typedef float (*ds4_qdot_fn)(const void *w, const void *act, int64_t n);
/* The kernel for a weight type at a CPU level (ds4_cpu_level), NULL where this CPU or
 * build has none at that level. */
ds4_qdot_fn ds4_qdot_kernel(uint32_t weight_type, int level);
/* The best kernel this CPU has for the type (NULL if the type has none). */
ds4_qdot_fn ds4_qdot_best(uint32_t weight_type);

/* A kernel for T <= DS4_QDOT_ROWS activation rows at once (act_row_bytes apart):
 * out[t] is what `single` gives for row t, bit for bit, with each weight block decoded
 * once for all. NULL where `single` has no such twin (then call it row by row). */
#define DS4_QDOT_ROWS 4
typedef void (*ds4_qdot_rows_fn)(const void *w, const void *act, size_t act_row_bytes, int T, int64_t n, float *out);
ds4_qdot_rows_fn ds4_qdot_rows_for(ds4_qdot_fn single);

#endif
