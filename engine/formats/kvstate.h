/* kvstate.h - a sequence's KV state in a layout no backend owns: what every backend
 * hands out and takes back (ds4_ctx_state_get/set), what state files hold (kvfile.h)
 * and the disk cache stores, so a state saved on one backend restores on another.
 *
 * Per layer, in this order (also the order of a state file's payload):
 *   the sliding window: `cap` K=V vectors of `dim` floats in ring order (slot = position
 *     mod cap) and the position of each slot (-1 while empty);
 *   on compressed layers the compressor: the tokens buffered since the last entry
 *     (n_buf of ratio; their kv projection and gate with the position bias added, `proj`
 *     = width, or 2*width for CSA's overlapping windows), for CSA the previous window's
 *     first half (ratio x width kv and gate, valid when has_prev), and the compressed
 *     entries (n_entries x width, normalised and rotated);
 *   on CSA layers the lightning indexer's compressor, laid out the same way.
 * After `pos` tokens a valid state has n_entries = pos / ratio, n_buf = pos % ratio,
 * has_prev = overlap and pos >= ratio, and slot s of the window holds the latest
 * position below pos that is s modulo cap. Memory grows with the compressed entries,
 * never with the raw context. */
#ifndef DS4_KVSTATE_H
#define DS4_KVSTATE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint32_t width, ratio; /* width 0: the layer has no such compressor */
    bool overlap;
    int32_t n_buf, has_prev;
    float *buf_kv, *buf_gate;   /* ratio x proj */
    float *prev_kv, *prev_gate; /* ratio x width, overlap only */
    float *entries;             /* n_entries x width */
    uint64_t n_entries, cap_entries;
} ds4_kv_compressor;

typedef struct {
    uint32_t cap, dim;
    float *window_kv;     /* cap x dim */
    int64_t *window_pos;  /* cap */
    ds4_kv_compressor comp, indexer;
} ds4_kv_layer;

typedef struct {
    uint32_t n_layer;
    uint64_t pos;         /* tokens the state has seen */
    ds4_kv_layer *layers;
} ds4_kv_snapshot;

/* Geometry of one layer, from the model: window capacity and K=V width, compression
 * ratio (0: none), whether it is CSA (overlapping windows and an indexer) and the
 * indexer's key width. */
typedef struct {
    uint32_t window, dim, ratio, indexer_dim;
    bool csa;
} ds4_kv_geometry;

/* Allocate a snapshot of n_layer layers of the given geometry, empty (pos 0). */
int ds4_kv_snapshot_init(ds4_kv_snapshot *s, uint32_t n_layer, const ds4_kv_geometry *layers);
void ds4_kv_snapshot_free(ds4_kv_snapshot *s);
/* dst := src, both of one geometry (dst's entries grow as needed); -1 when memory runs
 * out, dst then unchanged but for its capacity. */
int ds4_kv_snapshot_copy(ds4_kv_snapshot *dst, const ds4_kv_snapshot *src);
/* Back to empty (pos 0), keeping the memory. */
void ds4_kv_snapshot_clear(ds4_kv_snapshot *s);
/* Room for n entries in a compressor (grows by doubling; -1 when memory runs out). */
int ds4_kv_reserve_entries(ds4_kv_compressor *c, uint64_t n);
/* Floats of a compressor's projections per buffered token. */
static inline uint64_t ds4_kv_proj(const ds4_kv_compressor *c) { return (uint64_t)(c->overlap ? 2 : 1) * c->width; }
/* Bytes the state holds (the raw window, the buffers and the entries). */
uint64_t ds4_kv_snapshot_bytes(const ds4_kv_snapshot *s);
/* -1, naming what, unless the counts are those of a state that has seen pos tokens. */
int ds4_kv_snapshot_check(const ds4_kv_snapshot *s, uint64_t pos);

#endif
