/* qdot.c - see qdot.h. The scalar kernels here are the reference; the vector ones are
 * compiled twice from qdot_x86.inc, once for AVX2 and once for AVX-512 VNNI. */
#include "qdot.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "backend.h"
#include "cpufeatures.h"
#include "iq_tables.h"
#include "numeric.h"
#include "quants.h"

static const int8_t fp4_doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* IQ2_XXS sign patterns as 8 bytes of +1 / -1, for _mm256_sign_epi8: entry k spreads
 * ksigns_iq2xs[k]'s bits over bytes. Filled once with the VBMI kernel's code tables,
 * before any IQ2_XXS kernel is handed out. */
static uint64_t iq2_sign_bytes[128];
static pthread_once_t iq2_tables_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static void iq2_code_init(void);
#endif

static void iq2_tables_init(void) {
    for (int k = 0; k < 128; k++) {
        uint64_t v = 0;
        for (int j = 0; j < 8; j++) v |= (uint64_t)(ds4_ksigns_iq2xs[k] & (1 << j) ? 0xFF : 0x01) << (8 * j);
        iq2_sign_bytes[k] = v;
    }
#if defined(__x86_64__)
    iq2_code_init();
#endif
}

/* ggml's E8M0 scale for MXFP4 halved, because its levels are doubled. */
static inline float e8m0_half(uint8_t e) { return ds4_e8m0_to_f32(e) * 0.5f; }

int ds4_qdot_act_type(uint32_t weight_type) {
    switch (weight_type) {
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_MXFP4: return GGML_TYPE_Q8_0;
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q6_K: return GGML_TYPE_Q8_K;
    case GGML_TYPE_IQ2_XXS: return DS4_ACT_Q8_K_IQ2;
    default: return -1;
    }
}

int ds4_qdot_act_applies(int act_mode, uint32_t weight_type) {
    if (act_mode == DS4_ACT_F32 || (act_mode == DS4_ACT_AUTO && weight_type == GGML_TYPE_Q8_0)) return 0;
    return ds4_qdot_act_type(weight_type) >= 0;
}

size_t ds4_qdot_act_size(int act_type, int64_t n) {
    return act_type == GGML_TYPE_Q8_K || act_type == DS4_ACT_Q8_K_IQ2 ? (size_t)(n / QK_K) * sizeof(block_q8_K)
                                      : (size_t)(n / QK8_0) * sizeof(block_q8_0);
}

/* ggml's Q8_K: the scale maps the largest magnitude to -127 or 127. */
static void quantize_q8_k(const float *x, block_q8_K *y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        if (!amax) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = (int)lrintf(iscale * x[j]);
            y[b].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[b].qs[16 * g + l];
            y[b].bsums[g] = (int16_t)s;
        }
        y[b].d = 1 / iscale;
    }
}

/* Part k of group g of each block to 64k + 8g (see DS4_ACT_Q8_K_IQ2). */
static void regroup_for_iq2(block_q8_K *y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; b++) {
        int8_t natural[QK_K];
        memcpy(natural, y[b].qs, sizeof natural);
        for (int g = 0; g < 8; g++)
            for (int k = 0; k < 4; k++) memcpy(y[b].qs + 64 * k + 8 * g, natural + 32 * g + 8 * k, 8);
    }
}

void ds4_qdot_quantize_act(int act_type, const float *x, void *act, int64_t n) {
    if (act_type == GGML_TYPE_Q8_0) {
        ds4_quantize_row_q8_0(x, act, n);
        return;
    }
    quantize_q8_k(x, act, n);
    if (act_type == DS4_ACT_Q8_K_IQ2) regroup_for_iq2(act, n);
}

/* ---- scalar reference kernels ---- */

static float dot_q8_0(const void *vw, const void *va, int64_t n) {
    const block_q8_0 *w = vw, *a = va;
    float sum = 0;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int s = 0;
        for (int j = 0; j < QK8_0; j++) s += w[b].qs[j] * a[b].qs[j];
        sum += (float)s * (ds4_f16_to_f32(w[b].d) * ds4_f16_to_f32(a[b].d));
    }
    return sum;
}

static float dot_q4_0(const void *vw, const void *va, int64_t n) {
    const block_q4_0 *w = vw;
    const block_q8_0 *a = va;
    float sum = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += ((w[b].qs[j] & 0xF) - 8) * a[b].qs[j] + ((w[b].qs[j] >> 4) - 8) * a[b].qs[j + 16];
        sum += (float)s * (ds4_f16_to_f32(w[b].d) * ds4_f16_to_f32(a[b].d));
    }
    return sum;
}

static float dot_mxfp4(const void *vw, const void *va, int64_t n) {
    const block_mxfp4 *w = vw;
    const block_q8_0 *a = va;
    float sum = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += fp4_doubled[w[b].qs[j] & 0xF] * a[b].qs[j] + fp4_doubled[w[b].qs[j] >> 4] * a[b].qs[j + 16];
        sum += (float)s * (e8m0_half(w[b].e) * ds4_f16_to_f32(a[b].d));
    }
    return sum;
}

static float dot_q2_k(const void *vw, const void *va, int64_t n) {
    const block_q2_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int mins = 0, isum = 0;
        for (int g = 0; g < 16; g++) mins += a[b].bsums[g] * (w[b].scales[g] >> 4);
        for (int half = 0; half < 2; half++) {
            const uint8_t *q = w[b].qs + 32 * half;
            for (int shift = 0; shift < 4; shift++) {
                const int8_t *x = a[b].qs + 128 * half + 32 * shift;
                const int g = 8 * half + 2 * shift;
                int s0 = 0, s1 = 0;
                for (int l = 0; l < 16; l++) {
                    s0 += x[l] * ((q[l] >> (2 * shift)) & 3);
                    s1 += x[l + 16] * ((q[l + 16] >> (2 * shift)) & 3);
                }
                isum += (w[b].scales[g] & 0xF) * s0 + (w[b].scales[g + 1] & 0xF) * s1;
            }
        }
        sum += a[b].d * ds4_f16_to_f32(w[b].d) * (float)isum - a[b].d * ds4_f16_to_f32(w[b].dmin) * (float)mins;
    }
    return sum;
}

/* The 6-bit scales and mins of a Q4_K block. */
static void q4_k_scales(const uint8_t *s, uint8_t *sc, uint8_t *m) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
            m[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
        }
    }
}

static float dot_q4_k(const void *vw, const void *va, int64_t n) {
    const block_q4_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], m[8];
        q4_k_scales(w[b].scales, sc, m);
        int mins = 0, isum = 0;
        for (int j = 0; j < 8; j++) mins += m[j] * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = w[b].qs + 32 * j;
            const int8_t *x = a[b].qs + 64 * j;
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                lo += (q[l] & 0xF) * x[l];
                hi += (q[l] >> 4) * x[l + 32];
            }
            isum += sc[2 * j] * lo + sc[2 * j + 1] * hi;
        }
        sum += a[b].d * ds4_f16_to_f32(w[b].d) * (float)isum - a[b].d * ds4_f16_to_f32(w[b].dmin) * (float)mins;
    }
    return sum;
}

static float dot_q6_k(const void *vw, const void *va, int64_t n) {
    const block_q6_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int isum = 0;
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = w[b].ql + 64 * half, *qh = w[b].qh + 32 * half;
            const int8_t *sc = w[b].scales + 8 * half, *x = a[b].qs + 128 * half;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                isum += sc[is] * q1 * x[l] + sc[is + 2] * q2 * x[l + 32] + sc[is + 4] * q3 * x[l + 64] +
                        sc[is + 6] * q4 * x[l + 96];
            }
        }
        sum += a[b].d * ds4_f16_to_f32(w[b].d) * (float)isum;
    }
    return sum;
}

static float dot_iq2_xxs(const void *vw, const void *va, int64_t n) {
    const block_iq2_xxs *w = vw;
    const block_q8_K *a = va;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int bsum = 0;
        for (int g = 0; g < 8; g++) {
            uint32_t aux[2];
            memcpy(aux, w[b].qs + 4 * g, 8);
            int s = 0;
            for (int k = 0; k < 4; k++) {
                const uint8_t *grid = (const uint8_t *)&ds4_iq2xxs_grid[(aux[0] >> (8 * k)) & 0xFF];
                const uint8_t signs = ds4_ksigns_iq2xs[(aux[1] >> (7 * k)) & 127];
                const int8_t *x = a[b].qs + 64 * k + 8 * g;
                for (int j = 0; j < 8; j++) s += grid[j] * x[j] * (signs & (1 << j) ? -1 : 1);
            }
            bsum += s * (2 * (int)(aux[1] >> 28) + 1);
        }
        sum += ds4_f16_to_f32(w[b].d) * a[b].d * (float)bsum * 0.125f;
    }
    return sum;
}

#if defined(__x86_64__)
#include <immintrin.h>

#define QDOT_TARGET __attribute__((target("avx2,fma,f16c")))
#define QDOT(name) name##_avx2
#include "qdot_x86.inc"
#undef QDOT_TARGET
#undef QDOT

#define QDOT_VNNI 1
#define QDOT_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
#define QDOT(name) name##_vnni
#include "qdot_x86.inc"
#undef QDOT_TARGET
#undef QDOT

/* IQ2_XXS decoded a block at a time in AVX-512 registers, with no scalar table loads:
 * - the grid has 256 entries of eight bytes, each one of 8, 25 and 43, so an entry is a
 *   16-bit code of eight 2-bit levels; two 128-byte vpermi2b lookups per code byte turn
 *   the block's 32 indices into codes, one group's four codes to a 64-bit lane;
 * - vpmultishiftqb brings part k's eight levels into bytes, and one GF(2) affine map
 *   turns level bits (0, 1, 2) into 8, 25, 43 (the map is linear: 25 ^ 8 and 43 ^ 8 are
 *   the images of the two bits);
 * - a sign word's seven bits per part and their parity (the eighth sign) are spread to a
 *   byte per part, and vpshufbitqmb picks each part's eight signs as a mask;
 * - part k of all eight groups meets its 64 activations in one load (DS4_ACT_Q8_K_IQ2),
 *   and every 64-bit lane belongs to one group, so one multiply per block applies the
 *   eight scales.
 * Block sums are added in sixteen float lanes, as the 32-block kernels do. */
#define VBMI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni,avx512vbmi,avx512bitalg,gfni")))

static uint8_t iq2_code_lo[256], iq2_code_hi[256]; /* levels of elements 0-3 and 4-7 */
static uint8_t iq2_code_pairs[64];                 /* lane g: lo, hi of each of group g's indices */

static void iq2_code_init(void) {
    for (int i = 0; i < 256; i++) {
        unsigned code = 0;
        for (int j = 0; j < 8; j++) {
            const unsigned v = (ds4_iq2xxs_grid[i] >> (8 * j)) & 0xFF;
            code |= (v == 8 ? 0u : v == 25 ? 1u : 2u) << (2 * j);
        }
        iq2_code_lo[i] = (uint8_t)code;
        iq2_code_hi[i] = (uint8_t)(code >> 8);
    }
    for (int g = 0; g < 8; g++)
        for (int k = 0; k < 4; k++) {
            iq2_code_pairs[8 * g + 2 * k] = (uint8_t)(8 * g + k);
            iq2_code_pairs[8 * g + 2 * k + 1] = (uint8_t)(64 + 8 * g + k);
        }
}

VBMI_TARGET static inline __m512i iq2_lookup(const uint8_t *table, __m512i idx, __mmask64 top) {
    const __m512i low = _mm512_permutex2var_epi8(_mm512_loadu_si512(table), idx, _mm512_loadu_si512(table + 64));
    const __m512i high = _mm512_permutex2var_epi8(_mm512_loadu_si512(table + 128), idx, _mm512_loadu_si512(table + 192));
    return _mm512_mask_blend_epi8(top, low, high);
}

VBMI_TARGET static float dot_iq2_xxs_vbmi(const void *vw, const void *va, int64_t n) {
    const block_iq2_xxs *w = vw;
    const block_q8_K *a = va;
    const __m512i pairs = _mm512_loadu_si512(iq2_code_pairs);
    const __m512i level_map = _mm512_set1_epi64(0x0302000001020000LL); /* bit 0 -> 0x11, bit 1 -> 0x23 */
    const __m512i sign_shift = _mm512_set1_epi64(0x352E2720LL);       /* part k's signs at bit 32 + 7k */
    const __m512i low7 = _mm512_set1_epi8(0x7F), bit7 = _mm512_set1_epi8((char)0x80);
    const __m512i one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
    /* part k: its levels at bits 16k + 2j of a lane, its signs at bits 8k + j */
    __m512i level_at[4], sign_at[4];
    for (int k = 0; k < 4; k++) {
        level_at[k] = _mm512_set1_epi64(0x0E0C0A0806040200LL + 0x1010101010101010LL * k);
        sign_at[k] = _mm512_set1_epi64(0x0706050403020100LL + 0x0808080808080808LL * k);
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        _mm_prefetch((const char *)(w + b) + QDOT_PREFETCH, _MM_HINT_T0);
        const __m512i q = _mm512_loadu_si512(w[b].qs);
        const __mmask64 top = _mm512_movepi8_mask(q);
        const __m512i codes = _mm512_permutex2var_epi8(iq2_lookup(iq2_code_lo, q, top), pairs,
                                                       iq2_lookup(iq2_code_hi, q, top));
        const __m512i s7 = _mm512_and_si512(_mm512_multishift_epi64_epi8(sign_shift, q), low7);
        const __m512i signs = _mm512_ternarylogic_epi64(s7, _mm512_slli_epi16(_mm512_popcnt_epi8(s7), 7), bit7, 0xF8);
        __m512i part[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512i grid = _mm512_gf2p8affine_epi64_epi8(_mm512_multishift_epi64_epi8(level_at[k], codes), level_map, 8);
            const __mmask64 neg = _mm512_bitshuffle_epi64_mask(signs, sign_at[k]);
            const __m512i av = _mm512_loadu_si512((const void *)(a[b].qs + 64 * k));
            part[k] = _mm512_dpbusd_epi32(zero, grid, _mm512_mask_sub_epi8(av, neg, zero, av));
        }
        const __m512i sums = _mm512_add_epi32(_mm512_add_epi32(part[0], part[1]), _mm512_add_epi32(part[2], part[3]));
        /* lane g's scale 2 * (top 4 bits of its sign word) + 1, times the block's scales */
        const __m512i scale = _mm512_shuffle_epi32(
            _mm512_or_si512(_mm512_slli_epi64(_mm512_srli_epi64(q, 60), 1), one), _MM_PERM_CCAA);
        const float d = _cvtsh_ss(w[b].d) * a[b].d * 0.125f;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(_mm512_cvtepi32_ps(scale), _mm512_set1_ps(d)), acc);
    }
    return _mm512_reduce_add_ps(acc);
}
#endif

ds4_qdot_fn ds4_qdot_kernel(uint32_t weight_type, int level) {
    if (level > (int)ds4_cpu_detect()) return NULL;
    if (weight_type == GGML_TYPE_IQ2_XXS) pthread_once(&iq2_tables_once, iq2_tables_init);
    if (level == DS4_CPU_SCALAR) {
        switch (weight_type) {
        case GGML_TYPE_Q8_0: return dot_q8_0;
        case GGML_TYPE_Q4_0: return dot_q4_0;
        case GGML_TYPE_MXFP4: return dot_mxfp4;
        case GGML_TYPE_Q2_K: return dot_q2_k;
        case GGML_TYPE_Q4_K: return dot_q4_k;
        case GGML_TYPE_Q6_K: return dot_q6_k;
        case GGML_TYPE_IQ2_XXS: return dot_iq2_xxs;
        default: return NULL;
        }
    }
#if defined(__x86_64__)
    const bool vnni = level == DS4_CPU_AVX512 && __builtin_cpu_supports("avx512vnni");
    if (level == DS4_CPU_AVX512 && !vnni) return NULL; /* AVX-512 without VNNI: the AVX2 kernels serve */
    switch (weight_type) {
    case GGML_TYPE_Q8_0: return vnni ? dot_q8_0_vnni : dot_q8_0_avx2;
    case GGML_TYPE_Q4_0: return vnni ? dot_q4_0_vnni : dot_q4_0_avx2;
    case GGML_TYPE_MXFP4: return vnni ? dot_mxfp4_vnni : dot_mxfp4_avx2;
    case GGML_TYPE_Q2_K: return vnni ? dot_q2_k_vnni : dot_q2_k_avx2;
    case GGML_TYPE_Q4_K: return vnni ? dot_q4_k_vnni : dot_q4_k_avx2;
    case GGML_TYPE_Q6_K: return vnni ? dot_q6_k_vnni : dot_q6_k_avx2;
    case GGML_TYPE_IQ2_XXS:
        if (vnni && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bitalg") &&
            __builtin_cpu_supports("gfni"))
            return dot_iq2_xxs_vbmi;
        return vnni ? dot_iq2_xxs_vnni : dot_iq2_xxs_avx2;
    default: return NULL;
    }
#else
    return NULL;
#endif
}

ds4_qdot_rows_fn ds4_qdot_rows_for(ds4_qdot_fn single) {
#if defined(__x86_64__)
    if (single == dot_iq2_xxs_avx2) return rows_iq2_xxs_avx2;
    if (single == dot_q2_k_avx2) return rows_q2_k_avx2;
#endif
    (void)single;
    return NULL;
}

ds4_qdot_fn ds4_qdot_best(uint32_t weight_type) {
    /* Asked for on every matrix product: look it up once per type. */
    static _Atomic(ds4_qdot_fn) best[GGML_TYPE_COUNT];
    static atomic_bool known[GGML_TYPE_COUNT];
    if (weight_type >= GGML_TYPE_COUNT) return NULL;
    if (atomic_load(&known[weight_type])) return atomic_load(&best[weight_type]);
    ds4_qdot_fn fn = NULL;
    for (int level = (int)ds4_cpu_detect(); level >= DS4_CPU_SCALAR && !fn; level--)
        fn = ds4_qdot_kernel(weight_type, level);
    atomic_store(&best[weight_type], fn);
    atomic_store(&known[weight_type], true);
    return fn;
}
