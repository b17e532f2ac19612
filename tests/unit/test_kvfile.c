/* KV state files: restoring a saved state then decoding gives exactly the logits of never
 * having saved; corrupt, truncated and foreign files are refused and leave nothing loaded.
 * The disk cache: longest-prefix restore across a reopen, eviction under the space
 * limit, and rejected (removed) corrupt, truncated and foreign files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "convert.h"
#include "kvcache_disk.h"
#include "kvfile.h"
#include "state.h"
#include "longctx.h"
#include "quants.h"
#include "hash.h"
#include "test.h"

static ds4_model *model(const char *name) {
    char in[256], out[600];
    snprintf(in, sizeof in, "vectors/models/%s", name);
    snprintf(out, sizeof out, "%s/kv-%s.gguf", test_tmpdir(), name);
    ds4_convert_opts o = {.in_dir = in, .out_path = out, .type = GGML_TYPE_F32, .n_threads = 2};
    ds4_convert_stats s;
    if (access(out, F_OK) != 0 && ds4_convert(&o, &s) < 0) return NULL;
    return ds4_model_load(out);
}

static void restore_then_decode_is_identical(void) {
    ds4_model *m = model("tiny-a");
    CHECKF(m, "%s", ds4_error());
    const uint32_t V = m->cfg.n_vocab;
    ds4_ctx *a = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2}), *b = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
    enum { N = 301, STEPS = 12 };
    int32_t ids[N + STEPS];
    srand(3);
    for (int i = 0; i < N + STEPS; i++) ids[i] = 2 + rand() % (int)(V - 2);
    float *la = malloc(V * sizeof *la), *lb = malloc(V * sizeof *lb);
    CHECK(ds4_eval(a, ids, N, la, false) == 0);
    char path[600];
    snprintf(path, sizeof path, "%s/state.kv", test_tmpdir());
    CHECKF(ds4_kv_save(a, ids, N, path) == 0, "%s", ds4_error());
    int32_t *saved = NULL;
    uint64_t n = 0;
    CHECKF(ds4_kv_load(b, path, &saved, &n) == 0, "%s", ds4_error());
    CHECK(n == N && !memcmp(saved, ids, sizeof(int32_t) * N) && ds4_ctx_pos(b) == N);
    CHECK(ds4_ctx_kv_bytes(a) == ds4_ctx_kv_bytes(b));
    free(saved);
    for (int s = 0; s < STEPS; s++) {
        CHECK(ds4_eval(a, &ids[N + s], 1, la, false) == 0 && ds4_eval(b, &ids[N + s], 1, lb, false) == 0);
        CHECKF(!memcmp(la, lb, V * sizeof *la), "step %d differs after restoring", s);
    }

    /* a corrupt byte, a truncated file and another model's state are all refused */
    size_t len;
    char *bytes = ds4_read_file(path, &len);
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad.kv", test_tmpdir());
    bytes[len / 2] ^= 0x40;
    FILE *f = fopen(bad, "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);
    CHECK(ds4_kv_load(b, bad, &saved, &n) < 0 && strstr(ds4_error(), "bad.kv") && ds4_ctx_pos(b) == 0);
    bytes[len / 2] ^= 0x40;
    f = fopen(bad, "wb");
    fwrite(bytes, 1, len - 7, f);
    fclose(f);
    CHECK(ds4_kv_load(b, bad, &saved, &n) < 0 && strstr(ds4_error(), "truncated"));
    free(bytes);
    ds4_model *other = model("tiny-q");
    CHECK(other);
    ds4_ctx *c = ds4_ctx_new(other, &(ds4_ctx_opts){.n_threads = 1});
    CHECK(ds4_kv_load(c, path, &saved, &n) < 0 && strstr(ds4_error(), "different model"));
    CHECK(ds4_kv_save(a, ids, 5, path) < 0); /* token count must match the state */
    ds4_ctx_free(c);
    ds4_model_free(other);
    free(la);
    free(lb);
    ds4_ctx_free(a);
    ds4_ctx_free(b);
    ds4_model_free(m);
}

static int warnings;
static char last_warning[512];
static void count_warning(const char *msg) {
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
}

static int kv_files(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls %s/*.kv 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

static void disk_cache_prefix_restore_evict_reject(void) {
    ds4_model *m = model("tiny-a");
    CHECKF(m, "%s", ds4_error());
    if (!m) return;
    const uint32_t V = m->cfg.n_vocab;
    enum { N = 200, STEPS = 6 };
    int32_t ids[N + STEPS], other[N];
    srand(5);
    for (int i = 0; i < N + STEPS; i++) ids[i] = 2 + rand() % (int)(V - 2);
    memcpy(other, ids, sizeof other);
    other[90] ^= 1; /* shares the first 90 tokens */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/kvcache", test_tmpdir());
    ds4_ctx *a = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2}), *b = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
    float *la = malloc(V * sizeof *la), *lb = malloc(V * sizeof *lb);

    /* store prefixes of 64 and 150 tokens, reopen, restore the longest for a 200-token prompt */
    ds4_kvcache *c = ds4_kvcache_open(dir, 64u << 20, 0, m, count_warning);
    CHECKF(c != NULL, "%s", ds4_error());
    if (!c) return;
    CHECK(ds4_eval(a, ids, 64, NULL, false) == 0 && ds4_kvcache_store(c, a, ids, 64) == 0);
    CHECK(ds4_eval(a, ids + 64, 86, NULL, false) == 0 && ds4_kvcache_store(c, a, ids, 150) == 0);
    ds4_kvcache_close(c);
    c = ds4_kvcache_open(dir, 64u << 20, 0, m, count_warning);
    CHECK(c && ds4_kvcache_get_stats(c).entries == 2);
    CHECK(ds4_kvcache_restore(c, b, ids, N, N - 1) == 150);
    CHECK(ds4_kvcache_restore(c, b, other, N, N - 1) == 64); /* 150 is not its prefix */
    CHECK(ds4_kvcache_restore(c, b, ids, N, 100) == 64);     /* a cap below 150 */
    CHECK(ds4_kvcache_restore(c, b, ids, 50, 49) == 0 && ds4_ctx_pos(b) == 0);

    /* restored, then prefilled and decoded: the same logits as never having saved */
    ds4_ctx_reset(a);
    CHECK(ds4_eval(a, ids, N, la, false) == 0);
    CHECK(ds4_kvcache_restore(c, b, ids, N, N - 1) == 150 && ds4_eval(b, ids + 150, N - 150, lb, false) == 0);
    CHECK(!memcmp(la, lb, V * sizeof *la));
    for (int s = 0; s < STEPS; s++) {
        CHECK(ds4_eval(a, &ids[N + s], 1, la, false) == 0 && ds4_eval(b, &ids[N + s], 1, lb, false) == 0);
        CHECKF(!memcmp(la, lb, V * sizeof *la), "step %d differs after a cache restore", s);
    }

    /* a corrupt state is refused, removed and reported; the shorter prefix still serves */
    char path[800], hex[41];
    ds4_sha1_tokens_hex(ids, 150, hex);
    snprintf(path, sizeof path, "%s/%s.kv", dir, hex);
    size_t len;
    char *bytes = ds4_read_file(path, &len);
    CHECK(bytes != NULL);
    if (bytes) {
        bytes[len - 10] ^= 0x55;
        ds4_write_file_atomic(path, bytes, len);
        free(bytes);
    }
    warnings = 0;
    CHECK(ds4_kvcache_restore(c, b, ids, N, N - 1) == 64);
    CHECKF(warnings == 1 && strstr(last_warning, hex) && access(path, F_OK) != 0, "warning: %s", last_warning);
    ds4_kvcache_close(c);

    /* at open: a truncated file and another model's state are removed */
    char junk[800];
    snprintf(junk, sizeof junk, "%s/%040d.kv", dir, 7);
    ds4_write_file_atomic(junk, "DS4KV", 5);
    ds4_model *q = model("tiny-q");
    ds4_ctx *qc = ds4_ctx_new(q, &(ds4_ctx_opts){.n_threads = 1});
    const int32_t qids[3] = {0, 5, 6};
    char foreign[800];
    ds4_sha1_tokens_hex(qids, 3, hex);
    snprintf(foreign, sizeof foreign, "%s/%s.kv", dir, hex);
    CHECK(ds4_eval(qc, qids, 3, NULL, false) == 0 && ds4_kv_save(qc, qids, 3, foreign) == 0);
    warnings = 0;
    c = ds4_kvcache_open(dir, 64u << 20, 0, m, count_warning);
    CHECK(c && warnings == 2 && access(junk, F_OK) != 0 && access(foreign, F_OK) != 0);
    CHECK(c && ds4_kvcache_get_stats(c).entries == 1);

    /* eviction: a limit that holds one state keeps the most recently used */
    const uint64_t one = ds4_kvcache_get_stats(c).bytes;
    ds4_kvcache_close(c);
    c = ds4_kvcache_open(dir, one + one / 2, 0, m, count_warning);
    ds4_ctx_reset(a);
    CHECK(ds4_eval(a, ids, 100, NULL, false) == 0 && ds4_kvcache_store(c, a, ids, 100) == 0);
    ds4_kvcache_stats st = ds4_kvcache_get_stats(c);
    CHECKF(st.entries == 1 && st.evictions == 1 && st.bytes <= one + one / 2 && kv_files(dir) == 1,
           "%llu entries, %llu evictions, %d files", (unsigned long long)st.entries,
           (unsigned long long)st.evictions, kv_files(dir));
    CHECK(ds4_kvcache_restore(c, b, ids, N, N - 1) == 100);
    ds4_kvcache_close(c);

    /* memory only: states kept while they fit, the least recently used dropped */
    c = ds4_kvcache_open(NULL, 0, one + one / 2, m, count_warning);
    CHECK(c != NULL);
    ds4_ctx_reset(a);
    CHECK(ds4_eval(a, ids, 64, NULL, false) == 0 && ds4_kvcache_store(c, a, ids, 64) == 0);
    CHECK(ds4_kvcache_restore(c, b, ids, N, N - 1) == 64 && kv_files(dir) == 1);
    CHECK(ds4_eval(a, ids + 64, 36, NULL, false) == 0 && ds4_kvcache_store(c, a, ids, 100) == 0);
    st = ds4_kvcache_get_stats(c);
    CHECK(st.entries == 1 && st.evictions == 1 && ds4_kvcache_restore(c, b, ids, N, N - 1) == 100);
    ds4_kvcache_close(c);
    ds4_ctx_free(qc);
    ds4_model_free(q);
    free(la);
    free(lb);
    ds4_ctx_free(a);
    ds4_ctx_free(b);
    ds4_model_free(m);
}

/* The KV size a config implies grows by the compressed entries alone: on Flash, 1M more
 * tokens add one 512-float entry per ratio tokens on each compressed layer and one
 * 128-float indexer key per 4 tokens on each CSA layer, nothing per raw token. */
static void kv_bytes_grow_by_compressed_entries_only(void) {
    ds4_config c;
    ds4_config_flash(&c, 0, 0);
    const uint64_t n = 1048576;
    uint64_t grow = 0;
    for (uint32_t il = 0; il < c.n_layer; il++) {
        if (c.kind[il] == DS4_LAYER_SWA) continue;
        grow += n / c.compress_ratio[il] * 512 * 4;
        if (c.kind[il] == DS4_LAYER_CSA) grow += n / 4 * 128 * 4;
    }
    CHECK(ds4_config_kv_bytes(&c, n) - ds4_config_kv_bytes(&c, 0) == grow);
    /* 21 CSA layers (4) and 20 HCA layers (128) */
    CHECK(grow == 21ull * (n / 4) * (512 + 128) * 4 + 20ull * (n / 128) * 512 * 4);
}

/* SHA-1 against FIPS 180 test vectors. */
static void sha1_vectors(void) {
    static const struct { const char *in, *hex; } v[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ds4_sha1 s;
        uint8_t d[20];
        char hex[41];
        ds4_sha1_init(&s);
        ds4_sha1_update(&s, v[i].in, strlen(v[i].in));
        ds4_sha1_final(&s, d);
        for (int k = 0; k < 20; k++) snprintf(hex + 2 * k, 3, "%02x", d[k]);
        CHECKF(!strcmp(hex, v[i].hex), "sha1(\"%s\") = %s", v[i].in, hex);
    }
}

/* A state file whose checksum is right but whose counts do not fit its position (made
 * here: the payload decompressed, one count changed, checksum and compression redone)
 * is refused: its counts would index the compressed entries. The header layout is
 * kvfile.c's (magic, version, reserved, fingerprint, tokens, position, raw size, packed
 * size, FNV-1a checksum of the payload). */
typedef struct {
    char magic[8];
    uint32_t version, reserved;
    uint64_t fingerprint, n_tokens, position, raw_size, packed_size, checksum;
} kv_header;

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* Re-pack `raw` under the header of `file` into out. */
static void repack(const ds4_buf *file, const uint8_t *raw, size_t n, ds4_buf *out) {
    kv_header h;
    memcpy(&h, file->data, sizeof h);
    h.raw_size = n;
    h.checksum = fnv1a(raw, n);
    const size_t bound = ZSTD_compressBound(n);
    uint8_t *packed = malloc(bound);
    h.packed_size = ZSTD_compress(packed, bound, raw, n, 1);
    out->len = 0;
    ds4_buf_append(out, &h, sizeof h);
    ds4_buf_append(out, packed, h.packed_size);
    free(packed);
}

static void inconsistent_states_refused(void) {
    ds4_model *m = model("tiny-b");
    CHECKF(m, "%s", ds4_error());
    ds4_ctx *c = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
    enum { N = 150 };
    int32_t ids[N], *back = NULL;
    for (int i = 0; i < N; i++) ids[i] = 2 + (i * 7) % (int)(m->cfg.n_vocab - 2);
    CHECK(ds4_eval(c, ids, N, NULL, false) == 0);
    ds4_buf file = {0}, bad = {0};
    CHECK(ds4_kv_encode(c, ids, N, &file) == 0);
    kv_header h;
    memcpy(&h, file.data, sizeof h);
    uint8_t *raw = malloc(h.raw_size);
    CHECK(ZSTD_decompress(raw, h.raw_size, file.data + sizeof h, h.packed_size) == h.raw_size);
    uint64_t n_back;
    repack(&file, raw, h.raw_size, &bad); /* unchanged: loads */
    CHECKF(ds4_kv_decode(c, bad.data, bad.len, "state", &back, &n_back) == 0, "%s", ds4_error());
    free(back);
    /* the tokens array, then layer 0's window: kv array, then the position of each slot */
    const size_t window_pos = 8 + (size_t)N * 4 + 8 + (size_t)m->cfg.sliding_window * m->cfg.head_dim * 4 + 8;
    int64_t wrong = 12345;
    memcpy(raw + window_pos, &wrong, sizeof wrong);
    repack(&file, raw, h.raw_size, &bad);
    CHECK(ds4_kv_decode(c, bad.data, bad.len, "state", &back, &n_back) < 0);
    CHECKF(strstr(ds4_error(), "impossible window"), "%s", ds4_error());
    /* a token id past the vocabulary */
    CHECK(ZSTD_decompress(raw, h.raw_size, file.data + sizeof h, h.packed_size) == h.raw_size);
    const int32_t big = (int32_t)m->cfg.n_vocab;
    memcpy(raw + 8, &big, sizeof big);
    repack(&file, raw, h.raw_size, &bad);
    CHECK(ds4_kv_decode(c, bad.data, bad.len, "state", &back, &n_back) < 0);
    CHECKF(strstr(ds4_error(), "outside the vocabulary"), "%s", ds4_error());
    CHECK(ds4_ctx_pos(c) == 0); /* refused states leave nothing loaded */
    free(raw);
    ds4_buf_free(&file);
    ds4_buf_free(&bad);
    ds4_ctx_free(c);
    ds4_model_free(m);
}

const test_case kvfile_tests[] = {
    {"inconsistent_states_refused", inconsistent_states_refused},
    {"restore_then_decode_is_identical", restore_then_decode_is_identical},
    {"disk_cache_prefix_restore_evict_reject", disk_cache_prefix_restore_evict_reject},
    {"sha1_vectors", sha1_vectors},
    {"kv_bytes_grow_by_compressed_entries_only", kv_bytes_grow_by_compressed_entries_only},
    {0, 0},
};
