/* dequant.c - block formats of ggml read back to F32: Q4_0, the K-quants (Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K) and IQ2_XXS, laid out bit for bit as ggml lays them out (so the
 * GGUFs of llama.cpp and of the original ds4 engine run here). Each must reproduce
 * ggml's own dequantized values exactly (tests hold them to shared/golden). */
#include <string.h>

#include "iq_tables.h"
#include "numeric.h"
#include "quants.h"


static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return ds4_f16_to_f32(h);
}

static void dequant_q4_0(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 0xF) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

/* Q2_K: scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin */
static void dequant_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *q = b + 16;
    const float d = f16_at(b + 80), min = f16_at(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                const uint8_t sc = scales[is++];
                const float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
        q += 32;
    }
}

/* Q3_K: hmask[32], qs[64], scales[12] (16 six-bit scales), d */
static void dequant_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32;
    const float d_all = f16_at(b + 108);
    uint32_t aux[4];
    memcpy(aux, b + 96, 12);
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f, tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    memcpy(scales, aux, 16);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                const float dl = d_all * (float)(scales[is++] - 32);
                for (int l = 0; l < 16; l++) {
                    int v = (q[l + 16 * half] >> shift) & 3;
                    *y++ = dl * (float)(v - ((hm[l + 16 * half] & m) ? 0 : 4));
                }
            }
            m <<= 1;
        }
        q += 32;
    }
}

/* The six-bit scale and min j of a Q4_K / Q5_K block. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K: d, dmin, scales[12], qs[128]; Q5_K adds qh[32] before qs. */
static void dequant_q45_k(const uint8_t *b, float *y, bool five) {
    const float d = f16_at(b), min = f16_at(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = five ? b + 48 : b + 16;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2) {
        uint8_t sc, m;
        scale_min_k4(is, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        u1 <<= 2;
        u2 <<= 2;
    }
}

/* Q6_K: ql[128], qh[64], scales[16] (int8), d */
static void dequant_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(const void *)(b + 192);
    const float d = f16_at(b + 208);
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

/* IQ2_XXS: d, then per 32 values two u32: four grid indices, and four 7-bit sign
 * indices with a 4-bit scale in the top bits. */
static void dequant_iq2_xxs(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        uint32_t aux[2];
        memcpy(aux, b + 2 + 8 * ib, 8);
        const float db = d * (0.5f + (float)(aux[1] >> 28)) * 0.25f;
        for (int l = 0; l < 4; l++) {
            const uint64_t g = ds4_iq2xxs_grid[(aux[0] >> (8 * l)) & 255];
            const uint8_t signs = ds4_ksigns_iq2xs[(aux[1] >> (7 * l)) & 127];
            for (int j = 0; j < 8; j++) {
                const float v = db * (float)((g >> (8 * j)) & 255);
                y[j] = (signs & ds4_kmask_iq2xs[j]) ? -v : v;
            }
            y += 8;
        }
    }
}

int ds4_dequant_blocks(uint32_t type, const uint8_t *src, float *dst, int64_t n) {
    const ds4_type_info *t = ds4_type_get(type);
    for (int64_t b = 0; b < n / t->block; b++) {
        const uint8_t *blk = src + b * t->bytes;
        float *y = dst + b * t->block;
        switch (type) {
        case GGML_TYPE_Q4_0: dequant_q4_0(blk, y); break;
        case GGML_TYPE_Q2_K: dequant_q2_k(blk, y); break;
        case GGML_TYPE_Q3_K: dequant_q3_k(blk, y); break;
        case GGML_TYPE_Q4_K: dequant_q45_k(blk, y, false); break;
        case GGML_TYPE_Q5_K: dequant_q45_k(blk, y, true); break;
        case GGML_TYPE_Q6_K: dequant_q6_k(blk, y); break;
        case GGML_TYPE_IQ2_XXS: dequant_iq2_xxs(blk, y); break;
        default: return -1;
        }
    }
    return 0;
}
