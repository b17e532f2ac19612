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

/* Every weight type the device reads, for the kernels' type switches. */
#define DS4_CUDA_TYPES(X) X(T_F32) X(T_F16) X(T_BF16) X(T_Q8_0) X(T_Q4_0) X(T_MXFP4) X(T_Q2_K) X(T_Q3_K) X(T_Q4_K) \
    X(T_Q5_K) X(T_Q6_K) X(T_IQ2_XXS)


/* Per translation unit (no relocatable device code): each .cu that decodes uploads them
 * (load_tables). The grid and the signs live in global memory (cached in L1): a warp's
 * lanes index them at 32 different places, which constant memory would serve one by
 * one; the mask is indexed alike by every lane. */
static __device__ uint64_t c_iq2xxs_grid[256];
static __device__ uint8_t c_ksigns[128];
static __constant__ uint8_t c_kmask[8];


/* ---- the block decoders: dequant.c's, value for value ---- */

/* Every block of a type read through these starts at an even byte (the arena's tensors are
 * 256-aligned and those blocks' sizes even; MXFP4's odd blocks are read byte by byte), so
 * a 16-bit field is one load and a 32-bit one two. */
__device__ __forceinline__ uint32_t u16_at(const uint8_t *p) { return *(const uint16_t *)p; }
__device__ __forceinline__ uint32_t u32_at(const uint8_t *p) { return u16_at(p) | u16_at(p + 2) << 16; }
__device__ __forceinline__ float f16_at(const uint8_t *p) { return __half2float(__ushort_as_half((unsigned short)u16_at(p))); }
__device__ __forceinline__ float bf16_at(const uint8_t *p) { return __uint_as_float(u16_at(p) << 16); }
/* (float) of a signed byte without the conversion unit, which runs at a quarter of the
 * float rate and bounds an int8 row's decode: the byte offset by 128 placed in the
 * mantissa of 2^23, less 2^23 + 128 (exact). s8_float4: the four bytes of w. */
__device__ __forceinline__ float s8_float(uint32_t byte) {
    return __fsub_rn(__uint_as_float(0x4B000000u | (byte ^ 0x80u)), 8388736.0f);
}
__device__ __forceinline__ void s8_float4(uint32_t w, float *v) {
    const uint32_t u = w ^ 0x80808080u;
    v[0] = __fsub_rn(__uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440)), 8388736.0f);
    v[1] = __fsub_rn(__uint_as_float(__byte_perm(u, 0x4B000000u, 0x7441)), 8388736.0f);
    v[2] = __fsub_rn(__uint_as_float(__byte_perm(u, 0x4B000000u, 0x7442)), 8388736.0f);
    v[3] = __fsub_rn(__uint_as_float(__byte_perm(u, 0x4B000000u, 0x7443)), 8388736.0f);
}
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
    for (int j = 0; j < 32; j++) y[j] = d * s8_float(b[2 + j]);
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

/* ---- eight values at a time: a lane's share of the warp's 256 consecutive values ----
 *
 * decode8<TYPE>(block, piece, v): values [8 piece, 8 piece + 8) of a block, each the
 * value decode_part gives it (the same operations, the products and differences rounded
 * one by one as the CPU rounds them). The warp's lanes then read consecutive weights and
 * activations, where a lane per 32-value part read 32 values 128 bytes apart. Types
 * without a short path decode their part and keep the eight. */
template <int TYPE> __device__ __forceinline__ void decode8(const uint8_t *b, int piece, float *v) {
    float part[32];
    decode_part<TYPE>(b, piece / 4, part);
    for (int j = 0; j < 8; j++) v[j] = part[8 * (piece % 4) + j];
}
template <> __device__ __forceinline__ void decode8<T_F32>(const uint8_t *b, int piece, float *v) {
    const float4 *p = (const float4 *)(b + 32 * piece); /* rows are 16-byte aligned */
    const float4 lo = p[0], hi = p[1];
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
}
template <> __device__ __forceinline__ void decode8<T_F16>(const uint8_t *b, int piece, float *v) {
    const uint4 q = *(const uint4 *)(b + 16 * piece);
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
    for (int j = 0; j < 4; j++) {
        v[2 * j] = __half2float(__ushort_as_half((unsigned short)(w[j] & 0xFFFF)));
        v[2 * j + 1] = __half2float(__ushort_as_half((unsigned short)(w[j] >> 16)));
    }
}
template <> __device__ __forceinline__ void decode8<T_BF16>(const uint8_t *b, int piece, float *v) {
    const uint4 q = *(const uint4 *)(b + 16 * piece);
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
    for (int j = 0; j < 4; j++) {
        v[2 * j] = __uint_as_float(w[j] << 16);
        v[2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
    }
}
template <> __device__ __forceinline__ void decode8<T_Q8_0>(const uint8_t *b, int piece, float *v) {
    const float d = f16_at(b);
    const uint16_t *q = (const uint16_t *)(b + 2 + 8 * piece); /* blocks of 34 bytes: 2-byte aligned */
    s8_float4((uint32_t)q[0] | (uint32_t)q[1] << 16, v);
    s8_float4((uint32_t)q[2] | (uint32_t)q[3] << 16, v + 4);
    for (int j = 0; j < 8; j++) v[j] = __fmul_rn(d, v[j]);
}
template <> __device__ __forceinline__ void decode8<T_Q2_K>(const uint8_t *b, int piece, float *v) {
    const int p = piece / 4, h = p / 4, s = p % 4, half = (piece % 4) / 2, l0 = 8 * (piece % 2) + 16 * half;
    const uint8_t sc = b[8 * h + 2 * s + half];
    const float dl = __fmul_rn(f16_at(b + 80), (float)(sc & 0xF)), ml = __fmul_rn(f16_at(b + 82), (float)(sc >> 4));
    const uint8_t *q = b + 16 + 32 * h + l0;
    for (int j = 0; j < 8; j++) v[j] = __fsub_rn(__fmul_rn(dl, (float)((q[j] >> (2 * s)) & 3)), ml);
}
template <> __device__ __forceinline__ void decode8<T_IQ2_XXS>(const uint8_t *b, int piece, float *v) {
    const int ib = piece / 4, l = piece % 4;
    const float d = f16_at(b);
    const uint32_t a1 = u32_at(b + 6 + 8 * ib);
    const float db = __fmul_rn(__fmul_rn(d, 0.5f + (float)(a1 >> 28)), 0.25f);
    const uint64_t g = c_iq2xxs_grid[b[2 + 8 * ib + l]];
    const uint8_t signs = c_ksigns[(a1 >> (7 * l)) & 127];
    for (int j = 0; j < 8; j++) {
        const float x = __fmul_rn(db, (float)((g >> (8 * j)) & 255));
        v[j] = (signs & c_kmask[j]) ? -x : x;
    }
}

/* Weight pieces a lane decodes before it multiplies them (loads in flight, which decode
 * is bound by): four for the types the q2 and q8 files are made of at up to two
 * activation rows, two at more rows, one for the other types (their code is big). */
template <int TYPE, int T> struct unroll_of {
    enum { HOT = TYPE == T_Q8_0 || TYPE == T_F16 || TYPE == T_BF16 || TYPE == T_F32 || TYPE == T_IQ2_XXS ||
                 TYPE == T_Q2_K };
    enum { U = !HOT ? 1 : T <= 2 ? 4 : 2 };
};

/* acc[t] += w . x[t][v0 .. v0 + 8) for T activation rows, in index order. */
template <int T>
__device__ __forceinline__ void fma_rows(const float *w, const float *x, uint64_t ldx, int64_t v0, float *acc) {
#pragma unroll
    for (int t = 0; t < T; t++) {
        const float4 *xp = (const float4 *)(x + (uint64_t)t * ldx + v0);
        const float4 lo = xp[0], hi = xp[1];
        float s = acc[t];
        s = fmaf(w[0], lo.x, s);
        s = fmaf(w[1], lo.y, s);
        s = fmaf(w[2], lo.z, s);
        s = fmaf(w[3], lo.w, s);
        s = fmaf(w[4], hi.x, s);
        s = fmaf(w[5], hi.y, s);
        s = fmaf(w[6], hi.z, s);
        acc[t] = fmaf(w[7], hi.w, s);
    }
}

/* A warp's dot products of weight row `row` with T activation rows (ldx apart, 16-byte
 * aligned) over values [begin, end) (multiples of 8; n a multiple of 32) into acc: lane
 * l takes values begin + 8l.. of every 256, each lane's sum in a fixed order (the
 * unrolling decodes ahead but adds in the same order), the lanes' sums meeting in a
 * fixed butterfly, so every lane gets the same bits on every run. */
template <int TYPE, int T>
__device__ __forceinline__ void row_dots_span(const uint8_t *row, uint32_t block_bytes, int64_t begin, int64_t end,
                                              const float *x, uint64_t ldx, float *acc) {
    constexpr int B = block_of<TYPE>::N, U = unroll_of<TYPE, T>::U;
    const int lane = threadIdx.x & 31;
    for (int t = 0; t < T; t++) acc[t] = 0;
    int64_t v0 = begin + 8 * lane;
    for (; v0 + (U - 1) * 256 < end; v0 += U * 256) {
        float w[U][8];
#pragma unroll
        for (int u = 0; u < U; u++)
            decode8<TYPE>(row + ((v0 + 256 * u) / B) * block_bytes, (int)(((v0 + 256 * u) % B) / 8), w[u]);
#pragma unroll
        for (int u = 0; u < U; u++) fma_rows<T>(w[u], x, ldx, v0 + 256 * u, acc);
    }
    for (; v0 < end; v0 += 256) {
        float w[8];
        decode8<TYPE>(row + (v0 / B) * block_bytes, (int)((v0 % B) / 8), w);
        fma_rows<T>(w, x, ldx, v0, acc);
    }
    for (int t = 0; t < T; t++)
        for (int off = 16; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
}

template <int TYPE, int T>
__device__ __forceinline__ void row_dots(const uint8_t *row, uint32_t block_bytes, int64_t n, const float *x, uint64_t ldx,
                                         float *acc) {
    row_dots_span<TYPE, T>(row, block_bytes, 0, n, x, ldx, acc);
}

/* Value i of a row of a plain float type (rows of any length, any alignment). */
template <int TYPE> __device__ __forceinline__ float value_at(const uint8_t *row, int64_t i);
template <> __device__ __forceinline__ float value_at<T_F32>(const uint8_t *row, int64_t i) {
    return ((const float *)row)[i];
}
template <> __device__ __forceinline__ float value_at<T_F16>(const uint8_t *row, int64_t i) {
    return f16_at(row + 2 * i);
}
template <> __device__ __forceinline__ float value_at<T_BF16>(const uint8_t *row, int64_t i) {
    return bf16_at(row + 2 * i);
}

template <int TYPE>
__device__ __forceinline__ float row_dot(const uint8_t *row, uint32_t block_bytes, int64_t n, const float *x) {
    float acc[1];
    row_dots<TYPE, 1>(row, block_bytes, n, x, (uint64_t)n, acc);
    return acc[0];
}

static inline cudaError_t load_tables(const uint64_t *grid, const uint8_t *signs, const uint8_t *masks) {
    cudaError_t e = cudaMemcpyToSymbol(c_iq2xxs_grid, grid, sizeof c_iq2xxs_grid);
    if (e == cudaSuccess) e = cudaMemcpyToSymbol(c_ksigns, signs, sizeof c_ksigns);
    if (e == cudaSuccess) e = cudaMemcpyToSymbol(c_kmask, masks, sizeof c_kmask);
    return e;
}

#endif
