/* cuda_qdot.cuh - int8 activations on the device, as the CPU's qdot.c makes and uses them:
 * a row quantized once per product to ggml's Q8_K (blocks of 256: the scale that maps the
 * largest magnitude to -127 or 127, and the sums of each 16) or Q8_0 (blocks of 32, an F16
 * scale), and the warp dot products of IQ2_XXS and Q2_K weight rows (the q2 files'
 * experts) with Q8_K rows in dp4a: every block's integer sum exact and its one float term
 * computed as the CPU's scalar kernel computes it, so a one-block row gives the CPU's bits
 * and a longer one differs only in the order the blocks' terms are added (a fixed order:
 * the same bits every run). Included by the .cu files that run products. */
#ifndef DS4_CUDA_QDOT_CUH
#define DS4_CUDA_QDOT_CUH

#include "cuda_decode.cuh"

/* A Q8_K row of n values on the device: n int8 values, then n/256 float scales, then
 * n/16 int16 sums; rows 16-byte aligned so the values load as int4. */
__host__ __device__ __forceinline__ uint64_t q8k_row_bytes(int64_t n) {
    return ((uint64_t)n + (uint64_t)n / 64 + (uint64_t)n / 8 + 15) & ~(uint64_t)15;
}

/* The int8 kernels' weight types. */
__host__ __device__ __forceinline__ bool has_qdot(int type) { return type == T_IQ2_XXS || type == T_Q2_K; }

/* IQ2_XXS's grid in shared memory: a warp's lanes index it at 32 places, which the banks
 * serve a few at a time where L1 would take one line each. Every thread of the block
 * calls it. */
__device__ __forceinline__ void load_grid(uint64_t *grid) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) grid[i] = c_iq2xxs_grid[i];
    __syncthreads();
}

/* Rows of a warp staged in shared memory before it reads them: each row's bytes copied
 * by the lanes in 16-byte pieces (cp.async, no registers), all in flight at once, so a
 * block's many small loads hit shared memory and the rows stream at the memory's pace.
 * stage_bytes: the shared memory that `rows` rows of row_bytes take, or 0 where they
 * cannot be staged (rows not 16-byte multiples, or more than the static shared memory
 * limit leaves beside IQ2_XXS's grid). stage_rows: the warp's rows first, first +
 * step, .. (before end) of W into dst, one after another, and waits for them. */
__host__ __forceinline__ size_t stage_bytes(uint64_t row_bytes, int rows) {
    const size_t bytes = (size_t)rows * row_bytes;
    return row_bytes % 16 == 0 && bytes <= 46 * 1024 ? bytes : 0;
}
__device__ __forceinline__ void stage_rows(uint8_t *dst, const uint8_t *W, uint64_t row_bytes, uint64_t first,
                                           uint64_t end, uint64_t step) {
    const uint32_t to = (uint32_t)__cvta_generic_to_shared(dst);
    for (uint64_t o = first, k = 0; o < end; o += step, k++)
        for (uint32_t i = (threadIdx.x & 31) * 16; i < row_bytes; i += 32 * 16)
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(to + (uint32_t)(k * row_bytes) + i),
                         "l"(W + o * row_bytes + i));
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncwarp();
}

/* Eight sign bits (bit j: value j negative) as the byte masks of the low and high four
 * values (0xff: negative), for (g ^ m) - m. */
__device__ __forceinline__ uint32_t sign_mask4(uint32_t bits4) { return ((bits4 * 0x00204081u) & 0x01010101u) * 0xffu; }

/* acc[t] = row . act[t] for R Q8_K activation rows (ldq bytes apart) over an IQ2_XXS row
 * of n values: lane l takes group l % 8 (32 values: four grid entries) of every fourth
 * block (two blocks a pass), the block's eight groups' integer sums meet in three shuffles, and its term
 * d * d_act * sum * 1/8 goes to the lane that holds group 0. */
template <int R>
__device__ __forceinline__ void iq2xxs_q8_dots(const uint8_t *row, int64_t n, const uint8_t *act, uint64_t ldq,
                                               const uint64_t *grid, float *acc) {
    const int lane = threadIdx.x & 31, g = lane & 7;
    const int64_t nb = n / QK_K;
    float sum[R];
#pragma unroll
    for (int t = 0; t < R; t++) sum[t] = 0.0f;
    for (int64_t b0 = 0; b0 < nb; b0 += 8) { /* the whole warp in step, for the shuffles */
        /* two blocks a lane, their loads first (bytes in flight bound a decode) */
        uint32_t a0[2], a1[2];
        float d[2];
        int64_t b[2];
        bool mine[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int64_t want = b0 + 4 * u + (lane >> 3);
            mine[u] = want < nb;
            b[u] = mine[u] ? want : nb - 1;
            const uint8_t *blk = row + b[u] * 66;
            a0[u] = u32_at(blk + 2 + 8 * g);
            a1[u] = u32_at(blk + 6 + 8 * g);
            d[u] = f16_at(blk);
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
            int w[8];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const uint64_t gv = grid[(a0[u] >> (8 * k)) & 255];
                const uint32_t s7 = (a1[u] >> (7 * k)) & 127, bits = s7 | (uint32_t)(__popc(s7) & 1) << 7;
                const uint32_t lo = sign_mask4(bits & 15), hi = sign_mask4(bits >> 4);
                w[2 * k] = (int)__vsub4((uint32_t)gv ^ lo, lo);
                w[2 * k + 1] = (int)__vsub4((uint32_t)(gv >> 32) ^ hi, hi);
            }
            const int ls = 2 * (int)(a1[u] >> 28) + 1;
#pragma unroll
            for (int t = 0; t < R; t++) {
                const int4 *xq = (const int4 *)(act + t * ldq + b[u] * QK_K + 32 * g);
                const int4 x0 = xq[0], x1 = xq[1];
                int s = __dp4a(w[0], x0.x, 0);
                s = __dp4a(w[1], x0.y, s);
                s = __dp4a(w[2], x0.z, s);
                s = __dp4a(w[3], x0.w, s);
                s = __dp4a(w[4], x1.x, s);
                s = __dp4a(w[5], x1.y, s);
                s = __dp4a(w[6], x1.z, s);
                s = __dp4a(w[7], x1.w, s);
                s *= ls;
                s += __shfl_xor_sync(0xffffffffu, s, 1);
                s += __shfl_xor_sync(0xffffffffu, s, 2);
                s += __shfl_xor_sync(0xffffffffu, s, 4);
                const float ad = ((const float *)(act + t * ldq + n))[b[u]];
                if (g == 0 && mine[u]) sum[t] += __fmul_rn(__fmul_rn(__fmul_rn(d[u], ad), (float)s), 0.125f);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < R; t++) {
        for (int off = 16; off > 0; off >>= 1) sum[t] += __shfl_xor_sync(0xffffffffu, sum[t], off);
        acc[t] = sum[t];
    }
}

/* The same for a Q2_K row: lane l takes quarter l % 4 of every eighth block (half
 * q / 2, the 16 values q % 2 of each of its four 2-bit planes: four scale groups), the
 * quarters' sums and mins meet in two shuffles, and the term d_act * d * sum -
 * d_act * dmin * mins goes to the lane of quarter 0. */
template <int R>
__device__ __forceinline__ void q2k_q8_dots(const uint8_t *row, int64_t n, const uint8_t *act, uint64_t ldq,
                                            float *acc) {
    const int lane = threadIdx.x & 31, q = lane & 3, half = q >> 1, j = q & 1;
    const int64_t nb = n / QK_K;
    float sum[R];
#pragma unroll
    for (int t = 0; t < R; t++) sum[t] = 0.0f;
    for (int64_t b0 = 0; b0 < nb; b0 += 8) { /* the whole warp in step, for the shuffles */
        const int64_t b = b0 + (lane >> 2) < nb ? b0 + (lane >> 2) : nb - 1;
        const bool mine = b0 + (lane >> 2) < nb;
        const uint8_t *blk = row + b * 84; /* 84-byte blocks: 4-byte aligned */
        const uint32_t *qs = (const uint32_t *)(blk + 16 + 32 * half + 16 * j);
        const uint32_t q0 = qs[0], q1 = qs[1], q2 = qs[2], q3 = qs[3];
        const uint32_t sc_lo = *(const uint32_t *)(blk + 8 * half), sc_hi = *(const uint32_t *)(blk + 8 * half + 4);
        int sc[4];
        sc[0] = (sc_lo >> (8 * j)) & 255;
        sc[1] = (sc_lo >> (8 * j + 16)) & 255;
        sc[2] = (sc_hi >> (8 * j)) & 255;
        sc[3] = (sc_hi >> (8 * j + 16)) & 255;
        const float d = f16_at(blk + 80), dmin = f16_at(blk + 82);
#pragma unroll
        for (int t = 0; t < R; t++) {
            const uint8_t *x = act + t * ldq + b * QK_K + 128 * half + 16 * j;
            const int16_t *bsums = (const int16_t *)(act + t * ldq + n + nb * 4) + b * 16 + 8 * half + j;
            int isum = 0, mins = 0;
#pragma unroll
            for (int s = 0; s < 4; s++) {
                const int4 xs = *(const int4 *)(x + 32 * s);
                int v = __dp4a((int)((q0 >> (2 * s)) & 0x03030303u), xs.x, 0);
                v = __dp4a((int)((q1 >> (2 * s)) & 0x03030303u), xs.y, v);
                v = __dp4a((int)((q2 >> (2 * s)) & 0x03030303u), xs.z, v);
                v = __dp4a((int)((q3 >> (2 * s)) & 0x03030303u), xs.w, v);
                isum += (sc[s] & 15) * v;
                mins += bsums[2 * s] * (sc[s] >> 4);
            }
            isum += __shfl_xor_sync(0xffffffffu, isum, 1);
            isum += __shfl_xor_sync(0xffffffffu, isum, 2);
            mins += __shfl_xor_sync(0xffffffffu, mins, 1);
            mins += __shfl_xor_sync(0xffffffffu, mins, 2);
            const float ad = ((const float *)(act + t * ldq + n))[b];
            if (q == 0 && mine)
                sum[t] += __fsub_rn(__fmul_rn(__fmul_rn(ad, d), (float)isum),
                                    __fmul_rn(__fmul_rn(ad, dmin), (float)mins));
        }
    }
#pragma unroll
    for (int t = 0; t < R; t++) {
        for (int off = 16; off > 0; off >>= 1) sum[t] += __shfl_xor_sync(0xffffffffu, sum[t], off);
        acc[t] = sum[t];
    }
}

template <int TYPE, int R>
__device__ __forceinline__ void q8_dots(const uint8_t *row, int64_t n, const uint8_t *act, uint64_t ldq,
                                        const uint64_t *grid, float *acc) {
    if constexpr (TYPE == T_IQ2_XXS) iq2xxs_q8_dots<R>(row, n, act, ldq, grid, acc);
    else q2k_q8_dots<R>(row, n, act, ldq, acc);
}

#endif
