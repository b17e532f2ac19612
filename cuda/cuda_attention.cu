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

#define ATT_THREADS 256
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_PER_LANE 32 /* head_dim <= 1024 */

/* blockIdx.x: the head, blockIdx.y: the row. Each warp takes every eighth key, for its
 * logit (a dot product over the lanes) and then its share of the weighted sum (a lane per
 * 32nd value, a product then an add per key as the CPU's axpy); the warps' sums meet in
 * warp order. */
__global__ void attend_kernel(ds4_cuda_rows_of r, ds4_cuda_attend_job j) {
    extern __shared__ float sm[]; /* q (dim), the warps' sums (8 x dim), the window's key pointers, the selection */
    __shared__ float red[33];
    __shared__ int n_win_s;
    const int h = blockIdx.x, t = blockIdx.y, d = j.dim;
    const ds4_cuda_seg &g = r.segs[r.row_seg[t]];
    const int64_t p = r.row_pos[t];
    float *qs = sm, *parts = sm + d;
    const float **win = (const float **)(parts + ATT_WARPS * d + (d & 1));
    int32_t *sel = (int32_t *)(win + j.cap);
    for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = j.q[((uint64_t)t * j.heads + h) * d + i];
    if (threadIdx.x == 0) { /* the window in the ring's slot order, as gather_keys */
        int n = 0;
        for (int64_t slot = 0; slot < (int64_t)j.cap; slot++) {
            const int64_t q = p - ((p - slot) % j.cap + j.cap) % j.cap;
            if (q < 0) continue;
            if (q >= g.pos0) win[n++] = j.kv + (uint64_t)(g.row0 + (q - g.pos0)) * d;
            else if (g.old_pos[slot] == q) win[n++] = g.old_kv + (uint64_t)slot * d;
        }
        n_win_s = n;
    }
    const uint64_t n_comp = j.kind == 2 ? (uint64_t)(p + 1) / j.ratio : j.kind == 1 ? (uint64_t)j.n_sel[t] : 0;
    if (j.kind == 1)
        for (uint64_t i = threadIdx.x; i < n_comp; i += blockDim.x) sel[i] = j.sel[(uint64_t)t * j.topk + i];
    __syncthreads();
    const int n_win = n_win_s;
    const uint64_t n = n_win + n_comp;
    const float *entries = g.st.comp.entries;
#define KEY(k) ((k) < (uint64_t)n_win ? win[k] : entries + (uint64_t)(j.kind == 2 ? (k) - n_win : sel[(k) - n_win]) * d)
    float *lg = j.logits + ((uint64_t)t * j.heads + h) * j.max_keys;
    const float scale = 1.0f / sqrtf((float)d);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll 4
    for (uint64_t k = warp; k < n; k += ATT_WARPS) {
        const float *key = KEY(k);
        float s = 0.0f;
        for (int i = lane; i < d; i += 32) s = fmaf(qs[i], key[i], s);
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) lg[k] = s * scale;
    }
    __syncthreads();
    const float sink = j.sinks[h];
    float m = sink;
    for (uint64_t k = threadIdx.x; k < n; k += blockDim.x) m = fmaxf(m, lg[k]);
    m = block_reduce(m, red, true);
    float sum = 0.0f;
    for (uint64_t k = threadIdx.x; k < n; k += blockDim.x) sum += (lg[k] = expf(lg[k] - m));
    sum = block_reduce(sum, red, false) + expf(sink - m);
    float acc[ATT_PER_LANE];
#pragma unroll
    for (int v = 0; v < ATT_PER_LANE; v++) acc[v] = 0.0f;
    for (uint64_t k = warp; k < n; k += ATT_WARPS) {
        const float *key = KEY(k);
        const float a = lg[k] / sum;
#pragma unroll
        for (int v = 0; v < ATT_PER_LANE; v++)
            if (lane + 32 * v < d) acc[v] = __fadd_rn(acc[v], __fmul_rn(a, key[lane + 32 * v]));
    }
#undef KEY
#pragma unroll
    for (int v = 0; v < ATT_PER_LANE; v++)
        if (lane + 32 * v < d) parts[warp * d + lane + 32 * v] = acc[v];
    __syncthreads();
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float o = parts[i];
        for (int w = 1; w < ATT_WARPS; w++) o += parts[w * d + i];
        qs[i] = o;
    }
    __syncthreads();
    rope(qs, d, j.rope_dim, j.rope, p, -1);
    __syncthreads();
    for (int i = threadIdx.x; i < d; i += blockDim.x) j.att[((uint64_t)t * j.heads + h) * d + i] = qs[i];
}

extern "C" size_t ds4_cuda_attend_smem(int dim, uint32_t cap, uint32_t topk) {
    return ((1 + ATT_WARPS) * (size_t)dim + 1) * sizeof(float) + (size_t)cap * sizeof(float *) +
           (size_t)topk * sizeof(int32_t) + 8;
}

extern "C" void ds4_cuda_attend(ds4_cuda *c, const ds4_cuda_rows_of *r, const ds4_cuda_attend_job *j) {
    if (r->T <= 0) return;
    const size_t smem = ds4_cuda_attend_smem(j->dim, j->cap, j->topk);
    if (smem > 48 * 1024)
        cudaFuncSetAttribute((const void *)attend_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    attend_kernel<<<dim3((unsigned)j->heads, (unsigned)r->T), ATT_THREADS, smem, c->stream>>>(*r, *j);
}
