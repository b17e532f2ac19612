/* kvstate.h - what a sequence remembers per layer: the raw sliding window of K=V
 * vectors, and for compressed layers the compressor's pending tokens, the overlap
 * carried between CSA windows, and the compressed entries (for CSA also the lightning
 * indexer's compressed keys). Memory grows with the number of compressed entries,
 * never with the raw context. */
#ifndef DS4_KVSTATE_H
#define DS4_KVSTATE_H

#include <stdbool.h>
#include <stdint.h>

/* Ring of the last `cap` K=V vectors. */
typedef struct {
    float *kv;       /* cap x dim */
    int64_t *pos;    /* absolute position of each slot, -1 if empty */
    int cap, dim;
} ds4_window;

/* Pools every `ratio` tokens into one entry: softmax over the window of (gate + position
 * bias) per channel, weighted sum of the kv projections, RMSNorm, RoPE at the window's
 * first position. With `overlap` (CSA), projections are 2*width wide and entry w pools
 * window w-1's first half with window w's second half. */
typedef struct {
    int width, ratio;
    bool overlap;
    float *buf_kv, *buf_gate;   /* ratio x proj width; gate already includes the bias */
    int n_buf;
    float *prev_kv, *prev_gate; /* ratio x width: the previous window's first half */
    bool has_prev;
    float *entries;             /* n_entries x width */
    uint64_t n_entries, cap_entries;
} ds4_compressor;

typedef struct {
    ds4_window window;
    ds4_compressor comp;    /* width 0 on sliding-window-only layers */
    ds4_compressor indexer; /* width 0 unless CSA */
} ds4_layer_state;

int ds4_window_init(ds4_window *w, int cap, int dim);
void ds4_window_push(ds4_window *w, const float *kv, int64_t pos);

int ds4_compressor_init(ds4_compressor *c, int width, int ratio, bool overlap);
/* Add one token's projections (gate without bias; the bias row for its slot is added
 * here). Returns a pointer to the new raw pooled entry (before norm and RoPE, which the
 * caller applies in place) when the token closes a window, NULL otherwise or on OOM
 * (*oom set). */
float *ds4_compressor_push(ds4_compressor *c, const float *kv, const float *gate, const float *bias, bool *oom);

void ds4_layer_state_free(ds4_layer_state *s);
void ds4_layer_state_reset(ds4_layer_state *s);
uint64_t ds4_layer_state_bytes(const ds4_layer_state *s);

#endif
