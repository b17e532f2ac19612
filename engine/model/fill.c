/* fill.c - see fill.h. */
#include "fill.h"

#include <string.h>

void ds4_fill_rows(const ds4_tensor_fill *f, uint64_t row0, uint64_t n, uint8_t *dst) {
    const uint64_t blocks = f->row_bytes / f->block_bytes;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t s = ds4_fill_mix(f->seed ^ ds4_fill_mix(row0 + i));
        uint8_t *row = dst + i * f->row_bytes;
        for (uint64_t b = 0; b < blocks; b++) {
            s = ds4_fill_mix(s);
            memcpy(row + b * f->block_bytes, f->pool + (s % f->pool_blocks) * f->block_bytes, f->block_bytes);
        }
    }
}
