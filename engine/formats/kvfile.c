/* kvfile.c - see kvfile.h. The payload is every layer's window, compressor and indexer
 * state in order, each array preceded by its length so that loading can check it
 * against the context's own geometry. */
#include "kvfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "forward_impl.h"

#define KV_MAGIC "DS4KVST1"
#define KV_VERSION 1
#define MAX_PAYLOAD (64ull << 30)

typedef struct {
    char magic[8];
    uint32_t version, reserved;
    uint64_t fingerprint, n_tokens, position, raw_size, packed_size, checksum;
} kv_header;

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}
#define FNV_START 1469598103934665603ULL

uint64_t ds4_model_fingerprint(const ds4_model *m) {
    /* the file up to its tensor data: header, metadata and tensor table */
    return fnv1a(FNV_START, m->gguf->base, m->gguf->data_offset < m->gguf->size ? m->gguf->data_offset : m->gguf->size);
}

/* ---- payload ---- */

static int put_array(ds4_buf *b, const void *p, uint64_t bytes) {
    return ds4_buf_append(b, &bytes, sizeof bytes) < 0 || ds4_buf_append(b, p, bytes) < 0 ? -1 : 0;
}

static int put_compressor(ds4_buf *b, const ds4_compressor *c) {
    if (!c->width) return 0;
    const uint64_t proj = (uint64_t)(c->overlap ? 2 : 1) * c->width;
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

/* A compressor after `pos` tokens has pooled pos / ratio entries and buffers the rest;
 * anything else in a file (whose counts index the entries) is refused. */
static int take_compressor(reader *r, ds4_compressor *c, uint64_t pos) {
    if (!c->width) return 0;
    const uint64_t proj = (uint64_t)(c->overlap ? 2 : 1) * c->width;
    int32_t small[2];
    if (take(r, small, sizeof small) < 0) return -1;
    if ((uint64_t)small[0] != pos % (uint64_t)c->ratio || small[1] != (c->overlap && pos >= (uint64_t)c->ratio))
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
    if (bytes % row || bytes > r->left || bytes / row != pos / (uint64_t)c->ratio)
        return ds4_fail("state has a malformed entry list");
    const uint64_t n = bytes / row;
    if (n > c->cap_entries) {
        float *e = realloc(c->entries, bytes ? bytes : 1);
        if (!e) return ds4_fail("out of memory for %llu compressed entries", (unsigned long long)n);
        c->entries = e;
        c->cap_entries = n;
    }
    c->n_entries = n;
    return take(r, c->entries, bytes);
}

/* After `pos` tokens, slot s of the ring holds the latest position below pos that is s
 * modulo the capacity, or -1. */
static int check_window(const ds4_window *w, uint64_t pos) {
    for (int slot = 0; slot < w->cap; slot++) {
        const int64_t back = ((int64_t)pos - 1 - slot) % w->cap;
        const int64_t want = (int64_t)pos - 1 - slot < 0 ? -1 : (int64_t)pos - 1 - back;
        if (w->pos[slot] != want) return ds4_fail("state has an impossible window (slot %d)", slot);
    }
    return 0;
}

/* ---- files ---- */

int ds4_kv_encode(const ds4_ctx *ctx, const int32_t *tokens, uint64_t n, ds4_buf *file) {
    if (n != ctx->pos) return ds4_fail("state has seen %llu tokens, %llu given", (unsigned long long)ctx->pos,
                                       (unsigned long long)n);
    ds4_buf raw = {0};
    int rc = -1;
    if (put_array(&raw, tokens, n * sizeof *tokens) < 0) goto done;
    for (uint32_t il = 0; il < ctx->cfg->n_layer; il++) {
        const ds4_layer_state *s = &ctx->state[il];
        const uint64_t wbytes = (uint64_t)s->window.cap * s->window.dim * 4;
        if (put_array(&raw, s->window.kv, wbytes) < 0 ||
            put_array(&raw, s->window.pos, (uint64_t)s->window.cap * sizeof *s->window.pos) < 0 ||
            put_compressor(&raw, &s->comp) < 0 || put_compressor(&raw, &s->indexer) < 0)
            goto done;
    }
    size_t bound = ZSTD_compressBound(raw.len);
    kv_header h = {.version = KV_VERSION, .fingerprint = ds4_model_fingerprint(ctx->model), .n_tokens = n,
                   .position = ctx->pos, .raw_size = raw.len, .checksum = fnv1a(FNV_START, raw.data, raw.len)};
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

int ds4_kv_save(const ds4_ctx *ctx, const int32_t *tokens, uint64_t n, const char *path) {
    ds4_buf file = {0};
    int rc = ds4_kv_encode(ctx, tokens, n, &file);
    if (rc == 0) rc = ds4_write_file_atomic(path, file.data, file.len);
    ds4_buf_free(&file);
    return rc;
}

int ds4_kv_peek(const char *path, const ds4_model *m, uint64_t *n_tokens) {
    FILE *f = fopen(path, "rb");
    if (!f) return ds4_fail("%s: cannot open: %s", path, strerror(errno));
    kv_header h;
    const size_t got = fread(&h, 1, sizeof h, f);
    fclose(f);
    if (got != sizeof h) return ds4_fail("%s: truncated (no header)", path);
    if (memcmp(h.magic, KV_MAGIC, 8)) return ds4_fail("%s: not a ds4 KV state file", path);
    if (h.version != KV_VERSION) return ds4_fail("%s: KV state version %u, this build reads %u", path, h.version, KV_VERSION);
    if (h.fingerprint != ds4_model_fingerprint(m)) return ds4_fail("%s: saved for a different model", path);
    *n_tokens = h.n_tokens;
    return 0;
}

int ds4_kv_decode(ds4_ctx *ctx, const void *bytes, size_t len, const char *path, int32_t **tokens, uint64_t *n) {
    const char *data = bytes;
    kv_header h;
    uint8_t *raw = NULL;
    int rc = -1;
    *tokens = NULL;
    ds4_ctx_reset(ctx);
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
    if (h.fingerprint != ds4_model_fingerprint(ctx->model)) {
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
    if (ZSTD_isError(got) || got != h.raw_size || fnv1a(FNV_START, raw, got) != h.checksum) {
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
    for (uint32_t il = 0; il < ctx->cfg->n_layer; il++) {
        ds4_layer_state *s = &ctx->state[il];
        if (take_array(&r, s->window.kv, (uint64_t)s->window.cap * s->window.dim * 4) < 0 ||
            take_array(&r, s->window.pos, (uint64_t)s->window.cap * sizeof *s->window.pos) < 0 ||
            check_window(&s->window, h.position) < 0 || take_compressor(&r, &s->comp, h.position) < 0 ||
            take_compressor(&r, &s->indexer, h.position) < 0)
            goto fail;
    }
    for (uint64_t i = 0; i < h.n_tokens; i++)
        if ((*tokens)[i] < 0 || (uint32_t)(*tokens)[i] >= ctx->cfg->n_vocab) {
            ds4_fail("state holds token %d, outside the vocabulary", (*tokens)[i]);
            goto fail;
        }
    if (r.left) {
        ds4_fail("state has %zu bytes past its layout", r.left);
        goto fail;
    }
    ctx->pos = h.position;
    *n = h.n_tokens;
    rc = 0;
    goto done;
fail:
    ds4_error_prefix(path);
    free(*tokens);
    *tokens = NULL;
    ds4_ctx_reset(ctx);
done:
    free(raw);
    return rc;
}

int ds4_kv_load(ds4_ctx *ctx, const char *path, int32_t **tokens, uint64_t *n) {
    size_t len;
    char *data = ds4_read_file(path, &len);
    *tokens = NULL;
    if (!data) {
        ds4_ctx_reset(ctx);
        return -1;
    }
    const int rc = ds4_kv_decode(ctx, data, len, path, tokens, n);
    free(data);
    return rc;
}
