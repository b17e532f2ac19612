/* driver.c - runs a libFuzzer-style target without libFuzzer: deterministic mutations
 * (bit flips, interesting bytes and integers, truncation, insertion, deletion, chunk
 * copies) of seed files, each input in an exact-size heap buffer so that ASan catches
 * any read past its end. Built with -fsanitize=address,undefined in `make test`.
 *
 *   usage: DRIVER [-n ITERATIONS] [-s SEED] FILE...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

typedef struct { uint8_t *data; size_t size; } blob;

/* Positions favour the first few KiB, where headers live. */
static size_t position(size_t size) {
    size_t head = size < 8192 ? size : 8192;
    return rnd() % 4 ? below(head) : below(size);
}

static void mutate(blob *b, size_t cap) {
    static const uint64_t ints[] = {0, 1, 2, 3, 4, 7, 8, 16, 31, 32, 63, 64, 127, 128, 255, 256, 0x7fff, 0xffff,
                                    0x7fffffff, 0x80000000u, 0xffffffffu, 0x100000000ull, 1ull << 40,
                                    0x7fffffffffffffffull, 0x8000000000000000ull, 0xffffffffffffffffull};
    switch (rnd() % 9) {
    case 0: if (b->size) b->data[position(b->size)] ^= (uint8_t)(1u << below(8)); break;
    case 1: if (b->size) b->data[position(b->size)] = (uint8_t)ints[below(15)]; break;
    case 2: case 3: {
        size_t w = rnd() % 2 ? 4 : 8;
        if (b->size < w) break;
        uint64_t v = ints[below(sizeof ints / sizeof ints[0])];
        if (rnd() % 4 == 0) v = b->size + below(64) - 32;
        size_t at = position(b->size - w + 1);
        if (rnd() % 2) at = at / w * w; /* aligned, where counts and offsets usually sit */
        memcpy(b->data + at, &v, w);
        break;
    }
    case 4: b->size = below(b->size + 1); break;
    case 5: { /* insert random bytes */
        size_t n = 1 + below(16), at = position(b->size);
        if (b->size + n > cap) break;
        memmove(b->data + at + n, b->data + at, b->size - at);
        for (size_t i = 0; i < n; i++) b->data[at + i] = (uint8_t)rnd();
        b->size += n;
        break;
    }
    case 6: { /* delete a chunk */
        if (!b->size) break;
        size_t at = position(b->size), n = 1 + below(32);
        if (at + n > b->size) n = b->size - at;
        memmove(b->data + at, b->data + at + n, b->size - at - n);
        b->size -= n;
        break;
    }
    case 7: { /* copy a chunk over another place */
        if (b->size < 2) break;
        size_t n = 1 + below(64), from = position(b->size), to = position(b->size);
        if (from + n > b->size) n = b->size - from;
        if (to + n > b->size) n = b->size - to;
        memmove(b->data + to, b->data + from, n);
        break;
    }
    case 8: if (b->size) b->data[position(b->size)] = (uint8_t)"0123456789{}[]\",:-eE."[below(21)]; break;
    }
}

static int load(const char *path, blob *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    out->data = malloc(n > 0 ? (size_t)n : 1);
    out->size = out->data && n > 0 ? fread(out->data, 1, (size_t)n, f) : 0;
    fclose(f);
    return out->data ? 0 : -1;
}

int main(int argc, char **argv) {
    long iterations = 100000;
    blob seeds[64];
    int n_seeds = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) iterations = atol(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) rng_state = strtoull(argv[++i], NULL, 0);
        else if (n_seeds < 64 && load(argv[i], &seeds[n_seeds]) == 0) n_seeds++;
        else { fprintf(stderr, "fuzz: cannot read seed %s\n", argv[i]); return 2; }
    }
    if (!n_seeds) { fprintf(stderr, "usage: %s [-n N] [-s SEED] FILE...\n", argv[0]); return 2; }
    clock_t t0 = clock();
    size_t max_seed = 0;
    for (int s = 0; s < n_seeds; s++) if (seeds[s].size > max_seed) max_seed = seeds[s].size;
    size_t cap = max_seed + 1024;
    uint8_t *work = malloc(cap);
    for (long it = 0; it < iterations; it++) {
        blob *seed = &seeds[it % n_seeds];
        blob b = {work, seed->size};
        memcpy(work, seed->data, seed->size);
        int rounds = 1 + (int)below(4);
        for (int r = 0; r < rounds; r++) mutate(&b, cap);
        uint8_t *input = malloc(b.size ? b.size : 1); /* exact size: overreads are caught */
        memcpy(input, b.data, b.size);
        LLVMFuzzerTestOneInput(input, b.size);
        free(input);
    }
    free(work);
    for (int s = 0; s < n_seeds; s++) free(seeds[s].data);
    printf("fuzz: %ld inputs from %d seeds in %.1f s, no crash\n", iterations, n_seeds,
           (double)(clock() - t0) / CLOCKS_PER_SEC);
    return 0;
}
