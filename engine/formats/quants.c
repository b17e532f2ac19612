/* quants.c - see quants.h. */
#include "quants.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cpufeatures.h"
#include "numeric.h"
#include "util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---- Q8_0 ---- */

void ds4_quantize_row_q8_0_scalar(const float *x, block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *v = x + b * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(v[j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = ds4_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[b].qs[j] = (int8_t)roundf(v[j] * id);
    }
}

#if defined(__x86_64__)
/* roundf() semantics (ties away from zero) in AVX2, so the bytes match ggml's reference. */
__attribute__((target("avx2,fma,f16c"))) static void quantize_row_q8_0_avx2(const float *x,
                                                                            block_q8_0 *y,
                                                                            int64_t n) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *v = x + b * QK8_0;
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK8_0; j += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(v + j)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = ds4_f32_to_f16(d);
        const __m256 vid = _mm256_set1_ps(id);
        for (int j = 0; j < QK8_0; j += 8) {
            __m256 s = _mm256_mul_ps(_mm256_loadu_ps(v + j), vid);
            __m256 a = _mm256_andnot_ps(sign_mask, s);
            __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, t), half, _CMP_GE_OQ);
            t = _mm256_add_ps(t, _mm256_and_ps(up, one));
            t = _mm256_or_ps(t, _mm256_and_ps(s, sign_mask));
            __m256i q = _mm256_cvtps_epi32(t);
            __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
            __m128i w = _mm_packs_epi32(lo, hi);
            __m128i bytes = _mm_packs_epi16(w, w);
            _mm_storel_epi64((__m128i *)(y[b].qs + j), bytes);
        }
    }
}

__attribute__((target("avx2,f16c"))) static void f32_to_f16_row_f16c(const float *x, uint16_t *y,
                                                                    int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = ds4_f32_to_f16(x[i]);
}

__attribute__((target("avx2,f16c"))) static void f16_to_f32_row_f16c(const uint16_t *x, float *y,
                                                                    int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = ds4_f16_to_f32(x[i]);
}

/* Q8_0 and BF16 rows to F32: the matrix products read every non-F32 weight row through
 * these, so they must stream at memory speed (the scalar loops ran at a fraction of it). */
__attribute__((target("avx2,f16c"))) static void q8_0_to_f32_row_avx2(const uint8_t *src, float *y, int64_t n) {
    for (int64_t b = 0; b < n / QK8_0; b++, src += sizeof(block_q8_0), y += QK8_0) {
        uint16_t h;
        memcpy(&h, src, 2);
        const __m256 d = _mm256_set1_ps(ds4_f16_to_f32(h));
        for (int j = 0; j < QK8_0; j += 8) {
            const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(src + 2 + j)));
            _mm256_storeu_ps(y + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
        }
    }
}

__attribute__((target("avx2"))) static void bf16_to_f32_row_avx2(const uint8_t *src, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + 2 * i)));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        y[i] = ds4_bf16_to_f32(h);
    }
}
#endif

void ds4_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n) {
#if defined(__x86_64__)
    if (ds4_cpu_detect() >= DS4_CPU_AVX2) {
        quantize_row_q8_0_avx2(x, y, n);
        return;
    }
#endif
    ds4_quantize_row_q8_0_scalar(x, y, n);
}

void ds4_f32_to_f16_row_scalar(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ds4_f32_to_f16(x[i]);
}

void ds4_f16_to_f32_row_scalar(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ds4_f16_to_f32(x[i]);
}

void ds4_f32_to_f16_row(const float *x, uint16_t *y, int64_t n) {
#if defined(__x86_64__)
    if (ds4_cpu_detect() >= DS4_CPU_AVX2) {
        f32_to_f16_row_f16c(x, y, n);
        return;
    }
#endif
    ds4_f32_to_f16_row_scalar(x, y, n);
}

void ds4_f16_to_f32_row(const uint16_t *x, float *y, int64_t n) {
#if defined(__x86_64__)
    if (ds4_cpu_detect() >= DS4_CPU_AVX2) {
        f16_to_f32_row_f16c(x, y, n);
        return;
    }
#endif
    ds4_f16_to_f32_row_scalar(x, y, n);
}

/* Rows in a mapped file need not be aligned for their element type: go through memcpy. */
int ds4_row_to_f32(uint32_t type, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, s, (size_t)n * 4);
        return 0;
    case GGML_TYPE_F16:
#if defined(__x86_64__)
        if (ds4_cpu_detect() >= DS4_CPU_AVX2) {
            f16_to_f32_row_f16c((const uint16_t *)(const void *)s, dst, n); /* loads are unaligned */
            return 0;
        }
#endif
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = ds4_f16_to_f32(h);
        }
        return 0;
    case GGML_TYPE_BF16:
#if defined(__x86_64__)
        if (ds4_cpu_detect() >= DS4_CPU_AVX2) {
            bf16_to_f32_row_avx2(s, dst, n);
            return 0;
        }
#endif
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = ds4_bf16_to_f32(h);
        }
        return 0;
    case GGML_TYPE_Q8_0:
#if defined(__x86_64__)
        if (ds4_cpu_detect() >= DS4_CPU_AVX2) {
            q8_0_to_f32_row_avx2(s, dst, n);
            return 0;
        }
#endif
        for (int64_t b = 0; b < n / QK8_0; b++) {
            block_q8_0 blk;
            memcpy(&blk, s + b * sizeof blk, sizeof blk);
            const float d = ds4_f16_to_f32(blk.d);
            for (int j = 0; j < QK8_0; j++) dst[b * QK8_0 + j] = d * (float)blk.qs[j];
        }
        return 0;
    case GGML_TYPE_MXFP4:
        /* u8 E8M0 scale, then 16 bytes: low nibbles are elements 0-15, high nibbles 16-31 */
        for (int64_t b = 0; b < n / 32; b++) {
            const uint8_t *blk = s + b * 17;
            const float d = ds4_e8m0_to_f32(blk[0]);
            for (int j = 0; j < 16; j++) {
                dst[b * 32 + j] = ds4_fp4_e2m1_to_f32(blk[1 + j] & 15) * d;
                dst[b * 32 + 16 + j] = ds4_fp4_e2m1_to_f32(blk[1 + j] >> 4) * d;
            }
        }
        return 0;
    default:
        if (ds4_dequant_blocks(type, s, dst, n) == 0) return 0;
        return ds4_fail("cannot convert %s to f32 yet", ds4_type_name(type));
    }
}

int ds4_row_from_f32(uint32_t type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        return 0;
    case GGML_TYPE_F16:
        ds4_f32_to_f16_row(src, dst, n);
        return 0;
    case GGML_TYPE_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = ds4_f32_to_bf16(src[i]);
        return 0;
    }
    case GGML_TYPE_Q8_0:
        if (n % QK8_0) return ds4_fail("q8_0 rows need a multiple of 32 values, got %lld", (long long)n);
        ds4_quantize_row_q8_0(src, dst, n);
        return 0;
    default:
        return ds4_fail("cannot write %s tensors yet", ds4_type_name(type));
    }
}

void ds4_tensor_row(const gguf_tensor *W, uint64_t r, float *out) {
    const uint64_t n = W->ne[0];
    ds4_row_to_f32(W->type, (const uint8_t *)W->data + r * ds4_row_size(W->type, n), out, (int64_t)n);
}

float *ds4_tensor_f32(const gguf_tensor *W) {
    const uint64_t rows = W->ne[1] * W->ne[2] * W->ne[3];
    float *out = ds4_malloc(ds4_gguf_tensor_nelements(W) * sizeof *out);
    if (!out) return NULL;
    for (uint64_t r = 0; r < rows; r++) ds4_tensor_row(W, r, out + r * W->ne[0]);
    return out;
}
