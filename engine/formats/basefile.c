/* basefile.c - see basefile.h. Layout, little-endian: a 64-byte header (magic, version,
 * min_k, max_k, mass, n_vocab, ctx, n_positions, the three hashes), the positions (n,
 * n int32 ids, n float logprobs, log_rest, lp_true), then a 64-bit FNV-1a checksum of
 * all that. */
#include "basefile.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define BASE_MAGIC "DS4BASE1"
#define BASE_VERSION 1u

typedef struct {
    char magic[8];
    uint32_t version, min_k, max_k;
    float mass;
    uint32_t n_vocab, ctx;
    uint64_t n_positions, model_fingerprint, tokenizer_hash, corpus_hash;
} base_header;
_Static_assert(sizeof(base_header) == 64, "the header is 64 bytes");

struct ds4_base_writer {
    ds4_outfile out;
    ds4_buf pending; /* positions not yet written */
    uint64_t checksum, left;
    uint32_t min_k, max_k;
};

static uint64_t record_bytes(uint32_t n) { return 8ull * n + 12; }

static int flush(ds4_base_writer *w) {
    if (!w->pending.len) return 0;
    w->checksum = ds4_fnv1a(w->checksum, w->pending.data, w->pending.len);
    const int rc = ds4_outfile_write(&w->out, w->pending.data, w->pending.len);
    w->pending.len = 0;
    return rc;
}

ds4_base_writer *ds4_base_create(const char *path, const ds4_base_info *info) {
    if (info->min_k < 1 || info->min_k > info->max_k || info->max_k > info->n_vocab) {
        ds4_fail("tokens kept per position: %u to %u, at most the vocabulary (%u)", info->min_k, info->max_k,
                 info->n_vocab);
        return NULL;
    }
    ds4_base_writer *w = ds4_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->out.fd = -1;
    if (ds4_outfile_open(&w->out, path) < 0) {
        free(w);
        return NULL;
    }
    base_header h = {.version = BASE_VERSION, .min_k = info->min_k, .max_k = info->max_k, .mass = info->mass,
                     .n_vocab = info->n_vocab, .ctx = info->ctx, .n_positions = info->n_positions,
                     .model_fingerprint = info->model_fingerprint, .tokenizer_hash = info->tokenizer_hash,
                     .corpus_hash = info->corpus_hash};
    memcpy(h.magic, BASE_MAGIC, 8);
    w->min_k = info->min_k;
    w->max_k = info->max_k;
    w->left = info->n_positions;
    w->checksum = ds4_fnv1a(DS4_FNV_START, &h, sizeof h);
    if (ds4_outfile_write(&w->out, &h, sizeof h) < 0) {
        ds4_base_abort(w);
        return NULL;
    }
    return w;
}

int ds4_base_put(ds4_base_writer *w, const ds4_base_pos *p) {
    if (!w->left) return ds4_fail("more positions than the header promised");
    if (p->n < w->min_k || p->n > w->max_k) return ds4_fail("%u tokens kept at a position, not %u to %u", p->n, w->min_k, w->max_k);
    w->left--;
    const float tail[2] = {p->log_rest, p->lp_true};
    if (ds4_buf_append(&w->pending, &p->n, sizeof p->n) < 0 ||
        ds4_buf_append(&w->pending, p->id, p->n * sizeof *p->id) < 0 ||
        ds4_buf_append(&w->pending, p->lp, p->n * sizeof *p->lp) < 0 ||
        ds4_buf_append(&w->pending, tail, sizeof tail) < 0)
        return -1;
    return w->pending.len >= (1u << 20) ? flush(w) : 0;
}

int ds4_base_finish(ds4_base_writer *w) {
    int rc = w->left ? ds4_fail("%llu positions missing", (unsigned long long)w->left) : flush(w);
    if (rc == 0) rc = ds4_outfile_write(&w->out, &w->checksum, sizeof w->checksum);
    if (rc == 0) rc = ds4_outfile_commit(&w->out);
    if (rc < 0) ds4_outfile_abort(&w->out);
    ds4_buf_free(&w->pending);
    free(w);
    return rc;
}

void ds4_base_abort(ds4_base_writer *w) {
    if (!w) return;
    ds4_outfile_abort(&w->out);
    ds4_buf_free(&w->pending);
    free(w);
}

/* Whether the records fill the file exactly, each within the header's bounds. */
static const char *check_records(const ds4_mmap *m, const base_header *h) {
    uint64_t at = sizeof *h;
    const uint64_t end = m->size - 8;
    for (uint64_t i = 0; i < h->n_positions; i++) {
        uint32_t n;
        if (end - at < 4) return "truncated (fewer positions than its header says)";
        memcpy(&n, m->data + at, 4);
        if (n < h->min_k || n > h->max_k) return "a position keeps an impossible number of tokens";
        if (end - at - 4 < record_bytes(n) - 4) return "truncated (fewer positions than its header says)";
        at += record_bytes(n);
    }
    return at == end ? NULL : "padded (bytes past its last position)";
}

int ds4_base_open(ds4_base_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    if (ds4_mmap_open(&f->map, path) < 0) return -1;
    base_header h;
    const char *why = NULL;
    if (f->map.size < sizeof h + 8) why = "truncated (no header)";
    if (!why) {
        memcpy(&h, f->map.data, sizeof h);
        if (memcmp(h.magic, BASE_MAGIC, 8)) why = "not a ds4 base file (ds4-logitcheck --save-base makes them)";
        else if (h.version != BASE_VERSION) why = "a base file version this build does not read";
        else if (h.min_k < 1 || h.min_k > h.max_k || h.max_k > h.n_vocab) why = "impossible token counts";
    }
    if (!why) {
        uint64_t sum;
        memcpy(&sum, f->map.data + f->map.size - 8, 8);
        if (ds4_fnv1a(DS4_FNV_START, f->map.data, f->map.size - 8) != sum) why = "corrupt or truncated (checksum mismatch)";
    }
    if (!why) why = check_records(&f->map, &h);
    if (why) {
        ds4_mmap_close(&f->map);
        return ds4_fail("%s: %s", path, why);
    }
    f->info = (ds4_base_info){h.min_k, h.max_k, h.mass, h.n_vocab, h.ctx, h.n_positions, h.model_fingerprint,
                              h.tokenizer_hash, h.corpus_hash};
    f->next = sizeof h;
    return 0;
}

ds4_base_pos ds4_base_next(ds4_base_file *f) {
    const uint8_t *r = f->map.data + f->next;
    ds4_base_pos p = {0};
    memcpy(&p.n, r, 4);
    p.id = (const int32_t *)(const void *)(r + 4);
    p.lp = (const float *)(const void *)(r + 4 + 4ull * p.n);
    memcpy(&p.log_rest, r + 4 + 8ull * p.n, 4);
    memcpy(&p.lp_true, r + 8 + 8ull * p.n, 4);
    f->next += record_bytes(p.n);
    return p;
}

void ds4_base_rewind(ds4_base_file *f) { f->next = sizeof(base_header); }

void ds4_base_close(ds4_base_file *f) { ds4_mmap_close(&f->map); }
