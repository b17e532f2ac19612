/* Q8_0 against ggml's own bytes (shared/golden/quant-ggml.bin) and the SIMD quantizer
 * against the scalar one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quants.h"
#include "test.h"
#include "util.h"

/* Walk the golden file's sets of one ggml type; calls fn for each. */
typedef void (*golden_fn)(uint32_t nrows, uint32_t ncols, uint32_t row_bytes, const float *src,
                          const uint8_t *q, const float *deq, int *bad);

static int for_each_golden(uint32_t type, golden_fn fn, int *bad) {
    const char *shared = test_shared_dir();
    if (!shared) return -1;
    char path[600];
    snprintf(path, sizeof path, "%s/golden/quant-ggml.bin", shared);
    size_t len;
    uint8_t *d = (uint8_t *)ds4_read_file(path, &len);
    if (!d) return -1;
    int sets_seen = 0;
    uint32_t nsets;
    if (len < 16 || memcmp(d, "DS4QGOLD", 8)) { free(d); return -2; }
    memcpy(&nsets, d + 12, 4);
    size_t o = 16;
    for (uint32_t s = 0; s < nsets; s++) {
        uint32_t h[5];
        memcpy(h, d + o, 20);
        o += 20;
        const float *src = (const float *)(d + o);
        o += (size_t)h[1] * h[2] * 4;
        if (h[3]) o += (size_t)h[2] * 4;
        const uint8_t *q = d + o;
        o += (size_t)h[1] * h[4];
        const float *deq = (const float *)(d + o);
        o += (size_t)h[1] * h[2] * 4;
        if (h[0] == type) {
            fn(h[1], h[2], h[4], src, q, deq, bad);
            sets_seen++;
        }
    }
    free(d);
    return sets_seen;
}

static void check_q8_set(uint32_t nrows, uint32_t ncols, uint32_t row_bytes, const float *src, const uint8_t *q,
                         const float *deq, int *bad) {
    uint8_t *mine = malloc(row_bytes);
    float *back = malloc(ncols * sizeof *back);
    for (uint32_t r = 0; r < nrows; r++) {
        quantize_row_q8_0(src + (size_t)r * ncols, (block_q8_0 *)mine, ncols);
        *bad += memcmp(mine, q + (size_t)r * row_bytes, row_bytes) != 0;
        ggml_row_to_f32(GGML_TYPE_Q8_0, q + (size_t)r * row_bytes, back, ncols);
        *bad += memcmp(back, deq + (size_t)r * ncols, ncols * 4) != 0;
    }
    free(mine);
    free(back);
}

static void q8_0_bit_identical_to_ggml(void) {
    int bad = 0, sets = for_each_golden(GGML_TYPE_Q8_0, check_q8_set, &bad);
    if (sets == -1) { test_skip("shared/golden/quant-ggml.bin not found (set DS4_SHARED)"); return; }
    CHECKF(sets > 0, "golden file has no q8_0 sets");
    CHECKF(bad == 0, "%d q8_0 rows differ from ggml (bytes or dequantized values)", bad);
}

static uint32_t dequant_type;

static void check_dequant_set(uint32_t nrows, uint32_t ncols, uint32_t row_bytes, const float *src,
                              const uint8_t *q, const float *deq, int *bad) {
    (void)src;
    float *back = malloc(ncols * sizeof *back);
    for (uint32_t r = 0; r < nrows; r++) {
        *bad += ggml_row_to_f32(dequant_type, q + (size_t)r * row_bytes, back, ncols) != 0 ||
                memcmp(back, deq + (size_t)r * ncols, ncols * 4) != 0;
    }
    free(back);
}

/* Every block type this build reads (llama.cpp's MXFP4 experts, ds4's IQ2_XXS and Q2_K,
 * the K-quants of q4-class files) must give ggml's dequantized values exactly. */
static void dequantizes_like_ggml(void) {
    const uint32_t types[] = {GGML_TYPE_MXFP4, GGML_TYPE_Q4_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K,
                              GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ2_XXS};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int bad = 0;
        dequant_type = types[i];
        int sets = for_each_golden(types[i], check_dequant_set, &bad);
        if (sets == -1) { test_skip("shared/golden/quant-ggml.bin not found (set DS4_SHARED)"); return; }
        CHECKF(sets > 0, "golden file has no %s sets", ggml_type_name(types[i]));
        CHECKF(bad == 0, "%d %s rows dequantize differently from ggml", bad, ggml_type_name(types[i]));
    }
}

static void q8_0_simd_matches_scalar(void) {
    enum { N = 32 * 512 };
    float *x = malloc(N * sizeof *x);
    block_q8_0 *a = malloc(N / 32 * sizeof *a), *b = malloc(N / 32 * sizeof *b);
    srand(11);
    for (int i = 0; i < N; i++) x[i] = ((float)rand() / RAND_MAX - 0.5f) * (float)(1 + i % 97);
    /* A block whose scale is exactly 1 puts values on .5 ties: roundf rounds them away from zero. */
    for (int j = 0; j < 32; j++) x[j] = j == 0 ? 127.0f : (float)(j % 7) - 3.5f;
    for (int j = 32; j < 64; j++) x[j] = 0.0f; /* all-zero block */
    quantize_row_q8_0(x, a, N);
    quantize_row_q8_0_scalar(x, b, N);
    int bad = memcmp(a, b, N / 32 * sizeof *a) != 0;
    int tie_ok = a[0].qs[1] == -3 && a[0].qs[4] == 1; /* -2.5 and 0.5 */
    free(x); free(a); free(b);
    CHECK(sizeof(block_q8_0) == 34);
    CHECKF(!bad, "vector Q8_0 differs from the scalar reference");
    CHECK(tie_ok);
}

static void type_table(void) {
    CHECK(ggml_row_size(GGML_TYPE_Q8_0, 64) == 68);
    CHECK(ggml_row_size(GGML_TYPE_Q8_0, 65) == 0);
    CHECK(ggml_row_size(GGML_TYPE_IQ2_XXS, 256) == 66);
    CHECK(ggml_row_size(GGML_TYPE_Q2_K, 512) == 168);
    CHECK(ggml_row_size(GGML_TYPE_MXFP4, 64) == 34);
    CHECK(ggml_type_get(4) == NULL && ggml_type_get(1000) == NULL);
    CHECK(ggml_type_from_name("Q8_0") == GGML_TYPE_Q8_0 && ggml_type_from_name("nope") == -1);
}

const test_case quant_tests[] = {
    {"q8_0_bit_identical_to_ggml", q8_0_bit_identical_to_ggml},
    {"dequantizes_like_ggml", dequantizes_like_ggml},
    {"q8_0_simd_matches_scalar", q8_0_simd_matches_scalar},
    {"type_table", type_table},
    {0, 0},
};
