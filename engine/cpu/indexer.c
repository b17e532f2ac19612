/* indexer.c - see indexer.h. */
#include "indexer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpufeatures.h"
#include "numeric.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define B DS4_KEY_BLOCK

void ds4_keys_transpose(const float *const *rows, int n, int dim, float *kt) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) kt[j * B + i] = rows[i][j];
    for (int i = n; i < B; i++)
        for (int j = 0; j < dim; j++) kt[j * B + i] = 0.0f;
}

/* ---- scalar: the definition the SIMD kernels reproduce lane by lane ---- */

static float chain(const float *kt, int dim, const float *q, int lane) {
    float acc = 0.0f;
    for (int j = 0; j < dim; j++) acc = fmaf(q[j], kt[j * B + lane], acc);
    return acc;
}

static uint32_t index_scalar(const float *kt, int dim, const float *q, const float *w, int heads, float scale,
                             float floor, float *out) {
    uint32_t mask = 0;
    for (int i = 0; i < B; i++) {
        float total = 0.0f;
        for (int h = 0; h < heads; h++) {
            const float dot = chain(kt, dim, q + (size_t)h * dim, i);
            total += (dot > 0.0f ? dot : 0.0f) * scale * w[h];
        }
        out[i] = total;
        if (!(total < floor)) mask |= 1u << i;
    }
    return mask;
}

#if defined(__x86_64__)
/* G heads at a time (4, then 1 for the rest) keep independent FMA chains in flight; G is
 * a constant in each inlined copy so the accumulators stay in registers. */
#define DEFINE_X86(NAME, TARGET, VEC, SET1, LOAD, STORE, FMA, MUL, ADD, MAX, ZERO, MASK, LANES)                \
    __attribute__((target(TARGET), always_inline)) static inline void NAME##_chains(                          \
        const float *kt, int dim, const float *q, const int G, VEC acc[4][B / LANES]) {                       \
        for (int a = 0; a < G; a++)                                                                            \
            for (int v = 0; v < B / LANES; v++) acc[a][v] = ZERO();                                            \
        for (int j = 0; j < dim; j++)                                                                          \
            for (int v = 0; v < B / LANES; v++) {                                                              \
                const VEC k = LOAD(kt + j * B + v * LANES);                                                    \
                for (int a = 0; a < G; a++) acc[a][v] = FMA(SET1(q[(size_t)a * dim + j]), k, acc[a][v]);       \
            }                                                                                                  \
    }                                                                                                          \
    __attribute__((target(TARGET))) static uint32_t NAME##_index(const float *kt, int dim, const float *q,    \
                                                                 const float *w, int heads, float scale,       \
                                                                 float floor, float *out) {                    \
        VEC total[B / LANES], acc[4][B / LANES];                                                               \
        for (int v = 0; v < B / LANES; v++) total[v] = ZERO();                                                 \
        for (int h = 0; h < heads;) {                                                                          \
            const int g = heads - h >= 4 ? 4 : 1;                                                              \
            if (g == 4) NAME##_chains(kt, dim, q + (size_t)h * dim, 4, acc);                                   \
            else NAME##_chains(kt, dim, q + (size_t)h * dim, 1, acc);                                          \
            for (int a = 0; a < g; a++)                                                                        \
                for (int v = 0; v < B / LANES; v++)                                                            \
                    total[v] = ADD(total[v], MUL(MUL(MAX(acc[a][v], ZERO()), SET1(scale)), SET1(w[h + a])));   \
            h += g;                                                                                            \
        }                                                                                                      \
        uint32_t mask = 0;                                                                                     \
        for (int v = 0; v < B / LANES; v++) {                                                                  \
            STORE(out + v * LANES, total[v]);                                                                  \
            mask |= (uint32_t)MASK(total[v], SET1(floor)) << (v * LANES);                                      \
        }                                                                                                      \
        return mask;                                                                                           \
    }

#define AVX2_MASK(x, f) _mm256_movemask_ps(_mm256_cmp_ps(x, f, _CMP_NLT_UQ))
DEFINE_X86(avx2, "avx2,fma", __m256, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps,
           _mm256_mul_ps, _mm256_add_ps, _mm256_max_ps, _mm256_setzero_ps, AVX2_MASK, 8)
#define AVX512_MASK(x, f) _mm512_cmp_ps_mask(x, f, _CMP_NLT_UQ)
DEFINE_X86(avx512, "avx512f", __m512, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps,
           _mm512_mul_ps, _mm512_add_ps, _mm512_max_ps, _mm512_setzero_ps, AVX512_MASK, 16)
#endif

ds4_index_fn ds4_index_for_level(int level) {
    if (level > (int)ds4_cpu_detect()) return NULL;
#if defined(__x86_64__)
    if (level == DS4_CPU_AVX512) return avx512_index;
    if (level == DS4_CPU_AVX2) return avx2_index;
#endif
    return level == DS4_CPU_SCALAR ? index_scalar : NULL;
}

/* ---- streaming top-k ---- */

/* Higher is better: the score's bits in radix order above, the complemented index below. */
static uint64_t rank_key(float score, uint32_t index) {
    uint32_t u = ds4_f32_bits(score);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u;
    return (uint64_t)u << 32 | (uint32_t)~index;
}

static float key_score(uint64_t key) {
    uint32_t u = (uint32_t)(key >> 32);
    u = (u & 0x80000000u) ? u & 0x7fffffffu : ~u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void ds4_topk_reset(ds4_topk *t, uint64_t *storage, uint32_t k) {
    t->key = storage;
    t->k = k;
    t->n = 0;
    t->floor = -INFINITY;
}

static void push_key(ds4_topk *t, uint64_t key) {
    uint64_t *h = t->key;
    uint32_t j;
    if (t->n < t->k) {
        for (j = t->n++; j && key < h[(j - 1) / 2]; j = (j - 1) / 2) h[j] = h[(j - 1) / 2];
        h[j] = key;
    } else {
        if (key <= h[0]) return;
        for (j = 0;;) {
            uint32_t l = 2 * j + 1, r = l + 1, m = j;
            uint64_t least = key;
            if (l < t->k && h[l] < least) m = l, least = h[l];
            if (r < t->k && h[r] < least) m = r;
            if (m == j) break;
            h[j] = h[m];
            j = m;
        }
        h[j] = key;
    }
    if (t->n == t->k) t->floor = key_score(h[0]);
}

void ds4_topk_push(ds4_topk *t, float score, uint32_t index) {
    if (t->k && !(score < t->floor)) push_key(t, rank_key(score, index));
}

void ds4_topk_merge(ds4_topk *t, const ds4_topk *other) {
    for (uint32_t i = 0; i < other->n; i++)
        if (t->k) push_key(t, other->key[i]);
}

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint32_t ds4_topk_indices(ds4_topk *t, uint64_t *out) {
    for (uint32_t i = 0; i < t->n; i++) out[i] = (uint32_t)~t->key[i];
    qsort(out, t->n, sizeof *out, cmp_u64);
    return t->n;
}
