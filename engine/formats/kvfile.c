/* kvfile.c - see kvfile.h. The payload is every layer's window, compressor and indexer
 * state in kvstate.h's order, each array preceded by its length so that loading can
 * check it against the geometry of the snapshot it fills. */
#include "kvfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "hash.h"
#include "util.h"

#define KV_MAGIC "DS4KVST1"
#define KV_VERSION 1
#define MAX_PAYLOAD (64ull << 30)

typedef struct {
    char magic[8];
    uint32_t version, reserved;
    uint64_t fingerprint, n_tokens, position, raw_size, packed_size, checksum;
} kv_header;


/* ---- payload ---- */

static int put_array(ds4_buf *b, const void *p, uint64_t bytes) {
    return ds4_buf_append(b, &bytes, sizeof bytes) < 0 || ds4_buf_append(b, p, bytes) < 0 ? -1 : 0;
}

static int put_compressor(ds4_buf *b, const ds4_kv_compressor *c) {
    if (!c->width) return 0;
    const uint64_t proj = ds4_kv_proj(c);
    int32_t small[2] = {c->n_buf, c->has_prev};
    if (ds4_buf_append(b, small, sizeof small) < 0 || put_array(b, c->buf_kv, c->ratio * proj * 4) < 0 ||
        put_array(b, c->buf_gate, c->ratio * proj * 4) < 0)
        return -1;
    if (c->overlap && (put_array(b, c->prev_kv, (uint64_t)c->ratio * c->width * 4) < 0 ||
                       put_array(b, c->prev_gate, (uint64_t)c->ratio * c->width * 4) < 0))
        return -1;
    return put_array(b, c->entries, c->n_entries * c->width * 4);
}

typedef struct { const uint8_t *p; size_t left; } reader;

static int take(reader *r, void *out, uint64_t n) {
    if (n > r->left) return ds4_fail("state payload is shorter than its layout");
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
    return 0;
}

/* An array whose stored length must be `want` bytes. */
static int take_array(reader *r, void *out, uint64_t want) {
    uint64_t n = 0;
    if (take(r, &n, sizeof n) < 0) return -1;
    if (n != want) return ds4_fail("state array of %llu bytes where this model needs %llu",
                                   (unsigned long long)n, (unsigned long long)want);
    return take(r, out, n);
}

/* A compressor's arrays, checked against the geometry the snapshot was made with; the
 * counts are checked against the position afterwards (ds4_kv_snapshot_check). */
static int take_compressor(reader *r, ds4_kv_compressor *c) {
    if (!c->width) return 0;
    const uint64_t proj = ds4_kv_proj(c);
    int32_t small[2];
    if (take(r, small, sizeof small) < 0) return -1;
    if (small[0] < 0 || (uint32_t)small[0] >= c->ratio || (small[1] != 0 && small[1] != 1))
        return ds4_fail("state has an impossible compressor buffer");
    c->n_buf = small[0];
    c->has_prev = small[1];
    if (take_array(r, c->buf_kv, c->ratio * proj * 4) < 0 || take_array(r, c->buf_gate, c->ratio * proj * 4) < 0)
        return -1;
    if (c->overlap && (take_array(r, c->prev_kv, (uint64_t)c->ratio * c->width * 4) < 0 ||
                       take_array(r, c->prev_gate, (uint64_t)c->ratio * c->width * 4) < 0))
        return -1;
    uint64_t bytes = 0;
    if (take(r, &bytes, sizeof bytes) < 0) return -1;
    const uint64_t row = (uint64_t)c->width * 4;
    if (bytes % row || bytes > r->left) return ds4_fail("state has a malformed entry list");
    if (ds4_kv_reserve_entries(c, bytes / row) < 0) return -1;
    c->n_entries = bytes / row;
    return take(r, c->entries, bytes);
}

/* ---- files ---- */

int ds4_kvfile_encode(const ds4_kv_snapshot *st, uint64_t fingerprint, const int32_t *tokens, uint64_t n, ds4_buf *file) {
    if (n != st->pos) return ds4_fail("state has seen %llu tokens, %llu given", (unsigned long long)st->pos,
                                      (unsigned long long)n);
    ds4_buf raw = {0};
    int rc = -1;
    if (put_array(&raw, tokens, n * sizeof *tokens) < 0) goto done;
    for (uint32_t il = 0; il < st->n_layer; il++) {
        const ds4_kv_layer *l = &st->layers[il];
        if (put_array(&raw, l->window_kv, (uint64_t)l->cap * l->dim * 4) < 0 ||
            put_array(&raw, l->window_pos, (uint64_t)l->cap * sizeof *l->window_pos) < 0 ||
            put_compressor(&raw, &l->comp) < 0 || put_compressor(&raw, &l->indexer) < 0)
            goto done;
    }
    size_t bound = ZSTD_compressBound(raw.len);
    kv_header h = {.version = KV_VERSION, .fingerprint = fingerprint, .n_tokens = n, .position = st->pos,
                   .raw_size = raw.len, .checksum = ds4_fnv1a(DS4_FNV_START, raw.data, raw.len)};
    memcpy(h.magic, KV_MAGIC, 8);
    const size_t at = file->len;
    if (ds4_buf_append(file, &h, sizeof h) < 0) goto done;
    uint8_t *packed = ds4_malloc(bound);
    if (!packed) goto done;
    size_t got = ZSTD_compress(packed, bound, raw.data, raw.len, 3);
    if (ZSTD_isError(got)) {
        free(packed);
        ds4_fail("zstd: %s", ZSTD_getErrorName(got));
        goto done;
    }
    ((kv_header *)(void *)(file->data + at))->packed_size = got;
    rc = ds4_buf_append(file, packed, got);
    free(packed);
done:
    ds4_buf_free(&raw);
    return rc;
}

int ds4_kvfile_peek(const char *path, uint64_t fingerprint, uint64_t *n_tokens) {
    FILE *f = fopen(path, "rb");
    if (!f) return ds4_fail("%s: cannot open: %s", path, strerror(errno));
    kv_header h;
    const size_t got = fread(&h, 1, sizeof h, f);
    fclose(f);
    if (got != sizeof h) return ds4_fail("%s: truncated (no header)", path);
    if (memcmp(h.magic, KV_MAGIC, 8)) return ds4_fail("%s: not a ds4 KV state file", path);
    if (h.version != KV_VERSION) return ds4_fail("%s: KV state version %u, this build reads %u", path, h.version, KV_VERSION);
    if (h.fingerprint != fingerprint) return ds4_fail("%s: saved for a different model", path);
    *n_tokens = h.n_tokens;
    return 0;
}

int ds4_kvfile_decode(const void *bytes, size_t len, const char *path, uint64_t fingerprint, uint32_t n_vocab,
                  ds4_kv_snapshot *st, int32_t **tokens, uint64_t *n) {
    const char *data = bytes;
    kv_header h;
    uint8_t *raw = NULL;
    int rc = -1;
    *tokens = NULL;
    if (len < sizeof h) {
        ds4_fail("%s: truncated (no header)", path);
        goto done;
    }
    memcpy(&h, data, sizeof h);
    if (memcmp(h.magic, KV_MAGIC, 8)) {
        ds4_fail("%s: not a ds4 KV state file", path);
        goto done;
    }
    if (h.version != KV_VERSION) {
        ds4_fail("%s: KV state version %u, this build reads %u", path, h.version, KV_VERSION);
        goto done;
    }
    if (h.fingerprint != fingerprint) {
        ds4_fail("%s: saved for a different model", path);
        goto done;
    }
    if (h.packed_size != len - sizeof h || h.raw_size > MAX_PAYLOAD) {
        ds4_fail("%s: truncated or padded (payload %llu bytes, file holds %zu)", path,
                 (unsigned long long)h.packed_size, len - sizeof h);
        goto done;
    }
    if (!(raw = ds4_malloc(h.raw_size ? h.raw_size : 1))) goto done;
    size_t got = ZSTD_decompress(raw, h.raw_size, data + sizeof h, h.packed_size);
    if (ZSTD_isError(got) || got != h.raw_size || ds4_fnv1a(DS4_FNV_START, raw, got) != h.checksum) {
        ds4_fail("%s: corrupt (the state does not match its checksum)", path);
        goto done;
    }
    reader r = {raw, got};
    uint64_t tbytes = 0;
    if (take(&r, &tbytes, sizeof tbytes) < 0 || tbytes != h.n_tokens * sizeof(int32_t) || tbytes > r.left ||
        h.position != h.n_tokens) {
        ds4_fail("%s: malformed token list", path);
        goto done;
    }
    if (!(*tokens = ds4_malloc(tbytes ? tbytes : 1)) || take(&r, *tokens, tbytes) < 0) goto fail;
    for (uint32_t il = 0; il < st->n_layer; il++) {
        ds4_kv_layer *l = &st->layers[il];
        if (take_array(&r, l->window_kv, (uint64_t)l->cap * l->dim * 4) < 0 ||
            take_array(&r, l->window_pos, (uint64_t)l->cap * sizeof *l->window_pos) < 0 ||
            take_compressor(&r, &l->comp) < 0 || take_compressor(&r, &l->indexer) < 0)
            goto fail;
    }
    if (r.left) {
        ds4_fail("state has %zu bytes past its layout", r.left);
        goto fail;
    }
    /* counts index the entries: they must be what the position implies */
    if (ds4_kv_snapshot_check(st, h.position) < 0) goto fail;
    for (uint64_t i = 0; i < h.n_tokens; i++)
        if ((*tokens)[i] < 0 || (uint32_t)(*tokens)[i] >= n_vocab) {
            ds4_fail("state holds token %d, outside the vocabulary", (*tokens)[i]);
            goto fail;
        }
    st->pos = h.position;
    *n = h.n_tokens;
    rc = 0;
    goto done;
fail:
    ds4_error_prefix(path);
    free(*tokens);
    *tokens = NULL;
done:
    free(raw);
    return rc;
}
