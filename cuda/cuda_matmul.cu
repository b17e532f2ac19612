/* cuda_matmul.cu - see cuda_matmul.h. Decode (few activation rows): a warp per output
 * row, its lanes taking the row's blocks in turn, decoding each into registers exactly as
 * the CPU's dequant.c does and multiplying it with up to TILE activation rows; the lanes'
 * sums meet in a fixed butterfly. Prefill: tiles of weight rows times activation rows
 * (gemm_kernel). Neither depends on scheduling for its sums. Correct first: the tuned
 * kernels (int8 dot products, tensor cores) are the next step of issue 16. */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_matmul.h"

enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_Q2_K = 10, T_Q3_K = 11, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14,
    T_IQ2_XXS = 16, T_BF16 = 30, T_MXFP4 = 39
};

#define WARPS 4  /* rows per thread block */
#define TILE 4   /* activation rows per pass over a weight row */
#define QK_K 256
#define GEMM_MIN_T 8 /* activation rows from which the tiled product (gemm_kernel) runs */

struct ds4_cuda {
    int device;
    char name[256];
    cudaStream_t stream;
    uint8_t *arena;
    uint64_t arena_bytes, arena_used;
    float *dx, *dy; /* activations and outputs of one batch of products */
    size_t dx_cap, dy_cap;
};

__constant__ uint64_t c_iq2xxs_grid[256];
__constant__ uint8_t c_ksigns[128];
__constant__ uint8_t c_kmask[8];

static int fail(char *err, size_t cap, const char *what, cudaError_t e) {
    snprintf(err, cap, "cuda: %s: %s", what, cudaGetErrorString(e));
    return -1;
}

/* ---- the block decoders: dequant.c's, value for value ---- */

__device__ __forceinline__ uint32_t u16_at(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
__device__ __forceinline__ uint32_t u32_at(const uint8_t *p) { return u16_at(p) | u16_at(p + 2) << 16; }
__device__ __forceinline__ float f16_at(const uint8_t *p) { return __half2float(__ushort_as_half((unsigned short)u16_at(p))); }
__device__ __forceinline__ float bf16_at(const uint8_t *p) { return __uint_as_float(u16_at(p) << 16); }
__device__ __forceinline__ float e8m0(uint8_t v) {
    if (v == 0xff) return __uint_as_float(0x7fc00000u);
    if (v == 0) return __uint_as_float(0x00400000u); /* 2^-127 */
    return __uint_as_float((uint32_t)v << 23);
}
__device__ __forceinline__ float fp4(uint8_t code) {
    const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    const float m = mag[code & 7];
    return (code & 8) ? -m : m;
}

__device__ __forceinline__ void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

template <int TYPE> struct block_of;
template <> struct block_of<T_F32> { enum { N = 32 }; };
template <> struct block_of<T_F16> { enum { N = 32 }; };
template <> struct block_of<T_BF16> { enum { N = 32 }; };
template <> struct block_of<T_Q8_0> { enum { N = 32 }; };
template <> struct block_of<T_Q4_0> { enum { N = 32 }; };
template <> struct block_of<T_MXFP4> { enum { N = 32 }; };
template <> struct block_of<T_Q2_K> { enum { N = QK_K }; };
template <> struct block_of<T_Q3_K> { enum { N = QK_K }; };
template <> struct block_of<T_Q4_K> { enum { N = QK_K }; };
template <> struct block_of<T_Q5_K> { enum { N = QK_K }; };
template <> struct block_of<T_Q6_K> { enum { N = QK_K }; };
template <> struct block_of<T_IQ2_XXS> { enum { N = QK_K }; };

template <int TYPE> __device__ __forceinline__ void decode(const uint8_t *b, float *y);

template <> __device__ __forceinline__ void decode<T_F32>(const uint8_t *b, float *y) {
    for (int j = 0; j < 32; j++) y[j] = __uint_as_float(u32_at(b + 4 * j));
}
template <> __device__ __forceinline__ void decode<T_F16>(const uint8_t *b, float *y) {
    for (int j = 0; j < 32; j++) y[j] = f16_at(b + 2 * j);
}
template <> __device__ __forceinline__ void decode<T_BF16>(const uint8_t *b, float *y) {
    for (int j = 0; j < 32; j++) y[j] = bf16_at(b + 2 * j);
}
template <> __device__ __forceinline__ void decode<T_Q8_0>(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
}
template <> __device__ __forceinline__ void decode<T_Q4_0>(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 0xF) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}
template <> __device__ __forceinline__ void decode<T_MXFP4>(const uint8_t *b, float *y) {
    const float d = e8m0(b[0]);
    for (int j = 0; j < 16; j++) {
        y[j] = fp4(b[1 + j] & 15) * d;
        y[16 + j] = fp4(b[1 + j] >> 4) * d;
    }
}
template <> __device__ __forceinline__ void decode<T_Q2_K>(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *q = b + 16;
    const float d = f16_at(b + 80), min = f16_at(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2)
            for (int half = 0; half < 2; half++) {
                const uint8_t sc = scales[is++];
                const float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
        q += 32;
    }
}
template <> __device__ __forceinline__ void decode<T_Q3_K>(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32;
    const float d_all = f16_at(b + 108);
    uint32_t aux[4] = {u32_at(b + 96), u32_at(b + 100), u32_at(b + 104), 0};
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f, tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                const int8_t sc = (int8_t)(aux[is / 4] >> (8 * (is % 4)));
                is++;
                const float dl = d_all * (float)(sc - 32);
                for (int l = 0; l < 16; l++) {
                    const int v = (q[l + 16 * half] >> shift) & 3;
                    *y++ = dl * (float)(v - ((hm[l + 16 * half] & m) ? 0 : 4));
                }
            }
            m <<= 1;
        }
        q += 32;
    }
}
template <bool FIVE> __device__ __forceinline__ void decode_q45(const uint8_t *b, float *y) {
    const float d = f16_at(b), min = f16_at(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = FIVE ? b + 48 : b + 16;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2) {
        uint8_t sc, m;
        scale_min_k4(is, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (FIVE && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (FIVE && (qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        u1 <<= 2;
        u2 <<= 2;
    }
}
template <> __device__ __forceinline__ void decode<T_Q4_K>(const uint8_t *b, float *y) { decode_q45<false>(b, y); }
template <> __device__ __forceinline__ void decode<T_Q5_K>(const uint8_t *b, float *y) { decode_q45<true>(b, y); }
template <> __device__ __forceinline__ void decode<T_Q6_K>(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = f16_at(b + 208);
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}
template <> __device__ __forceinline__ void decode<T_IQ2_XXS>(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const uint32_t a0 = u32_at(b + 2 + 8 * ib), a1 = u32_at(b + 6 + 8 * ib);
        const float db = d * (0.5f + (float)(a1 >> 28)) * 0.25f;
        for (int l = 0; l < 4; l++) {
            const uint64_t g = c_iq2xxs_grid[(a0 >> (8 * l)) & 255];
            const uint8_t signs = c_ksigns[(a1 >> (7 * l)) & 127];
            for (int j = 0; j < 8; j++) {
                const float v = db * (float)((g >> (8 * j)) & 255);
                y[j] = (signs & c_kmask[j]) ? -v : v;
            }
            y += 8;
        }
    }
}

/* ---- the product ---- */

/* y[t][o] = W[o] . x[t] for a warp's row o; T rows of x, n values each, dense. */
template <int TYPE>
__global__ void matmul_kernel(const uint8_t *__restrict__ W, uint64_t row_bytes, uint32_t block_bytes, int64_t n,
                              uint64_t n_out, const float *__restrict__ x, int T, float *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const uint64_t o = (uint64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (o >= n_out) return;
    constexpr int B = block_of<TYPE>::N;
    const int64_t n_blocks = n / B;
    const uint8_t *row = W + o * row_bytes;
    float v[B];
    for (int t0 = 0; t0 < T; t0 += TILE) {
        float acc[TILE] = {0};
        const int tn = T - t0 < TILE ? T - t0 : TILE;
        for (int64_t k = lane; k < n_blocks; k += 32) {
            decode<TYPE>(row + k * block_bytes, v);
            for (int t = 0; t < tn; t++) {
                const float *xb = x + (uint64_t)(t0 + t) * n + k * B;
                float s = 0;
                for (int j = 0; j < B; j++) s = fmaf(v[j], xb[j], s);
                acc[t] += s;
            }
        }
        for (int t = 0; t < tn; t++) {
            float s = acc[t];
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            if (lane == 0) y[(uint64_t)(t0 + t) * n_out + o] = s;
        }
    }
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
            const float *__restrict__ x, int T, float *__restrict__ y) {
    extern __shared__ float smem[];
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
            xs[t * GK + k] = t0 + t < T ? x[(uint64_t)(t0 + t) * n + k0 + k] : 0.0f;
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
            if (o < n_out && t < T) y[(uint64_t)t * n_out + o] = acc[h][c];
        }
}

typedef void (*kernel_fn)(const uint8_t *, uint64_t, uint32_t, int64_t, uint64_t, const float *, int, float *);

static kernel_fn gemm_for(uint32_t type) {
    switch (type) {
    case T_F32: return gemm_kernel<T_F32>;
    case T_F16: return gemm_kernel<T_F16>;
    case T_BF16: return gemm_kernel<T_BF16>;
    case T_Q8_0: return gemm_kernel<T_Q8_0>;
    case T_Q4_0: return gemm_kernel<T_Q4_0>;
    case T_MXFP4: return gemm_kernel<T_MXFP4>;
    case T_Q2_K: return gemm_kernel<T_Q2_K>;
    case T_Q3_K: return gemm_kernel<T_Q3_K>;
    case T_Q4_K: return gemm_kernel<T_Q4_K>;
    case T_Q5_K: return gemm_kernel<T_Q5_K>;
    case T_Q6_K: return gemm_kernel<T_Q6_K>;
    case T_IQ2_XXS: return gemm_kernel<T_IQ2_XXS>;
    }
    return NULL;
}

static kernel_fn kernel_for(uint32_t type) {
    switch (type) {
    case T_F32: return matmul_kernel<T_F32>;
    case T_F16: return matmul_kernel<T_F16>;
    case T_BF16: return matmul_kernel<T_BF16>;
    case T_Q8_0: return matmul_kernel<T_Q8_0>;
    case T_Q4_0: return matmul_kernel<T_Q4_0>;
    case T_MXFP4: return matmul_kernel<T_MXFP4>;
    case T_Q2_K: return matmul_kernel<T_Q2_K>;
    case T_Q3_K: return matmul_kernel<T_Q3_K>;
    case T_Q4_K: return matmul_kernel<T_Q4_K>;
    case T_Q5_K: return matmul_kernel<T_Q5_K>;
    case T_Q6_K: return matmul_kernel<T_Q6_K>;
    case T_IQ2_XXS: return matmul_kernel<T_IQ2_XXS>;
    }
    return NULL;
}

extern "C" int ds4_cuda_type_supported(uint32_t type) { return kernel_for(type) != NULL; }

static int grow(float **buf, size_t *cap, size_t bytes, char *err, size_t errcap) {
    if (bytes <= *cap) return 0;
    cudaFree(*buf);
    *buf = NULL;
    *cap = 0;
    const cudaError_t e = cudaMalloc((void **)buf, bytes);
    if (e != cudaSuccess) return fail(err, errcap, "activation buffers", e);
    *cap = bytes;
    return 0;
}

extern "C" int ds4_cuda_products(ds4_cuda *c, const ds4_cuda_product *p, int n, char *err, size_t cap) {
    size_t xs = 0, ys = 0;
    for (int k = 0; k < n; k++) {
        xs += (size_t)p[k].T * (size_t)p[k].n;
        ys += (size_t)p[k].T * p[k].n_out;
    }
    if (grow(&c->dx, &c->dx_cap, xs * sizeof(float), err, cap) < 0 || grow(&c->dy, &c->dy_cap, ys * sizeof(float), err, cap) < 0)
        return -1;
    size_t xo = 0, yo = 0;
    cudaError_t e = cudaSuccess;
    for (int k = 0; k < n && e == cudaSuccess; k++) {
        const ds4_cuda_product *q = &p[k];
        e = cudaMemcpy2DAsync(c->dx + xo, (size_t)q->n * 4, q->x, q->ldx * 4, (size_t)q->n * 4, (size_t)q->T,
                              cudaMemcpyHostToDevice, c->stream);
        if (e != cudaSuccess) break;
        if (q->T >= GEMM_MIN_T) {
            const dim3 grid((unsigned)((q->n_out + GM - 1) / GM), (unsigned)((q->T + GN - 1) / GN));
            gemm_for(q->type)<<<grid, GEMM_THREADS, GEMM_SMEM, c->stream>>>(c->arena + q->w_offset, q->row_bytes,
                                                                            q->block_bytes, q->n, q->n_out,
                                                                            c->dx + xo, q->T, c->dy + yo);
        } else {
            const unsigned blocks = (unsigned)((q->n_out + WARPS - 1) / WARPS);
            kernel_for(q->type)<<<blocks, WARPS * 32, 0, c->stream>>>(c->arena + q->w_offset, q->row_bytes,
                                                                       q->block_bytes, q->n, q->n_out, c->dx + xo,
                                                                       q->T, c->dy + yo);
        }
        e = cudaGetLastError();
        if (e != cudaSuccess) break;
        e = cudaMemcpy2DAsync(q->y, q->ldy * 4, c->dy + yo, q->n_out * 4, q->n_out * 4, (size_t)q->T,
                              cudaMemcpyDeviceToHost, c->stream);
        xo += (size_t)q->T * (size_t)q->n;
        yo += (size_t)q->T * q->n_out;
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? 0 : fail(err, cap, "matrix product", e);
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
    const uint32_t types[] = {T_F32, T_F16, T_BF16, T_Q8_0, T_Q4_0, T_MXFP4, T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_K, T_Q6_K, T_IQ2_XXS};
    for (size_t i = 0; i < sizeof types / sizeof types[0] && e == cudaSuccess; i++)
        e = cudaFuncSetAttribute((const void *)gemm_for(types[i]), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)GEMM_SMEM);
    if (e != cudaSuccess) {
        fail(err, cap, "the tiled product's shared memory", e);
        ds4_cuda_destroy(c);
        return NULL;
    }
    return c;
}

extern "C" void ds4_cuda_destroy(ds4_cuda *c) {
    if (!c) return;
    cudaFree(c->arena);
    cudaFree(c->dx);
    cudaFree(c->dy);
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
    (void)c;
    cudaError_t e = cudaMemcpyToSymbol(c_iq2xxs_grid, grid, sizeof c_iq2xxs_grid);
    if (e == cudaSuccess) e = cudaMemcpyToSymbol(c_ksigns, signs, sizeof c_ksigns);
    if (e == cudaSuccess) e = cudaMemcpyToSymbol(c_kmask, masks, sizeof c_kmask);
    return e == cudaSuccess ? 0 : fail(err, cap, "lookup tables", e);
}

extern "C" int ds4_cuda_reserve(ds4_cuda *c, uint64_t bytes, char *err, size_t cap) {
    const cudaError_t e = cudaMalloc((void **)&c->arena, bytes ? bytes : 256);
    if (e != cudaSuccess) return fail(err, cap, "the weights' memory", e);
    c->arena_bytes = bytes;
    return 0;
}

extern "C" int ds4_cuda_upload(ds4_cuda *c, const void *host, uint64_t bytes, uint64_t *offset, char *err, size_t cap) {
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

extern "C" double ds4_cuda_copy_gbps(ds4_cuda *c) {
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
