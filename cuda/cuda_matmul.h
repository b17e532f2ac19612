/* cuda_matmul.h - the GPU side of the CUDA backend: a device, one arena of device memory
 * that the weights are uploaded into once, and matrix products y = W x against them for
 * every weight type the CPU reads (F32, F16, BF16, Q8_0, Q4_0, MXFP4, Q2_K..Q6_K,
 * IQ2_XXS): each block decoded as the CPU decodes it (dequant.c, quants.c) and multiplied
 * with F32 activations in F32, or with int8 activations as the CPU's --act has them
 * (ds4_cuda_act_formats), reduced in a fixed order, so a product gives the same bits
 * every run. Plain C types only: cuda_backend.c is the C side. Errors are written
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
/* A tensor made in the arena instead (fill.h's rows, from a pool of blocks), in place of
 * an upload. */
int ds4_cuda_fill(ds4_cuda *c, const uint8_t *pool, uint64_t pool_blocks, uint32_t block_bytes, uint64_t row_bytes,
                  uint64_t n_rows, uint64_t seed, uint64_t *offset, char *err, size_t cap);

typedef struct {
    uint64_t offset, row_bytes; /* a matrix in the arena: its first row, its row size */
    uint32_t type, block_bytes;
    int64_t n;                  /* values per row */
} ds4_cuda_matrix;

typedef struct {
    ds4_cuda_matrix w;     /* from the row the product starts at */
    uint64_t n_out;
    const float *x;        /* T rows, ldx apart (a multiple of 4 floats) */
    uint64_t ldx;
    int T;
    float *y;              /* T rows, ldy apart */
    uint64_t ldy;
    /* a grouped product (0: none): output rows [g group_rows, (g + 1) group_rows) read
     * x + g group_x, as the attention's grouped output projection does */
    uint64_t group_rows, group_x;
    /* x already as the activation format of W's type has it (ds4_cuda_act_formats):
     * rounded through int8, with xq its Q8_K rows where an int8 kernel reads them; 0:
     * the product makes them */
    int act_ready;
    const uint8_t *xq;
} ds4_cuda_product;

/* The activations each weight type's products quantize to int8, as the CPU's int8
 * kernels do under an --act mode: fmt[type] (type < n_types) DS4_CUDA_ACT_Q8_0,
 * DS4_CUDA_ACT_Q8_K or 0 (F32 activations, the default for every type). IQ2_XXS and
 * Q2_K rows multiply their Q8_K rows in int8 for up to DS4_CUDA_GEMM_MIN_T of them; the
 * other products multiply the activations rounded through int8, which is the CPU's
 * int8 result within float rounding. */
#define DS4_CUDA_ACT_Q8_0 8
#define DS4_CUDA_ACT_Q8_K 15
#define DS4_CUDA_TYPE_IDS 40
void ds4_cuda_act_formats(ds4_cuda *c, const uint8_t *fmt, int n_types);

/* Activation rows from which a product runs as tiles of weight rows times activation
 * rows (prefill); below, a warp per weight row reads it once per eight activation rows. */
#define DS4_CUDA_GEMM_MIN_T 64

/* Activation rows from which Q8_0, F16 and BF16 products run on the tensor cores
 * (cuda_mma.cu: F32 accuracy; DS4_CUDA_MMA_MIN_T in the environment moves it). */
#define DS4_CUDA_MMA_MIN_T 16

/* Whether the products can run rows of n values of this type. */
int ds4_cuda_rows_supported(uint32_t type, int64_t n);
/* Products with x and y in device memory, queued on the device's stream (launch errors:
 * ds4_cuda_check). */
void ds4_cuda_run(ds4_cuda *c, const ds4_cuda_product *p, int n);
/* The same with x and y in host memory (tests); returns once y holds them. */
int ds4_cuda_products(ds4_cuda *c, const ds4_cuda_product *p, int n, char *err, size_t cap);
/* out[r] (ld floats apart) = row ids[r] of m as F32, written `copies` times copy_stride
 * apart (the token embedding into every stream); ids and out in device memory. */
void ds4_cuda_rows(ds4_cuda *c, const ds4_cuda_matrix *m, const int32_t *ids, int n_rows, float *out, uint64_t ld,
                   int copies, uint64_t copy_stride);

/* The MoE feed-forward of one layer for a few tokens (decode, batched decode), on the
 * device from the activations to the output: router scores (gating 1 softmax, 2 sigmoid,
 * 4 sqrt-softplus), the top-K experts by score + bias (the lowest id among equals, as the
 * CPU picks) or the hash layer's choices, their weights, SwiGLU with the clamp limits,
 * the shared expert, the weighted sum in the CPU's order (experts by id). */
typedef struct {
    uint32_t D, E, I, K, Is;    /* Is: the shared expert's width (0: none) */
    uint32_t gating;
    int norm;                   /* weights normalised over the K chosen */
    float scale, limit, limit_shared;
    ds4_cuda_matrix gate_inp, gate_exps, up_exps, down_exps, gate_sh, up_sh, down_sh;
    const float *bias;          /* device: E correction biases, or NULL */
} ds4_cuda_ffn_layer;

#define DS4_CUDA_FFN_MAX_T 16   /* tokens ds4_cuda_ffn takes at once */
#define DS4_CUDA_FFN_MAX_K 16

/* x and y: T rows of D floats in device memory; choice: T*K expert ids of a hash layer
 * (device), or NULL to choose by score. Queued on the stream. */
int ds4_cuda_ffn(ds4_cuda *c, const ds4_cuda_ffn_layer *L, const float *x, int T, const int32_t *choice, float *y,
                 char *err, size_t cap);
/* The same for a chunk of any size (prefill, many sequences): the router on the device,
 * the rows grouped by expert on the host (the choices come back: one wait), each chosen
 * expert's products run once over all its rows. */
int ds4_cuda_ffn_grouped(ds4_cuda *c, const ds4_cuda_ffn_layer *L, const float *x, int T, const int32_t *choice,
                         float *y, char *err, size_t cap);
/* n floats to the device (small parameters); *dev is the caller's to keep. */
int ds4_cuda_floats(ds4_cuda *c, const float *host, size_t n, float **dev, char *err, size_t cap);

/* Device-to-device copy rate of a large buffer (read + write), GB/s of reads. */
double ds4_cuda_copy_gbps(ds4_cuda *c);

#ifdef __cplusplus
}
#endif

#endif
