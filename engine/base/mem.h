/* mem.h - memory: allocation that reports failure as an error, checked size arithmetic,
 * an arena, a string map and a growable byte buffer. */
#ifndef DS4_MEM_H
#define DS4_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool ds4_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline uint64_t ds4_align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Allocation that reports failure through ds4_fail (callers still check for NULL). */
void *ds4_malloc(size_t n);
void *ds4_calloc(size_t n, size_t size);
void *ds4_realloc(void *p, size_t n);
char *ds4_strndup(const char *s, size_t n);

/* Arena: many small allocations freed together (parsed file structures). */
typedef struct ds4_arena_block ds4_arena_block;
typedef struct { ds4_arena_block *head; } ds4_arena;
void *ds4_arena_alloc(ds4_arena *a, size_t n);
char *ds4_arena_strndup(ds4_arena *a, const char *s, size_t n);
void ds4_arena_free(ds4_arena *a);

/* Open-addressing map from byte strings to indices (names of tensors and keys). */
typedef struct {
    const char **keys;
    size_t *lens;
    uint64_t *vals;
    size_t cap, count;
} ds4_strmap;
int ds4_strmap_init(ds4_strmap *m, size_t expected);
/* Insert; returns 1 if inserted, 0 if the key already existed (value untouched), -1 on OOM.
 * The key bytes are not copied and must outlive the map. */
int ds4_strmap_put(ds4_strmap *m, const char *key, size_t len, uint64_t val);
bool ds4_strmap_get(const ds4_strmap *m, const char *key, size_t len, uint64_t *val);
void ds4_strmap_free(ds4_strmap *m);

/* Growable byte buffer. */
typedef struct { uint8_t *data; size_t len, cap; } ds4_buf;
int ds4_buf_append(ds4_buf *b, const void *p, size_t n);
void ds4_buf_free(ds4_buf *b);

#endif
