/* Every weight type's blocks as the GPU decodes them, against the CPU's ds4_row_to_f32,
 * exactly: products of random (valid) rows with one-hot activations read the decoded
 * values back one by one (equal as floats: -0 comes back as 0), through both product
 * kernels (one activation row, eight and seven: the passes of the warp-per-row kernel,
 * and DS4_CUDA_GEMM_MIN_T: the tiled one). Built by make CUDA=1 as build/tests/cuda_decode; tests/cuda.sh runs it.
 * And a synthetic matrix made on the device (ds4_cuda_fill) against the host's
 * ds4_fill_rows. Prints "N passed, N failed" (exit 77: no GPU). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpufeatures.h"
#include "cuda_matmul.h"
#include "fill.h"
#include "iq_tables.h"
#include "numeric.h"
#include "qdot.h"
#include "quants.h"
#include "types.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void put_f16(uint8_t *p, float x) {
    const uint16_t h = ds4_f32_to_f16(x);
    memcpy(p, &h, 2);
}

/* A random row of `type`: random bits, with finite scales where the format has them. */
static void random_row(uint32_t type, uint8_t *row, int64_t n) {
    const ds4_type_info *t = ds4_type_get(type);
    const uint64_t bytes = ds4_row_size(type, (uint64_t)n);
    for (uint64_t i = 0; i < bytes; i++) row[i] = (uint8_t)next();
    for (int64_t b = 0; b < n / t->block; b++) {
        uint8_t *blk = row + b * t->bytes;
        const float s = 0.01f + (float)(next() % 1000) / 1000.0f, m = (float)(next() % 1000) / 5000.0f;
        switch (type) {
        case GGML_TYPE_F32: { const float v = (float)(int)(next() % 2001 - 1000) / 256.0f; memcpy(blk, &v, 4); break; }
        case GGML_TYPE_F16: put_f16(blk, (float)(int)(next() % 2001 - 1000) / 256.0f); break;
        case GGML_TYPE_BF16: { const uint16_t h = ds4_f32_to_bf16((float)(int)(next() % 2001 - 1000) / 256.0f); memcpy(blk, &h, 2); break; }
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q8_0: case GGML_TYPE_IQ2_XXS: put_f16(blk, s); break;
        case GGML_TYPE_MXFP4: blk[0] = (uint8_t)(120 + next() % 12); break;
        case GGML_TYPE_Q2_K: put_f16(blk + 80, s); put_f16(blk + 82, m); break;
        case GGML_TYPE_Q3_K: put_f16(blk + 108, s); break;
        case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: put_f16(blk, s); put_f16(blk + 2, m); break;
        case GGML_TYPE_Q6_K: put_f16(blk + 208, s); break;
        }
    }
}

/* y[i][r] (T rows of `rows`) against sum_j wf[r][j] x[i][j] in double: within 1e-5 of
 * sum |w x| (the device adds in its own fixed order). */
static int check_sums(const char *name, const float *wf, int rows, const float *x, int T, int n, const float *y,
                      char *err, size_t cap) {
    for (int i = 0; i < T; i++)
        for (int r = 0; r < rows; r++) {
            double want = 0, mag = 0;
            for (int j = 0; j < n; j++) {
                want += (double)wf[(size_t)r * n + j] * x[(size_t)i * n + j];
                mag += fabs((double)wf[(size_t)r * n + j] * x[(size_t)i * n + j]);
            }
            if (!(fabs(y[(size_t)i * rows + r] - want) <= 1e-5 * mag + 1e-30)) {
                snprintf(err, cap, "%s row %d token %d: %g, want %g", name, r, i, y[(size_t)i * rows + r], want);
                return -1;
            }
        }
    return 0;
}

int main(void) {
    char err[256];
    ds4_cuda *c = ds4_cuda_create(0, err, sizeof err);
    if (!c) {
        printf("skip cuda_decode (%s)\n", err);
        return 77;
    }
    if (ds4_cuda_tables(c, ds4_iq2xxs_grid, ds4_ksigns_iq2xs, ds4_kmask_iq2xs, err, sizeof err) < 0 ||
        ds4_cuda_reserve(c, 96u << 20, err, sizeof err) < 0) {
        printf("FAIL cuda_decode/setup: %s\n", err);
        return 1;
    }
    static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                                     GGML_TYPE_MXFP4, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                                     GGML_TYPE_Q6_K, GGML_TYPE_IQ2_XXS};
    enum { ROWS = 5, N = 512, T = DS4_CUDA_GEMM_MIN_T };
    static const int shapes[] = {T, DS4_CUDA_MMA_MIN_T, 8, 7, 1};
    int pass = 0, fail = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const uint32_t type = types[k];
        const ds4_type_info *t = ds4_type_get(type);
        const uint64_t row_bytes = ds4_row_size(type, N);
        uint8_t *w = malloc(ROWS * row_bytes);
        float *want = malloc(ROWS * N * sizeof(float)), *x = calloc((size_t)T * N, sizeof(float)),
              *y = malloc((size_t)T * ROWS * sizeof(float));
        for (int r = 0; r < ROWS; r++) {
            random_row(type, w + r * row_bytes, N);
            ds4_row_to_f32(type, w + r * row_bytes, want + r * N, N);
        }
        uint64_t off;
        int bad = ds4_cuda_upload(c, w, ROWS * row_bytes, &off, err, sizeof err) < 0;
        /* columns j in groups of T: each group's columns as one-hot rows, T at once (the
         * tiled kernel), then the group's first 8, 7 and 1 (the other) */
        for (int j0 = 0; j0 < N && !bad; j0 += T) {
            for (size_t shape = 0; shape < sizeof shapes / sizeof shapes[0] && !bad; shape++) {
                const int rows = shapes[shape] < N - j0 ? shapes[shape] : N - j0;
                memset(x, 0, (size_t)T * N * sizeof(float));
                for (int i = 0; i < rows; i++) x[(size_t)i * N + j0 + i] = 1.0f;
                const ds4_cuda_product p = {{off, row_bytes, type, t->block > 1 ? t->bytes : t->bytes * 32, N}, ROWS, x,
                                            N, rows, y, ROWS, 0, 0, 0, NULL};
                if (ds4_cuda_products(c, &p, 1, err, sizeof err) < 0) {
                    bad = 1;
                    break;
                }
                for (int i = 0; i < rows && !bad; i++)
                    for (int r = 0; r < ROWS; r++)
                        /* == : a sum that starts at +0 cannot give -0 back */
                        if (!(y[(size_t)i * ROWS + r] == want[r * N + j0 + i])) {
                            snprintf(err, sizeof err, "row %d value %d: %g, the CPU %g (%s)", r, j0 + i,
                                     y[(size_t)i * ROWS + r], want[r * N + j0 + i], rows >= DS4_CUDA_MMA_MIN_T ? "tiled" : "a warp per row");
                            bad = 1;
                            break;
                        }
            }
        }
        if (bad) { fail++; printf("FAIL cuda_decode/%s: %s\n", t->name, err); }
        else { pass++; printf("ok   cuda_decode/%s\n", t->name); }
        free(w);
        free(want);
        free(x);
        free(y);
    }
    /* long rows (4096 values) of every type times random activations, one, nine and 70
     * rows (the tensor-core tiles' partial tile and slices), against the CPU's dequantized
     * rows summed in double (a fixed but different order: within 1e-5 of the sum of |w x|) */
    {
        enum { SROWS = 3, SN = 4096, ST = 70 };
        static const int long_shapes[] = {1, 9, ST};
        int bad = 0;
        float *x = malloc((size_t)ST * SN * sizeof(float)), *y = malloc((size_t)ST * SROWS * sizeof(float));
        float *wf = malloc((size_t)SROWS * SN * sizeof(float));
        for (int i = 0; i < ST * SN; i++) x[i] = (float)((int)(next() % 2001) - 1000) / 1000.0f;
        for (size_t k = 0; k < sizeof types / sizeof types[0] && !bad; k++) {
            const uint32_t type = types[k];
            const ds4_type_info *t = ds4_type_get(type);
            const uint64_t row_bytes = ds4_row_size(type, SN);
            uint8_t *w = malloc(SROWS * row_bytes);
            for (int r = 0; r < SROWS; r++) {
                random_row(type, w + r * row_bytes, SN);
                ds4_row_to_f32(type, w + r * row_bytes, wf + (size_t)r * SN, SN);
            }
            uint64_t off;
            bad = ds4_cuda_upload(c, w, SROWS * row_bytes, &off, err, sizeof err) < 0;
            for (int s = 0; s < 3 && !bad; s++) {
                const int rows = long_shapes[s];
                const ds4_cuda_product p = {{off, row_bytes, type, t->block > 1 ? t->bytes : t->bytes * 32, SN}, SROWS,
                                            x, SN, rows, y, SROWS, 0, 0, 0, NULL};
                bad = ds4_cuda_products(c, &p, 1, err, sizeof err) < 0 ||
                      check_sums(t->name, wf, SROWS, x, rows, SN, y, err, sizeof err) < 0;
            }
            free(w);
        }
        if (bad) { fail++; printf("FAIL cuda_decode/long_rows: %s\n", err); }
        else { pass++; printf("ok   cuda_decode/long_rows\n"); }
        free(x);
        free(y);
        free(wf);
    }
    /* the tensor-core tiles unsliced: enough weight rows to fill the device, 70 activation
     * rows (a full tile and a partial one), the same bound as the long rows */
    {
        enum { MROWS = 12288, MN = 512, MTT = 70 };
        static const uint32_t mtypes[] = {GGML_TYPE_Q8_0, GGML_TYPE_F16, GGML_TYPE_BF16};
        float *x = malloc((size_t)MTT * MN * sizeof(float)), *y = malloc((size_t)MTT * MROWS * sizeof(float));
        float *wf = malloc((size_t)MROWS * MN * sizeof(float));
        int bad = !x || !y || !wf;
        for (int i = 0; i < MTT * MN && !bad; i++) x[i] = (float)((int)(next() % 2001) - 1000) / 1000.0f;
        for (size_t k = 0; k < sizeof mtypes / sizeof mtypes[0] && !bad; k++) {
            const ds4_type_info *t = ds4_type_get(mtypes[k]);
            const uint64_t row_bytes = ds4_row_size(mtypes[k], MN);
            uint8_t *w = malloc(MROWS * row_bytes);
            for (int r = 0; r < MROWS; r++) {
                random_row(mtypes[k], w + r * row_bytes, MN);
                ds4_row_to_f32(mtypes[k], w + r * row_bytes, wf + (size_t)r * MN, MN);
            }
            ds4_cuda_product q = {{0, row_bytes, mtypes[k], t->block > 1 ? t->bytes : t->bytes * 32, MN}, MROWS,
                                  x, MN, MTT, y, MROWS, 0, 0, 0, NULL};
            bad = ds4_cuda_upload(c, w, MROWS * row_bytes, &q.w.offset, err, sizeof err) < 0 ||
                  ds4_cuda_products(c, &q, 1, err, sizeof err) < 0 ||
                  check_sums(t->name, wf, MROWS, x, MTT, MN, y, err, sizeof err) < 0;
            free(w);
        }
        if (bad) { fail++; printf("FAIL cuda_decode/tiles: %s\n", err); }
        else { pass++; printf("ok   cuda_decode/tiles\n"); }
        free(x);
        free(y);
        free(wf);
    }
    /* a synthetic matrix made on the device (ds4_cuda_fill) is the one made on the host
     * (ds4_fill_rows) and uploaded: the same products from both, bit for bit */
    {
        enum { FROWS = 300, FN = 1024 };
        const uint32_t type = GGML_TYPE_IQ2_XXS;
        const ds4_type_info *t = ds4_type_get(type);
        ds4_tensor_fill f = {.pool_blocks = 777, .block_bytes = t->bytes, .row_bytes = ds4_row_size(type, FN),
                             .n_rows = FROWS, .seed = 12345};
        f.pool = malloc(f.pool_blocks * f.block_bytes);
        random_row(type, f.pool, (int64_t)(f.pool_blocks * 256));
        uint8_t *host = malloc(FROWS * f.row_bytes);
        ds4_fill_rows(&f, 0, FROWS, host);
        float *x = malloc(FN * sizeof(float)), *y0 = malloc(FROWS * sizeof(float)), *y1 = malloc(FROWS * sizeof(float));
        for (int i = 0; i < FN; i++) x[i] = (float)((int)(next() % 2001) - 1000) / 1000.0f;
        uint64_t off_host, off_dev;
        int bad = ds4_cuda_upload(c, host, FROWS * f.row_bytes, &off_host, err, sizeof err) < 0 ||
                  ds4_cuda_fill(c, f.pool, f.pool_blocks, (uint32_t)f.block_bytes, f.row_bytes, FROWS, f.seed, &off_dev,
                                err, sizeof err) < 0;
        for (int k = 0; k < 2 && !bad; k++) {
            const ds4_cuda_product p = {{k ? off_dev : off_host, f.row_bytes, type, t->bytes, FN}, FROWS, x, FN, 1,
                                        k ? y1 : y0, FROWS, 0, 0, 0, NULL};
            bad = ds4_cuda_products(c, &p, 1, err, sizeof err) < 0;
        }
        if (!bad && memcmp(y0, y1, FROWS * sizeof(float))) {
            snprintf(err, sizeof err, "the device's rows differ from the host's");
            bad = 1;
        }
        if (bad) { fail++; printf("FAIL cuda_decode/fill: %s\n", err); }
        else { pass++; printf("ok   cuda_decode/fill\n"); }
        free(f.pool);
        free(host);
        free(x);
        free(y0);
        free(y1);
    }
    /* int8 activations (ds4_cuda_act_formats, as under --act q8): every type with a CPU
     * int8 kernel against that kernel (qdot.c's scalar one) on the same rows, through
     * the warp-per-row kernels (1, 3, 7 activation rows) and the tiles (64): one-block
     * rows of the types the device multiplies in int8 bit for bit, 13-block rows within
     * 1e-5 of sum |w||x| (the F32 activations would miss by ~7e-5) */
    {
        enum { QROWS = 37, QT = DS4_CUDA_GEMM_MIN_T };
        static const uint32_t qtypes[] = {GGML_TYPE_IQ2_XXS, GGML_TYPE_Q2_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K,
                                          GGML_TYPE_Q4_0, GGML_TYPE_MXFP4, GGML_TYPE_Q8_0};
        static const int qshapes[] = {1, 3, 7, QT};
        uint8_t fmt[DS4_CUDA_TYPE_IDS] = {0};
        for (uint32_t ty = 0; ty < DS4_CUDA_TYPE_IDS; ty++)
            if (ds4_qdot_act_applies(DS4_ACT_Q8, ty))
                fmt[ty] = ds4_qdot_act_type(ty) == GGML_TYPE_Q8_0 ? DS4_CUDA_ACT_Q8_0 : DS4_CUDA_ACT_Q8_K;
        ds4_cuda_act_formats(c, fmt, DS4_CUDA_TYPE_IDS);
        for (size_t k = 0; k < sizeof qtypes / sizeof qtypes[0]; k++) {
            const uint32_t type = qtypes[k];
            const ds4_type_info *t = ds4_type_get(type);
            const ds4_qdot_fn dot = ds4_qdot_kernel(type, DS4_CPU_SCALAR);
            const int act_type = ds4_qdot_act_type(type);
            const int exact = type == GGML_TYPE_IQ2_XXS || type == GGML_TYPE_Q2_K;
            int bad = !dot;
            snprintf(err, sizeof err, "no scalar kernel");
            for (int nblk = 1; nblk <= 13 && !bad; nblk += 12) {
                const int64_t n = 256 * nblk;
                const uint64_t row_bytes = ds4_row_size(type, (uint64_t)n);
                uint8_t *w = malloc(QROWS * row_bytes), *act = malloc(ds4_qdot_act_size(act_type, n));
                float *x = malloc((size_t)QT * n * sizeof(float)), *y = malloc((size_t)QT * QROWS * sizeof(float));
                float *wf = malloc((size_t)n * sizeof(float));
                for (int r = 0; r < QROWS; r++) random_row(type, w + r * row_bytes, n);
                for (int64_t i = 0; i < QT * n; i++) x[i] = (float)((int)(next() % 20001) - 10000) / 1000.0f;
                uint64_t off;
                bad = ds4_cuda_upload(c, w, QROWS * row_bytes, &off, err, sizeof err) < 0;
                for (size_t s = 0; s < sizeof qshapes / sizeof qshapes[0] && !bad; s++) {
                    const int rows = qshapes[s];
                    const ds4_cuda_product p = {{off, row_bytes, type, t->bytes, n}, QROWS, x, (uint64_t)n, rows, y,
                                                QROWS, 0, 0, 0, NULL};
                    bad = ds4_cuda_products(c, &p, 1, err, sizeof err) < 0;
                    for (int i = 0; i < rows && !bad; i++) {
                        ds4_qdot_quantize_act(act_type, x + (size_t)i * n, act, n);
                        for (int r = 0; r < QROWS && !bad; r++) {
                            const float want = dot(w + r * row_bytes, act, n), got = y[(size_t)i * QROWS + r];
                            double scale = 0;
                            ds4_row_to_f32(type, w + r * row_bytes, wf, n);
                            for (int64_t v = 0; v < n; v++) scale += fabs((double)wf[v] * x[(size_t)i * n + v]);
                            const int ok = exact && nblk == 1 && rows < QT ? got == want
                                                                           : fabs((double)got - want) <= 1e-5 * scale;
                            if (!ok) {
                                snprintf(err, sizeof err, "%s: %d blocks, %d rows: row %d token %d: %.9g, the CPU %.9g",
                                         t->name, nblk, rows, r, i, got, want);
                                bad = 1;
                            }
                        }
                    }
                }
                free(w);
                free(act);
                free(x);
                free(y);
                free(wf);
            }
            if (bad) { fail++; printf("FAIL cuda_decode/int8_%s: %s\n", t->name, err); }
            else { pass++; printf("ok   cuda_decode/int8_%s\n", t->name); }
        }
        ds4_cuda_act_formats(c, fmt, 0);
    }
    ds4_cuda_destroy(c);
    printf("cuda_decode: %d passed, %d failed\n", pass, fail);
    return fail ? 1 : 0;
}
