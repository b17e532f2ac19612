/* cuda_mma.cu - the tensor-core tiles of products over many activation rows (prefill,
 * batched decode) for the weight types that hold bfloat16 values exactly: Q8_0 (its
 * int8 values, the block's scale applied to the block's sum), BF16, and F16 (as the sum
 * of two bfloat16: 11 bits of mantissa in two of 8). The F32 activations go in as the
 * sum of three bfloat16 (hi + mid + lo: all 24 bits of the mantissa), so each product
 * w * x is the three exact products w * hi, w * mid, w * lo, added in F32 by the tensor
 * cores (mma m16n8k16, F32 accumulation): the F32 product's accuracy, at three (F16:
 * five) tensor-core products per value, which still leaves the tiles bound by their
 * loads. Nothing in a sum depends on scheduling: the same bits every run.
 *
 * A thread block takes MT weight rows times NT activation rows, in steps of KT values:
 * the weights' step decoded into shared memory as bfloat16, the activations' three
 * planes (made once per product by split_kernel) copied beside them, four warps each
 * computing 32 x 32 of the tile. Products too small to fill the device split their
 * input into slices (blockIdx.z) whose partial sums are added in order afterwards. */
#include <stdint.h>

#include "cuda_decode.cuh"
#include "cuda_device.h"

#define MT DS4_CUDA_MMA_ROWS
#define NT 64
#define KT 64
#define PAD 8 /* bfloat16 values of padding a row: the fragments' loads hit 32 banks */
#define SROW (KT + PAD)
#define THREADS 128

__device__ __forceinline__ uint32_t bf16_bits(float v) { /* round to nearest even */
    const uint32_t u = __float_as_uint(v);
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
__device__ __forceinline__ float bf16_value(uint32_t h) { return __uint_as_float(h << 16); }

/* x (T rows, ldx apart, W values each) as three planes of bfloat16 [3][T][Wp]. */
__global__ void split_kernel(const float *__restrict__ x, uint64_t ldx, int T, uint64_t W, uint64_t Wp,
                             uint16_t *__restrict__ planes) {
    const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (uint64_t)T * W) return;
    const uint64_t t = i / W, k = i % W;
    const float v = x[t * ldx + k];
    const uint32_t hi = bf16_bits(v);
    const float r = v - bf16_value(hi); /* exact */
    const uint32_t mid = bf16_bits(r);
    const uint32_t lo = bf16_bits(r - bf16_value(mid));
    const uint64_t plane = (uint64_t)T * Wp, at = t * Wp + k;
    planes[at] = (uint16_t)hi;
    planes[plane + at] = (uint16_t)mid;
    planes[2 * plane + at] = (uint16_t)lo;
}

__device__ __forceinline__ void mma_bf16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* A step's weights as they lie in memory, a row every WROW bytes: Q8_0's two blocks
 * (68 bytes: 17 words, so the rows of a fragment's loads fall in different banks), or
 * 64 values of F16/BF16 (128 bytes and 16 of padding). */
template <int TYPE> struct w_row { enum { BYTES = TYPE == T_Q8_0 ? 68 : 128, STRIDE = TYPE == T_Q8_0 ? 68 : 144 }; };

/* Shared memory of a stage: the weights' bytes, then the activations' three planes. */
template <int TYPE> struct stage_of {
    enum { W = MT * w_row<TYPE>::STRIDE, X = 3 * NT * SROW * 2, BYTES = W + X };
};

__device__ __forceinline__ void copy_async(void *dst, const void *src, int bytes, bool live) {
    const uint32_t to = (uint32_t)__cvta_generic_to_shared(dst);
    if (bytes == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(src), "r"(live ? 16 : 0));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(to), "l"(src), "r"(live ? 4 : 0));
}
__device__ __forceinline__ void copy_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int PENDING> __device__ __forceinline__ void copy_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}

/* Queues the copies of step k0 into stage st: the weights' rows o0.. (zeros past n_out)
 * and the activations' rows t0.. (zeros past T). */
template <int TYPE>
__device__ __forceinline__ void load_step(uint8_t *st, const uint8_t *__restrict__ W, uint64_t row_bytes,
                                          uint64_t n_out, uint64_t o0, int64_t k0, const uint16_t *planes,
                                          uint64_t plane, uint64_t Wp, uint64_t xoff, int T, int t0) {
    constexpr int RB = w_row<TYPE>::BYTES, RS = w_row<TYPE>::STRIDE, PIECE = TYPE == T_Q8_0 ? 4 : 16;
    const uint64_t at = (uint64_t)k0 / 64 * RB; /* the step's first byte in a row */
    for (int i = threadIdx.x; i < MT * (RB / PIECE); i += THREADS) {
        const int r = i / (RB / PIECE), c = i % (RB / PIECE);
        const bool live = o0 + r < n_out;
        copy_async(st + r * RS + c * PIECE, W + (live ? (o0 + r) * row_bytes : 0) + at + c * PIECE, PIECE, live);
    }
    uint16_t *xs = (uint16_t *)(st + stage_of<TYPE>::W);
    for (int i = threadIdx.x; i < 3 * NT * (KT / 8); i += THREADS) {
        const int p = i / (NT * (KT / 8)), rem = i % (NT * (KT / 8)), t = rem / (KT / 8), c = rem % (KT / 8);
        const bool live = t0 + t < T;
        copy_async(xs + (p * NT + t) * SROW + 8 * c,
                   planes + p * plane + (uint64_t)(live ? t0 + t : 0) * Wp + xoff + k0 + 8 * c, 16, live);
    }
}

/* Two int8 weights as two bfloat16 (exact). */
__device__ __forceinline__ uint32_t s8x2_bf16(uint32_t two) {
    const float f0 = (float)(int)(int8_t)(two & 255), f1 = (float)(int)(int8_t)(two >> 8);
    return __float_as_uint(f0) >> 16 | (__float_as_uint(f1) & 0xffff0000u);
}

/* The A fragment (rows r, r + 8; values k, k + 1 and k + 8, k + 9) of plane p from a
 * stage's weight bytes (F16: plane 0 its bfloat16 rounding, 1 the rest). */
template <int TYPE>
__device__ __forceinline__ void a_fragment(const uint8_t *ws, int r, int k, uint32_t *hi, uint32_t *lo) {
    constexpr int RS = w_row<TYPE>::STRIDE;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int row = r + 8 * (q & 1), kq = k + 8 * (q >> 1);
        if constexpr (TYPE == T_Q8_0) {
            hi[q] = s8x2_bf16(*(const uint16_t *)(ws + row * RS + kq / 32 * 34 + 2 + kq % 32));
        } else {
            const uint32_t two = *(const uint32_t *)(ws + row * RS + 2 * kq);
            if constexpr (TYPE == T_BF16) {
                hi[q] = two;
            } else {
                const float f0 = __half2float(__ushort_as_half((unsigned short)(two & 0xffff)));
                const float f1 = __half2float(__ushort_as_half((unsigned short)(two >> 16)));
                const uint32_t h0 = bf16_bits(f0), h1 = bf16_bits(f1);
                hi[q] = h0 | h1 << 16;
                lo[q] = bf16_bits(f0 - bf16_value(h0)) | bf16_bits(f1 - bf16_value(h1)) << 16;
            }
        }
    }
}

/* The tile: y[t][o] (or slice z's partial sums) for the MT x NT block at (blockIdx.x,
 * blockIdx.y), over values [z span, (z + 1) span), two stages: the copies of the next
 * step in flight while this one multiplies. planes: split_kernel's, Wp apart. */
template <int TYPE>
__global__ void __launch_bounds__(THREADS)
mma_kernel(const uint8_t *__restrict__ W, uint64_t row_bytes, int64_t n, uint64_t n_out, const uint16_t *planes,
           uint64_t Wp, int T, int64_t span, float *__restrict__ y, uint64_t ldy, float *__restrict__ partial,
           uint64_t group_rows, uint64_t group_x) {
    extern __shared__ __align__(16) uint8_t smem[];
    constexpr int RS = w_row<TYPE>::STRIDE, SB = stage_of<TYPE>::BYTES;
    const uint64_t o0 = (uint64_t)blockIdx.x * MT;
    const int t0 = blockIdx.y * NT;
    const uint64_t xoff = group_rows ? o0 / group_rows * group_x : 0; /* group_rows: a multiple of MT */
    const uint64_t plane = (uint64_t)T * Wp;
    const int64_t k_begin = (int64_t)blockIdx.z * span, k_end = k_begin + span < n ? k_begin + span : n;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
    const int wm = (warp & 1) * 32, wn = (warp >> 1) * 32;
    float acc[2][4][4] = {};
    if (k_begin < k_end) load_step<TYPE>(smem, W, row_bytes, n_out, o0, k_begin, planes, plane, Wp, xoff, T, t0);
    copy_commit();
    for (int64_t k0 = k_begin, s = 0; k0 < k_end; k0 += KT, s ^= 1) {
        const uint8_t *ws = smem + s * SB;
        const uint16_t *xs = (const uint16_t *)(ws + stage_of<TYPE>::W);
        if (k0 + KT < k_end) {
            load_step<TYPE>(smem + (s ^ 1) * SB, W, row_bytes, n_out, o0, k0 + KT, planes, plane, Wp, xoff, T, t0);
            copy_commit();
            copy_wait<1>();
        } else {
            copy_wait<0>();
        }
        __syncthreads();
        /* Q8_0: each block's sum on its own, scaled into acc; the others straight in */
        float blk[2][4][4] = {};
#pragma unroll
        for (int kk = 0; kk < KT; kk += 16) {
            uint32_t a[2][2][4]; /* [m tile][plane] */
#pragma unroll
            for (int mt = 0; mt < 2; mt++) a_fragment<TYPE>(ws, wm + 16 * mt + g, kk + 2 * tig, a[mt][0], a[mt][1]);
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                if (t0 + wn + 8 * nt >= T) break; /* the warp's columns past the rows: nothing to add */
#pragma unroll
                for (int xp = 2; xp >= 0; xp--) { /* the small parts first */
                    const uint16_t *b = xs + (xp * NT + wn + 8 * nt + g) * SROW + kk + 2 * tig;
                    const uint32_t b0 = *(const uint32_t *)b, b1 = *(const uint32_t *)(b + 8);
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        if constexpr (TYPE == T_Q8_0) {
                            mma_bf16(blk[mt][nt], a[mt][0], b0, b1);
                        } else {
                            if (TYPE == T_F16 && xp < 2) mma_bf16(acc[mt][nt], a[mt][1], b0, b1); /* lo: hi, mid */
                            mma_bf16(acc[mt][nt], a[mt][0], b0, b1);
                        }
                    }
                }
            }
            if constexpr (TYPE == T_Q8_0)
                if (kk % 32 == 16) { /* a block ends: acc += its scale times its sum */
                    const int bk = kk / 32;
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        const int r = wm + 16 * mt + g;
                        const float s0 = __half2float(*(const __half *)(ws + r * RS + 34 * bk));
                        const float s1 = __half2float(*(const __half *)(ws + (r + 8) * RS + 34 * bk));
#pragma unroll
                        for (int nt = 0; nt < 4; nt++) {
                            acc[mt][nt][0] = fmaf(s0, blk[mt][nt][0], acc[mt][nt][0]);
                            acc[mt][nt][1] = fmaf(s0, blk[mt][nt][1], acc[mt][nt][1]);
                            acc[mt][nt][2] = fmaf(s1, blk[mt][nt][2], acc[mt][nt][2]);
                            acc[mt][nt][3] = fmaf(s1, blk[mt][nt][3], acc[mt][nt][3]);
#pragma unroll
                            for (int e = 0; e < 4; e++) blk[mt][nt][e] = 0.0f;
                        }
                    }
                }
        }
        __syncthreads(); /* the stage is refilled next */
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const uint64_t o = o0 + wm + 16 * mt + g + 8 * (e >> 1);
                const int t = t0 + wn + 8 * nt + 2 * tig + (e & 1);
                if (o >= n_out || t >= T) continue;
                if (partial) partial[((uint64_t)blockIdx.z * T + t) * n_out + o] = acc[mt][nt][e];
                else y[(uint64_t)t * ldy + o] = acc[mt][nt][e];
            }
}

typedef void (*mma_fn)(const uint8_t *, uint64_t, int64_t, uint64_t, const uint16_t *, uint64_t, int, int64_t, float *,
                       uint64_t, float *, uint64_t, uint64_t);

static mma_fn mma_for(uint32_t type) {
    switch (type) {
    case T_Q8_0: return mma_kernel<T_Q8_0>;
    case T_BF16: return mma_kernel<T_BF16>;
    case T_F16: return mma_kernel<T_F16>;
    }
    return NULL;
}

static int mma_stage_bytes(uint32_t type) {
    return type == T_Q8_0 ? (int)stage_of<T_Q8_0>::BYTES : (int)stage_of<T_F16>::BYTES;
}

cudaError_t ds4_cuda_mma_init(void) {
    const uint32_t types[] = {T_Q8_0, T_BF16, T_F16};
    cudaError_t e = cudaSuccess;
    for (int i = 0; i < 3 && e == cudaSuccess; i++)
        e = cudaFuncSetAttribute((const void *)mma_for(types[i]), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 2 * mma_stage_bytes(types[i]));
    return e;
}

bool ds4_cuda_mma_takes(uint32_t type, int64_t n) { return mma_for(type) && n % KT == 0; }

void ds4_cuda_mma(ds4_cuda *c, const ds4_cuda_product *q) {
    const uint64_t groups = q->group_rows ? (q->n_out + q->group_rows - 1) / q->group_rows : 1;
    const uint64_t W = (groups - 1) * q->group_x + (uint64_t)q->w.n, Wp = (W + 7) / 8 * 8;
    uint16_t *planes = (uint16_t *)ds4_cuda_grow_kept(c, (void **)&c->mma_x, &c->mma_x_cap,
                                                      3 * (size_t)q->T * Wp * sizeof(uint16_t));
    if (!planes) return;
    const uint64_t values = (uint64_t)q->T * W;
    split_kernel<<<(unsigned)((values + 255) / 256), 256, 0, c->stream>>>(q->x, q->ldx, q->T, W, Wp, planes);
    /* slices of the input where the tiles alone would leave the device idle */
    const uint64_t tiles = (q->n_out + MT - 1) / MT * (uint64_t)((q->T + NT - 1) / NT);
    int64_t slices = 1, span = q->w.n;
    if (tiles < (uint64_t)c->fill_blocks) {
        int64_t want = (int64_t)(((uint64_t)c->fill_blocks + tiles - 1) / tiles);
        while (want > 1 && (uint64_t)want * q->T * q->n_out > c->split_cap) want--;
        want = want > q->w.n / KT ? q->w.n / KT : want;
        span = (q->w.n / KT + want - 1) / want * KT;
        slices = (q->w.n + span - 1) / span;
    }
    const dim3 grid((unsigned)((q->n_out + MT - 1) / MT), (unsigned)((q->T + NT - 1) / NT), (unsigned)slices);
    mma_for(q->w.type)<<<grid, THREADS, 2 * mma_stage_bytes(q->w.type), c->stream>>>(c->arena + q->w.offset, q->w.row_bytes, q->w.n, q->n_out,
                                                        planes, Wp, q->T, span, q->y, q->ldy,
                                                        slices > 1 ? c->split : NULL, q->group_rows, q->group_x);
    if (slices > 1) ds4_cuda_sum_slices(c, (int)slices, q->T, q->n_out, q->y, q->ldy);
}
