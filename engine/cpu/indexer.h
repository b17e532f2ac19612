/* indexer.h - the long-context hot spot of compressed attention: the lightning
 * indexer's scores of one query against blocks of 16 compressed keys, and a streaming
 * top-k over them.
 *
 * Every query-key product is the same chain of fused multiply-adds in index order on
 * every SIMD level (lane i of a block computes key i's chain), so the scalar, AVX2 and
 * AVX-512 kernels agree bit for bit, and a score never depends on which other keys or
 * tokens share its block. That is what lets a chunked prefill, a token-by-token decode
 * and a restored state produce identical logits however the work is split. */
#ifndef DS4_INDEXER_H
#define DS4_INDEXER_H

#include <stdint.h>

#define DS4_KEY_BLOCK 16

/* kt[j][i] = rows[i][j] for i < n (n <= 16), zero for the rows past n. */
void ds4_keys_transpose(const float *const *rows, int n, int dim, float *kt);

/* Indexer scores of one query (heads x dim) for a transposed block:
 * out[i] = sum_h relu(q_h . k_i) * scale * w[h]. Returns a bit mask of the lanes whose
 * score is not below `floor` (NaN counts as not below), so top-k can skip whole blocks. */
typedef uint32_t (*ds4_index_fn)(const float *kt, int dim, const float *q, const float *w, int heads, float scale,
                                 float floor, float *out);

/* The kernel of a SIMD level (ds4_cpu_level); NULL where this CPU lacks it. */
ds4_index_fn ds4_index_for_level(int level);

/* The k best of a stream of (score, index) pairs in the order torch.topk on CUDA ranks
 * them: by the float's bits as a radix sort sees them (-0 < +0), the lower index first
 * among equal scores. Each kept pair is one 64-bit key, so comparing is one compare. */
typedef struct {
    uint64_t *key; /* a min-heap of k keys */
    uint32_t k, n;
    float floor;   /* the worst kept score once full, -inf before: a cheap pre-filter */
} ds4_topk;

void ds4_topk_reset(ds4_topk *t, uint64_t *storage, uint32_t k);
void ds4_topk_push(ds4_topk *t, float score, uint32_t index);
/* Adds another heap's pairs (to merge per-thread heaps). */
void ds4_topk_merge(ds4_topk *t, const ds4_topk *other);
/* The kept indices in increasing order (a canonical order, whatever the pushes were);
 * returns how many. */
uint32_t ds4_topk_indices(ds4_topk *t, uint64_t *out);

#endif
