/* numeric.h - scalar conversions between F32 and the small float formats found in
 * checkpoints and GGUF files: IEEE half (F16), bfloat16, FP8 E4M3, E8M0 scales and
 * FP4 E2M1. These are the reference definitions that vectorised paths are tested
 * against; all conversions to a narrower format round to nearest, ties to even. */
#ifndef DS4_NUMERIC_H
#define DS4_NUMERIC_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t ds4_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float ds4_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float ds4_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return ds4_bits_f32(sign | 0x7f800000 | (man << 13)); /* inf / nan */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in float */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return ds4_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t ds4_f32_to_f16(float f) {
    uint32_t x = ds4_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff); /* nan, quiet */
    if (ax >= 0x477ff000) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (ax < 0x38800000) {
        /* result is subnormal or zero: round ax * 2^24 to an integer, ties to even */
        if (ax < 0x33000000) return sign; /* < 2^-25: rounds to zero */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 + 1 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = ax + 0xfff + ((ax >> 13) & 1); /* round mantissa to 10 bits, ties even */
    return sign | (uint16_t)((r - 0x38000000) >> 13);
}

static inline float ds4_bf16_to_f32(uint16_t b) { return ds4_bits_f32((uint32_t)b << 16); }

static inline uint16_t ds4_f32_to_bf16(float f) {
    uint32_t x = ds4_f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/* FP8 E4M3 (the "fn" variant: no infinities, 0x7f/0xff are NaN, max 448). */
static inline float ds4_fp8_e4m3_to_f32(uint8_t v) {
    uint32_t sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float r;
    if (exp == 0xf && man == 7) r = NAN;
    else if (exp == 0) r = (float)man * 0x1p-9f;
    else r = ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    return sign ? -r : r;
}

/* E8M0: a bare power-of-two exponent, 2^(v-127); 0xff is NaN. */
static inline float ds4_e8m0_to_f32(uint8_t v) {
    if (v == 0xff) return NAN;
    if (v == 0) return 0x1p-127f;
    return ds4_bits_f32((uint32_t)v << 23);
}

/* FP4 E2M1 code (low 4 bits) to its value. */
static inline float ds4_fp4_e2m1_to_f32(uint8_t code) {
    static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float m = mag[code & 7];
    return (code & 8) ? -m : m;
}

#endif
