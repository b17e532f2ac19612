/* synth.h - synthetic DeepSeek-V4 models written straight to GGUF: any config (Flash's
 * real shapes with fewer layers or experts, for benchmarks), random weights from a
 * seeded generator, stored under any quantization recipe. The weights follow the
 * well-conditioned scheme of scripts/synth_models.py (unit-variance inputs to every
 * matrix, residual writes x0.1, routers x6), so the model computes finite, varied
 * logits; it has no tokenizer (feed it token ids).
 *
 * Generation and quantization stream row by row on all cores; the time spent in the
 * quantizers alone is measured per output type, which is how the quantizers' speed on
 * real layer shapes is reported. The fast mode quantizes a pool of a few thousand
 * blocks per tensor and draws every block of every row from it: valid blocks with the
 * right scales at disk speed (a 43-layer Flash-shaped q2 model in seconds, not the
 * minutes its IQ2_XXS search takes), for speed measurements. */
#ifndef DS4_SYNTH_H
#define DS4_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "fill.h"
#include "model.h"
#include "quants.h"
#include "recipe.h"

typedef struct {
    const ds4_config *cfg;
    const ds4_recipe *recipe;
    const char *out_path;
    uint64_t seed;
    int n_threads; /* 0: all cores */
    bool progress;
    bool fast;     /* blocks drawn from a pool (see above) */
    bool holes;    /* fast mode: the pooled matrices (all but the embedding) are left as holes
                      in the file and returned as fills (fill.h), for a backend to make */
} ds4_synth_opts;

typedef struct {
    uint64_t n_tensors, bytes_out;
    double seconds;
    /* per output type: F32 input bytes quantized and thread-seconds inside the quantizer */
    uint64_t type_bytes[GGML_TYPE_COUNT];
    double type_seconds[GGML_TYPE_COUNT];
    ds4_tensor_fill *fills; /* holes: the tensors left out, for ds4_model_attach_fills */
    size_t n_fills;
} ds4_synth_stats;

int ds4_synth(const ds4_synth_opts *opts, ds4_synth_stats *stats);
/* The fills of a stats not handed to a model. */
void ds4_synth_fills_free(ds4_synth_stats *stats);

/* A fast-mode synthetic model to run at once (ds4-bench --synthetic): written to a file
 * in /dev/shm where it has room (else $TMPDIR or /tmp), unlinked as soon as it is mapped. in_backend: its
 * pooled matrices are holes, made by a backend that holds its weights (cuda/) from the
 * model's fills, so the file holds only metadata, the embedding and the small tensors;
 * otherwise every byte is written (the CPU reads them). NULL with the error set. */
ds4_model *ds4_synth_model(const ds4_config *cfg, const ds4_recipe *recipe, uint64_t seed, bool in_backend,
                           bool progress);

#endif
