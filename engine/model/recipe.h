/* recipe.h - which ggml type each tensor of a DeepSeek-V4 model gets in a quantized
 * file. A recipe is a named rule set plus optional per-tensor overrides:
 *
 *   q2     routed experts' gate/up IQ2_XXS and down Q2_K (the asymmetric 2-bit scheme
 *          that fits Flash in 128 GB); the original ds4 q2 files' types elsewhere
 *   q4     routed experts Q4_K, the rest as q2
 *   mxfp4  routed experts MXFP4 (lossless for the official FP4 experts), the rest as q2
 *   q8     every weight matrix Q8_0
 *   f16, bf16, f32   every weight matrix in that float type
 *
 * Everywhere: norms, sinks, biases and hyper-connection bases/scales F32, the hash
 * routing table I32; under q2/q4/mxfp4/q8 the hyper-connection mixers, compressor,
 * indexer and router F16 (small, and where precision is cheap), the output head,
 * attention and shared experts Q8_0; the token embedding F16 (q8: Q8_0). A row length a block type does
 * not divide falls back to Q8_0, then F16. Overrides (`REGEX=TYPE`, PCRE2, matched
 * against the GGUF tensor name, the last match wins) come before the fallback. */
#ifndef DS4_RECIPE_H
#define DS4_RECIPE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

typedef struct ds4_recipe ds4_recipe;

/* NULL with ds4_error set for an unknown name. */
ds4_recipe *ds4_recipe_new(const char *name);
/* Add an override "REGEX=TYPE"; -1 with the error set for a bad regex or type. */
int ds4_recipe_add_override(ds4_recipe *r, const char *spec);
void ds4_recipe_free(ds4_recipe *r);

/* The type of a tensor under the recipe (I32 for the routing table); *fell_back (may
 * be NULL) says the chosen type did not fit the row length. */
uint32_t ds4_recipe_type(const ds4_recipe *r, const ds4_tensor_spec *s, bool *fell_back);
/* -1, naming it, if an override matches none of the n tensors (a typo in a pattern
 * would otherwise quietly change nothing). */
int ds4_recipe_check_overrides(const ds4_recipe *r, const ds4_tensor_spec *specs, size_t n);
/* llama.cpp's general.file_type for the recipe's files (its closest llama_ftype). */
uint32_t ds4_recipe_file_type(const ds4_recipe *r);

/* The size of a model under the recipe, from its shapes alone: bytes per weight class
 * (routed experts by projection, other matrices, small tensors, vectors), the total,
 * and the weight bytes one decoded token reads (embedding: one row; routed experts:
 * n_expert_used of n_expert; everything else once). Printed as a table. */
typedef struct {
    uint64_t params, bytes;
    uint64_t class_bytes[6], class_params[6]; /* experts gate/up/down, matrices, small, vectors */
    uint64_t bytes_per_token;
} ds4_size_plan;
int ds4_recipe_plan(const ds4_recipe *r, const ds4_config *c, ds4_size_plan *plan);
void ds4_size_plan_print(const ds4_size_plan *plan, const ds4_recipe *r, const ds4_config *c, FILE *out);

#endif
