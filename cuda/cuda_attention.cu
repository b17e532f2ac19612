/* cuda_attention.cu - see cuda_stages.h: attention's norms and rotations, the KV state's
 * updates (the window ring, the compressors' pooling), the lightning indexer with its
 * top-k, and the softmax over each token's keys, as cpu_attention.c, cpu_kv.c and
 * indexer.c compute them. Rotations take their cosines and sines in double precision
 * from the float angle the CPU computes, so they are the CPU's to the rounding of
 * glibc's cosf/sinf; the indexer's scores are the CPU's chains of fused multiply-adds
 * bit for bit given the same queries and keys, and its top-k ranks as indexer.h does. */
#include <math.h>

#include "cuda_device.h"
#include "cuda_stages.h"

#define THREADS 256

/* Rotates the trailing dim values of x (n) by pos (sign -1 undoes it); threads share
 * the pairs. */
__device__ __forceinline__ void rope(float *x, int n, int dim, const float *inv_freq, int64_t pos, int sign) {
    float *r = x + (n - dim);
    for (int i = threadIdx.x; i < dim / 2; i += blockDim.x) {
        const float angle = __fmul_rn((float)pos, inv_freq[i]);
        const float c = (float)cos((double)angle), s = (float)sign * (float)sin((double)angle);
        const float a = r[2 * i], b = r[2 * i + 1];
        r[2 * i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        r[2 * i + 1] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

__global__ void norm_rope_kernel(float *x, int heads, int n, int norm, const float *weight, float eps, int rope_dim,
                                 const float *inv_freq, const int64_t *pos) {
    __shared__ float red[33];
    const int t = blockIdx.y;
    float *v = x + ((uint64_t)t * heads + blockIdx.x) * n;
    if (norm) block_rmsnorm(v, v, n, weight, eps, red);
    if (inv_freq) rope(v, n, rope_dim, inv_freq, pos[t], 1);
}

extern "C" void ds4_cuda_norm_rope(ds4_cuda *c, float *x, int T, int heads, int n, int norm, const float *weight,
                                   float eps, int rope_dim, const float *inv_freq, const int64_t *pos) {
    if (T > 0)
        norm_rope_kernel<<<dim3((unsigned)heads, (unsigned)T), 128, 0, c->stream>>>(x, heads, n, norm, weight, eps,
                                                                                   rope_dim, inv_freq, pos);
}

/* ---- the KV state ---- */

/* One token (at position p) into a compressor: its projections buffered with the
 * position bias; when it closes a window, the pooled entry (per channel a softmax over
 * the slots of gate + bias, the weighted sum of the kv projections), normalised and
 * rotated to the window's first position. */
__device__ void compressor_push(const ds4_cuda_comp_params &cp, const ds4_cuda_comp &st, const float *kv,
                                const float *gate, int64_t p, uint32_t rope_dim, const float *inv_freq, float eps,
                                float *red) {
    const int w = (int)cp.width, r = (int)cp.ratio, proj = cp.overlap ? 2 * w : w;
    const int nb = (int)(p % r);
    for (int i = threadIdx.x; i < proj; i += blockDim.x) {
        st.buf_kv[(uint64_t)nb * proj + i] = kv[i];
        st.buf_gate[(uint64_t)nb * proj + i] = __fadd_rn(gate[i], cp.ape[(uint64_t)nb * proj + i]);
    }
    __syncthreads();
    if (nb + 1 < r) return;
    const uint64_t index = (uint64_t)(p / r);
    const bool prev = cp.overlap && p + 1 >= 2 * (int64_t)r;
    float *e = st.entries + index * w;
    const int cur = cp.overlap ? w : 0;
    for (int ch = threadIdx.x; ch < w; ch += blockDim.x) {
        float m = -INFINITY;
        if (prev)
            for (int i = 0; i < r; i++) m = fmaxf(m, st.prev_gate[i * w + ch]);
        for (int i = 0; i < r; i++) m = fmaxf(m, st.buf_gate[i * proj + cur + ch]);
        float sum = 0.0f, acc = 0.0f;
        if (prev)
            for (int i = 0; i < r; i++) {
                const float q = expf(st.prev_gate[i * w + ch] - m);
                sum = __fadd_rn(sum, q);
                acc = __fadd_rn(acc, __fmul_rn(q, st.prev_kv[i * w + ch]));
            }
        for (int i = 0; i < r; i++) {
            const float q = expf(st.buf_gate[i * proj + cur + ch] - m);
            sum = __fadd_rn(sum, q);
            acc = __fadd_rn(acc, __fmul_rn(q, st.buf_kv[i * proj + cur + ch]));
        }
        e[ch] = acc / sum;
        if (cp.overlap) /* this channel's first half of the window becomes the next one's previous */
            for (int i = 0; i < r; i++) {
                st.prev_kv[i * w + ch] = st.buf_kv[i * proj + ch];
                st.prev_gate[i * w + ch] = st.buf_gate[i * proj + ch];
            }
    }
    __syncthreads();
    block_rmsnorm(e, e, w, cp.norm, eps, red);
    rope(e, w, (int)rope_dim, inv_freq, (int64_t)index * r, 1);
    __syncthreads();
}

/* blockIdx.x: the segment; blockIdx.y: 0 the window, 1 the compressor, 2 the indexer's. */
__global__ void kv_append_kernel(ds4_cuda_append a) {
    __shared__ float red[33];
    const ds4_cuda_seg &g = a.segs[blockIdx.x];
    const int part = blockIdx.y;
    if (part == 0) {
        if (g.n > 1) { /* attend reads the window as it was before the chunk */
            for (uint64_t i = threadIdx.x; i < (uint64_t)a.cap * a.dim; i += blockDim.x) g.old_kv[i] = g.st.window_kv[i];
            for (uint32_t i = threadIdx.x; i < a.cap; i += blockDim.x) g.old_pos[i] = g.st.window_pos[i];
            __syncthreads();
        }
        for (int t = 0; t < g.n; t++) { /* each thread keeps its own elements in order */
            const int64_t p = g.pos0 + t;
            const uint64_t slot = (uint64_t)(p % a.cap);
            const float *kv = a.kv + (uint64_t)(g.row0 + t) * a.dim;
            for (uint32_t i = threadIdx.x; i < a.dim; i += blockDim.x) g.st.window_kv[slot * a.dim + i] = kv[i];
            if (threadIdx.x == 0) g.st.window_pos[slot] = p;
        }
        return;
    }
    const ds4_cuda_comp_params &cp = part == 1 ? a.comp : a.indexer;
    if (!cp.width) return;
    const ds4_cuda_comp &st = part == 1 ? g.st.comp : g.st.indexer;
    const uint64_t proj = (uint64_t)(cp.overlap ? 2 : 1) * cp.width;
    const float *kv = part == 1 ? a.ckv : a.ikv, *gate = part == 1 ? a.cgate : a.igate;
    for (int t = 0; t < g.n; t++)
        compressor_push(cp, st, kv + (uint64_t)(g.row0 + t) * proj, gate + (uint64_t)(g.row0 + t) * proj, g.pos0 + t,
                        a.rope_dim, a.rope, a.rms_eps, red);
}

extern "C" void ds4_cuda_kv_append(ds4_cuda *c, const ds4_cuda_append *a) {
    if (a->n_seg > 0) kv_append_kernel<<<dim3((unsigned)a->n_seg, 3), THREADS, 0, c->stream>>>(*a);
}

/* ---- the lightning indexer ---- */

#define SCORE_THREADS 256

/* blockIdx.y: the row; a thread per (entry, head): the head's chain of fused
 * multiply-adds over the key in index order (indexer.c's), then a thread per entry adds
 * the heads' terms in head order, as the CPU does. */
__global__ void score_kernel(ds4_cuda_rows_of r, const float *iq, const float *iw, int heads, int dim, uint32_t ratio,
                             float *scores, uint64_t ld) {
    extern __shared__ float qs[]; /* heads rows of dim + 1 (no bank conflicts), weights, dots */
    const int t = blockIdx.y, per_block = SCORE_THREADS / heads, stride = dim + 1;
    const uint64_t n = (uint64_t)(r.row_pos[t] + 1) / ratio, e0 = (uint64_t)blockIdx.x * per_block;
    if (e0 >= n) return;
    float *w = qs + heads * stride, *dots = w + heads;
    for (int i = threadIdx.x; i < heads * dim; i += blockDim.x)
        qs[(i / dim) * stride + i % dim] = iq[(uint64_t)t * heads * dim + i];
    for (int i = threadIdx.x; i < heads; i += blockDim.x) w[i] = iw[(uint64_t)t * heads + i];
    __syncthreads();
    const int h = threadIdx.x % heads, el = threadIdx.x / heads;
    const uint64_t e = e0 + el;
    if (el < per_block && e < n) {
        const float *k = r.segs[r.row_seg[t]].st.indexer.entries + e * dim, *q = qs + h * stride;
        float acc = 0.0f;
#pragma unroll 8
        for (int i = 0; i < dim; i++) acc = fmaf(q[i], k[i], acc);
        dots[el * heads + h] = acc;
    }
    __syncthreads();
    if ((int)threadIdx.x < per_block && e0 + threadIdx.x < n) {
        const float scale = 1.0f / sqrtf((float)dim);
        float total = 0.0f;
        for (int g = 0; g < heads; g++) {
            const float acc = dots[threadIdx.x * heads + g];
            total = __fadd_rn(total, __fmul_rn(__fmul_rn(acc > 0.0f ? acc : 0.0f, scale), w[g]));
        }
        scores[(uint64_t)t * ld + e0 + threadIdx.x] = total;
    }
}

/* indexer.h's ranking: higher is better, the score's bits in radix order, then the lower
 * index. */
__device__ __forceinline__ uint64_t rank_key(float score, uint32_t index) {
    uint32_t u = __float_as_uint(score);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u;
    return (uint64_t)u << 32 | (uint32_t)~index;
}

#define TOPK_THREADS 512

/* A block per row: the k-th best key by radix selection (eight passes of eight bits;
 * keys are distinct), then every entry at or above it, in increasing index order. */
__global__ void topk_kernel(ds4_cuda_rows_of r, uint32_t ratio, const float *scores, uint64_t ld, uint32_t k,
                            int32_t *sel, int32_t *n_sel) {
    __shared__ uint32_t hist[256], warp_count[TOPK_THREADS / 32];
    __shared__ uint64_t prefix_s;
    __shared__ uint32_t need_s, base_s;
    const int t = blockIdx.x;
    const uint64_t n = (uint64_t)(r.row_pos[t] + 1) / ratio;
    const float *s = scores + (uint64_t)t * ld;
    int32_t *out = sel + (uint64_t)t * k;
    if (n <= k) {
        for (uint64_t e = threadIdx.x; e < n; e += blockDim.x) out[e] = (int32_t)e;
        if (threadIdx.x == 0) n_sel[t] = (int32_t)n;
        return;
    }
    uint64_t prefix = 0, mask = 0;
    uint32_t need = k; /* keys still to take at or below the current prefix */
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        for (uint64_t e = threadIdx.x; e < n; e += blockDim.x) {
            const uint64_t key = rank_key(s[e], (uint32_t)e);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            uint32_t above = 0;
            int b = 255;
            for (; b > 0 && above + hist[b] < need; b--) above += hist[b];
            prefix_s = prefix | (uint64_t)b << shift;
            need_s = need - above;
        }
        __syncthreads();
        prefix = prefix_s;
        need = need_s;
        mask |= (uint64_t)255 << shift;
    }
    /* prefix is now the k-th best key: take every key >= it, in index order */
    if (threadIdx.x == 0) base_s = 0;
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (uint64_t e0 = 0; e0 < n; e0 += blockDim.x) {
        const uint64_t e = e0 + threadIdx.x;
        const bool take = e < n && rank_key(s[e], (uint32_t)e) >= prefix;
        const uint32_t ballot = __ballot_sync(0xffffffffu, take);
        if (lane == 0) warp_count[warp] = __popc(ballot);
        __syncthreads();
        uint32_t before = base_s;
        for (int w = 0; w < warp; w++) before += warp_count[w];
        if (take) out[before + __popc(ballot & ((1u << lane) - 1))] = (int32_t)e;
        __syncthreads();
        if (threadIdx.x == 0)
            for (int w = 0; w < TOPK_THREADS / 32; w++) base_s += warp_count[w];
        __syncthreads();
    }
    if (threadIdx.x == 0) n_sel[t] = (int32_t)k;
}

extern "C" void ds4_cuda_indexer(ds4_cuda *c, const ds4_cuda_rows_of *r, const float *iq, const float *iw, int heads,
                                 int dim, uint32_t ratio, uint32_t topk, uint64_t max_entries, float *scores,
                                 int32_t *sel, int32_t *n_sel) {
    if (r->T <= 0) return;
    const int per_block = SCORE_THREADS / heads;
    const unsigned blocks = (unsigned)((max_entries + per_block - 1) / per_block);
    const size_t smem = ((size_t)heads * (dim + 1) + heads + SCORE_THREADS) * sizeof(float);
    if (blocks)
        score_kernel<<<dim3(blocks, (unsigned)r->T), SCORE_THREADS, smem, c->stream>>>(*r, iq, iw, heads, dim, ratio,
                                                                                       scores, max_entries);
    topk_kernel<<<r->T, TOPK_THREADS, 0, c->stream>>>(*r, ratio, scores, max_entries, topk, sel, n_sel);
}

/* ---- attention over each token's keys ---- */

/* Flash-decoding: a thread block takes ATT_HEADS heads of one row (they share every key
 * it loads) and one of `splits` consecutive ranges of the row's keys, walked in tiles of
 * ATT_TILE keys with a running maximum; a combine step then merges the ranges. The keys
 * are the window's cap ring slots in slot order (a slot the row does not see counts as
 * no key) and then the compressed entries. Every sum has a fixed order, so the output is
 * the same bits run after run. */
#define ATT_THREADS 256
#define ATT_HEADS 8 /* = the block's warps: warp w owns head w in the softmax and the sum */
#define ATT_TILE 32
#define ATT_MAX_SPLITS 64

/* Key k of row t (NULL: a window slot the row does not see). */
__device__ __forceinline__ const float *attend_key(const ds4_cuda_attend_job &j, const ds4_cuda_seg &g, int t,
                                                   int64_t p, uint64_t k) {
    const int d = j.dim;
    if (k < j.cap) {
        const int64_t slot = (int64_t)k, q = p - ((p - slot) % j.cap + j.cap) % j.cap;
        if (q < 0) return NULL;
        if (q >= g.pos0) return j.kv + (uint64_t)(g.row0 + (q - g.pos0)) * d;
        return g.old_pos[slot] == q ? g.old_kv + (uint64_t)slot * d : NULL;
    }
    const uint64_t c = k - j.cap;
    return g.st.comp.entries + (uint64_t)(j.kind == 2 ? c : (uint64_t)j.sel[(uint64_t)t * j.topk + c]) * d;
}

/* The eight heads' partial dots of a lane summed over the warp, reduced and scattered in
 * one butterfly: lane l ends with the sum of head 4 b4 + 2 b3 + b2 (b: l's bits). */
__device__ __forceinline__ float warp_sum8(float v[8]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const bool up = lane & 16;
        const float give = up ? v[i] : v[i + 4];
        v[i] = (up ? v[i + 4] : v[i]) + __shfl_xor_sync(0xffffffffu, give, 16);
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const bool up = lane & 8;
        const float give = up ? v[i] : v[i + 2];
        v[i] = (up ? v[i + 2] : v[i]) + __shfl_xor_sync(0xffffffffu, give, 8);
    }
    const bool up = lane & 4;
    float s = (up ? v[1] : v[0]) + __shfl_xor_sync(0xffffffffu, up ? v[0] : v[1], 4);
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    return s + __shfl_xor_sync(0xffffffffu, s, 1);
}

/* blockIdx.x: the group of heads, y: the row, z: the range of keys. PER: values a lane
 * holds (dim <= 32 PER). Writes the range's unnormalised sum per head and value, and its
 * maximum logit and sum of exponentials. */
template <int PER>
__global__ void __launch_bounds__(ATT_THREADS)
attend_kernel(ds4_cuda_rows_of r, ds4_cuda_attend_job j) {
    extern __shared__ float sm[]; /* ATT_HEADS queries, then their logits of a tile */
    __shared__ const float *keys[ATT_TILE];
    const int h0 = blockIdx.x * ATT_HEADS, t = blockIdx.y, split = blockIdx.z, d = j.dim;
    const int nh = j.heads - h0 < ATT_HEADS ? j.heads - h0 : ATT_HEADS;
    const ds4_cuda_seg &g = r.segs[r.row_seg[t]];
    const int64_t p = r.row_pos[t];
    float *qs = sm, *lg = sm + ATT_HEADS * d;
    for (int i = threadIdx.x; i < ATT_HEADS * d; i += blockDim.x)
        qs[i] = i < nh * d ? j.q[((uint64_t)t * j.heads + h0) * d + i] : 0.0f;
    const uint64_t n_comp = j.kind == 2 ? (uint64_t)(p + 1) / j.ratio : j.kind == 1 ? (uint64_t)j.n_sel[t] : 0;
    const uint64_t n = j.cap + n_comp, per = (n + j.splits - 1) / j.splits;
    const uint64_t begin = split * per, end = begin + per < n ? begin + per : n;
    const float scale = 1.0f / sqrtf((float)d);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float m = -INFINITY, l = 0.0f, acc[PER];
#pragma unroll
    for (int v = 0; v < PER; v++) acc[v] = 0.0f;
    for (uint64_t k0 = begin; k0 < end; k0 += ATT_TILE) {
        if (threadIdx.x < ATT_TILE) {
            const uint64_t k = k0 + threadIdx.x;
            keys[threadIdx.x] = k < end ? attend_key(j, g, t, p, k) : NULL;
        }
        __syncthreads();
        /* the logits: a warp per key, its lanes a value in every 32 */
#pragma unroll
        for (int kk = warp; kk < ATT_TILE; kk += ATT_THREADS / 32) {
            const float *key = keys[kk];
            if (!key) {
                if (lane < ATT_HEADS) lg[lane * ATT_TILE + kk] = -INFINITY;
                continue;
            }
            float kv[PER], dot[ATT_HEADS];
#pragma unroll
            for (int v = 0; v < PER; v++) kv[v] = lane + 32 * v < d ? key[lane + 32 * v] : 0.0f;
#pragma unroll
            for (int h = 0; h < ATT_HEADS; h++) {
                float s = 0.0f;
#pragma unroll
                for (int v = 0; v < PER; v++)
                    if (lane + 32 * v < d) s = fmaf(qs[h * d + lane + 32 * v], kv[v], s);
                dot[h] = s;
            }
            const float s = warp_sum8(dot);
            if ((lane & 3) == 0) lg[(((lane >> 4) & 1) * 4 + ((lane >> 3) & 1) * 2 + ((lane >> 2) & 1)) * ATT_TILE + kk] = s * scale;
        }
        __syncthreads();
        if (warp < nh) { /* warp w: head h0 + w's running softmax, then its weighted sum */
            float *row = lg + warp * ATT_TILE;
            const float x = row[lane];
            float mt = x;
            for (int off = 16; off > 0; off >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, off));
            const float m_new = fmaxf(m, mt);
            const float e = m_new == -INFINITY ? 0.0f : expf(x - m_new);
            const float factor = m_new == -INFINITY ? 1.0f : expf(m - m_new);
            float sum = e;
            for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            row[lane] = e;
            __syncwarp();
            l = __fadd_rn(__fmul_rn(l, factor), sum);
            m = m_new;
#pragma unroll
            for (int v = 0; v < PER; v++) acc[v] = __fmul_rn(acc[v], factor);
            for (int kk = 0; kk < ATT_TILE; kk++) {
                const float *key = keys[kk];
                if (!key) continue;
                const float a = row[kk];
#pragma unroll
                for (int v = 0; v < PER; v++)
                    if (lane + 32 * v < d) acc[v] = fmaf(a, key[lane + 32 * v], acc[v]);
            }
        }
        __syncthreads();
    }
    if (warp < nh) {
        const uint64_t at = ((uint64_t)t * j.heads + h0 + warp) * j.splits + split;
#pragma unroll
        for (int v = 0; v < PER; v++)
            if (lane + 32 * v < d) j.part[at * d + lane + 32 * v] = acc[v];
        if (lane == 0) j.part_ml[2 * at] = m, j.part_ml[2 * at + 1] = l;
    }
}

/* blockIdx.x: the head, y: the row: the ranges merged with the sink, rotated back by
 * -pos, into att. */
__global__ void attend_combine_kernel(ds4_cuda_rows_of r, ds4_cuda_attend_job j) {
    extern __shared__ float o[]; /* dim */
    __shared__ float weight[ATT_MAX_SPLITS], total_s;
    const int h = blockIdx.x, t = blockIdx.y, d = j.dim, S = j.splits;
    const uint64_t at = ((uint64_t)t * j.heads + h) * S;
    const float *ml = j.part_ml + 2 * at;
    if (threadIdx.x == 0) {
        const float sink = j.sinks[h];
        float M = sink;
        for (int s = 0; s < S; s++) M = fmaxf(M, ml[2 * s]);
        float total = expf(sink - M);
        for (int s = 0; s < S; s++) {
            weight[s] = ml[2 * s] == -INFINITY ? 0.0f : expf(ml[2 * s] - M);
            total = __fadd_rn(total, __fmul_rn(ml[2 * s + 1], weight[s]));
        }
        total_s = total;
    }
    __syncthreads();
    const float total = total_s;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < S; s++) acc = fmaf(j.part[(at + s) * d + i], weight[s], acc);
        o[i] = acc / total;
    }
    __syncthreads();
    rope(o, d, j.rope_dim, j.rope, r.row_pos[t], -1);
    __syncthreads();
    for (int i = threadIdx.x; i < d; i += blockDim.x) j.att[((uint64_t)t * j.heads + h) * d + i] = o[i];
}

extern "C" int ds4_cuda_attend_splits(const ds4_cuda *c, int T, int heads, uint64_t max_keys) {
    const int groups = (heads + ATT_HEADS - 1) / ATT_HEADS;
    uint64_t s = ((uint64_t)c->fill_blocks + (uint64_t)T * groups - 1) / ((uint64_t)T * groups);
    const uint64_t tiles = (max_keys + ATT_TILE - 1) / ATT_TILE;
    s = s > tiles ? tiles : s;
    s = s > ATT_MAX_SPLITS ? ATT_MAX_SPLITS : s;
    return s < 1 ? 1 : (int)s;
}

typedef void (*attend_fn)(ds4_cuda_rows_of, ds4_cuda_attend_job);

extern "C" void ds4_cuda_attend(ds4_cuda *c, const ds4_cuda_rows_of *r, const ds4_cuda_attend_job *j) {
    if (r->T <= 0) return;
    const int per = (j->dim + 31) / 32;
    const attend_fn kernel = per <= 1 ? attend_kernel<1> : per <= 2 ? attend_kernel<2> : per <= 4 ? attend_kernel<4>
                           : per <= 8 ? attend_kernel<8> : per <= 16 ? attend_kernel<16> : attend_kernel<32>;
    const size_t smem = (size_t)ATT_HEADS * (j->dim + ATT_TILE) * sizeof(float);
    const dim3 grid((unsigned)((j->heads + ATT_HEADS - 1) / ATT_HEADS), (unsigned)r->T, (unsigned)j->splits);
    kernel<<<grid, ATT_THREADS, smem, c->stream>>>(*r, *j);
    attend_combine_kernel<<<dim3((unsigned)j->heads, (unsigned)r->T), 128, (size_t)j->dim * sizeof(float),
                            c->stream>>>(*r, *j);
}
