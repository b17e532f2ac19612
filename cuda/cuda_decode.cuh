/* cuda_decode.cuh - ggml's block formats decoded on the device, value for value as the
 * CPU's dequant.c and quants.c decode them (tests hold the CUDA backend's logits to the
 * CPU's), and the warp's dot product of one weight row with one activation row that the
 * products and the experts share. Included by each .cu that reads weights. */
#ifndef DS4_CUDA_DECODE_CUH
#define DS4_CUDA_DECODE_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_Q2_K = 10, T_Q3_K = 11, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14,
    T_IQ2_XXS = 16, T_BF16 = 30, T_MXFP4 = 39
};

#define QK_K 256


/* Per translation unit (no relocatable device code): each .cu that decodes uploads them
 * (load_tables). */
static __constant__ uint64_t c_iq2xxs_grid[256];
static __constant__ uint8_t c_ksigns[128];
static __constant__ uint8_t c_kmask[8];


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
/* The 32 values [32 part, 32 part + 32) of a block (part < B / 32), as dequant.c writes
 * them: a lane's share of a 256-value block fits its registers. A 256-value block whole
 * is its eight parts (decode below). */
template <int TYPE> __device__ __forceinline__ void decode_part(const uint8_t *b, int part, float *v) {
    (void)part;
    decode<TYPE>(b, v); /* the 32-value blocks: the block itself */
}
template <> __device__ __forceinline__ void decode_part<T_Q2_K>(const uint8_t *b, int p, float *v) {
    const int h = p / 4, s = p % 4;
    const uint8_t *q = b + 16 + 32 * h;
    const float d = f16_at(b + 80), min = f16_at(b + 82);
    for (int half = 0; half < 2; half++) {
        const uint8_t sc = b[8 * h + 2 * s + half];
        const float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
        for (int l = 0; l < 16; l++) v[16 * half + l] = dl * (float)((q[l + 16 * half] >> (2 * s)) & 3) - ml;
    }
}
template <> __device__ __forceinline__ void decode_part<T_Q3_K>(const uint8_t *b, int p, float *v) {
    const int h = p / 4, s = p % 4;
    const uint8_t *hm = b, *q = b + 32 + 32 * h;
    const float d_all = f16_at(b + 108);
    uint32_t aux[4] = {u32_at(b + 96), u32_at(b + 100), u32_at(b + 104), 0};
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f, tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    const uint8_t m = (uint8_t)(1u << (4 * h + s));
    for (int half = 0; half < 2; half++) {
        const int is = 8 * h + 2 * s + half;
        const float dl = d_all * (float)((int8_t)(aux[is / 4] >> (8 * (is % 4))) - 32);
        for (int l = 0; l < 16; l++) {
            const int x = (q[l + 16 * half] >> (2 * s)) & 3;
            v[16 * half + l] = dl * (float)(x - ((hm[l + 16 * half] & m) ? 0 : 4));
        }
    }
}
template <bool FIVE> __device__ __forceinline__ void decode_part_q45(const uint8_t *b, int p, float *v) {
    const int c = p / 2, hi = p % 2;
    const float d = f16_at(b), min = f16_at(b + 2);
    const uint8_t *qh = b + 16, *ql = (FIVE ? b + 48 : b + 16) + 32 * c;
    uint8_t sc, m;
    scale_min_k4(2 * c + hi, b + 4, &sc, &m);
    const float dl = d * sc, ml = min * m;
    const uint8_t u = (uint8_t)((hi ? 2u : 1u) << (2 * c));
    for (int l = 0; l < 32; l++)
        v[l] = dl * (float)((hi ? ql[l] >> 4 : ql[l] & 0xF) + (FIVE && (qh[l] & u) ? 16 : 0)) - ml;
}
template <> __device__ __forceinline__ void decode_part<T_Q4_K>(const uint8_t *b, int p, float *v) {
    decode_part_q45<false>(b, p, v);
}
template <> __device__ __forceinline__ void decode_part<T_Q5_K>(const uint8_t *b, int p, float *v) {
    decode_part_q45<true>(b, p, v);
}
template <> __device__ __forceinline__ void decode_part<T_Q6_K>(const uint8_t *b, int p, float *v) {
    const int h = p / 4, g = p % 4;
    const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
    const int8_t *sc = (const int8_t *)(b + 192) + 8 * h;
    const float d = f16_at(b + 208);
    for (int l = 0; l < 32; l++) {
        const uint8_t lo = g & 1 ? ql[l + 32] : ql[l];
        const int q = (int)((g < 2 ? lo & 0xF : lo >> 4) | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
        v[l] = d * (float)sc[l / 16 + 2 * g] * (float)q;
    }
}
template <> __device__ __forceinline__ void decode_part<T_IQ2_XXS>(const uint8_t *b, int ib, float *v) {
    const float d = f16_at(b);
    const uint32_t a0 = u32_at(b + 2 + 8 * ib), a1 = u32_at(b + 6 + 8 * ib);
    const float db = d * (0.5f + (float)(a1 >> 28)) * 0.25f;
    for (int l = 0; l < 4; l++) {
        const uint64_t g = c_iq2xxs_grid[(a0 >> (8 * l)) & 255];
        const uint8_t signs = c_ksigns[(a1 >> (7 * l)) & 127];
        for (int j = 0; j < 8; j++) {
            const float x = db * (float)((g >> (8 * j)) & 255);
            v[8 * l + j] = (signs & c_kmask[j]) ? -x : x;
        }
    }
}

template <int TYPE> __device__ __forceinline__ void decode_parts(const uint8_t *b, float *y) {
    for (int p = 0; p < QK_K / 32; p++) decode_part<TYPE>(b, p, y + 32 * p);
}
template <> __device__ __forceinline__ void decode<T_Q2_K>(const uint8_t *b, float *y) { decode_parts<T_Q2_K>(b, y); }
template <> __device__ __forceinline__ void decode<T_Q3_K>(const uint8_t *b, float *y) { decode_parts<T_Q3_K>(b, y); }
template <> __device__ __forceinline__ void decode<T_Q4_K>(const uint8_t *b, float *y) { decode_parts<T_Q4_K>(b, y); }
template <> __device__ __forceinline__ void decode<T_Q5_K>(const uint8_t *b, float *y) { decode_parts<T_Q5_K>(b, y); }
template <> __device__ __forceinline__ void decode<T_Q6_K>(const uint8_t *b, float *y) { decode_parts<T_Q6_K>(b, y); }
template <> __device__ __forceinline__ void decode<T_IQ2_XXS>(const uint8_t *b, float *y) {
    decode_parts<T_IQ2_XXS>(b, y);
}

/* A warp's dot products of weight row `row` (n values) with T activation rows (at most
 * 8, n apart), into acc: the lanes take the row's 32-value parts in turn, and their sums
 * meet in a fixed butterfly, so every lane gets the same bits. */
template <int TYPE, int T>
__device__ __forceinline__ void row_dots(const uint8_t *row, uint32_t block_bytes, int64_t n, const float *x, float *acc) {
    constexpr int B = block_of<TYPE>::N, PARTS = B / 32;
    const int lane = threadIdx.x & 31;
    float v[32];
    for (int t = 0; t < T; t++) acc[t] = 0;
    for (int64_t u = lane; u < n / 32; u += 32) {
        const int64_t blk = u / PARTS;
        decode_part<TYPE>(row + blk * block_bytes, (int)(u % PARTS), v);
        for (int t = 0; t < T; t++) {
            const float *xp = x + (uint64_t)t * n + u * 32;
            float s = 0;
            for (int j = 0; j < 32; j++) s = fmaf(v[j], xp[j], s);
            acc[t] += s;
        }
    }
    for (int t = 0; t < T; t++)
        for (int off = 16; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
}

template <int TYPE>
__device__ __forceinline__ float row_dot(const uint8_t *row, uint32_t block_bytes, int64_t n, const float *x) {
    float acc[1];
    row_dots<TYPE, 1>(row, block_bytes, n, x, acc);
    return acc[0];
}

static inline cudaError_t load_tables(const uint64_t *grid, const uint8_t *signs, const uint8_t *masks) {
    cudaError_t e = cudaMemcpyToSymbol(c_iq2xxs_grid, grid, sizeof c_iq2xxs_grid);
    if (e == cudaSuccess) e = cudaMemcpyToSymbol(c_ksigns, signs, sizeof c_ksigns);
    if (e == cudaSuccess) e = cudaMemcpyToSymbol(c_kmask, masks, sizeof c_kmask);
    return e;
}

#endif
