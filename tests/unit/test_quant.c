/* Block formats against ggml's own bytes (shared/golden/quant-ggml.bin): exact
 * dequantization, quantizers no worse than ggml's; the int8 dot-product kernels against
 * F32 arithmetic on the dequantized values, and their SIMD versions against the scalar
 * ones; the SIMD Q8_0 quantizer against the scalar one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpufeatures.h"
#include "qdot.h"
#include "quant_golden.h"
#include "quants.h"
#include "recipe.h"
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
        ds4_quantize_row_q8_0(src + (size_t)r * ncols, (block_q8_0 *)mine, ncols);
        *bad += memcmp(mine, q + (size_t)r * row_bytes, row_bytes) != 0;
        ds4_row_to_f32(GGML_TYPE_Q8_0, q + (size_t)r * row_bytes, back, ncols);
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
        *bad += ds4_row_to_f32(dequant_type, q + (size_t)r * row_bytes, back, ncols) != 0 ||
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
        CHECKF(sets > 0, "golden file has no %s sets", ds4_type_name(types[i]));
        CHECKF(bad == 0, "%d %s rows dequantize differently from ggml", bad, ds4_type_name(types[i]));
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
    ds4_quantize_row_q8_0(x, a, N);
    ds4_quantize_row_q8_0_scalar(x, b, N);
    int bad = memcmp(a, b, N / 32 * sizeof *a) != 0;
    int tie_ok = a[0].qs[1] == -3 && a[0].qs[4] == 1; /* -2.5 and 0.5 */
    free(x); free(a); free(b);
    CHECK(sizeof(block_q8_0) == 34);
    CHECKF(!bad, "vector Q8_0 differs from the scalar reference");
    CHECK(tie_ok);
}

static const uint32_t quantized_types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_MXFP4, GGML_TYPE_Q2_K,
                                           GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ2_XXS};
#define N_QUANTIZED (sizeof quantized_types / sizeof quantized_types[0])

/* The whole golden check as `ds4-quant check-golden` runs it: every set passes, and
 * every type this project writes was quantized and compared, with and without an imatrix. */
static void golden_check_passes(void) {
    const char *shared = test_shared_dir();
    if (!shared) { test_skip("shared/golden/quant-ggml.bin not found (set DS4_SHARED)"); return; }
    char path[600];
    snprintf(path, sizeof path, "%s/golden/quant-ggml.bin", shared);
    ds4_golden_set *sets;
    size_t n;
    CHECKF(ds4_golden_check(path, &sets, &n) == 0, "%s", ds4_error());
    if (!n) return;
    for (size_t i = 0; i < n; i++)
        CHECKF(sets[i].pass, "%s imatrix=%d: %d rows dequantize differently, worst row error %.4fx ggml's",
               ds4_type_name(sets[i].type), sets[i].has_imatrix, sets[i].dequant_bad_rows, sets[i].worst_ratio);
    for (size_t t = 0; t < N_QUANTIZED; t++) {
        int checked = 0;
        for (size_t i = 0; i < n; i++) checked += sets[i].type == quantized_types[t] && sets[i].quant_checked;
        CHECKF(checked == 2, "%s: %d golden sets quantized, expected 2", ds4_type_name(quantized_types[t]), checked);
    }
    free(sets);
}

static void golden_rejects_damaged_files(void) {
    const char *shared = test_shared_dir();
    if (!shared) { test_skip("shared/golden/quant-ggml.bin not found (set DS4_SHARED)"); return; }
    char path[600], cut[700];
    snprintf(path, sizeof path, "%s/golden/quant-ggml.bin", shared);
    size_t len;
    char *d = ds4_read_file(path, &len);
    CHECK(d != NULL);
    if (!d) return;
    snprintf(cut, sizeof cut, "%s/golden-cut.bin", test_tmpdir());
    const size_t cuts[] = {0, 10, 30, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        ds4_write_file_atomic(cut, d, cuts[i]);
        ds4_golden_set *sets = NULL;
        size_t n = 0;
        CHECKF(ds4_golden_check(cut, &sets, &n) < 0 && !sets, "a golden file cut at %zu bytes was accepted", cuts[i]);
    }
    free(d);
}

/* Rows of pseudo-random Gaussian-ish values with outliers, like the golden inputs. */
static void fill_row(float *x, int n, unsigned seed) {
    srand(seed);
    for (int i = 0; i < n; i++) {
        float v = 0;
        for (int k = 0; k < 4; k++) v += (float)rand() / RAND_MAX - 0.5f;
        x[i] = v * (i % 97 == 0 ? 7.0f : 1.0f);
    }
}

/* Activations back to F32: Q8_0 through the row converter, Q8_K as d * q, the regrouped
 * Q8_K with value 32g + 8k + j read from 64k + 8g + j. */
static void act_to_f32(int act_type, const void *act, float *out, int n) {
    if (act_type == GGML_TYPE_Q8_0) { ds4_row_to_f32(GGML_TYPE_Q8_0, act, out, n); return; }
    const block_q8_K *a = act;
    for (int i = 0; i < n; i++) {
        const int e = i % QK_K, at = act_type == DS4_ACT_Q8_K_IQ2 ? 64 * (e / 8 % 4) + 8 * (e / 32) + e % 8 : e;
        out[i] = a[i / QK_K].d * a[i / QK_K].qs[at];
    }
}

/* Each scalar kernel computes the dot product of the dequantized rows (to float
 * rounding), each SIMD kernel the scalar one's (exactly for 256-blocks, whose integer
 * sums are exact and whose float steps are the same; to 1e-6 relative of the sum of
 * magnitudes otherwise). */
static void qdot_kernels_match_reference(void) {
    enum { N = 4096 };
    float *w = malloc(N * sizeof *w), *x = malloc(N * sizeof *x), *imat = malloc(N * sizeof *imat);
    float *wd = malloc(N * sizeof *wd), *xd = malloc(N * sizeof *xd);
    uint8_t *wq = malloc(N * 2), *act = malloc(N * 2);
    for (int i = 0; i < N; i++) imat[i] = 0.5f + (float)(i % 13) / 13.0f;
    for (size_t t = 0; t < N_QUANTIZED; t++) {
        const uint32_t type = quantized_types[t];
        const int act_type = ds4_qdot_act_type(type);
        int bad_ref = 0, bad_simd = 0, levels = 0;
        for (unsigned trial = 0; trial < 8; trial++) {
            fill_row(w, N, 100 + trial);
            fill_row(x, N, 200 + trial);
            if (trial == 3) memset(x, 0, N * sizeof *x); /* all-zero activations */
            CHECKF(ds4_quantize_row(type, w, wq, N, imat) == 0, "%s", ds4_error());
            ds4_qdot_quantize_act(act_type, x, act, N);
            ds4_row_to_f32(type, wq, wd, N);
            act_to_f32(act_type, act, xd, N);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) {
                ref += (double)wd[i] * xd[i];
                mag += fabs((double)wd[i] * xd[i]);
            }
            const float scalar = ds4_qdot_kernel(type, DS4_CPU_SCALAR)(wq, act, N);
            bad_ref += fabs(scalar - ref) > 1e-5 * mag + 1e-30;
            for (int level = DS4_CPU_AVX2; level <= DS4_CPU_AVX512; level++) {
                ds4_qdot_fn fn = ds4_qdot_kernel(type, level);
                if (!fn) continue;
                levels += trial == 0;
                const float v = fn(wq, act, N);
                /* AVX-512 IQ2_XXS may be the VBMI kernel, which adds block sums in float lanes */
                const bool exact = ds4_type_get(type)->block == QK_K &&
                                   !(type == GGML_TYPE_IQ2_XXS && level == DS4_CPU_AVX512);
                bad_simd += exact ? v != scalar : fabs(v - scalar) > 1e-6 * mag + 1e-30;
            }
        }
        CHECKF(bad_ref == 0, "%s: scalar kernel differs from the F32 dot product in %d of 8 trials",
               ds4_type_name(type), bad_ref);
        CHECKF(bad_simd == 0, "%s: SIMD kernel differs from the scalar one in %d runs", ds4_type_name(type), bad_simd);
        if (ds4_cpu_detect() >= DS4_CPU_AVX2) CHECKF(levels > 0, "%s: no SIMD kernel was tested", ds4_type_name(type));
    }
    free(w); free(x); free(imat); free(wd); free(xd); free(wq); free(act);
}

/* The several-rows twins (ds4_qdot_rows_for) give each row the single kernel's bits, for
 * 2, 3 and 4 rows of different activations, at every level that has one. */
static void qdot_rows_equal_single(void) {
    enum { N = 2048, R = DS4_QDOT_ROWS };
    float *w = malloc(N * sizeof *w), *x = malloc(N * sizeof *x), *imat = malloc(N * sizeof *imat);
    uint8_t *wq = malloc(N * 2), *act = malloc((size_t)R * N * 2);
    for (int i = 0; i < N; i++) imat[i] = 0.5f + (float)(i % 13) / 13.0f;
    int twins = 0;
    const uint32_t types[] = {GGML_TYPE_IQ2_XXS, GGML_TYPE_Q2_K};
    for (size_t k = 0; k < 2; k++) {
        const int act_type = ds4_qdot_act_type(types[k]);
        const size_t row = ds4_qdot_act_size(act_type, N);
        fill_row(w, N, 7 + (unsigned)k);
        CHECKF(ds4_quantize_row(types[k], w, wq, N, imat) == 0, "%s", ds4_error());
        for (int t = 0; t < R; t++) {
            fill_row(x, N, 50 + (unsigned)t);
            ds4_qdot_quantize_act(act_type, x, act + (size_t)t * row, N);
        }
        for (int level = DS4_CPU_SCALAR; level <= DS4_CPU_AVX512; level++) {
            ds4_qdot_fn single = ds4_qdot_kernel(types[k], level);
            ds4_qdot_rows_fn rows = single ? ds4_qdot_rows_for(single) : NULL;
            if (!rows) continue;
            twins++;
            for (int T = 2; T <= R; T++) {
                float out[R];
                rows(wq, act, row, T, N, out);
                for (int t = 0; t < T; t++)
                    CHECKF(out[t] == single(wq, act + (size_t)t * row, N), "%s level %d, %d rows: row %d",
                           ds4_type_name(types[k]), level, T, t);
            }
        }
    }
    if (ds4_cpu_detect() >= DS4_CPU_AVX2) CHECK(twins == 2);
    free(w); free(x); free(imat); free(wq); free(act);
}

static void quantize_refuses_bad_requests(void) {
    float x[256] = {0};
    uint8_t out[1024];
    CHECK(ds4_quantize_row(GGML_TYPE_IQ2_XXS, x, out, 256, NULL) < 0); /* needs an imatrix */
    CHECK(ds4_quantize_row(GGML_TYPE_Q2_K, x, out, 100, NULL) < 0);    /* not whole blocks */
    CHECK(ds4_quantize_row(GGML_TYPE_Q5_K, x, out, 256, NULL) < 0);    /* no quantizer */
    CHECK(ds4_quantize_row(GGML_TYPE_Q2_K, x, out, 256, NULL) == 0);   /* zeros are fine */
    float back[256];
    ds4_row_to_f32(GGML_TYPE_Q2_K, out, back, 256);
    int nonzero = 0;
    for (int i = 0; i < 256; i++) nonzero += back[i] != 0;
    CHECK(nonzero == 0);
}

static const ds4_tensor_spec *find_spec(const ds4_tensor_spec *specs, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(specs[i].name, name)) return &specs[i];
    return NULL;
}

/* The q2 recipe on Flash's shapes gives ds4's 2-bit file types tensor by tensor, and
 * overrides and row-length fallbacks apply. */
static void recipe_types(void) {
    ds4_config c;
    ds4_config_flash(&c, 4, 8);
    ds4_tensor_spec *specs;
    size_t n;
    CHECK(ds4_expected_tensors(&c, &specs, &n) == 0);
    ds4_recipe *r = ds4_recipe_new("q2");
    CHECK(r != NULL);
    if (!r) return;
    static const struct { const char *name; uint32_t type; } want[] = {
        {"token_embd.weight", GGML_TYPE_F16}, {"output.weight", GGML_TYPE_Q8_0},
        {"output_hc_fn.weight", GGML_TYPE_F16}, {"blk.0.attn_q_a.weight", GGML_TYPE_Q8_0},
        {"blk.0.attn_norm.weight", GGML_TYPE_F32}, {"blk.0.ffn_gate_tid2eid.weight", GGML_TYPE_I32},
        {"blk.2.attn_compressor_kv.weight", GGML_TYPE_F16}, {"blk.2.indexer.proj.weight", GGML_TYPE_F16},
        {"blk.3.ffn_gate_inp.weight", GGML_TYPE_F16}, {"blk.3.ffn_gate_exps.weight", GGML_TYPE_IQ2_XXS},
        {"blk.3.ffn_up_exps.weight", GGML_TYPE_IQ2_XXS}, {"blk.3.ffn_down_exps.weight", GGML_TYPE_Q2_K},
        {"blk.3.ffn_down_shexp.weight", GGML_TYPE_Q8_0}, {"blk.3.exp_probs_b.bias", GGML_TYPE_F32},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const ds4_tensor_spec *sp = find_spec(specs, n, want[i].name);
        CHECKF(sp != NULL, "no tensor %s", want[i].name);
        if (!sp) continue;
        const uint32_t got = ds4_recipe_type(r, sp, NULL);
        CHECKF(got == want[i].type, "%s: %s, want %s", want[i].name, ds4_type_name(got), ds4_type_name(want[i].type));
    }
    CHECK(ds4_recipe_add_override(r, "blk\\.[0-2]\\.ffn_down_exps=q4_K") == 0);
    CHECK(ds4_recipe_add_override(r, "nonsense") < 0);
    CHECK(ds4_recipe_add_override(r, "a(=q8_0") < 0);
    CHECK(ds4_recipe_add_override(r, "x=q5_K") < 0); /* no quantizer */
    const ds4_tensor_spec *d0 = find_spec(specs, n, "blk.0.ffn_down_exps.weight");
    const ds4_tensor_spec *d3 = find_spec(specs, n, "blk.3.ffn_down_exps.weight");
    CHECK(d0 && ds4_recipe_type(r, d0, NULL) == GGML_TYPE_Q4_K);
    CHECK(d3 && ds4_recipe_type(r, d3, NULL) == GGML_TYPE_Q2_K);
    /* rows of 64 hold no 256-blocks: Q8_0; rows of 16 not even that: F16 */
    ds4_tensor_spec narrow = *d3;
    bool fell = false;
    narrow.ne[0] = 64;
    CHECK(ds4_recipe_type(r, &narrow, &fell) == GGML_TYPE_Q8_0 && fell);
    narrow.ne[0] = 16;
    CHECK(ds4_recipe_type(r, &narrow, NULL) == GGML_TYPE_F16);
    CHECK(ds4_recipe_new("q3") == NULL);
    ds4_recipe_free(r);
    free(specs);
}

/* ds4-quant plan on Flash's q2 against the arithmetic of its shapes (MODEL.md), spelled
 * out here: 43 layers, 256 experts of 4096 x 2048, 6 used; IQ2_XXS 66 bytes and Q2_K 84
 * bytes per 256 weights. */
static void plan_matches_flash_arithmetic(void) {
    ds4_config c;
    ds4_config_flash(&c, 0, 0);
    ds4_recipe *r = ds4_recipe_new("q2");
    ds4_size_plan p;
    CHECK(r && ds4_recipe_plan(r, &c, &p) == 0);
    const uint64_t expert = 4096ull * 2048, per_layer = 256 * expert;
    CHECK(p.class_params[0] == 43 * per_layer && p.class_params[2] == 43 * per_layer);
    CHECK(p.class_bytes[0] == 43 * per_layer / 256 * 66);
    CHECK(p.class_bytes[1] == 43 * per_layer / 256 * 66);
    CHECK(p.class_bytes[2] == 43 * per_layer / 256 * 84);
    /* about 284B parameters, as the model's name says */
    CHECKF(p.params > 283000000000ull && p.params < 285000000000ull, "%llu parameters", (unsigned long long)p.params);
    /* a decoded token reads 6 of 256 experts per layer: the expert share of it exactly */
    const uint64_t expert_bytes = p.class_bytes[0] + p.class_bytes[1] + p.class_bytes[2];
    const uint64_t embd_row = 4096 * 2; /* F16 */
    const uint64_t embd_all = 129280ull * embd_row;
    CHECK(p.bytes_per_token == expert_bytes / 256 * 6 + (p.bytes - expert_bytes - embd_all) + embd_row);
    ds4_recipe_free(r);
}

static void type_table(void) {
    CHECK(ds4_row_size(GGML_TYPE_Q8_0, 64) == 68);
    CHECK(ds4_row_size(GGML_TYPE_Q8_0, 65) == 0);
    CHECK(ds4_row_size(GGML_TYPE_IQ2_XXS, 256) == 66);
    CHECK(ds4_row_size(GGML_TYPE_Q2_K, 512) == 168);
    CHECK(ds4_row_size(GGML_TYPE_MXFP4, 64) == 34);
    CHECK(ds4_type_get(4) == NULL && ds4_type_get(1000) == NULL);
    CHECK(ds4_type_from_name("Q8_0") == GGML_TYPE_Q8_0 && ds4_type_from_name("nope") == -1);
}

const test_case quant_tests[] = {
    {"qdot_rows_equal_single", qdot_rows_equal_single},
    {"q8_0_bit_identical_to_ggml", q8_0_bit_identical_to_ggml},
    {"dequantizes_like_ggml", dequantizes_like_ggml},
    {"q8_0_simd_matches_scalar", q8_0_simd_matches_scalar},
    {"type_table", type_table},
    {"golden_check_passes", golden_check_passes},
    {"recipe_types", recipe_types},
    {"plan_matches_flash_arithmetic", plan_matches_flash_arithmetic},
    {"golden_rejects_damaged_files", golden_rejects_damaged_files},
    {"qdot_kernels_match_reference", qdot_kernels_match_reference},
    {"quantize_refuses_bad_requests", quantize_refuses_bad_requests},
    {0, 0},
};
