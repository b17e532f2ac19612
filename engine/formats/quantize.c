/* quantize.c - F32 rows to ggml's block formats: Q4_0, MXFP4, Q2_K, Q4_K, Q6_K and
 * IQ2_XXS, each with and without an importance matrix (IQ2_XXS needs one).
 *
 * The searches follow ggml's reference quantizers step by step, float operation by
 * float operation, because the aim is ggml's quality or better on every row and the
 * layouts must load in llama.cpp: a scale search over a small grid of candidate
 * inverse scales, a weighted least-squares refit of scale (and min) for the levels
 * each candidate picks, then the 6- or 4-bit super-block scales found the same way.
 * An importance matrix enters as per-column weights qw[i] * sqrt(sigma2 + x[i]^2),
 * sigma2 being the row block's mean square, exactly as in ggml.
 *
 * Where we depart from ggml it is to lose less: MXFP4 tries the next exponent too
 * and keeps whichever block error is smaller. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "iq_tables.h"
#include "numeric.h"
#include "quants.h"
#include "util.h"

#define GROUP_MAX_EPS 1e-15f

/* Round half to even, as ggml's nearest_int does (valid for |v| < 2^22): adding
 * 1.5 * 2^23 leaves the rounded integer in the low mantissa bits. Much faster than
 * lrintf, which is a library call here and dominated the K-quant searches. */
static inline int nearest(float v) {
    const float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Symmetric levels L in [-nmax, nmax-1] (stored +nmax) for one group: the scale that
 * best fits x under weights w (x^2 when w is NULL), over 19 candidate scales. */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L, const float *w) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float wi = w ? w[i] : x[i] * x[i];
        sumlx += wi * x[i] * l;
        suml2 += wi * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
            const float wi = w ? w[i] : x[i] * x[i];
            sumlx += wi * x[i] * l;
            suml2 += wi * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clampi(nearest(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Levels L in [0, nmax] with scale and min (x ~ scale*L - min) for one group of up to
 * 32 values, over nstep+1 candidate scales, each refit by weighted least squares. The
 * error is absolute (use_mad) or squared. */
static float fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, float rmin,
                        float rdelta, int nstep, bool use_mad) {
    uint8_t Laux[32];
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(nearest(iscale * (x[i] - min)), 0, nmax);
        const float diff = scale * L[i] + min - x[i];
        best += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(nearest(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D <= 0) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            const float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

/* Non-negative levels L in [0, nmax] for non-negative x (super-block scales and
 * mins): the best of 9 candidate scales, then coordinate-wise level refinement.
 * IQ2_XXS also passes magnitudes of which one may be negative (its sign-parity
 * flip); that value's level then wraps in the byte array exactly as it does in ggml,
 * and we keep ggml's arithmetic there so that our files stay byte-identical. */
static float fit_positive(int n, int nmax, const float *x, uint8_t *L, const float *w) {
    float max = 0;
    for (int i = 0; i < n; i++) max = fmaxf(max, x[i]);
    if (max < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = nmax / max, scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale * (uint8_t)nearest(iscale * x[i]);
        best += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            const int l = nearest(iscale_is * x[i]);
            const float diff = x[i] - scale_is * (l < nmax ? l : nmax);
            mse += w[i] * diff * diff;
        }
        if (mse < best) {
            best = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest(iscale * x[i]);
        if (l > nmax) l = nmax;
        L[i] = (uint8_t)l;
        sumlx += w[i] * x[i] * l;
        suml2 += w[i] * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float slx = sumlx - w[i] * x[i] * L[i], sl2 = suml2 - w[i] * L[i] * L[i];
            if (!(slx > 0 && sl2 > 0)) continue;
            int l = nearest(x[i] * sl2 / slx);
            if (l > nmax) l = nmax;
            if (l == L[i]) continue;
            slx += w[i] * x[i] * l;
            sl2 += w[i] * l * l;
            if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (uint8_t)l;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Importance weights of one super-block: qw * sqrt(sigma2 + x^2). */
static void importance(const float *x, const float *qw, int n, float sigma2, float *w) {
    for (int i = 0; i < n; i++) w[i] = qw[i] * sqrtf(sigma2 + x[i] * x[i]);
}

static float mean_square(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s / (float)n;
}

/* ---- Q4_0 ---- */

static void quantize_q4_0(const float *x, block_q4_0 *y, int64_t n, const float *qw) {
    const float sigma2 = qw ? mean_square(x, (int)n) : 0;
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        int8_t L[32];
        if (qw) {
            float w[32];
            importance(x, qw + 32 * b, 32, sigma2, w);
            y[b].d = ds4_f32_to_f16(fit_symmetric(32, 8, x, L, w));
        } else {
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++)
                if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
            const float d = max / -8, id = d ? 1.0f / d : 0.0f;
            y[b].d = ds4_f32_to_f16(d);
            for (int j = 0; j < 32; j++) {
                const int8_t v = (int8_t)(x[j] * id + 8.5f);
                L[j] = v < 15 ? v : 15;
            }
        }
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

/* ---- MXFP4 ---- */

static const int8_t fp4_doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static int fp4_nearest(float v) {
    int best = 0;
    float best_err = fabsf(v);
    for (int i = 1; i < 16; i++) {
        const float err = fabsf((float)fp4_doubled[i] - v);
        if (err < best_err) { best_err = err; best = i; }
    }
    return best;
}

/* Error of one block under exponent e; fills q. */
static float mxfp4_block(const float *x, const float *w, int e, uint8_t *q) {
    const float d = ldexpf(1.0f, e - 128); /* E8M0 scale halved: the levels are doubled */
    float err = 0;
    for (int j = 0; j < 32; j++) {
        q[j] = (uint8_t)fp4_nearest(x[j] / d);
        const float diff = fp4_doubled[q[j]] * d - x[j];
        err += (w ? w[j] : 1.0f) * diff * diff;
    }
    return err;
}

static void quantize_mxfp4(const float *x, block_mxfp4 *y, int64_t n, const float *qw) {
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        /* ggml's exponent puts amax at or above 1.5x the top level's 2^e; one more
         * can lose less when the block's large values would be clipped. */
        int e = amax > 0 ? clampi((int)floorf(log2f(amax)) - 2 + 127, 1, 253) : 0;
        uint8_t q[32], q2[32];
        const float *w = qw ? qw + 32 * b : NULL;
        if (e && mxfp4_block(x, w, e + 1, q2) < mxfp4_block(x, w, e, q)) {
            e++;
            memcpy(q, q2, 32);
        } else if (!e) {
            memset(q, 0, 32);
        }
        y[b].e = (uint8_t)e;
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
    }
}

/* Super-block scales (or mins) without an importance matrix, as ggml's reference
 * quantizers make them: levels 0..nmax of the largest; returns the F16 step. */
static uint16_t levels_of_max(const float *v, int n, int nmax, uint8_t *L) {
    float max = 0;
    for (int j = 0; j < n; j++) max = fmaxf(max, v[j]);
    const float inv = max > 0 ? (float)nmax / max : 0.0f;
    for (int j = 0; j < n; j++) L[j] = (uint8_t)clampi(nearest(inv * v[j]), 0, nmax);
    return ds4_f32_to_f16(max / (float)nmax);
}

/* ---- Q2_K ---- */

static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

static void quantize_q2_k(const float *x, block_q2_K *y, int64_t n, const float *qw) {
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        uint8_t L[QK_K], Ls[16], Lm[16];
        float scales[16], mins[16], sw[16], w[16];
        const float sigma2 = qw ? mean_square(x, QK_K) : 0;
        for (int j = 0; j < 16; j++) {
            if (qw) {
                importance(x + 16 * j, qw + QK_K * b + 16 * j, 16, sigma2, w);
                sw[j] = 0;
                for (int l = 0; l < 16; l++) sw[j] += w[l];
                scales[j] = fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, false);
            } else {
                for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
                scales[j] = fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            }
        }
        if (qw) {
            y[b].d = ds4_f32_to_f16(fit_positive(16, 15, scales, Ls, sw));
            y[b].dmin = ds4_f32_to_f16(fit_positive(16, 15, mins, Lm, sw));
        } else {
            y[b].d = levels_of_max(scales, 16, 15, Ls);
            y[b].dmin = levels_of_max(mins, 16, 15, Lm);
        }
        for (int j = 0; j < 16; j++) y[b].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        /* Requantize against the scales as stored. */
        const float dm = ds4_f16_to_f32(y[b].d), mm = ds4_f16_to_f32(y[b].dmin);
        for (int j = 0; j < 16; j++) {
            const float d = dm * (float)(y[b].scales[j] & 0xF);
            if (!d) continue;
            const float m = mm * (float)(y[b].scales[j] >> 4);
            for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)clampi(nearest((x[16 * j + i] + m) / d), 0, 3);
        }
        pack_2bit(L, y[b].qs);
    }
}

/* ---- Q4_K ---- */

static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void quantize_q4_k(const float *x, block_q4_K *y, int64_t n, const float *qw) {
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        uint8_t L[QK_K], Ls[8], Lm[8];
        float scales[8], mins[8], sw[8], w[32];
        const float sigma2 = 2 * mean_square(x, QK_K);
        for (int j = 0; j < 8; j++) {
            const float *xs = x + 32 * j;
            if (qw) {
                importance(xs, qw + QK_K * b + 32 * j, 32, sigma2, w);
                sw[j] = 0;
                for (int l = 0; l < 32; l++) sw[j] += w[l];
                scales[j] = fit_affine(32, 15, xs, w, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, false);
            } else {
                const float av_x = sqrtf(mean_square(xs, 32));
                for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
                scales[j] = fit_affine(32, 15, xs, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20, false);
            }
        }
        if (qw) {
            y[b].d = ds4_f32_to_f16(fit_positive(8, 63, scales, Ls, sw));
            y[b].dmin = ds4_f32_to_f16(fit_positive(8, 63, mins, Lm, sw));
        } else {
            y[b].d = levels_of_max(scales, 8, 63, Ls);
            y[b].dmin = levels_of_max(mins, 8, 63, Lm);
        }
        for (int j = 0; j < 8; j++) {
            if (j < 4) {
                y[b].scales[j] = Ls[j];
                y[b].scales[j + 4] = Lm[j];
            } else {
                y[b].scales[j + 4] = (uint8_t)((Ls[j] & 0xF) | ((Lm[j] & 0xF) << 4));
                y[b].scales[j - 4] |= (uint8_t)((Ls[j] >> 4) << 6);
                y[b].scales[j] |= (uint8_t)((Lm[j] >> 4) << 6);
            }
        }
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            scale_min_k4(j, y[b].scales, &sc, &m);
            const float d = ds4_f16_to_f32(y[b].d) * sc;
            if (!d) continue;
            const float dm = ds4_f16_to_f32(y[b].dmin) * m;
            for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)clampi(nearest((x[32 * j + i] + dm) / d), 0, 15);
        }
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; l++) y[b].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

/* ---- Q6_K ---- */

static void quantize_q6_k(const float *x, block_q6_K *y, int64_t n, const float *qw) {
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        int8_t L[QK_K];
        float scales[16], max_scale = 0, max_abs = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j, qw ? qw + QK_K * b + 16 * j : NULL);
            if (fabsf(scales[j]) > max_abs) { max_abs = fabsf(scales[j]); max_scale = scales[j]; }
        }
        memset(&y[b], 0, sizeof y[b]);
        if (max_abs < GROUP_MAX_EPS) continue;
        const float iscale = -128.0f / max_scale;
        y[b].d = ds4_f32_to_f16(1 / iscale);
        for (int j = 0; j < 16; j++) {
            const int s = nearest(iscale * scales[j]);
            y[b].scales[j] = (int8_t)(s < 127 ? s : 127);
        }
        for (int j = 0; j < 16; j++) {
            const float d = ds4_f16_to_f32(y[b].d) * y[b].scales[j];
            if (!d) continue;
            for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(clampi(nearest(x[16 * j + i] / d), -32, 31) + 32);
        }
        uint8_t *ql = y[b].ql, *qh = y[b].qh;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

/* ---- IQ2_XXS ---- */

/* Every 8-value pattern of levels 0..2 as a 16-bit code (2 bits per value). The 256
 * patterns of the grid map to their index; every other pattern to its nearest grid
 * points (all at the two smallest distances, ordered by distance then index). */
#define IQ2_CODES 43692
static struct {
    int map[IQ2_CODES]; /* >= 0: grid index; < 0: -(offset into neighbours) - 1 */
    uint16_t *neighbours;  /* count, then that many grid indices */
    int8_t levels[256][8]; /* grid point as odd levels 1, 3, 5 */
} iq2;
static pthread_once_t iq2_once = PTHREAD_ONCE_INIT;

static int cmp_dist(const void *a, const void *b) {
    const int *l = a, *r = b;
    return l[0] != r[0] ? (l[0] < r[0] ? -1 : 1) : (l[1] < r[1] ? -1 : l[1] > r[1]);
}

static void iq2_init(void) {
    for (int i = 0; i < IQ2_CODES; i++) iq2.map[i] = INT32_MIN;
    for (int k = 0; k < 256; k++) {
        int code = 0;
        for (int i = 0; i < 8; i++) {
            const uint8_t mag = (uint8_t)(ds4_iq2xxs_grid[k] >> (8 * i));
            const int l = mag == 0x08 ? 0 : mag == 0x19 ? 1 : 2;
            iq2.levels[k][i] = (int8_t)(2 * l + 1);
            code |= l << (2 * i);
        }
        iq2.map[code] = k;
    }
    size_t cap = 6561u * 64, used = 0;
    iq2.neighbours = malloc(cap * sizeof *iq2.neighbours);
    int dist[256][2];
    for (int code = 0; code < IQ2_CODES; code++) {
        if (iq2.map[code] >= 0) continue;
        int pos[8], valid = 1;
        for (int i = 0; i < 8; i++) {
            const int l = (code >> (2 * i)) & 3;
            valid &= l < 3;
            pos[i] = 2 * l + 1;
        }
        if (!valid) continue; /* the quantizer clamps levels to 0..2 */
        for (int k = 0; k < 256; k++) {
            int d2 = 0;
            for (int i = 0; i < 8; i++) d2 += (iq2.levels[k][i] - pos[i]) * (iq2.levels[k][i] - pos[i]);
            dist[k][0] = d2;
            dist[k][1] = k;
        }
        qsort(dist, 256, sizeof dist[0], cmp_dist);
        int count = 0, distinct = 1;
        while (count < 256) {
            if (dist[count][0] > dist[count > 0 ? count - 1 : 0][0] && ++distinct > 2) break;
            count++;
        }
        if (used + 1 + (size_t)count > cap) {
            cap *= 2;
            iq2.neighbours = realloc(iq2.neighbours, cap * sizeof *iq2.neighbours);
        }
        iq2.map[code] = -(int)used - 1;
        iq2.neighbours[used++] = (uint16_t)count;
        for (int j = 0; j < count; j++) iq2.neighbours[used++] = (uint16_t)dist[j][1];
    }
}

/* The grid point nearest to 8 values at `scale` among an off-grid pattern's
 * neighbours; its levels (0..2) go to L. */
static void iq2_nearest_neighbour(int code, const float *xval, const float *w, float scale, int8_t *L) {
    const uint16_t *nb = iq2.neighbours + (-iq2.map[code] - 1);
    float best = FLT_MAX;
    int index = nb[1];
    for (int j = 1; j <= nb[0]; j++) {
        float d2 = 0;
        for (int i = 0; i < 8; i++) {
            const float diff = scale * iq2.levels[nb[j]][i] - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) { best = d2; index = nb[j]; }
    }
    for (int i = 0; i < 8; i++) L[i] = (int8_t)((iq2.levels[index][i] - 1) / 2);
}

/* Levels of 8 values at inverse scale id (scale = its inverse as the caller has it),
 * snapped onto the grid. */
static void iq2_snap(const float *xval, const float *w, float id, float scale, int8_t *L) {
    int code = 0;
    for (int i = 0; i < 8; i++) {
        L[i] = (int8_t)clampi(nearest(0.5f * (id * xval[i] - 1)), 0, 2);
        code |= L[i] << (2 * i);
    }
    if (iq2.map[code] < 0) iq2_nearest_neighbour(code, xval, w, scale, L);
}

/* Weighted sums for the least-squares scale sumqx/sumq2 of levels L (values 2L+1). */
static void iq2_sums(const float *xval, const float *w, const int8_t *L, float *sumqx, float *sumq2) {
    *sumqx = *sumq2 = 0;
    for (int i = 0; i < 32; i++) {
        const float q = 2 * L[i] + 1;
        *sumqx += w[i] * xval[i] * q;
        *sumq2 += w[i] * q * q;
    }
}

static void quantize_iq2_xxs(const float *x, block_iq2_xxs *y, int64_t n, const float *qw) {
    pthread_once(&iq2_once, iq2_init);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + QK_K * b;
        const float sigma2 = mean_square(xb, QK_K);
        uint32_t q2[16] = {0};
        float scales[8], max_scale = 0;
        for (int ib = 0; ib < 8; ib++) {
            const float *xs = xb + 32 * ib;
            float w[32], waux[32], xval[32];
            int8_t L[32], Laux[32];
            uint8_t signs[4];
            importance(xs, qw + QK_K * b + 32 * ib, 32, sigma2, w);
            for (int i = 0; i < 32; i++) waux[i] = sqrtf(w[i]);
            /* Magnitudes with sign patterns of even parity (the format stores 7 sign
             * bits; the 8th follows): flip the least important value if odd. */
            for (int k = 0; k < 4; k++) {
                int s = 0, flips = 0;
                for (int i = 0; i < 8; i++) {
                    xval[8 * k + i] = fabsf(xs[8 * k + i]);
                    if (xs[8 * k + i] < 0) { s |= 1 << i; flips++; }
                }
                if (flips & 1) {
                    int imin = 0;
                    for (int i = 1; i < 8; i++)
                        if (w[8 * k + i] * xs[8 * k + i] * xs[8 * k + i] <
                            w[8 * k + imin] * xs[8 * k + imin] * xs[8 * k + imin])
                            imin = i;
                    xval[8 * k + imin] = -xval[8 * k + imin];
                    s ^= 1 << imin;
                }
                signs[k] = (uint8_t)(s & 127);
            }
            float max = xval[0];
            for (int i = 1; i < 32; i++) max = fmaxf(max, xval[i]);
            scales[ib] = 0;
            if (max < GROUP_MAX_EPS) continue;
            uint8_t Lp[32];
            float scale = fit_positive(32, 4, xval, Lp, w), best = 0;
            const float eff_max = scale * 3;
            if (eff_max <= 0) continue;
            memset(L, 0, sizeof L);
            for (int is = -6; is <= 6; is++) {
                const float id = (5 + is * 0.1f) / eff_max, this_scale = 1 / id;
                float sumqx, sumq2;
                for (int k = 0; k < 4; k++) iq2_snap(xval + 8 * k, waux + 8 * k, id, this_scale, Laux + 8 * k);
                iq2_sums(xval, w, Laux, &sumqx, &sumq2);
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    scale = sumqx / sumq2;
                    best = scale * sumqx;
                    memcpy(L, Laux, sizeof L);
                }
            }
            if (scale > 0) {
                float sumqx, sumq2;
                for (int k = 0; k < 4; k++) iq2_snap(xval + 8 * k, waux + 8 * k, 1 / scale, scale, L + 8 * k);
                iq2_sums(xval, w, L, &sumqx, &sumq2);
                if (sumq2 > 0) scale = sumqx / sumq2;
            }
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; k++) signs[k] = (uint8_t)(~signs[k] & 127);
            }
            for (int k = 0; k < 4; k++) {
                int code = 0;
                for (int i = 0; i < 8; i++) code |= L[8 * k + i] << (2 * i);
                q2[2 * ib] |= (uint32_t)iq2.map[code] << (8 * k);
                q2[2 * ib + 1] |= (uint32_t)signs[k] << (7 * k);
            }
            scales[ib] = scale;
            max_scale = fmaxf(max_scale, scale);
        }
        y[b].d = 0;
        if (max_scale > 0) {
            const float d = max_scale / 31, id = 1 / d;
            y[b].d = ds4_f32_to_f16(d);
            for (int ib = 0; ib < 8; ib++)
                q2[2 * ib + 1] |= (uint32_t)clampi(nearest(0.5f * (id * scales[ib] - 1)), 0, 15) << 28;
        } else {
            memset(q2, 0, sizeof q2);
        }
        memcpy(y[b].qs, q2, sizeof q2);
    }
}

bool ds4_quantize_supported(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0:
    case GGML_TYPE_MXFP4: case GGML_TYPE_Q2_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q6_K: case GGML_TYPE_IQ2_XXS:
        return true;
    default:
        return false;
    }
}

bool ds4_quantize_needs_imatrix(uint32_t type) { return type == GGML_TYPE_IQ2_XXS; }

int ds4_quantize_row(uint32_t type, const float *src, void *dst, int64_t n, const float *imatrix) {
    const ds4_type_info *info = ds4_type_get(type);
    if (!info || !ds4_quantize_supported(type)) return ds4_fail("cannot quantize to %s", ds4_type_name(type));
    if (n % info->block)
        return ds4_fail("%s rows need a multiple of %u values, got %lld", info->name, info->block, (long long)n);
    if (!imatrix && ds4_quantize_needs_imatrix(type))
        return ds4_fail("%s needs an importance matrix (ds4 imatrix makes one)", info->name);
    switch (type) {
    case GGML_TYPE_Q4_0: quantize_q4_0(src, dst, n, imatrix); return 0;
    case GGML_TYPE_MXFP4: quantize_mxfp4(src, dst, n, imatrix); return 0;
    case GGML_TYPE_Q2_K: quantize_q2_k(src, dst, n, imatrix); return 0;
    case GGML_TYPE_Q4_K: quantize_q4_k(src, dst, n, imatrix); return 0;
    case GGML_TYPE_Q6_K: quantize_q6_k(src, dst, n, imatrix); return 0;
    case GGML_TYPE_IQ2_XXS: quantize_iq2_xxs(src, dst, n, imatrix); return 0;
    default: return ds4_row_from_f32(type, src, dst, n); /* imatrix changes nothing there */
    }
}
