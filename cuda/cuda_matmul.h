/* cuda_matmul.h - the GPU side of the CUDA backend: a device, one arena of device memory
 * that the weights are uploaded into once, and matrix products y = W x against them for
 * every weight type the CPU reads (F32, F16, BF16, Q8_0, Q4_0, MXFP4, Q2_K..Q6_K,
 * IQ2_XXS): each block decoded as the CPU decodes it (dequant.c, quants.c) and multiplied
 * with F32 activations in F32, reduced in a fixed order, so a product gives the same
 * bits every run. Plain C types only: cuda_backend.c is the C side. Errors are written
 * into err (cap bytes) and returned as -1. */
#ifndef DS4_CUDA_MATMUL_H
#define DS4_CUDA_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ds4_cuda ds4_cuda;

/* The device (NULL when there is none, no driver, or it cannot start: err says which). */
ds4_cuda *ds4_cuda_create(int device, char *err, size_t cap);
void ds4_cuda_destroy(ds4_cuda *c);
const char *ds4_cuda_name(const ds4_cuda *c);
/* Free and total device memory in bytes. */
void ds4_cuda_memory(const ds4_cuda *c, uint64_t *free_bytes, uint64_t *total_bytes);
/* IQ2_XXS's lookup tables (iq_tables.h), to constant memory. */
int ds4_cuda_tables(ds4_cuda *c, const uint64_t *grid, const uint8_t *signs, const uint8_t *masks, char *err, size_t cap);
/* The arena for the weights; then each tensor copied in (its offset back, 256-aligned). */
int ds4_cuda_reserve(ds4_cuda *c, uint64_t bytes, char *err, size_t cap);
int ds4_cuda_upload(ds4_cuda *c, const void *host, uint64_t bytes, uint64_t *offset, char *err, size_t cap);

typedef struct {
    uint64_t w_offset;     /* the first row's bytes in the arena */
    uint64_t row_bytes;
    uint32_t type;         /* ggml type */
    uint32_t block, block_bytes; /* values and bytes per block (F32/F16/BF16: 32 values) */
    int64_t n;             /* values per row (a multiple of the block) */
    uint64_t n_out;
    const float *x;        /* host: T rows, ldx apart */
    uint64_t ldx;
    int T;
    float *y;              /* host: T rows, ldy apart */
    uint64_t ldy;
} ds4_cuda_product;

/* Whether the products can run this type. */
int ds4_cuda_type_supported(uint32_t type);
/* Run products, their inputs and outputs through host memory; returns once y holds them. */
int ds4_cuda_products(ds4_cuda *c, const ds4_cuda_product *p, int n, char *err, size_t cap);
/* Device-to-device copy rate of a large buffer (read + write), GB/s of reads. */
double ds4_cuda_copy_gbps(ds4_cuda *c);

#ifdef __cplusplus
}
#endif

#endif
