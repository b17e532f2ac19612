/* iq_tables.h - lookup tables of ggml's importance-matrix quant formats (IQ2_XXS). */
#ifndef DS4_IQ_TABLES_H
#define DS4_IQ_TABLES_H

#include <stdint.h>

extern const uint64_t ds4_iq2xxs_grid[256];
extern const uint8_t ds4_ksigns_iq2xs[128];
extern const uint8_t ds4_kmask_iq2xs[8];

#endif
