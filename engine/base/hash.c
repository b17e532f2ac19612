/* hash.c - see hash.h. */
#include "hash.h"

#include <stdio.h>
#include <string.h>

static uint32_t rol(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static void compress(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        const uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void ds4_sha1_init(ds4_sha1 *s) {
    *s = (ds4_sha1){.h = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}};
}

void ds4_sha1_update(ds4_sha1 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->len += n;
    while (n > 0) {
        const size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used == 64) {
            compress(s->h, s->block);
            s->used = 0;
        }
    }
}

void ds4_sha1_final(ds4_sha1 *s, uint8_t digest[20]) {
    const uint64_t bits = s->len * 8;
    const uint8_t pad = 0x80, zero = 0;
    ds4_sha1_update(s, &pad, 1);
    while (s->used != 56) ds4_sha1_update(s, &zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    ds4_sha1_update(s, len, 8);
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 4; k++) digest[4 * i + k] = (uint8_t)(s->h[i] >> (24 - 8 * k));
}

void ds4_sha1_tokens_hex(const int32_t *tokens, uint64_t n, char hex[41]) {
    ds4_sha1 s;
    ds4_sha1_init(&s);
    for (uint64_t i = 0; i < n; i++) {
        const uint32_t v = (uint32_t)tokens[i];
        const uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
        ds4_sha1_update(&s, le, 4);
    }
    uint8_t d[20];
    ds4_sha1_final(&s, d);
    for (int i = 0; i < 20; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

uint64_t ds4_fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}
