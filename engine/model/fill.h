/* fill.h - weight tensors made where they are used instead of read from a file: a
 * synthetic model built straight in a GPU's memory (ds4-bench --synthetic), whose file
 * holds the metadata and the small tensors and leaves the big matrices as holes. Each
 * block of row r of such a tensor is one of a pool of valid quantized blocks, picked by
 * a splitmix64 chain seeded from (seed, r): the bytes ds4-quant synth --fast writes
 * (it writes its rows with ds4_fill_rows), so a model made in memory and one written to
 * disk are the same model. A backend that holds the weights itself (cuda/) makes them
 * there from the pool; one that reads them from the file (the CPU) refuses such a model. */
#ifndef DS4_FILL_H
#define DS4_FILL_H

#include <stdint.h>

#include "gguf.h"

typedef struct {
    char name[GGUF_MAX_NAME];  /* the tensor */
    const gguf_tensor *tensor; /* once the model holding it is loaded */
    uint8_t *pool;             /* pool_blocks blocks of block_bytes (owned) */
    uint64_t pool_blocks, block_bytes, row_bytes, n_rows, seed;
} ds4_tensor_fill;

/* splitmix64's step: the hash the chains are made of. */
static inline uint64_t ds4_fill_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Rows [row0, row0 + n) of the tensor into dst (n * row_bytes). */
void ds4_fill_rows(const ds4_tensor_fill *f, uint64_t row0, uint64_t n, uint8_t *dst);

#endif
