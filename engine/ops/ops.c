/* ops.c - see ops.h. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "numeric.h"
#include "quants.h"

float ds4_dot_scalar(const float *a, const float *b, uint64_t n) {
    float s = 0.0f;
    for (uint64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}


float ds4_rowdot_f16_scalar(const void *row, const float *x, uint64_t n) {
    const uint8_t *p = row;
    float s = 0.0f;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        s += ds4_f16_to_f32(h) * x[i];
    }
    return s;
}


/* Each weight as ds4_row_to_f32 makes it (the scale times the integer), in order: the
 * scalar dot product of the converted row. */
float ds4_rowdot_q8_0_scalar(const void *row, const float *x, uint64_t n) {
    const uint8_t *p = row;
    float s = 0.0f;
    for (uint64_t b = 0; b < n / QK8_0; b++, p += sizeof(block_q8_0), x += QK8_0) {
        uint16_t h;
        memcpy(&h, p, 2);
        const float d = ds4_f16_to_f32(h);
        for (int j = 0; j < QK8_0; j++) {
            const float w = d * (float)(int8_t)p[2 + j];
            s += w * x[j];
        }
    }
    return s;
}


/* y += a * x, a multiply then an add per element (no FMA), so every level gives the
 * scalar loop's bits: attention outputs feed discrete top-k choices downstream. */
void ds4_axpy_scalar(float a, const float *x, float *y, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) y[i] += a * x[i];
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
