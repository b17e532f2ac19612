/* ops.c - see ops.h. */
#include "ops.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "numeric.h"
#include "profile.h"
#include "qdot.h"
#include "quants.h"
#include "threads.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

float ds4_dot_scalar(const float *a, const float *b, uint64_t n) {
    float s = 0.0f;
    for (uint64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

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

/* ---- a weight row of F16 or Q8_0 times F32 activations, without a dequantized copy ---- */

/* Bytes ahead to prefetch: hardware prefetchers stop at 4 KiB page boundaries, and the
 * weights are a file mapping of 4 KiB pages. A near prefetch into L1 and a far one into
 * L2: the L1's few fill buffers alone keep too few lines in flight to stream at the
 * memory's rate while the core converts (5% more from memory on the Flash head here).
 * The AVX-512 F16 and Q8_0 rows prefetch; the others are the portable fallbacks. */
#define PREFETCH_NEAR 2048
#define PREFETCH_FAR 16384

static float rowdot_f16_scalar(const void *row, const float *x, uint64_t n) {
    const uint8_t *p = row;
    float s = 0.0f;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        s += ds4_f16_to_f32(h) * x[i];
    }
    return s;
}

/* Per block: the sum of q * x, then times the block's scale. */
static float rowdot_q8_0_scalar(const void *row, const float *x, uint64_t n) {
    const uint8_t *p = row;
    float s = 0.0f;
    for (uint64_t b = 0; b < n / QK8_0; b++, p += sizeof(block_q8_0), x += QK8_0) {
        uint16_t h;
        memcpy(&h, p, 2);
        float bs = 0.0f;
        for (int j = 0; j < QK8_0; j++) bs += (float)(int8_t)p[2 + j] * x[j];
        s += ds4_f16_to_f32(h) * bs;
    }
    return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) static float rowdot_f16_avx2(const void *row, const float *x, uint64_t n) {
    const uint16_t *h = row;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8))),
                             _mm256_loadu_ps(x + i + 8), s1);
    }
    float r = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) r += ds4_f16_to_f32(h[i]) * x[i];
    return r;
}

__attribute__((target("avx2,fma,f16c"))) static float rowdot_q8_0_avx2(const void *row, const float *x, uint64_t n) {
    const uint8_t *p = row;
    __m256 acc = _mm256_setzero_ps();
    for (uint64_t b = 0; b < n / QK8_0; b++, p += sizeof(block_q8_0), x += QK8_0) {
        uint16_t h;
        memcpy(&h, p, 2);
        __m256 bs = _mm256_setzero_ps();
        for (int j = 0; j < QK8_0; j += 8) {
            const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 2 + j))));
            bs = _mm256_fmadd_ps(q, _mm256_loadu_ps(x + j), bs);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(h)), bs, acc);
    }
    return hsum256(acc);
}

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
    float r = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) r += ds4_f16_to_f32(h[i]) * x[i];
    return r;
}

__attribute__((target("avx512f,f16c"))) static inline __m512 q8_0_block_avx512(const uint8_t *p, const float *x) {
    const __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 2))));
    const __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 18))));
    return _mm512_fmadd_ps(q1, _mm512_loadu_ps(x + 16), _mm512_mul_ps(q0, _mm512_loadu_ps(x)));
}

/* Sixteen blocks at a time: their F16 scales come in one gather and one conversion and
 * are read back as broadcast loads, since converting and broadcasting each block's scale
 * took as many shuffle-port operations as its 32 weights. Two accumulators, so one chain
 * of multiply-adds does not wait on its own latency. */
__attribute__((target("avx512f,f16c"))) static float rowdot_q8_0_avx512(const void *row, const float *x,
                                                                      uint64_t n) {
    const uint8_t *p = row;
    const uint64_t blocks = n / QK8_0;
    const __m512i scale_at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32((int)sizeof(block_q8_0)));
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    float d[16];
    uint64_t b = 0;
    for (; b + 16 <= blocks; b += 16, p += 16 * sizeof(block_q8_0), x += 16 * QK8_0) {
        /* four bytes at each block's start: its scale, then two weights of the same row */
        const __m512i words = _mm512_i32gather_epi32(scale_at, p, 1);
        _mm512_storeu_ps(d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words)));
        for (int k = 0; k < 16; k += 2) {
            const uint8_t *pk = p + k * sizeof(block_q8_0);
            _mm_prefetch((const char *)pk + PREFETCH_NEAR, _MM_HINT_T0);
            _mm_prefetch((const char *)pk + PREFETCH_FAR, _MM_HINT_T2);
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(d[k]), q8_0_block_avx512(pk, x + k * QK8_0), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(d[k + 1]),
                                   q8_0_block_avx512(pk + sizeof(block_q8_0), x + (k + 1) * QK8_0), acc1);
        }
    }
    for (; b < blocks; b++, p += sizeof(block_q8_0), x += QK8_0) {
        uint16_t h;
        memcpy(&h, p, 2);
        acc0 = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(h)), q8_0_block_avx512(p, x), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#endif

ds4_rowdot_fn ds4_rowdot_for_level(uint32_t type, int level) {
    if (level > (int)ds4_cpu_detect() || (type != GGML_TYPE_F16 && type != GGML_TYPE_Q8_0)) return NULL;
    const bool q8 = type == GGML_TYPE_Q8_0;
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512) return q8 ? rowdot_q8_0_avx512 : rowdot_f16_avx512;
    if (level == DS4_CPU_AVX2) return q8 ? rowdot_q8_0_avx2 : rowdot_f16_avx2;
#endif
    return level == DS4_CPU_SCALAR ? (q8 ? rowdot_q8_0_scalar : rowdot_f16_scalar) : NULL;
}

static ds4_rowdot_fn rowdot_best(uint32_t type) {
    static ds4_rowdot_fn best[2];
    const int k = type == GGML_TYPE_Q8_0;
    if (type != GGML_TYPE_F16 && type != GGML_TYPE_Q8_0) return NULL;
    if (!best[k]) best[k] = ds4_rowdot_for_level(type, (int)ds4_cpu_detect());
    return best[k];
}

/* y += a * x, a multiply then an add per element (no FMA), so every level gives the
 * scalar loop's bits: attention outputs feed discrete top-k choices downstream. */
void ds4_axpy_scalar(float a, const float *x, float *y, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) y[i] += a * x[i];
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
    static ds4_axpy_fn fn;
    if (!fn) fn = ds4_axpy_for_level((int)ds4_cpu_detect());
    fn(a, x, y, n);
}

/* out[i] = w0*r0[i] + w1*r1[i] + ..., each product rounded, then added left to right
 * (no FMA; from +0 when from_zero): every level gives the scalar loop's bits, since the
 * streams of the hyper-connections feed every later choice. */
void ds4_weighted_sum_scalar(float *out, const float *const *rows, const float *w, int n_rows, uint64_t n,
                             bool from_zero) {
    for (uint64_t i = 0; i < n; i++) {
        float acc = from_zero ? 0.0f + w[0] * rows[0][i] : w[0] * rows[0][i];
        for (int r = 1; r < n_rows; r++) acc += w[r] * rows[r][i];
        out[i] = acc;
    }
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

ds4_dot_fn ds4_dot_for_level(int level) {
    if (level > (int)ds4_cpu_detect()) return NULL;
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512) return dot_avx512;
    if (level == DS4_CPU_AVX2) return dot_avx2;
#endif
    return level == DS4_CPU_SCALAR ? ds4_dot_scalar : NULL;
}

float ds4_dot(const float *a, const float *b, uint64_t n) {
    static ds4_dot_fn fn;
    if (!fn) fn = ds4_dot_for_level((int)ds4_cpu_detect());
    return fn(a, b, n);
}

/* Whether ds4_dot is dot_avx512, whose results dot2x4_avx512 reproduces. */
static bool blocked_dot_available(void) {
#if defined(__x86_64__)
    return ds4_dot_for_level((int)ds4_cpu_detect()) == dot_avx512;
#else
    return false;
#endif
}

static ds4_act_mode act_mode = DS4_ACT_AUTO;

#define ROWDOT_MAX_T 2 /* activation rows up to which F16/Q8_0 rows are not converted first */

void ds4_set_act_mode(ds4_act_mode mode) { act_mode = mode; }
ds4_act_mode ds4_get_act_mode(void) { return act_mode; }

int ds4_act_mode_from_name(const char *name) {
    return !strcmp(name, "auto") ? DS4_ACT_AUTO : !strcmp(name, "f32") ? DS4_ACT_F32 : !strcmp(name, "q8") ? DS4_ACT_Q8 : -1;
}

/* The int8 kernel a matrix product over W uses under the current mode, or NULL for
 * dequantized rows times F32 activations. */
static ds4_qdot_fn int8_kernel(uint32_t type) {
    if (act_mode == DS4_ACT_F32 || (act_mode == DS4_ACT_AUTO && type == GGML_TYPE_Q8_0)) return NULL;
    return ds4_qdot_best(type);
}

typedef struct {
    ds4_matmul_part p;
    ds4_qdot_fn qdot;     /* NULL: F32 path */
    const uint8_t *act;   /* p.T quantized activation rows */
    size_t act_row_bytes;
    bool blocked_dot;     /* F32 path: rows in pairs, tokens in fours through dot2x4_avx512 */
} matmul_job;

/* Per-thread buffers that only grow, so a matrix product allocates nothing once warm
 * (a decoded token runs hundreds of them). Pool threads live as long as the process. */
static _Thread_local void *scratch_mem[2];
static _Thread_local size_t scratch_cap[2];

static void *scratch(int k, size_t bytes) {
    if (bytes > scratch_cap[k]) {
        void *grown = realloc(scratch_mem[k], bytes);
        if (!grown) return NULL;
        scratch_mem[k] = grown;
        scratch_cap[k] = bytes;
    }
    return scratch_mem[k];
}
static float *scratch_floats(uint64_t n) { return scratch(0, n * sizeof(float)); }
static uint8_t *scratch_bytes(size_t n) { return scratch(1, n); }

/* Output rows [begin, end) of one product. */
static void matmul_rows(const matmul_job *j, uint64_t begin, uint64_t end) {
    const ds4_matmul_part *p = &j->p;
    const uint64_t n = p->W->ne[0], row_bytes = ggml_row_size(p->W->type, n);
    if (j->qdot) {
        for (uint64_t o = begin; o < end; o++) {
            const uint8_t *w = (const uint8_t *)p->W->data + (p->row0 + o) * row_bytes;
            for (int t = 0; t < p->T; t++)
                p->y[(uint64_t)t * p->ldy + o] = j->qdot(w, j->act + (size_t)t * j->act_row_bytes, (int64_t)n);
        }
        return;
    }
    /* A few activation rows: multiply straight from the stored row; more: convert the
     * row once and reuse it for every activation row. */
    const ds4_rowdot_fn rowdot = p->T <= ROWDOT_MAX_T ? rowdot_best(p->W->type) : NULL;
    if (rowdot) {
        for (uint64_t o = begin; o < end; o++) {
            const uint8_t *w = (const uint8_t *)p->W->data + (p->row0 + o) * row_bytes;
            for (int t = 0; t < p->T; t++) p->y[(uint64_t)t * p->ldy + o] = rowdot(w, p->x + (uint64_t)t * p->ldx, n);
        }
        return;
    }
    /* Rows two at a time, so four activation rows at a time go through dot2x4 where the
     * CPU runs dot_avx512; what is left over goes through ds4_dot. */
    const bool direct = p->W->type == GGML_TYPE_F32;
    float *tmp = direct ? NULL : scratch_floats(2 * n);
    for (uint64_t o = begin; o < end; o += 2) {
        const int rows = end - o >= 2 ? 2 : 1;
        const float *w[2] = {NULL, NULL};
        for (int r = 0; r < rows; r++) {
            const uint8_t *src = (const uint8_t *)p->W->data + (p->row0 + o + (uint64_t)r) * row_bytes;
            w[r] = (const float *)(const void *)src;
            if (!direct) {
                ggml_row_to_f32(p->W->type, src, tmp + (uint64_t)r * n, (int64_t)n);
                w[r] = tmp + (uint64_t)r * n;
            }
        }
        int t = 0;
#if defined(__x86_64__)
        if (rows == 2 && j->blocked_dot)
            for (; t + 4 <= p->T; t += 4) {
                float out[2][4];
                dot2x4_avx512(w[0], w[1], p->x + (uint64_t)t * p->ldx, p->ldx, n, out);
                for (int k = 0; k < 4; k++)
                    for (int r = 0; r < 2; r++) p->y[(uint64_t)(t + k) * p->ldy + o + (uint64_t)r] = out[r][k];
            }
#endif
        for (; t < p->T; t++)
            for (int r = 0; r < rows; r++)
                p->y[(uint64_t)t * p->ldy + o + (uint64_t)r] = ds4_dot(w[r], p->x + (uint64_t)t * p->ldx, n);
    }
}

/* The products of one batch, cut into chunks of rows (`unit`: where each part's chunks
 * begin), which the threads share as one loop. */
typedef struct {
    const matmul_job *jobs;
    const uint64_t *unit; /* n + 1 entries */
    const uint64_t *grain;
    int n;
} batch_job;

static void batch_units(void *arg, uint64_t begin, uint64_t end, int thread) {
    (void)thread;
    const batch_job *b = arg;
    int k = 0;
    for (uint64_t u = begin; u < end; u++) {
        while (u >= b->unit[k + 1]) k++;
        const uint64_t r0 = (u - b->unit[k]) * b->grain[k], n_out = b->jobs[k].p.n_out;
        matmul_rows(&b->jobs[k], r0, r0 + b->grain[k] < n_out ? r0 + b->grain[k] : n_out);
    }
}

static ds4_matmul_observer observer;
static void *observer_ctx;

void ds4_matmul_set_observer(ds4_matmul_observer fn, void *ctx) {
    observer = fn;
    observer_ctx = ctx;
}

#define BATCH_MAX 64 /* products in one loop (ds4_matmul_batch) */

void ds4_matmul_batch(const ds4_matmul_part *parts, int n, int n_threads) {
    matmul_job jobs[BATCH_MAX];
    uint64_t unit[BATCH_MAX + 1], grain[BATCH_MAX], act_at[BATCH_MAX], work = 0;
    size_t act_bytes = 0;
    if (n > BATCH_MAX) {
        ds4_matmul_batch(parts, BATCH_MAX, n_threads);
        ds4_matmul_batch(parts + BATCH_MAX, n - BATCH_MAX, n_threads);
        return;
    }
    /* Each product as ds4_matmul runs it alone: its kernel, its quantized activations. */
    int act_from[BATCH_MAX]; /* the product whose quantized activations a product reads */
    for (int k = 0; k < n; k++) {
        const ds4_matmul_part *p = &parts[k];
        act_from[k] = k;
        if (observer) observer(observer_ctx, p->W, p->row0, p->x, p->ldx, p->T);
        jobs[k] = (matmul_job){*p, int8_kernel(p->W->type), NULL, 0, p->T >= 4 && blocked_dot_available()};
        act_at[k] = act_bytes;
        if (jobs[k].qdot) {
            jobs[k].act_row_bytes = ds4_qdot_act_size(ds4_qdot_act_type(p->W->type), (int64_t)p->W->ne[0]);
            /* products of one input in one format (an expert's gate and up) share it */
            for (int i = 0; i < k && act_from[k] == k; i++)
                if (jobs[i].qdot && act_from[i] == i && parts[i].x == p->x && parts[i].ldx == p->ldx &&
                    parts[i].T == p->T && parts[i].W->ne[0] == p->W->ne[0] &&
                    ds4_qdot_act_type(parts[i].W->type) == ds4_qdot_act_type(p->W->type))
                    act_from[k] = i;
            act_at[k] = act_from[k] == k ? act_bytes : act_at[act_from[k]];
            if (act_from[k] == k) act_bytes += jobs[k].act_row_bytes * (size_t)p->T;
        }
    }
    uint8_t *act = act_bytes ? scratch_bytes(act_bytes) : NULL;
    unit[0] = 0;
    for (int k = 0; k < n; k++) {
        const ds4_matmul_part *p = &parts[k];
        matmul_job *j = &jobs[k];
        if (j->qdot && !act) j->qdot = NULL; /* no room for int8 activations: the F32 path */
        if (j->qdot) {
            /* Quantize the activations once for all output rows. */
            const int act_type = ds4_qdot_act_type(p->W->type);
            j->act = act + act_at[k];
            for (int t = 0; t < p->T && act_from[k] == k; t++)
                ds4_qdot_quantize_act(act_type, p->x + (uint64_t)t * p->ldx, act + act_at[k] + (size_t)t * j->act_row_bytes,
                                      (int64_t)p->W->ne[0]);
        }
        /* Rows go out in chunks of about 32 KiB of weights times activation rows: small
         * enough that threads end together, large enough that claiming one costs next to
         * nothing; two rows at least, for the row pairs of the F32 path. */
        const uint64_t chunk_bytes = ggml_row_size(p->W->type, p->W->ne[0]) * (uint64_t)p->T;
        grain[k] = (32u << 10) / chunk_bytes + 2;
        unit[k + 1] = unit[k] + (p->n_out + grain[k] - 1) / grain[k];
        work += p->n_out * p->W->ne[0] * (uint64_t)p->T;
    }
    /* Threads only pay off on enough work. */
    const batch_job b = {jobs, unit, grain, n};
    const double t0 = ds4_prof_begin();
    ds4_parallel_for_chunked(work < (1u << 16) ? 1 : n_threads, unit[n], 1, batch_units, (void *)&b);
    if (ds4_profile_on) {
        /* the loop's time, shared out by the bytes each product read */
        uint64_t bytes[BATCH_MAX], all = 0;
        for (int k = 0; k < n; k++) all += bytes[k] = ggml_row_size(parts[k].W->type, parts[k].W->ne[0]) * parts[k].n_out;
        const double dt = ds4_time_now() - t0;
        for (int k = 0; k < n; k++) ds4_prof_matmul(parts[k].W->type, bytes[k], all ? dt * (double)bytes[k] / all : 0);
    }
}

void ds4_matmul(const gguf_tensor *W, uint64_t row0, uint64_t n_out, const float *x, uint64_t ldx, int T,
                float *y, uint64_t ldy, int n_threads) {
    const ds4_matmul_part p = {W, row0, n_out, x, ldx, T, y, ldy};
    ds4_matmul_batch(&p, 1, n_threads);
}

void ds4_tensor_row(const gguf_tensor *W, uint64_t r, float *out) {
    const uint64_t n = W->ne[0];
    ggml_row_to_f32(W->type, (const uint8_t *)W->data + r * ggml_row_size(W->type, n), out, (int64_t)n);
}

float *ds4_tensor_f32(const gguf_tensor *W) {
    const uint64_t rows = W->ne[1] * W->ne[2] * W->ne[3];
    float *out = ds4_malloc(gguf_tensor_nelements(W) * sizeof *out);
    if (!out) return NULL;
    for (uint64_t r = 0; r < rows; r++) ds4_tensor_row(W, r, out + r * W->ne[0]);
    return out;
}

void ds4_rmsnorm(float *x, int n, const float *weight, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) x[i] = weight ? weight[i] * (x[i] * scale) : x[i] * scale;
}

double ds4_logsumexp(const float *x, uint64_t n) {
    double mx = -INFINITY, sum = 0.0;
    for (uint64_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    for (uint64_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    return mx + log(sum);
}

void ds4_softmax(float *x, int n) {
    float m = -INFINITY, s = 0.0f;
    for (int i = 0; i < n; i++) m = fmaxf(m, x[i]);
    for (int i = 0; i < n; i++) s += (x[i] = expf(x[i] - m));
    for (int i = 0; i < n; i++) x[i] /= s;
}

float ds4_silu(float x) { return x / (1.0f + expf(-x)); }
float ds4_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
/* torch.nn.functional.softplus with beta 1 and threshold 20 */
float ds4_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

void ds4_rope_freqs(float *inv_freq, int dim, float base, float factor, uint32_t orig_ctx, float beta_fast,
                    float beta_slow) {
    const int half = dim / 2;
    for (int i = 0; i < half; i++) {
        float pos_freq = powf(base, (float)(2 * i) / (float)dim);
        inv_freq[i] = 1.0f / pos_freq;
    }
    if (!(factor > 1.0f) || orig_ctx == 0) return;
    /* YaRN: interpolate the low frequencies, keep the high ones, ramp in between. */
    const double two_pi = 2.0 * M_PI;
    double low = floor(dim * log(orig_ctx / (beta_fast * two_pi)) / (2 * log(base)));
    double high = ceil(dim * log(orig_ctx / (beta_slow * two_pi)) / (2 * log(base)));
    if (low < 0) low = 0;
    if (high > dim - 1) high = dim - 1;
    if (low == high) high += 0.001;
    for (int i = 0; i < half; i++) {
        float ramp = ((float)i - (float)low) / (float)(high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float extrapolation = 1.0f - ramp;
        float pos_freq = powf(base, (float)(2 * i) / (float)dim);
        float interp = 1.0f / (factor * pos_freq), extrap = 1.0f / pos_freq;
        inv_freq[i] = interp * (1.0f - extrapolation) + extrap * extrapolation;
    }
}

void ds4_rope_table(float *cs, int dim, const float *inv_freq, int64_t pos) {
    for (int i = 0; i < dim / 2; i++) {
        const float angle = (float)pos * inv_freq[i];
        cs[2 * i] = cosf(angle);
        cs[2 * i + 1] = sinf(angle);
    }
}

void ds4_rope_apply_table(float *x, int n, int dim, const float *cs, int sign) {
    float *r = x + (n - dim);
    for (int i = 0; i < dim / 2; i++) {
        const float c = cs[2 * i], s = sign * cs[2 * i + 1];
        const float a = r[2 * i], b = r[2 * i + 1];
        r[2 * i] = a * c - b * s;
        r[2 * i + 1] = b * c + a * s;
    }
}

void ds4_rope_apply(float *x, int n, int dim, const float *inv_freq, int64_t pos, int sign) {
    float cs[DS4_ROPE_MAX];
    ds4_rope_table(cs, dim, inv_freq, pos);
    ds4_rope_apply_table(x, n, dim, cs, sign);
}
