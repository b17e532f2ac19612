/* convert.h - DeepSeek-V4 checkpoint (safetensors + config.json, Hugging Face or
 * DeepSeek release naming, F32/F16/BF16/FP8-with-block-scales/MXFP4 tensors) to a
 * deepseek4 GGUF that llama.cpp, the original ds4 engine and ds4 itself load.
 *
 * Streams tensor by tensor and row-chunk by row-chunk (memory stays at a few chunks,
 * whatever the model size), converts on all cores, and writes through a temporary file
 * that only a complete conversion renames into place. */
#ifndef DS4_CONVERT_H
#define DS4_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ds4_recipe ds4_recipe;
typedef struct ds4_imatrix ds4_imatrix;
struct ds4_tensor_loss;

typedef struct {
    const char *in_dir;
    const char *out_path;
    uint32_t type;  /* ggml type of the weight matrices: F32, F16, BF16 or Q8_0 ... */
    const ds4_recipe *recipe;   /* ... or a quantization recipe (recipe.h), which wins */
    const ds4_imatrix *imatrix; /* importance for the quantizers, or NULL */
    int n_threads;  /* 0: all cores */
    bool progress;  /* draw a progress line on a terminal */
    const char *added_tokens; /* JSON overlay of added tokens for the tokenizer, or NULL */
    bool want_loss;           /* return per-tensor quantization losses in the stats */
} ds4_convert_opts;

typedef struct {
    uint64_t n_tensors, bytes_out, bytes_in;
    uint64_t n_ignored;         /* checkpoint tensors not used (MTP, buffers) */
    char first_ignored[128];
    uint64_t n_type_fallback;   /* matrices kept wider because their rows do not fit the type */
    bool tokenizer;             /* tokenizer.json found and written */
    double seconds;
    struct ds4_tensor_loss *loss; /* with want_loss: one per output tensor (requant.h; caller frees) */
} ds4_convert_stats;

int ds4_convert(const ds4_convert_opts *opts, ds4_convert_stats *stats);

/* The name of a checkpoint tensor in DeepSeek's release spelling (transformers' saved
 * and in-memory names are mapped onto it). Returns false for names of no V4 tensor. */
bool ds4_canonical_name(const char *in, char *out, size_t out_size);

#endif
