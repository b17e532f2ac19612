/* vec.c - see vec.h. */
#include "vec.h"

#include <stdatomic.h>
#include <string.h>

#include "cpufeatures.h"
#include "numeric.h"
#include "ops.h"
#include "quants.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 s) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, uint64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float r = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, uint64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float r = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

/* dot_avx2 of two rows with four activation rows at once. dot_avx2 keeps four sums, one
 * per 8-float slot of every 32; here each slot is a pass of its own over the rows (eight
 * sums: two rows times four tokens, which the sixteen registers hold with the loads), so
 * every sum sees dot_avx2's multiply-adds in its order and every result is its bits,
 * while a loaded weight serves four tokens and a loaded activation two rows. */
__attribute__((target("avx2,fma"))) static void dot2x4_avx2(const float *w0, const float *w1, const float *x,
                                                             uint64_t ldx, uint64_t n, float out[2][4]) {
    __m256 s[4][2][4]; /* slot, row, token */
    const uint64_t n32 = n / 32 * 32;
    for (int k = 0; k < 4; k++) {
        __m256 acc[2][4];
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 4; t++) acc[r][t] = _mm256_setzero_ps();
        for (uint64_t i = 8 * (uint64_t)k; i < n32; i += 32) {
            const __m256 a = _mm256_loadu_ps(w0 + i), b = _mm256_loadu_ps(w1 + i);
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                const __m256 xv = _mm256_loadu_ps(x + t * ldx + i);
                acc[0][t] = _mm256_fmadd_ps(a, xv, acc[0][t]);
                acc[1][t] = _mm256_fmadd_ps(b, xv, acc[1][t]);
            }
        }
        if (k == 0) /* the first sum goes on over the 8s left */
            for (uint64_t i = n32; i + 8 <= n; i += 8) {
                const __m256 a = _mm256_loadu_ps(w0 + i), b = _mm256_loadu_ps(w1 + i);
                for (int t = 0; t < 4; t++) {
                    const __m256 xv = _mm256_loadu_ps(x + t * ldx + i);
                    acc[0][t] = _mm256_fmadd_ps(a, xv, acc[0][t]);
                    acc[1][t] = _mm256_fmadd_ps(b, xv, acc[1][t]);
                }
            }
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 4; t++) s[k][r][t] = acc[r][t];
    }
    const uint64_t tail = n32 + (n - n32) / 8 * 8;
    const float *w[2] = {w0, w1};
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 4; t++) {
            const float *a = w[r], *b = x + t * ldx;
            float v = hsum256(_mm256_add_ps(_mm256_add_ps(s[0][r][t], s[1][r][t]), _mm256_add_ps(s[2][r][t], s[3][r][t])));
            for (uint64_t i = tail; i < n; i++) v += a[i] * b[i];
            out[r][t] = v;
        }
}

/* dot_avx512 of two rows with four activation rows at once: each pair keeps its own two
 * accumulators and adds in dot_avx512's order, so every result equals the single dot
 * product bit for bit, while a loaded weight serves four tokens and a loaded activation
 * two rows (the single dot product loads two floats per multiply-add and waits on loads). */
__attribute__((target("avx512f"))) static void dot2x4_avx512(const float *w0, const float *w1, const float *x,
                                                            uint64_t ldx, uint64_t n, float out[2][4]) {
    __m512 s0[2][4], s1[2][4];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 4; t++) s0[r][t] = s1[r][t] = _mm512_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a0 = _mm512_loadu_ps(w0 + i), b0 = _mm512_loadu_ps(w0 + i + 16);
        const __m512 a1 = _mm512_loadu_ps(w1 + i), b1 = _mm512_loadu_ps(w1 + i + 16);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const __m512 xa = _mm512_loadu_ps(x + t * ldx + i), xb = _mm512_loadu_ps(x + t * ldx + i + 16);
            s0[0][t] = _mm512_fmadd_ps(a0, xa, s0[0][t]);
            s1[0][t] = _mm512_fmadd_ps(b0, xb, s1[0][t]);
            s0[1][t] = _mm512_fmadd_ps(a1, xa, s0[1][t]);
            s1[1][t] = _mm512_fmadd_ps(b1, xb, s1[1][t]);
        }
    }
    for (; i + 16 <= n; i += 16)
        for (int t = 0; t < 4; t++) {
            const __m512 xa = _mm512_loadu_ps(x + t * ldx + i);
            s0[0][t] = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i), xa, s0[0][t]);
            s0[1][t] = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + i), xa, s0[1][t]);
        }
    for (int t = 0; t < 4; t++) {
        const float *xt = x + t * ldx;
        float r0 = _mm512_reduce_add_ps(_mm512_add_ps(s0[0][t], s1[0][t]));
        float r1 = _mm512_reduce_add_ps(_mm512_add_ps(s0[1][t], s1[1][t]));
        for (uint64_t k = i; k < n; k++) {
            r0 += w0[k] * xt[k];
            r1 += w1[k] * xt[k];
        }
        out[0][t] = r0;
        out[1][t] = r1;
    }
}
#endif

/* ---- a weight row of F16 or Q8_0 times F32 activations, without a dequantized copy ----
 *
 * Each kernel converts the weights in registers exactly as ds4_row_to_f32 does (F16
 * widening is exact; a Q8_0 weight is its scale times its integer, rounded once) and
 * adds the products in the order of the same level's dot product over the converted
 * row, so a product gives the same bits whether the matmul converts the row first (many
 * activation rows) or reads it in place (one or two): a row's result never depends on
 * how many rows share the product. */

/* Bytes ahead to prefetch: hardware prefetchers stop at 4 KiB page boundaries, and the
 * weights are a file mapping of 4 KiB pages. A near prefetch into L1 and a far one into
 * L2: the L1's few fill buffers alone keep too few lines in flight to stream at the
 * memory's rate while the core converts (5% more from memory on the Flash head here).
 * The AVX-512 F16 and Q8_0 rows prefetch; the others are the portable fallbacks. */
#define PREFETCH_NEAR 2048
#define PREFETCH_FAR 16384

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) static inline __m256 f16x8(const uint16_t *h) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* dot_avx2's order: four accumulators over 32, one over the 8s left, then the tail. */
__attribute__((target("avx2,fma,f16c"))) static float rowdot_f16_avx2(const void *row, const float *x, uint64_t n) {
    const uint16_t *h = row;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(f16x8(h + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(f16x8(h + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(f16x8(h + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(f16x8(h + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(f16x8(h + i), _mm256_loadu_ps(x + i), s0);
    float r = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) r += ds4_f16_to_f32(h[i]) * x[i];
    return r;
}

/* A Q8_0 block is 32 weights: one pass of dot_avx2's loop. */
__attribute__((target("avx2,fma,f16c"))) static float rowdot_q8_0_avx2(const void *row, const float *x, uint64_t n) {
    const uint8_t *p = row;
    __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (uint64_t b = 0; b < n / QK8_0; b++, p += sizeof(block_q8_0), x += QK8_0) {
        uint16_t h;
        memcpy(&h, p, 2);
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(h));
        for (int j = 0; j < 4; j++) {
            const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 2 + 8 * j))));
            s[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, q), _mm256_loadu_ps(x + 8 * j), s[j]);
        }
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
}

/* dot_avx512's order: two accumulators over 32, one over the 16s left, then the tail. */
__attribute__((target("avx512f,f16c"))) static float rowdot_f16_avx512(const void *row, const float *x, uint64_t n) {
    const uint16_t *h = row;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(h + i) + PREFETCH_NEAR, _MM_HINT_T0);
        _mm_prefetch((const char *)(h + i) + PREFETCH_FAR, _MM_HINT_T2);
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i + 16))),
                             _mm512_loadu_ps(x + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))), _mm512_loadu_ps(x + i), s0);
    float r = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) r += ds4_f16_to_f32(h[i]) * x[i];
    return r;
}

/* One Q8_0 block, its weights scaled as ds4_row_to_f32 scales them, into the two
 * accumulators of dot_avx512 (first half, second half). */
__attribute__((target("avx512f,f16c"))) static inline void q8_0_block_avx512(const uint8_t *p, float d, const float *x,
                                                                           __m512 *s0, __m512 *s1) {
    const __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 2))));
    const __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 18))));
    const __m512 dv = _mm512_set1_ps(d);
    *s0 = _mm512_fmadd_ps(_mm512_mul_ps(dv, q0), _mm512_loadu_ps(x), *s0);
    *s1 = _mm512_fmadd_ps(_mm512_mul_ps(dv, q1), _mm512_loadu_ps(x + 16), *s1);
}

/* Sixteen blocks at a time: their F16 scales come in one gather and one conversion and
 * are read back as broadcast loads, since converting and broadcasting each block's scale
 * took as many shuffle-port operations as its 32 weights. */
__attribute__((target("avx512f,f16c"))) static float rowdot_q8_0_avx512(const void *row, const float *x,
                                                                      uint64_t n) {
    const uint8_t *p = row;
    const uint64_t blocks = n / QK8_0;
    const __m512i scale_at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32((int)sizeof(block_q8_0)));
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    float d[16];
    uint64_t b = 0;
    for (; b + 16 <= blocks; b += 16, p += 16 * sizeof(block_q8_0), x += 16 * QK8_0) {
        /* four bytes at each block's start: its scale, then two weights of the same row */
        const __m512i words = _mm512_i32gather_epi32(scale_at, p, 1);
        _mm512_storeu_ps(d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words)));
        for (int k = 0; k < 16; k++) {
            const uint8_t *pk = p + k * sizeof(block_q8_0);
            if (!(k & 1)) {
                _mm_prefetch((const char *)pk + PREFETCH_NEAR, _MM_HINT_T0);
                _mm_prefetch((const char *)pk + PREFETCH_FAR, _MM_HINT_T2);
            }
            q8_0_block_avx512(pk, d[k], x + k * QK8_0, &s0, &s1);
        }
    }
    for (; b < blocks; b++, p += sizeof(block_q8_0), x += QK8_0) {
        uint16_t h;
        memcpy(&h, p, 2);
        q8_0_block_avx512(p, _cvtsh_ss(h), x, &s0, &s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#endif

#if defined(__x86_64__)
/* Two stored Q8_0 rows times four activation rows: dot2x4_avx2 on the rows as
 * ds4_row_to_f32 converts them, each slot's eight weights of a block converted in
 * registers in that slot's pass (every weight once), so the converted rows are never
 * stored and read back; every result is dot_avx2's bits over the converted row. */
__attribute__((target("avx2,fma,f16c"))) static void rowdot2x4_q8_0_avx2(const void *r0, const void *r1, const float *x,
                                                                         uint64_t ldx, uint64_t n, float out[2][4]) {
    const uint8_t *row[2] = {r0, r1};
    const uint64_t blocks = n / QK8_0;
    __m256 s[4][2][4]; /* slot, row, token */
    for (int k = 0; k < 4; k++) {
        __m256 acc[2][4];
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 4; t++) acc[r][t] = _mm256_setzero_ps();
        for (uint64_t b = 0; b < blocks; b++) {
            __m256 w[2];
            for (int r = 0; r < 2; r++) {
                const uint8_t *p = row[r] + b * sizeof(block_q8_0);
                uint16_t h;
                memcpy(&h, p, 2);
                const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 2 + 8 * k))));
                w[r] = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(h)), q);
            }
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                const __m256 xv = _mm256_loadu_ps(x + t * ldx + b * QK8_0 + 8 * k);
                acc[0][t] = _mm256_fmadd_ps(w[0], xv, acc[0][t]);
                acc[1][t] = _mm256_fmadd_ps(w[1], xv, acc[1][t]);
            }
        }
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 4; t++) s[k][r][t] = acc[r][t];
    }
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 4; t++)
            out[r][t] = hsum256(_mm256_add_ps(_mm256_add_ps(s[0][r][t], s[1][r][t]), _mm256_add_ps(s[2][r][t], s[3][r][t])));
}

/* The same for dot2x4_avx512: a block is one pass of its loop, both halves converted
 * once for the four tokens. */
__attribute__((target("avx512f,f16c"))) static void rowdot2x4_q8_0_avx512(const void *r0, const void *r1, const float *x,
                                                                        uint64_t ldx, uint64_t n, float out[2][4]) {
    const uint8_t *row[2] = {r0, r1};
    const uint64_t blocks = n / QK8_0;
    __m512 s0[2][4], s1[2][4];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 4; t++) s0[r][t] = s1[r][t] = _mm512_setzero_ps();
    for (uint64_t b = 0; b < blocks; b++) {
        __m512 lo[2], hi[2];
        for (int r = 0; r < 2; r++) {
            const uint8_t *p = row[r] + b * sizeof(block_q8_0);
            if (!(b & 1)) {
                _mm_prefetch((const char *)p + PREFETCH_NEAR, _MM_HINT_T0);
                _mm_prefetch((const char *)p + PREFETCH_FAR, _MM_HINT_T2);
            }
            uint16_t h;
            memcpy(&h, p, 2);
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(h));
            lo[r] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 2)))));
            hi[r] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 18)))));
        }
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const float *xt = x + t * ldx + b * QK8_0;
            const __m512 xa = _mm512_loadu_ps(xt), xb = _mm512_loadu_ps(xt + 16);
            for (int r = 0; r < 2; r++) {
                s0[r][t] = _mm512_fmadd_ps(lo[r], xa, s0[r][t]);
                s1[r][t] = _mm512_fmadd_ps(hi[r], xb, s1[r][t]);
            }
        }
    }
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 4; t++) out[r][t] = _mm512_reduce_add_ps(_mm512_add_ps(s0[r][t], s1[r][t]));
}
#endif

ds4_rowdot2x4_fn ds4_rowdot2x4_for_level(uint32_t type, int level) {
    if (type != GGML_TYPE_Q8_0 || level > (int)ds4_cpu_detect()) return NULL;
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512) return rowdot2x4_q8_0_avx512;
    if (level == DS4_CPU_AVX2) return rowdot2x4_q8_0_avx2;
#endif
    return NULL;
}

ds4_rowdot_fn ds4_rowdot_for_level(uint32_t type, int level) {
    if (level > (int)ds4_cpu_detect() || (type != GGML_TYPE_F16 && type != GGML_TYPE_Q8_0)) return NULL;
    const bool q8 = type == GGML_TYPE_Q8_0;
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512) return q8 ? rowdot_q8_0_avx512 : rowdot_f16_avx512;
    if (level == DS4_CPU_AVX2) return q8 ? rowdot_q8_0_avx2 : rowdot_f16_avx2;
#endif
    return level == DS4_CPU_SCALAR ? (q8 ? ds4_rowdot_q8_0_scalar : ds4_rowdot_f16_scalar) : NULL;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void axpy_avx2(float a, const float *x, float *y, uint64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

__attribute__((target("avx512f"))) static void axpy_avx512(float a, const float *x, float *y, uint64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(va, _mm512_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

ds4_axpy_fn ds4_axpy_for_level(int level) {
    if (level > (int)ds4_cpu_detect()) return NULL;
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512) return axpy_avx512;
    if (level == DS4_CPU_AVX2) return axpy_avx2;
#endif
    return level == DS4_CPU_SCALAR ? ds4_axpy_scalar : NULL;
}

void ds4_axpy(float a, const float *x, float *y, uint64_t n) {
    static _Atomic(ds4_axpy_fn) best;
    ds4_axpy_fn fn = atomic_load(&best);
    if (!fn) atomic_store(&best, fn = ds4_axpy_for_level((int)ds4_cpu_detect()));
    fn(a, x, y, n);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void weighted_sum_avx2(float *out, const float *const *rows, const float *w,
                                                              int n_rows, uint64_t n, bool from_zero) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 acc = _mm256_mul_ps(_mm256_set1_ps(w[0]), _mm256_loadu_ps(rows[0] + i));
        if (from_zero) acc = _mm256_add_ps(_mm256_setzero_ps(), acc);
        for (int r = 1; r < n_rows; r++)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(w[r]), _mm256_loadu_ps(rows[r] + i)));
        _mm256_storeu_ps(out + i, acc);
    }
    const float *tail[65];
    for (int r = 0; r < n_rows; r++) tail[r] = rows[r] + i;
    ds4_weighted_sum_scalar(out + i, tail, w, n_rows, n - i, from_zero);
}

__attribute__((target("avx512f"))) static void weighted_sum_avx512(float *out, const float *const *rows,
                                                                   const float *w, int n_rows, uint64_t n,
                                                                   bool from_zero) {
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 acc = _mm512_mul_ps(_mm512_set1_ps(w[0]), _mm512_loadu_ps(rows[0] + i));
        if (from_zero) acc = _mm512_add_ps(_mm512_setzero_ps(), acc);
        for (int r = 1; r < n_rows; r++)
            acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(w[r]), _mm512_loadu_ps(rows[r] + i)));
        _mm512_storeu_ps(out + i, acc);
    }
    const float *tail[65];
    for (int r = 0; r < n_rows; r++) tail[r] = rows[r] + i;
    ds4_weighted_sum_scalar(out + i, tail, w, n_rows, n - i, from_zero);
}
#endif

ds4_weighted_sum_fn ds4_weighted_sum_for_level(int level) {
    if (level > (int)ds4_cpu_detect()) return NULL;
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512) return weighted_sum_avx512;
    if (level == DS4_CPU_AVX2) return weighted_sum_avx2;
#endif
    return level == DS4_CPU_SCALAR ? ds4_weighted_sum_scalar : NULL;
}

void ds4_weighted_sum(float *out, const float *const *rows, const float *w, int n_rows, uint64_t n, bool from_zero) {
    static _Atomic(ds4_weighted_sum_fn) best;
    ds4_weighted_sum_fn fn = atomic_load(&best);
    if (!fn) atomic_store(&best, fn = ds4_weighted_sum_for_level((int)ds4_cpu_detect()));
    fn(out, rows, w, n_rows, n, from_zero);
}

ds4_dot2x4_fn ds4_dot2x4_for_level(int level) {
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512 && ds4_cpu_detect() >= DS4_CPU_AVX512) return dot2x4_avx512;
    if (level == DS4_CPU_AVX2 && ds4_cpu_detect() >= DS4_CPU_AVX2) return dot2x4_avx2;
#endif
    (void)level;
    return NULL;
}

ds4_dot_fn ds4_dot_for_level(int level) {
    if (level > (int)ds4_cpu_detect()) return NULL;
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512) return dot_avx512;
    if (level == DS4_CPU_AVX2) return dot_avx2;
#endif
    return level == DS4_CPU_SCALAR ? ds4_dot_scalar : NULL;
}

float ds4_dot(const float *a, const float *b, uint64_t n) {
    static _Atomic(ds4_dot_fn) best;
    ds4_dot_fn fn = atomic_load(&best);
    if (!fn) atomic_store(&best, fn = ds4_dot_for_level((int)ds4_cpu_detect()));
    return fn(a, b, n);
}

