/* hash.h - hashes, none for security: SHA-1 (FIPS 180-4), to name cache files by their
 * token sequence and to fingerprint requests; FNV-1a (64-bit), for hash tables,
 * checksums of state files and model fingerprints. */
#ifndef DS4_HASH_H
#define DS4_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[5];
    uint64_t len;       /* bytes hashed so far */
    uint8_t block[64];
    size_t used;        /* bytes waiting in block */
} ds4_sha1;

void ds4_sha1_init(ds4_sha1 *s);
void ds4_sha1_update(ds4_sha1 *s, const void *data, size_t n);
void ds4_sha1_final(ds4_sha1 *s, uint8_t digest[20]);
/* The 40 lower-case hex digits of SHA-1 of n token ids (as little-endian int32). */
void ds4_sha1_tokens_hex(const int32_t *tokens, uint64_t n, char hex[41]);

/* FNV-1a over n bytes, continuing from h (start from DS4_FNV_START). */
#define DS4_FNV_START 1469598103934665603ULL
uint64_t ds4_fnv1a(uint64_t h, const void *p, size_t n);

#endif
