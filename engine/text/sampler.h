/* sampler.h - choosing the next token from logits: greedy (temperature 0), or
 * temperature + nucleus (top-p) sampling from a seeded, reproducible generator. */
#ifndef DS4_SAMPLER_H
#define DS4_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature; /* 0: greedy */
    float top_p;       /* 1: no nucleus cut */
    uint64_t state;    /* generator state, from the seed */
} ds4_sampler;

void ds4_sampler_init(ds4_sampler *s, float temperature, float top_p, uint64_t seed);
/* Picks a token; `scratch` holds n_vocab floats and n_vocab ints' worth of room. */
int32_t ds4_sample(ds4_sampler *s, const float *logits, uint32_t n_vocab, float *prob_scratch, int32_t *idx_scratch);

#endif
