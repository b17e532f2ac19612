/* hf_config.h - DeepSeek-V4 hyper-parameters from a checkpoint's config.json, in either
 * spelling: transformers' DeepseekV4Config (layer_types, compress_rates, mlp_layer_types,
 * rope_parameters {main, compress}) or DeepSeek's release config (compress_ratios with a
 * trailing MTP entry, num_hash_layers, qk_rope_head_dim, rope_scaling, window_size). */
#ifndef DS4_HF_CONFIG_H
#define DS4_HF_CONFIG_H

#include "model.h"

typedef struct {
    ds4_config cfg;
    int64_t bos_id, eos_id;          /* -1 when absent */
    uint32_t fp8_block[2];           /* FP8 block-scale shape (rows, cols) */
    uint32_t n_nextn;                /* MTP layers in the checkpoint */
    bool tied_embeddings;            /* the LM head is the embedding matrix */
} ds4_hf_config;

int ds4_hf_config_load(const char *path, ds4_hf_config *out);

#endif
