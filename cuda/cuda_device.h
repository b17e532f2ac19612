/* cuda_device.h - private to the .cu files of cuda/: the device instance behind cuda_matmul.h's
 * handle, and the helpers the .cu files share. */
#ifndef DS4_CUDA_DEVICE_H
#define DS4_CUDA_DEVICE_H

#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda_matmul.h"

/* A slot's executable graph and the shape it was made for (cuda_graph.cu). */
typedef struct {
    cudaGraphExec_t exec;
    size_t nodes;
    int key;
} ds4_cuda_slot;

struct ds4_cuda {
    int device;
    int fill_blocks; /* thread blocks that fill the device twice (two per SM) */
    char name[256];
    cudaStream_t stream;
    uint8_t *arena;
    uint64_t arena_bytes, arena_used;
    float *dx, *dy; /* activations and outputs of one batch of products */
    size_t dx_cap, dy_cap;
    float *hx, *hy; /* their pinned host copies */
    size_t hx_cap, hy_cap;
    float *ffn_work; /* the MoE layer's buffers (cuda_ffn.cu) */
    float *split;    /* partial sums of split products */
    size_t split_cap;
    size_t ffn_cap;
    cudaEvent_t *marks; /* the profile's timing marks, made on first use */
    /* decode steps as graphs (cuda_graph.cu) */
    bool graphs, capturing;
    int slot, key, n_execs;
    ds4_cuda_slot *execs;   /* by slot */
    uint8_t *staging;       /* pinned: the uploads of captured copies */
    uint64_t staging_cap, staging_used;
    bool graph_failed;      /* a graph ended by an allocation or a wait failed: */
    char graph_err[256];    /* why, for the next check */
    /* int8 activations (cuda_act.cu): the format each weight type's products quantize
     * their inputs to (0: none, F32 activations), and the rows quantized or rounded */
    uint8_t act_fmt[DS4_CUDA_TYPE_IDS];
    uint8_t *act_q8;
    float *act_round;
    size_t act_q8_cap, act_round_cap;
    /* the tensor-core tiles (cuda_mma.cu): the fewest activation rows they take, and
     * their activations as three bfloat16 planes */
    int mma_min_t;
    uint16_t *mma_x;
    size_t mma_x_cap;
};

/* The activation format of products over `type` (DS4_CUDA_ACT_*, 0: F32). */
static inline int act_format(const ds4_cuda *c, uint32_t type) {
    return type < DS4_CUDA_TYPE_IDS ? c->act_fmt[type] : 0;
}
/* cuda_act.cu: T rows of n values (ldx floats apart) to Q8_K rows (q8k_row_bytes(n)
 * apart, cuda_qdot.cuh) in out. n: a multiple of the format's block. */
void ds4_cuda_quantize_q8k(ds4_cuda *c, const float *x, uint64_t ldx, int T, int64_t n, uint8_t *out);
/* The same into the device's scratch (c->act_q8); or the rows through int8 in `fmt` and
 * back to floats (the values the CPU's int8 kernels multiply) into c->act_round, each
 * row's `groups` inputs (group_x floats apart) side by side, rows groups * n apart. Each
 * call reuses its scratch (the stream runs the products in order); NULL when it cannot
 * grow (the failure kept, ds4_cuda_grow_kept). */
const uint8_t *ds4_cuda_q8k_scratch(ds4_cuda *c, const float *x, uint64_t ldx, int T, int64_t n);
const float *ds4_cuda_round_scratch(ds4_cuda *c, int fmt, const float *x, uint64_t ldx, int T, int64_t n,
                                    uint64_t groups, uint64_t group_x);
/* cuda_mma.cu: whether the tensor-core tiles take rows of n values of `type`, and q run
 * so (queued; x and y in device memory; a grouped product's groups a multiple of
 * DS4_CUDA_MMA_ROWS output rows, its group_x of 8). */
#define DS4_CUDA_MMA_ROWS 64
bool ds4_cuda_mma_takes(uint32_t type, int64_t n);
cudaError_t ds4_cuda_mma_init(void); /* their shared memory, once with the device */
void ds4_cuda_mma(ds4_cuda *c, const ds4_cuda_product *q);
/* IQ2_XXS and Q2_K rows times Q8_K activation rows, a warp per weight row
 * (cuda_matmul.cu): up to QMULTI products of one type and row length in a
 * launch (the grouped MoE's experts, each with its own rows), each with its first
 * thread block. */
#define QMULTI 64
typedef struct {
    const uint8_t *W, *xq;
    float *y;
    uint64_t n_out, ldy;
    uint32_t first_block;
    int T;
} qrows_entry;
typedef struct {
    qrows_entry e[QMULTI];
    int n;
    int staged; /* the rows go through shared memory first (cuda_qdot.cuh's stage_rows) */
    uint64_t row_bytes;
    int64_t len;
} qrows_job;
/* y[t][o] (ldy apart) = the sum of c->split's `slices` partial sums [slice][t][o] of T
 * rows of n_out, added slice by slice (cuda_matmul.cu). */
void ds4_cuda_sum_slices(ds4_cuda *c, int slices, int T, uint64_t n_out, float *y, uint64_t ldy);
/* Work buffers that a launch without an error return (the products) grows: a failure is
 * kept for the next check, as a failed launch's is (cuda_memory.cu); NULL then. */
void *ds4_cuda_grow_kept(ds4_cuda *c, void **buf, size_t *cap, size_t bytes);

/* cuda_graph.cu, for the other .cu files: the graphs' state made and freed with the
 * device; a copy of `bytes` host bytes that stays put until the device has read them
 * (NULL: no room). */
int ds4_cuda_graphs_init(ds4_cuda *c, char *err, size_t cap);
void ds4_cuda_graphs_free(ds4_cuda *c);
const void *ds4_cuda_graph_stage(ds4_cuda *c, const void *host, uint64_t bytes);
/* cuda_memory.cu: before what a capture cannot hold, the captured work launched; a
 * failure is kept for the next ds4_cuda_check or ds4_cuda_to_host, as a failed launch's
 * would be. */
void ds4_cuda_end_capture(ds4_cuda *c);

static inline int fail(char *err, size_t cap, const char *what, cudaError_t e) {
    snprintf(err, cap, "cuda: %s: %s", what, cudaGetErrorString(e));
    return -1;
}

/* The sum (or maximum) of v over the thread block (blockDim.x a multiple of 32, at most
 * 1024), the same on every thread: a fixed butterfly in each warp, then the warps'
 * values in order, so the result is the same bits on every run. `red`: 33 floats of
 * shared memory. */
__device__ __forceinline__ float block_reduce(float v, float *red, bool max) {
    for (int off = 16; off > 0; off >>= 1) {
        const float o = __shfl_xor_sync(0xffffffffu, v, off);
        v = max ? fmaxf(v, o) : v + o;
    }
    const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads(); /* red may hold the last call's result */
    if ((threadIdx.x & 31) == 0) red[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = red[0];
        for (int w = 1; w < warps; w++) s = max ? fmaxf(s, red[w]) : s + red[w];
        red[32] = s;
    }
    __syncthreads();
    return red[32];
}

/* 1 / RMS of x's n values (plus eps), the same on every thread of the block. Each thread
 * adds its values in index order, eight loads in flight (a decode's one block per row is
 * bound by their latency). */
__device__ __forceinline__ float block_inv_rms(const float *x, int n, float eps, float *red) {
    float ss = 0.0f;
    const int step = blockDim.x;
    for (int i0 = threadIdx.x; i0 < n; i0 += 8 * step) {
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; u++) v[u] = i0 + u * step < n ? x[i0 + u * step] : 0.0f;
#pragma unroll
        for (int u = 0; u < 8; u++)
            if (i0 + u * step < n) ss = __fadd_rn(ss, __fmul_rn(v[u], v[u]));
    }
    ss = block_reduce(ss, red, false);
    return 1.0f / sqrtf(ss / (float)n + eps);
}

/* dst = RMSNorm(src) over n values, times weight when not NULL (dst may be src), by the
 * block's threads; all of dst written when it returns. */
__device__ __forceinline__ void block_rmsnorm(float *dst, const float *src, int n, const float *weight, float eps,
                                              float *red) {
    const float scale = block_inv_rms(src, n, eps, red);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = __fmul_rn(src[i], scale);
        dst[i] = weight ? __fmul_rn(weight[i], v) : v;
    }
    __syncthreads();
}

/* Device memory that only grows (contents kept while it is not outgrown). */
int ds4_cuda_grow(ds4_cuda *c, void **buf, size_t *cap, size_t bytes, char *err, size_t errcap);
/* The other translation unit's copy of the IQ2 tables (cuda_ffn.cu). */
cudaError_t ds4_cuda_ffn_tables(const uint64_t *grid, const uint8_t *signs, const uint8_t *masks);

#endif
