/* types.h - the tensor types of GGUF files: ggml's type ids (file-format constants,
 * hence their GGML_ names), and for each its name, its block size and the bytes of a
 * block: what a reader needs to find a tensor's bytes. What the blocks hold and how to
 * convert them lives above, in formats/quants.h. */
#ifndef DS4_TYPES_H
#define DS4_TYPES_H

#include <stdbool.h>
#include <stdint.h>

/* ggml type ids as they appear in GGUF files. */
enum ds4_type_id {
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
} ds4_type_info;

/* Info for a type id, or NULL if the id is not a known ggml type. */
const ds4_type_info *ds4_type_get(uint32_t type);
const char *ds4_type_name(uint32_t type); /* "type#N" style for unknown ids */
int ds4_type_from_name(const char *name);  /* -1 if unknown */
/* Bytes of one row of n elements; 0 if n is not a multiple of the block size. */
uint64_t ds4_row_size(uint32_t type, uint64_t n);

#endif
