/* Small-float conversions and the run-time dispatched F16 row paths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpufeatures.h"
#include "numeric.h"
#include "quants.h"
#include "test.h"
#include "util.h"

static void f16_roundtrips_every_value(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ds4_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        CHECKF(ds4_f32_to_f16(f) == h, "f16 0x%04x -> %g -> 0x%04x", h, f, ds4_f32_to_f16(f));
    }
}

static void f16_rounds_to_nearest_even(void) {
    CHECK(ds4_f32_to_f16(1.0f) == 0x3c00);
    CHECK(ds4_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(ds4_f32_to_f16(65520.0f) == 0x7c00);     /* halfway to the next binade: infinity */
    CHECK(ds4_f32_to_f16(65519.996f) == 0x7bff);
    CHECK(ds4_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00); /* tie, even stays */
    CHECK(ds4_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02); /* tie, odd rounds up */
    CHECK(ds4_f32_to_f16(0x1p-25f) == 0x0000);    /* tie between 0 and the smallest subnormal */
    CHECK(ds4_f32_to_f16(0x1.8p-25f) == 0x0001);
    CHECK(ds4_f32_to_f16(-0.0f) == 0x8000);
    CHECK(ds4_f32_to_f16(INFINITY) == 0x7c00);
    CHECK((ds4_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (ds4_f32_to_f16(NAN) & 0x3ff));
}

/* The F16C path must give the same bits as the scalar reference on everything. */
static void f16_rows_match_scalar(void) {
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x), *y1 = malloc(N * sizeof *y1), *y2 = malloc(N * sizeof *y2);
    uint16_t *a = malloc(N * 2), *b = malloc(N * 2);
    srand(7);
    for (int i = 0; i < N; i++) {
        uint32_t bits = ((uint32_t)rand() << 16) ^ (uint32_t)rand();
        x[i] = i % 3 ? ds4_bits_f32(bits) : (float)(rand() - RAND_MAX / 2) / 1000.0f;
        if (isnan(x[i])) x[i] = 1.5f;
    }
    ds4_f32_to_f16_row(x, a, N - 3); /* odd length covers the scalar tail */
    ds4_f32_to_f16_row_scalar(x, b, N - 3);
    int bad = 0;
    for (int i = 0; i < N - 3; i++) bad += a[i] != b[i];
    for (int i = 0; i < N; i++) a[i] = (uint16_t)i;
    ds4_f16_to_f32_row(a, y1, N);
    ds4_f16_to_f32_row_scalar(a, y2, N);
    for (int i = 0; i < N; i++) bad += memcmp(&y1[i], &y2[i], 4) != 0 && !(isnan(y1[i]) && isnan(y2[i]));
    free(x); free(y1); free(y2); free(a); free(b);
    CHECKF(bad == 0, "%d values differ between the %s and scalar paths", bad, ds4_cpu_level_name(ds4_cpu_detect()));
}

static void bf16_fp8_e8m0_fp4(void) {
    CHECK(ds4_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(ds4_f32_to_bf16(ds4_bits_f32(0x3f808000)) == 0x3f80); /* tie to even */
    CHECK(ds4_f32_to_bf16(ds4_bits_f32(0x3f818000)) == 0x3f82);
    CHECK(ds4_bf16_to_f32(0xc000) == -2.0f);
    CHECK(ds4_fp8_e4m3_to_f32(0x38) == 1.0f);
    CHECK(ds4_fp8_e4m3_to_f32(0x7e) == 448.0f);
    CHECK(ds4_fp8_e4m3_to_f32(0xfe) == -448.0f);
    CHECK(ds4_fp8_e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(isnan(ds4_fp8_e4m3_to_f32(0x7f)));
    CHECK(ds4_e8m0_to_f32(127) == 1.0f && ds4_e8m0_to_f32(130) == 8.0f && ds4_e8m0_to_f32(120) == 0x1p-7f);
    CHECK(isnan(ds4_e8m0_to_f32(255)));
    static const float fp4[16] = {0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -.5f, -1, -1.5f, -2, -3, -4, -6};
    for (int c = 0; c < 16; c++) CHECK(ds4_fp4_e2m1_to_f32((uint8_t)c) == fp4[c]);
}

static void parses_numbers_in_range(void) {
    double x = -1;
    CHECK(ds4_parse_number("0.25", 0, 1, &x) == 0 && x == 0.25);
    CHECK(ds4_parse_number("1e3", 0, HUGE_VAL, &x) == 0 && x == 1000);
    CHECK(ds4_parse_number("1.5", 0, 1, &x) < 0);
    CHECK(ds4_parse_number("-1", 0, 1, &x) < 0);
    CHECK(ds4_parse_number("nan", 0, 1, &x) < 0);
    CHECK(ds4_parse_number("3x", 0, 10, &x) < 0);
    CHECK(ds4_parse_number("", 0, 10, &x) < 0);
    CHECK(ds4_parse_number(NULL, 0, 10, &x) < 0);
    CHECK(x == 1000);
}

static void parses_token_id_lists(void) {
    int32_t *ids = NULL;
    size_t n = 9;
    CHECK(ds4_parse_token_ids(" 0, 7,\n2147483647\t12 ", &ids, &n) == 0);
    CHECK(n == 4 && ids[0] == 0 && ids[1] == 7 && ids[2] == INT32_MAX && ids[3] == 12);
    free(ids);
    CHECK(ds4_parse_token_ids(" , ", &ids, &n) == 0 && n == 0);
    free(ids);
    CHECK(ds4_parse_token_ids("1,-2", &ids, &n) < 0);
    CHECK(ds4_parse_token_ids("2147483648", &ids, &n) < 0);
    CHECK(ds4_parse_token_ids("5x", &ids, &n) < 0);
    CHECK(strstr(ds4_error(), "5x") != NULL);
}

const test_case numeric_tests[] = {
    {"f16_roundtrips_every_value", f16_roundtrips_every_value},
    {"f16_rounds_to_nearest_even", f16_rounds_to_nearest_even},
    {"f16_rows_match_scalar", f16_rows_match_scalar},
    {"bf16_fp8_e8m0_fp4", bf16_fp8_e8m0_fp4},
    {"parses_numbers_in_range", parses_numbers_in_range},
    {"parses_token_id_lists", parses_token_id_lists},
    {0, 0},
};
