/* cuda_matmul.cu - see cuda_matmul.h. Decode (up to DS4_CUDA_GEMM_MIN_T activation
 * rows): a warp per output row, its lanes taking eight consecutive values of every 256,
 * decoded into registers exactly as the CPU's dequant.c does and multiplied with up to
 * eight activation rows per pass; the lanes' sums meet in a fixed butterfly. Prefill: tiles of weight rows times activation rows
 * (gemm_kernel). Neither depends on scheduling for its sums. Products whose activations
 * go through int8 (run_act): IQ2_XXS and Q2_K rows in dp4a (cuda_qdot.cuh), the others
 * on the rounded activations. Tensor-core tiles are the next step of issue 16. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_decode.cuh"
#include "cuda_device.h"
#include "cuda_qdot.cuh"
#include "cuda_stages.h"

#define WARPS 4      /* rows per thread block */
#define SPLIT_MAX 32 /* slices of a split product */
#define SPLIT_FLOATS (SPLIT_MAX * 8 * 4096) /* their partial sums */


/* ---- the product ---- */

/* y[t][o] = W[o] . x[t] for a warp's row o; T rows of x (ldx apart) and of y (ldy apart):
 * eight activation rows per pass over the weight row, then four, two, one. */
template <int TYPE, int R>
__device__ __forceinline__ void rows_pass(const uint8_t *row, uint32_t block_bytes, int64_t n, uint64_t o,
                                          const float *x, uint64_t ldx, int t0, float *y, uint64_t ldy) {
    float acc[R];
    row_dots<TYPE, R>(row, block_bytes, n, x + (uint64_t)t0 * ldx, ldx, acc);
    if ((threadIdx.x & 31) == 0)
        for (int t = 0; t < R; t++) y[(uint64_t)(t0 + t) * ldy + o] = acc[t];
}

/* The activations output row o reads (a grouped product: its group's). */
__device__ __forceinline__ const float *x_of(const float *x, uint64_t o, uint64_t group_rows, uint64_t group_x) {
    return group_rows ? x + o / group_rows * group_x : x;
}

/* Products that run a warp per weight row in one launch: up to MULTI_MAX of one type,
 * row length and activation rows (those a stage computes from the same input, which
 * alone would each leave most of the device idle), each with its first thread block. */
#define MULTI_MAX 8
typedef struct {
    const uint8_t *W;
    uint64_t n_out;
    const float *x;
    float *y;
    uint64_t ldy, group_rows, group_x;
    uint32_t first_block;
} rows_entry;
typedef struct {
    rows_entry e[MULTI_MAX];
    int n, T;
    uint64_t row_bytes, ldx;
    uint32_t block_bytes;
    int64_t len;
} rows_job;

/* RMAX: the most activation rows of a pass. One and two rows (decode) get kernels of
 * their own: the eight rows' registers would cost them occupancy. */
template <int TYPE, int RMAX>
__global__ void matmul_kernel(const __grid_constant__ rows_job j) {
    int k = 0;
    while (k + 1 < j.n && blockIdx.x >= j.e[k + 1].first_block) k++;
    const rows_entry &e = j.e[k];
    const uint64_t o = (uint64_t)(blockIdx.x - e.first_block) * WARPS + (threadIdx.x >> 5);
    if (o >= e.n_out) return;
    const float *x = x_of(e.x, o, e.group_rows, e.group_x);
    const uint8_t *row = e.W + o * j.row_bytes;
    const int T = j.T;
    int t0 = 0;
    for (; t0 + RMAX <= T; t0 += RMAX) rows_pass<TYPE, RMAX>(row, j.block_bytes, j.len, o, x, j.ldx, t0, e.y, e.ldy);
    if constexpr (RMAX > 4)
        if (T - t0 >= 4) rows_pass<TYPE, 4>(row, j.block_bytes, j.len, o, x, j.ldx, t0, e.y, e.ldy), t0 += 4;
    if constexpr (RMAX > 2)
        if (T - t0 >= 2) rows_pass<TYPE, 2>(row, j.block_bytes, j.len, o, x, j.ldx, t0, e.y, e.ldy), t0 += 2;
    if constexpr (RMAX > 1)
        if (T - t0 >= 1) rows_pass<TYPE, 1>(row, j.block_bytes, j.len, o, x, j.ldx, t0, e.y, e.ldy);
}

/* Prefill: a tile of GM weight rows times GN activation rows per thread block, over K in
 * steps of 256 values: the weights' blocks of a step decoded once into shared memory,
 * the activations beside them, and each thread's GM*GN/256 outputs accumulated in
 * registers, k by k in order (so the sums are fixed, run after run). */
#define GM 64
#define GN 32
#define GK 256
#define GEMM_THREADS 256
#define GEMM_SMEM ((GM + GN) * GK * sizeof(float))

template <int TYPE>
__global__ void __launch_bounds__(GEMM_THREADS)
gemm_kernel(const uint8_t *__restrict__ W, uint64_t row_bytes, uint32_t block_bytes, int64_t n, uint64_t n_out,
            const float *__restrict__ x, uint64_t ldx, int T, float *__restrict__ y, uint64_t ldy, uint64_t group_rows,
            uint64_t group_x) {
    extern __shared__ float smem[];
    x = x_of(x, (uint64_t)blockIdx.x * GM, group_rows, group_x); /* group_rows: a multiple of GM */
    float *ws = smem, *xs = smem + GM * GK;
    constexpr int B = block_of<TYPE>::N;
    const uint64_t o0 = (uint64_t)blockIdx.x * GM;
    const int t0 = blockIdx.y * GN;
    const int tid = threadIdx.x;
    /* each thread: rows r0, r0 + 32 (two) and tokens c0 .. c0 + 3 (four) */
    const int r0 = tid % 32, c0 = (tid / 32) * 4;
    float acc[2][4] = {{0}};
    for (int64_t k0 = 0; k0 < n; k0 += GK) {
        const int kw = n - k0 < GK ? (int)(n - k0) : GK; /* a multiple of the block */
        const int per_row = kw / B;
        for (int job = tid; job < GM * per_row; job += GEMM_THREADS) {
            const int r = job / per_row, blk = job % per_row;
            float *dst = ws + r * GK + blk * B;
            if (o0 + r < n_out) {
                decode<TYPE>(W + (o0 + r) * row_bytes + ((k0 / B) + blk) * block_bytes, dst);
            } else {
                for (int j = 0; j < B; j++) dst[j] = 0;
            }
        }
        for (int i = tid; i < GN * kw; i += GEMM_THREADS) {
            const int t = i / kw, k = i % kw;
            xs[t * GK + k] = t0 + t < T ? x[(uint64_t)(t0 + t) * ldx + k0 + k] : 0.0f;
        }
        __syncthreads();
        for (int k = 0; k < kw; k++) {
            const float w0 = ws[r0 * GK + k], w1 = ws[(r0 + 32) * GK + k];
            for (int c = 0; c < 4; c++) {
                const float xv = xs[(c0 + c) * GK + k];
                acc[0][c] = fmaf(w0, xv, acc[0][c]);
                acc[1][c] = fmaf(w1, xv, acc[1][c]);
            }
        }
        __syncthreads();
    }
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 4; c++) {
            const uint64_t o = o0 + r0 + 32 * h;
            const int t = t0 + c0 + c;
            if (o < n_out && t < T) y[(uint64_t)t * ldy + o] = acc[h][c];
        }
}

typedef void (*kernel_fn)(const uint8_t *, uint64_t, uint32_t, int64_t, uint64_t, const float *, uint64_t, int,
                          float *, uint64_t, uint64_t, uint64_t);

/* Rows of a plain float type whose length is not a multiple of 32: a warp per output
 * row, value by value (small test models; nothing of the real model's shape). */
template <int TYPE>
__global__ void plain_kernel(const uint8_t *__restrict__ W, uint64_t row_bytes, uint32_t block_bytes, int64_t n,
                             uint64_t n_out, const float *__restrict__ x, uint64_t ldx, int T, float *__restrict__ y,
                             uint64_t ldy, uint64_t group_rows, uint64_t group_x) {
    (void)block_bytes;
    const uint64_t o = (uint64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (o >= n_out) return;
    x = x_of(x, o, group_rows, group_x);
    const uint8_t *row = W + o * row_bytes;
    const int lane = threadIdx.x & 31;
    for (int t = 0; t < T; t++) {
        float s = 0.0f;
        for (int64_t i = lane; i < n; i += 32) s = fmaf(value_at<TYPE>(row, i), x[(uint64_t)t * ldx + i], s);
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) y[(uint64_t)t * ldy + o] = s;
    }
}

/* Few output rows over a long input (the hyper-connections' mixers, the router): the
 * input split in `span`-value slices (blockIdx.y), each slice's partial sums of up to
 * eight activation rows into partial[slice][t][o], then added slice by slice in order
 * (sum_kernel), so the result is fixed run after run. */
template <int TYPE>
__global__ void split_kernel(const uint8_t *__restrict__ W, uint64_t row_bytes, uint32_t block_bytes, int64_t n,
                             uint64_t n_out, const float *__restrict__ x, uint64_t ldx, int T, int64_t span,
                             float *__restrict__ partial, uint64_t group_rows, uint64_t group_x) {
    const uint64_t o = (uint64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (o >= n_out) return;
    x = x_of(x, o, group_rows, group_x);
    const int64_t begin = (int64_t)blockIdx.y * span, end = begin + span < n ? begin + span : n;
    const uint8_t *row = W + o * row_bytes;
    float acc[8];
    switch (T) {
#define SPAN_CASE(R) case R: row_dots_span<TYPE, R>(row, block_bytes, begin, end, x, ldx, acc); break;
        SPAN_CASE(1) SPAN_CASE(2) SPAN_CASE(3) SPAN_CASE(4) SPAN_CASE(5) SPAN_CASE(6) SPAN_CASE(7) SPAN_CASE(8)
#undef SPAN_CASE
    }
    if ((threadIdx.x & 31) == 0)
        for (int t = 0; t < T; t++) partial[((uint64_t)blockIdx.y * T + t) * n_out + o] = acc[t];
}

__global__ void sum_kernel(const float *partial, int slices, int T, uint64_t n_out, float *y, uint64_t ldy) {
    const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (uint64_t)T * n_out) return;
    const uint64_t t = i / n_out, o = i % n_out;
    float s = partial[i];
    for (int k = 1; k < slices; k++) s += partial[(uint64_t)k * T * n_out + i];
    y[t * ldy + o] = s;
}

void ds4_cuda_sum_slices(ds4_cuda *c, int slices, int T, uint64_t n_out, float *y, uint64_t ldy) {
    const uint64_t outs = (uint64_t)T * n_out;
    sum_kernel<<<(unsigned)((outs + 255) / 256), 256, 0, c->stream>>>(c->split, slices, T, n_out, y, ldy);
}

typedef void (*split_fn)(const uint8_t *, uint64_t, uint32_t, int64_t, uint64_t, const float *, uint64_t, int, int64_t,
                         float *, uint64_t, uint64_t);

#define GEMM_CASE(t) case t: return gemm_kernel<t>;
typedef void (*rows_job_fn)(rows_job);
#define MATMUL_CASE(t) case t: return T == 1 ? matmul_kernel<t, 1> : T == 2 ? matmul_kernel<t, 2> : matmul_kernel<t, 8>;
#define SPLIT_CASE(t) case t: return split_kernel<t>;
static kernel_fn gemm_for(uint32_t type) {
    switch (type) { DS4_CUDA_TYPES(GEMM_CASE) }
    return NULL;
}
static rows_job_fn kernel_for(uint32_t type, int T) {
    switch (type) { DS4_CUDA_TYPES(MATMUL_CASE) }
    return NULL;
}
static split_fn split_for(uint32_t type) {
    switch (type) { DS4_CUDA_TYPES(SPLIT_CASE) }
    return NULL;
}
static kernel_fn plain_for(uint32_t type) {
    switch (type) {
    case T_F32: return plain_kernel<T_F32>;
    case T_F16: return plain_kernel<T_F16>;
    case T_BF16: return plain_kernel<T_BF16>;
    }
    return NULL;
}

extern "C" int ds4_cuda_rows_supported(uint32_t type, int64_t n) {
    if (plain_for(type)) return n > 0;
    return kernel_for(type, 1) != NULL && n % (type == T_Q8_0 || type == T_Q4_0 || type == T_MXFP4 ? 32 : QK_K) == 0;
}

/* Slices for a product of few output rows over a long input: enough thread blocks to
 * fill the device twice over, slices of a multiple of 256 values (1: no split). */
static int64_t split_span(const ds4_cuda *c, const ds4_cuda_product *q, int64_t *slices) {
    const uint64_t blocks = (q->n_out + WARPS - 1) / WARPS;
    *slices = 1;
    if (q->T > 8 || blocks >= (uint64_t)c->fill_blocks || q->w.n < 2048) return q->w.n;
    int64_t want = (int64_t)(2 * (uint64_t)c->fill_blocks / blocks);
    want = want > SPLIT_MAX ? SPLIT_MAX : want;
    int64_t span = ((q->w.n + want - 1) / want + 255) / 256 * 256;
    *slices = (q->w.n + span - 1) / span;
    return span;
}

/* Products of one type, row length and activation rows, in one launch (n <= MULTI_MAX). */
static void run_rows(ds4_cuda *c, const ds4_cuda_product *p, int n) {
    rows_job j = {};
    uint32_t blocks = 0;
    for (int k = 0; k < n; k++) {
        j.e[k] = (rows_entry){c->arena + p[k].w.offset, p[k].n_out, p[k].x, p[k].y, p[k].ldy, p[k].group_rows,
                              p[k].group_x, blocks};
        blocks += (uint32_t)((p[k].n_out + WARPS - 1) / WARPS);
    }
    j.n = n;
    j.T = p[0].T;
    j.row_bytes = p[0].w.row_bytes;
    j.ldx = p[0].ldx;
    j.block_bytes = p[0].w.block_bytes;
    j.len = p[0].w.n;
    if (blocks) kernel_for(p[0].w.type, j.T)<<<blocks, WARPS * 32, 0, c->stream>>>(j);
}

/* Whether q runs on the tensor-core tiles (cuda_mma.cu). */
static bool mma_path(const ds4_cuda *c, const ds4_cuda_product *q) {
    return q->T >= c->mma_min_t && ds4_cuda_mma_takes(q->w.type, q->w.n);
}

static void run_one(ds4_cuda *c, const ds4_cuda_product *q) {
    const uint8_t *W = c->arena + q->w.offset;
    const uint64_t gr = q->group_rows, gx = q->group_x;
    const bool mma = mma_path(c, q);
    const bool straddle = mma ? gr % DS4_CUDA_MMA_ROWS || gx % 8 : gr % GM;
    if (gr && (mma || q->T >= DS4_CUDA_GEMM_MIN_T) && straddle) { /* the tiles would straddle groups: one at a time */
        for (uint64_t g = 0; g * gr < q->n_out; g++) {
            ds4_cuda_product one = *q;
            one.group_rows = one.group_x = 0;
            one.w.offset += g * gr * q->w.row_bytes;
            one.n_out = q->n_out - g * gr < gr ? q->n_out - g * gr : gr;
            one.x += g * gx;
            one.y += g * gr;
            run_one(c, &one);
        }
        return;
    }
    int64_t slices;
    const int64_t span = split_span(c, q, &slices);
    const unsigned warp_blocks = (unsigned)((q->n_out + WARPS - 1) / WARPS);
    if (q->w.n % 32 && plain_for(q->w.type)) {
        plain_for(q->w.type)<<<warp_blocks, WARPS * 32, 0, c->stream>>>(W, q->w.row_bytes, q->w.block_bytes, q->w.n,
                                                                         q->n_out, q->x, q->ldx, q->T, q->y, q->ldy,
                                                                         gr, gx);
    } else if (slices > 1 && (uint64_t)slices * q->T * q->n_out <= c->split_cap) {
        const dim3 grid(warp_blocks, (unsigned)slices);
        split_for(q->w.type)<<<grid, WARPS * 32, 0, c->stream>>>(W, q->w.row_bytes, q->w.block_bytes, q->w.n,
                                                                  q->n_out, q->x, q->ldx, q->T, span, c->split, gr, gx);
        ds4_cuda_sum_slices(c, (int)slices, q->T, q->n_out, q->y, q->ldy);
    } else if (mma) {
        ds4_cuda_mma(c, q);
    } else if (q->T >= DS4_CUDA_GEMM_MIN_T) {
        const dim3 grid((unsigned)((q->n_out + GM - 1) / GM), (unsigned)((q->T + GN - 1) / GN));
        gemm_for(q->w.type)<<<grid, GEMM_THREADS, GEMM_SMEM, c->stream>>>(W, q->w.row_bytes, q->w.block_bytes, q->w.n,
                                                                          q->n_out, q->x, q->ldx, q->T, q->y, q->ldy,
                                                                          gr, gx);
    } else if (q->T > 0) {
        run_rows(c, q, 1);
    }
}

/* A warp per weight row: whether q runs so, and whether q and r can share a launch. */
static bool rows_path(const ds4_cuda *c, const ds4_cuda_product *q) {
    return q->T > 0 && q->T < DS4_CUDA_GEMM_MIN_T && !(q->w.n % 32 && plain_for(q->w.type)) && !mma_path(c, q);
}
static bool same_rows(const ds4_cuda_product *q, const ds4_cuda_product *r) {
    return q->w.type == r->w.type && q->w.n == r->w.n && q->w.row_bytes == r->w.row_bytes && q->T == r->T &&
           q->ldx == r->ldx;
}

/* IQ2_XXS and Q2_K rows times Q8_K activation rows (cuda_qdot.cuh; qrows_job in
 * cuda_device.h): a warp per weight row, QROWS rows a warp, each row's activation rows
 * in passes of eight, then four, two, one. */
#define QWARPS 8
#define QROWS 4

template <int TYPE>
__global__ void __launch_bounds__(QWARPS * 32) qmatmul_kernel(const __grid_constant__ qrows_job j) {
    extern __shared__ __align__(16) uint8_t staged_rows[];
    __shared__ uint64_t grid[TYPE == T_IQ2_XXS ? 256 : 1];
    if constexpr (TYPE == T_IQ2_XXS) load_grid(grid);
    int lo = 0, hi = j.n - 1; /* the entry of this block: the last whose first block is not after it */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (j.e[mid].first_block <= blockIdx.x) lo = mid;
        else hi = mid - 1;
    }
    const qrows_entry &e = j.e[lo];
    const int64_t n = j.len;
    const int T = e.T;
    const uint64_t qb = q8k_row_bytes(n), first = (uint64_t)(blockIdx.x - e.first_block) * QWARPS * QROWS;
    const uint64_t end = first + QWARPS * QROWS < e.n_out ? first + QWARPS * QROWS : e.n_out;
    uint8_t *mine = staged_rows + (threadIdx.x >> 5) * QROWS * j.row_bytes;
    if (j.staged) stage_rows(mine, e.W, j.row_bytes, first + (threadIdx.x >> 5), end, QWARPS);
    for (uint64_t o = first + (threadIdx.x >> 5), k = 0; o < end; o += QWARPS, k++) {
        const uint8_t *row = j.staged ? mine + k * j.row_bytes : e.W + o * j.row_bytes;
        float *y = e.y;
        float acc[8];
        int t0 = 0;
        for (; t0 + 8 <= T; t0 += 8) {
            q8_dots<TYPE, 8>(row, n, e.xq + t0 * qb, qb, grid, acc);
            if ((threadIdx.x & 31) == 0)
                for (int t = 0; t < 8; t++) y[(uint64_t)(t0 + t) * e.ldy + o] = acc[t];
        }
        if (T - t0 >= 4) {
            q8_dots<TYPE, 4>(row, n, e.xq + t0 * qb, qb, grid, acc);
            if ((threadIdx.x & 31) == 0)
                for (int t = 0; t < 4; t++) y[(uint64_t)(t0 + t) * e.ldy + o] = acc[t];
            t0 += 4;
        }
        if (T - t0 >= 2) {
            q8_dots<TYPE, 2>(row, n, e.xq + t0 * qb, qb, grid, acc);
            if ((threadIdx.x & 31) == 0)
                for (int t = 0; t < 2; t++) y[(uint64_t)(t0 + t) * e.ldy + o] = acc[t];
            t0 += 2;
        }
        if (T - t0 >= 1) {
            q8_dots<TYPE, 1>(row, n, e.xq + t0 * qb, qb, grid, acc);
            if ((threadIdx.x & 31) == 0) y[(uint64_t)t0 * e.ldy + o] = acc[0];
        }
    }
}

/* Whether q's rows multiply Q8_K activation rows in int8. */
static bool qrows_path(const ds4_cuda *c, const ds4_cuda_product *q) {
    return act_format(c, q->w.type) && has_qdot((int)q->w.type) && !q->group_rows && q->T > 0 &&
           q->T < DS4_CUDA_GEMM_MIN_T;
}

/* Products on the int8 path of one type and row length (n <= QMULTI), their Q8_K rows made. */
static void run_qrows(ds4_cuda *c, const ds4_cuda_product *p, int n) {
    qrows_job j;
    uint32_t blocks = 0;
    for (int k = 0; k < n; k++) {
        j.e[k] = (qrows_entry){c->arena + p[k].w.offset, p[k].xq, p[k].y, p[k].n_out, p[k].ldy, blocks, p[k].T};
        blocks += (uint32_t)((p[k].n_out + QWARPS * QROWS - 1) / (QWARPS * QROWS));
    }
    j.n = n;
    j.row_bytes = p[0].w.row_bytes;
    j.len = p[0].w.n;
    const size_t stage = stage_bytes(j.row_bytes, QWARPS * QROWS);
    j.staged = stage != 0;
    if (!blocks) return;
    if (p[0].w.type == T_IQ2_XXS) qmatmul_kernel<T_IQ2_XXS><<<blocks, QWARPS * 32, stage, c->stream>>>(j);
    else qmatmul_kernel<T_Q2_K><<<blocks, QWARPS * 32, stage, c->stream>>>(j);
}

/* A product whose activations go through int8 first (act_format): on the int8 path its
 * Q8_K rows made (unless given); otherwise the rounded activations (the same values in
 * floats). */
static void run_act(ds4_cuda *c, const ds4_cuda_product *q, int fmt) {
    ds4_cuda_product r = *q;
    const int64_t n = q->w.n;
    if (qrows_path(c, q)) {
        if (!r.xq && !(r.xq = ds4_cuda_q8k_scratch(c, q->x, q->ldx, q->T, n))) return;
        run_qrows(c, &r, 1);
        return;
    }
    if (!r.act_ready) { /* a grouped product's inputs group by group, side by side */
        const uint64_t groups = q->group_rows ? (q->n_out + q->group_rows - 1) / q->group_rows : 1;
        if (!(r.x = ds4_cuda_round_scratch(c, fmt, q->x, q->ldx, q->T, n, groups, q->group_x))) return;
        r.ldx = groups * n;
        if (q->group_rows) r.group_x = (uint64_t)n;
    }
    run_one(c, &r);
}

extern "C" void ds4_cuda_run(ds4_cuda *c, const ds4_cuda_product *p, int n) {
    for (int k = 0; k < n;) {
        const int fmt = act_format(c, p[k].w.type);
        if (fmt) { /* products with their Q8_K rows made share a launch */
            int m = 1;
            if (qrows_path(c, &p[k]) && p[k].xq)
                while (k + m < n && m < QMULTI && qrows_path(c, &p[k + m]) && p[k + m].xq &&
                       p[k + m].w.type == p[k].w.type && p[k + m].w.n == p[k].w.n &&
                       p[k + m].w.row_bytes == p[k].w.row_bytes)
                    m++;
            if (m > 1)
                run_qrows(c, p + k, m);
            else
                run_act(c, &p[k], fmt);
            k += m;
            continue;
        }
        int m = 1;
        while (k + m < n && m < MULTI_MAX && rows_path(c, &p[k]) && rows_path(c, &p[k + m]) &&
               same_rows(&p[k], &p[k + m]) &&
               !act_format(c, p[k + m].w.type))
            m++;
        if (m > 1) run_rows(c, p + k, m);
        else run_one(c, &p[k]);
        k += m;
    }
}

/* Pinned host memory that only grows: inputs gathered and outputs scattered through it,
 * so a batch of products costs one copy each way. */
static int grow_pinned(float **buf, size_t *cap, size_t bytes, char *err, size_t errcap) {
    if (bytes <= *cap) return 0;
    cudaFreeHost(*buf);
    *buf = NULL;
    *cap = 0;
    const cudaError_t e = cudaHostAlloc((void **)buf, bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) return fail(err, errcap, "pinned buffers", e);
    *cap = bytes;
    return 0;
}

extern "C" int ds4_cuda_products(ds4_cuda *c, const ds4_cuda_product *p, int n, char *err, size_t cap) {
    if (ds4_cuda_graph_end(c, err, cap) < 0) return -1;
    ds4_cuda_product d[64];
    size_t x_at[64], y_at[64], xs = 0, ys = 0;
    if (n > 64) {
        snprintf(err, cap, "cuda: more than 64 products in one batch");
        return -1;
    }
    for (int k = 0; k < n; k++) {
        x_at[k] = xs;
        xs += (size_t)p[k].T * (size_t)p[k].w.n;
        y_at[k] = ys;
        ys += (size_t)p[k].T * p[k].n_out;
    }
    if (ds4_cuda_grow(c, (void **)&c->dx, &c->dx_cap, xs * sizeof(float), err, cap) < 0 ||
        ds4_cuda_grow(c, (void **)&c->dy, &c->dy_cap, ys * sizeof(float), err, cap) < 0 ||
        grow_pinned(&c->hx, &c->hx_cap, xs * sizeof(float), err, cap) < 0 ||
        grow_pinned(&c->hy, &c->hy_cap, ys * sizeof(float), err, cap) < 0)
        return -1;
    for (int k = 0; k < n; k++) {
        for (int t = 0; t < p[k].T; t++)
            memcpy(c->hx + x_at[k] + (size_t)t * p[k].w.n, p[k].x + (size_t)t * p[k].ldx, (size_t)p[k].w.n * sizeof(float));
        d[k] = p[k];
        d[k].x = c->dx + x_at[k];
        d[k].ldx = (uint64_t)p[k].w.n;
        d[k].y = c->dy + y_at[k];
        d[k].ldy = p[k].n_out;
    }
    cudaError_t e = cudaMemcpyAsync(c->dx, c->hx, xs * sizeof(float), cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess) {
        ds4_cuda_run(c, d, n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpyAsync(c->hy, c->dy, ys * sizeof(float), cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) return fail(err, cap, "matrix product", e);
    for (int k = 0; k < n; k++)
        for (int t = 0; t < p[k].T; t++)
            memcpy(p[k].y + (size_t)t * p[k].ldy, c->hy + y_at[k] + (size_t)t * p[k].n_out, p[k].n_out * sizeof(float));
    return 0;
}

/* ---- rows of a matrix as F32 (the token embedding) ---- */

/* out[r] (ld apart) = row ids[r] of W decoded, written `copies` times, copy_stride apart. */
template <int TYPE>
__global__ void rows_kernel(const uint8_t *__restrict__ W, uint64_t row_bytes, uint32_t block_bytes, int64_t n,
                            const int32_t *ids, float *out, uint64_t ld, int copies, uint64_t copy_stride) {
    constexpr int B = block_of<TYPE>::N;
    const uint8_t *row = W + (uint64_t)ids[blockIdx.x] * row_bytes;
    float *o = out + (uint64_t)blockIdx.x * ld;
    if constexpr (TYPE == T_F32 || TYPE == T_F16 || TYPE == T_BF16) { /* rows of any length */
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = value_at<TYPE>(row, i);
            for (int k = 0; k < copies; k++) o[(uint64_t)k * copy_stride + i] = v;
        }
    } else {
        for (int64_t blk = threadIdx.x; blk < n / B; blk += blockDim.x) {
            float v[B];
            decode<TYPE>(row + blk * block_bytes, v);
            for (int k = 0; k < copies; k++)
                for (int j = 0; j < B; j++) o[(uint64_t)k * copy_stride + blk * B + j] = v[j];
        }
    }
}

typedef void (*rows_fn)(const uint8_t *, uint64_t, uint32_t, int64_t, const int32_t *, float *, uint64_t, int, uint64_t);
#define ROWS_CASE(t) case t: return rows_kernel<t>;
static rows_fn rows_for(uint32_t type) {
    switch (type) { DS4_CUDA_TYPES(ROWS_CASE) }
    return NULL;
}

extern "C" void ds4_cuda_rows(ds4_cuda *c, const ds4_cuda_matrix *m, const int32_t *ids, int n_rows, float *out,
                              uint64_t ld, int copies, uint64_t copy_stride) {
    if (n_rows > 0)
        rows_for(m->type)<<<n_rows, 64, 0, c->stream>>>(c->arena + m->offset, m->row_bytes, m->block_bytes, m->n, ids,
                                                        out, ld, copies, copy_stride);
}

/* ---- the device and its memory ---- */

extern "C" ds4_cuda *ds4_cuda_create(int device, char *err, size_t cap) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        fail(err, cap, "no usable GPU", e);
        return NULL;
    }
    if (device < 0 || device >= count) {
        snprintf(err, cap, "cuda: device %d does not exist (%d found)", device, count);
        return NULL;
    }
    ds4_cuda *c = (ds4_cuda *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, cap, "cuda: out of host memory");
        return NULL;
    }
    c->device = device;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        fail(err, cap, "cannot start the device", e);
        free(c);
        return NULL;
    }
    snprintf(c->name, sizeof c->name, "%s", prop.name);
    c->fill_blocks = 2 * prop.multiProcessorCount;
    if ((e = cudaMalloc((void **)&c->split, SPLIT_FLOATS * sizeof(float))) != cudaSuccess) {
        fail(err, cap, "work buffers", e);
        cudaStreamDestroy(c->stream);
        free(c);
        return NULL;
    }
    c->split_cap = SPLIT_FLOATS;
    const char *min_t = getenv("DS4_CUDA_MMA_MIN_T");
    c->mma_min_t = min_t && atoi(min_t) > 0 ? atoi(min_t) : DS4_CUDA_MMA_MIN_T;
    const uint32_t types[] = {T_F32, T_F16, T_BF16, T_Q8_0, T_Q4_0, T_MXFP4, T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_K, T_Q6_K, T_IQ2_XXS};
    for (size_t i = 0; i < sizeof types / sizeof types[0] && e == cudaSuccess; i++)
        e = cudaFuncSetAttribute((const void *)gemm_for(types[i]), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)GEMM_SMEM);
    if (e == cudaSuccess) e = ds4_cuda_mma_init();
    if (e != cudaSuccess) {
        fail(err, cap, "the tiled product's shared memory", e);
        ds4_cuda_destroy(c);
        return NULL;
    }
    if (ds4_cuda_graphs_init(c, err, cap) < 0) {
        ds4_cuda_destroy(c);
        return NULL;
    }
    return c;
}

extern "C" void ds4_cuda_destroy(ds4_cuda *c) {
    if (!c) return;
    ds4_cuda_end_capture(c);
    ds4_cuda_graphs_free(c);
    if (c->marks) {
        for (int k = 0; k < DS4_CUDA_MARKS; k++)
            if (c->marks[k]) cudaEventDestroy(c->marks[k]);
        free(c->marks);
    }
    cudaFree(c->arena);
    cudaFree(c->dx);
    cudaFree(c->dy);
    cudaFree(c->ffn_work);
    cudaFree(c->split);
    cudaFree(c->act_q8);
    cudaFree(c->act_round);
    cudaFree(c->mma_x);
    cudaFreeHost(c->hx);
    cudaFreeHost(c->hy);
    cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" const char *ds4_cuda_name(const ds4_cuda *c) { return c->name; }

extern "C" void ds4_cuda_memory(const ds4_cuda *c, uint64_t *free_bytes, uint64_t *total_bytes) {
    (void)c;
    size_t f = 0, t = 0;
    cudaMemGetInfo(&f, &t);
    *free_bytes = f;
    *total_bytes = t;
}

extern "C" int ds4_cuda_tables(ds4_cuda *c, const uint64_t *grid, const uint8_t *signs, const uint8_t *masks, char *err,
                               size_t cap) {
    ds4_cuda_end_capture(c);
    (void)c;
    cudaError_t e = load_tables(grid, signs, masks);
    if (e == cudaSuccess) e = ds4_cuda_ffn_tables(grid, signs, masks);
    return e == cudaSuccess ? 0 : fail(err, cap, "lookup tables", e);
}

extern "C" int ds4_cuda_reserve(ds4_cuda *c, uint64_t bytes, char *err, size_t cap) {
    ds4_cuda_end_capture(c);
    const cudaError_t e = cudaMalloc((void **)&c->arena, bytes ? bytes : 256);
    if (e != cudaSuccess) return fail(err, cap, "the weights' memory", e);
    c->arena_bytes = bytes;
    return 0;
}

extern "C" int ds4_cuda_upload(ds4_cuda *c, const void *host, uint64_t bytes, uint64_t *offset, char *err, size_t cap) {
    ds4_cuda_end_capture(c);
    const uint64_t at = (c->arena_used + 255) & ~(uint64_t)255;
    if (at + bytes > c->arena_bytes) {
        snprintf(err, cap, "cuda: the weights outgrew their reservation");
        return -1;
    }
    const cudaError_t e = cudaMemcpy(c->arena + at, host, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return fail(err, cap, "uploading the weights", e);
    c->arena_used = at + bytes;
    *offset = at;
    return 0;
}

/* ---- a synthetic model's matrices, made in the arena (fill.h) ---- */

__device__ __forceinline__ uint64_t fill_mix(uint64_t x) { /* fill.h's splitmix64 */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A thread block per row: the first thread walks the row's chain (ds4_fill_rows's) to
 * pick each block from the pool, then all copy the row's bytes in order, so a warp's
 * stores are consecutive. */
__global__ void fill_kernel(uint8_t *__restrict__ dst, const uint8_t *__restrict__ pool, uint64_t pool_blocks,
                            uint32_t block_bytes, uint64_t row_bytes, uint64_t n_rows, uint64_t seed) {
    extern __shared__ uint32_t pick[];
    const uint32_t blocks = (uint32_t)(row_bytes / block_bytes);
    for (uint64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
        if (threadIdx.x == 0) {
            uint64_t s = fill_mix(seed ^ fill_mix(r));
            for (uint32_t b = 0; b < blocks; b++) {
                s = fill_mix(s);
                pick[b] = (uint32_t)(s % pool_blocks);
            }
        }
        __syncthreads();
        uint8_t *row = dst + r * row_bytes;
        for (uint32_t i = threadIdx.x; i < (uint32_t)row_bytes; i += blockDim.x) {
            const uint32_t b = i / block_bytes;
            row[i] = pool[(uint64_t)pick[b] * block_bytes + (i - b * block_bytes)];
        }
        __syncthreads();
    }
}

extern "C" int ds4_cuda_fill(ds4_cuda *c, const uint8_t *pool, uint64_t pool_blocks, uint32_t block_bytes,
                             uint64_t row_bytes, uint64_t n_rows, uint64_t seed, uint64_t *offset, char *err,
                             size_t cap) {
    ds4_cuda_end_capture(c);
    const uint64_t bytes = row_bytes * n_rows, at = (c->arena_used + 255) & ~(uint64_t)255;
    if (at + bytes > c->arena_bytes) {
        snprintf(err, cap, "cuda: the weights outgrew their reservation");
        return -1;
    }
    if (pool_blocks > UINT32_MAX || row_bytes > UINT32_MAX || row_bytes / block_bytes > 8192) {
        snprintf(err, cap, "cuda: a fill with %llu pool blocks and rows of %llu blocks", (unsigned long long)pool_blocks,
                 (unsigned long long)(row_bytes / block_bytes));
        return -1;
    }
    uint8_t *dpool = NULL;
    cudaError_t e = cudaMalloc((void **)&dpool, pool_blocks * block_bytes);
    if (e == cudaSuccess) e = cudaMemcpy(dpool, pool, pool_blocks * block_bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        const unsigned grid = (unsigned)(n_rows < 65536 ? n_rows : 65536);
        fill_kernel<<<grid, 256, (row_bytes / block_bytes) * sizeof(uint32_t), c->stream>>>(
            c->arena + at, dpool, pool_blocks, block_bytes, row_bytes, n_rows, seed);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    cudaFree(dpool);
    if (e != cudaSuccess) return fail(err, cap, "making the synthetic weights", e);
    c->arena_used = at + bytes;
    *offset = at;
    return 0;
}

extern "C" double ds4_cuda_copy_gbps(ds4_cuda *c) {
    ds4_cuda_end_capture(c);
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
        cudaFree(a);
        return 0;
    }
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream); /* warm up */
    cudaEventRecord(t0, c->stream);
    for (int i = 0; i < 5; i++) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
    cudaEventRecord(t1, c->stream);
    cudaEventSynchronize(t1);
    float ms = 0;
    cudaEventElapsedTime(&ms, t0, t1);
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    cudaFree(a);
    cudaFree(b);
    /* a copy reads and writes each byte: HBM moves twice the bytes copied */
    return ms > 0 ? 2.0 * 5 * (double)bytes / (ms * 1e-3) / 1e9 : 0;
}

/* ---- device memory for the stages (cuda_stages.h) ---- */
