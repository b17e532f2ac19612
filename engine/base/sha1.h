/* sha1.h - SHA-1 (FIPS 180-4), for naming cache files by their token sequence. Not for
 * security: only to turn long token-id sequences into short, stable file names. */
#ifndef DS4_SHA1_H
#define DS4_SHA1_H

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

#endif
