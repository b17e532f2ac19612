/* cuda_ffn.cu - see ds4_cuda_ffn in cuda_matmul.h: the MoE layer of a few tokens in one
 * pass on the device, from the sublayer input in device memory to its output there. Its arithmetic is the CPU's (cpu_moe.c) step by step;
 * the device's expf/log1pf may differ from glibc's in the last bit, which moves a score
 * by an ulp and, only where two experts tie to that ulp, the choice. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cuda_decode.cuh"
#include "cuda_device.h"
#include "cuda_qdot.cuh"
#include "cuda_stages.h"

#define WARPS 4
#define MAX_T DS4_CUDA_FFN_MAX_T
#define MAX_K DS4_CUDA_FFN_MAX_K

cudaError_t ds4_cuda_ffn_tables(const uint64_t *grid, const uint8_t *signs, const uint8_t *masks) {
    return load_tables(grid, signs, masks);
}

/* y[p][o] = W[row_of(p) + o] . x[x_of(p)] for pairs p (blockIdx.y): the routed experts'
 * products (rows of the chosen expert), or a plain product when choice is NULL;
 * blockIdx.z 1: the same with W2 into y2 (the up projection beside the gate's). */
template <int TYPE>
__global__ void pair_kernel(const uint8_t *__restrict__ W, uint64_t row_bytes, uint32_t block_bytes, int64_t n,
                            uint64_t n_out, const float *__restrict__ x, int x_per_pair, const int32_t *choice,
                            float *__restrict__ y, const uint8_t *__restrict__ W2, float *__restrict__ y2) {
    const int p = blockIdx.y;
    const uint64_t o = (uint64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (o >= n_out) return;
    if (blockIdx.z) W = W2, y = y2;
    const uint64_t row = (choice ? (uint64_t)choice[p] * n_out : 0) + o;
    const float s = row_dot<TYPE>(W + row * row_bytes, block_bytes, n, x + (uint64_t)(p / x_per_pair) * n);
    if ((threadIdx.x & 31) == 0) y[(uint64_t)p * n_out + o] = s;
}

/* The same over Q8_K activation rows for IQ2_XXS and Q2_K (cuda_qdot.cuh), QROWS rows a
 * warp, staged in shared memory first where `staged`. */
#define QWARPS 8
#define QROWS 4
template <int TYPE>
__global__ void __launch_bounds__(QWARPS * 32)
qpair_kernel(const uint8_t *__restrict__ W, uint64_t row_bytes, int64_t n, uint64_t n_out,
             const uint8_t *__restrict__ xq, int x_per_pair, const int32_t *choice, float *__restrict__ y,
             const uint8_t *__restrict__ W2, float *__restrict__ y2, int staged) {
    extern __shared__ __align__(16) uint8_t rows[];
    __shared__ uint64_t grid[TYPE == T_IQ2_XXS ? 256 : 1];
    if constexpr (TYPE == T_IQ2_XXS) load_grid(grid);
    const int p = blockIdx.y;
    if (blockIdx.z) W = W2, y = y2;
    const uint64_t qb = q8k_row_bytes(n), base = choice ? (uint64_t)choice[p] * n_out : 0;
    const uint8_t *act = xq + (uint64_t)(p / x_per_pair) * qb;
    const uint64_t block0 = (uint64_t)blockIdx.x * QWARPS * QROWS, first = block0 + (threadIdx.x >> 5);
    const uint64_t end = block0 + QWARPS * QROWS < n_out ? block0 + QWARPS * QROWS : n_out;
    uint8_t *mine = rows + (threadIdx.x >> 5) * QROWS * row_bytes;
    if (staged) stage_rows(mine, W + base * row_bytes, row_bytes, first, end, QWARPS);
    for (uint64_t o = first, k = 0; o < end; o += QWARPS, k++) {
        float acc[1];
        q8_dots<TYPE, 1>(staged ? mine + k * row_bytes : W + (base + o) * row_bytes, n, act, qb, grid, acc);
        if ((threadIdx.x & 31) == 0) y[(uint64_t)p * n_out + o] = acc[0];
    }
}

typedef void (*pair_fn)(const uint8_t *, uint64_t, uint32_t, int64_t, uint64_t, const float *, int, const int32_t *,
                        float *, const uint8_t *, float *);

#define PAIR_CASE(t) case t: return pair_kernel<t>;
static pair_fn pair_for(uint32_t type) {
    switch (type) { DS4_CUDA_TYPES(PAIR_CASE) }
    return NULL;
}

/* Router scores to choices and weights, a block per token: the scores a thread per
 * expert, each choice the block's best (the lowest id among equals, as the CPU's strict
 * comparison keeps), the softmax and the weights' sum on one thread in the CPU's order. */
__global__ void route_kernel(const float *logits, uint32_t E, uint32_t K, uint32_t gating, int norm, float scale,
                             const float *bias, int32_t *choice, int hashed, float *weight) {
    extern __shared__ float score[]; /* E scores, E biased */
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    const int t = blockIdx.x;
    const float *lg = logits + (uint64_t)t * E;
    float *biased = score + E;
    for (uint32_t e = threadIdx.x; e < E; e += blockDim.x) {
        const float l = lg[e];
        score[e] = gating == 2 ? 1.0f / (1.0f + expf(-l)) : gating == 4 ? sqrtf(l > 20.0f ? l : log1pf(expf(l))) : l;
    }
    __syncthreads();
    if (gating == 1 && threadIdx.x == 0) { /* softmax over all experts, as ds4_softmax computes it */
        float mx = score[0];
        for (uint32_t e = 1; e < E; e++) mx = fmaxf(mx, score[e]);
        float sum = 0;
        for (uint32_t e = 0; e < E; e++) sum += (score[e] = expf(score[e] - mx));
        for (uint32_t e = 0; e < E; e++) score[e] /= sum;
    }
    __syncthreads();
    int32_t *ch = choice + (uint64_t)t * K;
    if (!hashed) {
        for (uint32_t e = threadIdx.x; e < E; e += blockDim.x) biased[e] = score[e] + (bias ? bias[e] : 0.0f);
        __syncthreads();
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        for (uint32_t k = 0; k < K; k++) {
            float v = -INFINITY;
            int i = -1;
            for (uint32_t e = threadIdx.x; e < E; e += blockDim.x)
                if (i < 0 || biased[e] > v) v = biased[e], i = (int)e;
            for (int off = 16; off > 0; off >>= 1) {
                const float ov = __shfl_xor_sync(0xffffffffu, v, off);
                const int oi = __shfl_xor_sync(0xffffffffu, i, off);
                if (oi >= 0 && (i < 0 || ov > v || (ov == v && oi < i))) v = ov, i = oi;
            }
            if (lane == 0) best_v[warp] = v, best_i[warp] = i;
            __syncthreads();
            if (threadIdx.x == 0) {
                int bi = best_i[0];
                float bv = best_v[0];
                for (int w = 1; w < (int)(blockDim.x >> 5); w++)
                    if (best_i[w] >= 0 && (bi < 0 || best_v[w] > bv || (best_v[w] == bv && best_i[w] < bi)))
                        bv = best_v[w], bi = best_i[w];
                ch[k] = bi;
                biased[bi] = -INFINITY;
            }
            __syncthreads();
        }
    }
    if (threadIdx.x == 0) {
        float sum = 0.0f, *wt = weight + (uint64_t)t * K;
        for (uint32_t k = 0; k < K; k++) sum += (wt[k] = score[ch[k]]);
        for (uint32_t k = 0; k < K; k++) wt[k] = (norm ? wt[k] / (sum + 1e-20f) : wt[k]) * scale;
    }
}

/* hg = silu(min(g, L)) * clamp(u, -L, L), element by element. */
__global__ void swiglu_kernel(float *hg, const float *hu, uint64_t n, float limit) {
    const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = hg[i], u = hu[i];
    if (limit > 0) {
        g = fminf(g, limit);
        u = fminf(fmaxf(u, -limit), limit);
    }
    hg[i] = g / (1.0f + expf(-g)) * u;
}

/* out[t] (the shared expert's down product, or 0) += weight * the routed experts' outputs,
 * expert by expert in increasing id (slots of one expert in slot order), as the CPU adds;
 * pair t*K+s's output is row inv[t*K+s] of ys (NULL: row t*K+s). */
__global__ void combine_kernel(float *out, int has_shared, const float *ys, const int32_t *inv, const int32_t *choice,
                               const float *weight, int T, uint32_t K, uint32_t D) {
    const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (uint64_t)T * D) return;
    const int t = (int)(i / D);
    const uint32_t d = (uint32_t)(i % D);
    const int32_t *ch = choice + (uint64_t)t * K;
    int order[MAX_K];
    for (uint32_t k = 0; k < K; k++) order[k] = (int)k;
    for (uint32_t a = 1; a < K; a++) /* insertion sort by expert id, stable */
        for (uint32_t b = a; b > 0 && ch[order[b - 1]] > ch[order[b]]; b--) {
            const int tmp = order[b];
            order[b] = order[b - 1];
            order[b - 1] = tmp;
        }
    float o = has_shared ? out[i] : 0.0f;
    for (uint32_t k = 0; k < K; k++) {
        const int s = order[k];
        const uint64_t at = (uint64_t)t * K + s;
        o += weight[at] * ys[(uint64_t)(inv ? inv[at] : (int32_t)at) * D + d];
    }
    out[i] = o;
}

/* SwiGLU's middle over the routed experts' rows and the shared expert's (n_sh 0: none). */
static cudaError_t swiglu(ds4_cuda *c, float *hg, const float *hu, uint64_t n_h, float limit, float *sg, const float *su,
                          uint64_t n_sh, float limit_shared) {
    if (n_sh) swiglu_kernel<<<(unsigned)((n_sh + 255) / 256), 256, 0, c->stream>>>(sg, su, n_sh, limit_shared);
    swiglu_kernel<<<(unsigned)((n_h + 255) / 256), 256, 0, c->stream>>>(hg, hu, n_h, limit);
    return cudaGetLastError();
}

/* The routed experts' products for `pairs` (token, choice) pairs; m2 (or NULL): a second
 * matrix of m's type and shape over the same rows, into y2, in the same launch. */
static cudaError_t product(ds4_cuda *c, const ds4_cuda_matrix *m, uint64_t n_out, const float *x, int x_per_pair,
                           const int32_t *choice, int pairs, float *y, const ds4_cuda_matrix *m2, float *y2) {
    const int fmt = act_format(c, m->type), rows = (pairs + x_per_pair - 1) / x_per_pair; /* x's rows, n apart */
    if (fmt && has_qdot((int)m->type)) {
        const uint8_t *xq = ds4_cuda_q8k_scratch(c, x, (uint64_t)m->n, rows, m->n);
        if (!xq) return cudaErrorMemoryAllocation;
        const dim3 grid((unsigned)((n_out + QWARPS * QROWS - 1) / (QWARPS * QROWS)), (unsigned)pairs, m2 ? 2 : 1);
        const size_t stage = stage_bytes(m->row_bytes, QWARPS * QROWS);
        (m->type == T_IQ2_XXS ? qpair_kernel<T_IQ2_XXS> : qpair_kernel<T_Q2_K>)<<<grid, QWARPS * 32, stage,
                                                                                  c->stream>>>(
            c->arena + m->offset, m->row_bytes, m->n, n_out, xq, x_per_pair, choice, y,
            m2 ? c->arena + m2->offset : NULL, y2, stage != 0);
        return cudaGetLastError();
    }
    if (fmt) { /* the activations rounded through int8, as the CPU's int8 kernel has them */
        if (!(x = ds4_cuda_round_scratch(c, fmt, x, (uint64_t)m->n, rows, m->n, 1, 0)))
            return cudaErrorMemoryAllocation;
    }
    const dim3 grid((unsigned)((n_out + WARPS - 1) / WARPS), (unsigned)pairs, m2 ? 2 : 1);
    pair_for(m->type)<<<grid, WARPS * 32, 0, c->stream>>>(c->arena + m->offset, m->row_bytes, m->block_bytes, m->n,
                                                          n_out, x, x_per_pair, choice, y,
                                                          m2 ? c->arena + m2->offset : NULL, y2);
    return cudaGetLastError();
}

static bool same_shape(const ds4_cuda_matrix *a, const ds4_cuda_matrix *b) {
    return a->type == b->type && a->n == b->n && a->row_bytes == b->row_bytes;
}

extern "C" int ds4_cuda_ffn(ds4_cuda *c, const ds4_cuda_ffn_layer *L, const float *x, int T, const int32_t *choice,
                            float *y, char *err, size_t cap) {
    if (T > MAX_T || L->K > MAX_K) {
        snprintf(err, cap, "cuda: the device's MoE takes at most %d tokens of %d experts", MAX_T, MAX_K);
        return -1;
    }
    const ds4_cuda_matrix *mats[] = {&L->gate_inp, &L->gate_exps, &L->up_exps, &L->down_exps};
    for (int i = 0; i < 4; i++)
        if (!pair_for(mats[i]->type)) {
            snprintf(err, cap, "cuda: a weight type the device's MoE does not read");
            return -1;
        }
    const uint64_t D = L->D, E = L->E, I = L->I, K = L->K, Is = L->Is, P = (uint64_t)T * K;
    /* one work buffer, carved up */
    const uint64_t n_logits = T * E, n_h = P * I, n_ys = P * D, n_sh = T * Is, n_out = T * D;
    const uint64_t floats = n_logits + 2 * n_h + n_ys + 2 * n_sh + 2 * P;
    if (ds4_cuda_grow(c, (void **)&c->ffn_work, &c->ffn_cap, floats * sizeof(float), err, cap) < 0) return -1;
    const float *dx = x;
    float *logits = c->ffn_work, *hg = logits + n_logits, *hu = hg + n_h, *ys = hu + n_h,
          *sg = ys + n_ys, *su = sg + n_sh, *out = y, *weight = su + n_sh;
    int32_t *ch = choice ? (int32_t *)choice : (int32_t *)(weight + P);
    /* the router: few rows over the whole input, which the products split */
    const ds4_cuda_product router = {L->gate_inp, E, dx, D, T, logits, E, 0, 0, 0, NULL};
    ds4_cuda_run(c, &router, 1);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) {
        route_kernel<<<T, 128, 2 * (size_t)L->E * sizeof(float), c->stream>>>(logits, L->E, L->K, L->gating, L->norm,
                                                                            L->scale, L->bias, ch, choice != NULL,
                                                                            weight);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess && Is) { /* the shared expert's gate and up share a launch */
        const ds4_cuda_product sh[2] = {{L->gate_sh, Is, dx, D, T, sg, Is, 0, 0, 0, NULL},
                                        {L->up_sh, Is, dx, D, T, su, Is, 0, 0, 0, NULL}};
        ds4_cuda_run(c, sh, 2);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) {
        const bool both = same_shape(&L->gate_exps, &L->up_exps);
        e = product(c, &L->gate_exps, I, dx, (int)K, ch, (int)P, hg, both ? &L->up_exps : NULL, hu);
        if (e == cudaSuccess && !both) e = product(c, &L->up_exps, I, dx, (int)K, ch, (int)P, hu, NULL, NULL);
    }
    if (e == cudaSuccess) e = swiglu(c, hg, hu, n_h, L->limit, sg, su, n_sh, L->limit_shared);
    if (e == cudaSuccess && Is) {
        const ds4_cuda_product down = {L->down_sh, D, sg, Is, T, out, D, 0, 0, 0, NULL};
        ds4_cuda_run(c, &down, 1);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = product(c, &L->down_exps, D, hg, 1, ch, (int)P, ys, NULL, NULL);
    if (e == cudaSuccess) {
        combine_kernel<<<(unsigned)((n_out + 255) / 256), 256, 0, c->stream>>>(out, Is != 0, ys, NULL, ch, weight, T,
                                                                                L->K, L->D);
        e = cudaGetLastError();
    }
    return e == cudaSuccess ? 0 : fail(err, cap, "the MoE layer", e);
}

/* xs[i] = x[rows[i]], D floats a row. */
__global__ void gather_kernel(float *xs, const float *x, const int32_t *rows, uint32_t D) {
    const float *src = x + (uint64_t)rows[blockIdx.x] * D;
    float *dst = xs + (uint64_t)blockIdx.x * D;
    for (uint32_t i = threadIdx.x; i < D; i += blockDim.x) dst[i] = src[i];
}

extern "C" int ds4_cuda_ffn_grouped(ds4_cuda *c, const ds4_cuda_ffn_layer *L, const float *x, int T,
                                    const int32_t *choice, float *y, char *err, size_t cap) {
    if (ds4_cuda_graph_end(c, err, cap) < 0) return -1; /* the host waits for the choices below */
    if (L->K > MAX_K) {
        snprintf(err, cap, "cuda: the device's MoE takes at most %d experts a token", MAX_K);
        return -1;
    }
    const uint64_t D = L->D, E = L->E, I = L->I, K = L->K, Is = L->Is, P = (uint64_t)T * K;
    const uint64_t n_logits = T * E, n_xs = P * D, n_h = P * I, n_sh = T * Is, n_out = T * D;
    /* the experts' inputs as Q8_K rows, made once for all experts where int8 kernels read them */
    const bool q_in = act_format(c, L->gate_exps.type) && has_qdot((int)L->gate_exps.type) &&
                      same_shape(&L->gate_exps, &L->up_exps),
               q_mid = act_format(c, L->down_exps.type) && has_qdot((int)L->down_exps.type);
    const uint64_t qb_in = q8k_row_bytes((int64_t)D), qb_mid = q8k_row_bytes((int64_t)I);
    const uint64_t n_q = ((q_in ? P * qb_in : 0) + (q_mid ? P * qb_mid : 0)) / sizeof(float);
    const uint64_t q_at = (n_logits + 2 * n_xs + 2 * n_h + 2 * n_sh + 4 * P + 3) / 4 * 4; /* 16-byte aligned */
    const uint64_t floats = q_at + n_q;
    if (ds4_cuda_grow(c, (void **)&c->ffn_work, &c->ffn_cap, floats * sizeof(float), err, cap) < 0) return -1;
    float *logits = c->ffn_work, *xs = logits + n_logits, *ys = xs + n_xs, *hg = ys + n_xs, *hu = hg + n_h,
          *sg = hu + n_h, *su = sg + n_sh, *weight = su + n_sh;
    uint8_t *xsq = (uint8_t *)(c->ffn_work + q_at), *hgq = xsq + (q_in ? P * qb_in : 0);
    int32_t *ch = choice ? (int32_t *)choice : (int32_t *)(weight + P), *drows = (int32_t *)(weight + 2 * P),
            *dinv = drows + P;
    int32_t *host = (int32_t *)malloc(3 * P * sizeof(int32_t) + (E + 1) * sizeof(int));
    ds4_cuda_product *prod = (ds4_cuda_product *)malloc((2 * E + 2) * sizeof *prod);
    if (!host || !prod) {
        free(host);
        free(prod);
        snprintf(err, cap, "cuda: out of host memory");
        return -1;
    }
    int32_t *rows = host + P, *inv = rows + P;
    int *count = (int *)(inv + P);
    cudaError_t e = product(c, &L->gate_inp, E, x, 1, NULL, T, logits, NULL, NULL);
    if (e == cudaSuccess) {
        route_kernel<<<T, 128, 2 * (size_t)E * sizeof(float), c->stream>>>(logits, L->E, L->K, L->gating, L->norm,
                                                                         L->scale, L->bias, ch, choice != NULL, weight);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpyAsync(host, ch, P * sizeof(int32_t), cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess) { /* the rows of each expert, expert by expert, tokens in order (cpu_moe.c) */
        memset(count, 0, (E + 1) * sizeof *count);
        for (uint64_t i = 0; i < P; i++) count[host[i] + 1]++;
        for (uint64_t k = 0; k < E; k++) count[k + 1] += count[k];
        for (uint64_t i = 0; i < P; i++) {
            const int at = count[host[i]]++;
            rows[at] = (int32_t)(i / K);
            inv[i] = at;
        }
        e = cudaMemcpyAsync(drows, rows, 2 * P * sizeof(int32_t), cudaMemcpyHostToDevice, c->stream);
    }
    if (e == cudaSuccess) {
        gather_kernel<<<(unsigned)P, 256, 0, c->stream>>>(xs, x, drows, L->D);
        if (q_in) ds4_cuda_quantize_q8k(c, xs, D, (int)P, (int64_t)D, xsq);
        e = cudaGetLastError();
    }
    /* gate and up of every expert (rows e*I.. of the stacked matrices) and of the shared one */
    int n = 0;
    for (uint64_t k = 0, r0 = 0; k < E; k++) { /* count[k] now ends expert k's rows */
        const uint64_t r1 = (uint64_t)count[k];
        if (r1 == r0) continue;
        const int m = (int)(r1 - r0);
        const bool qa = q_in && m < DS4_CUDA_GEMM_MIN_T; /* (the tiles round their inputs themselves) */
        prod[n] = (ds4_cuda_product){L->gate_exps, I, xs + r0 * D, D, m, hg + r0 * I, I, 0, 0, qa,
                                     qa ? xsq + r0 * qb_in : NULL};
        prod[n++].w.offset += k * I * L->gate_exps.row_bytes;
        prod[n] = (ds4_cuda_product){L->up_exps, I, xs + r0 * D, D, m, hu + r0 * I, I, 0, 0, qa,
                                     qa ? xsq + r0 * qb_in : NULL};
        prod[n++].w.offset += k * I * L->up_exps.row_bytes;
        r0 = r1;
    }
    if (Is) {
        prod[n++] = (ds4_cuda_product){L->gate_sh, Is, x, D, T, sg, Is, 0, 0, 0, NULL};
        prod[n++] = (ds4_cuda_product){L->up_sh, Is, x, D, T, su, Is, 0, 0, 0, NULL};
    }
    if (e == cudaSuccess) {
        ds4_cuda_run(c, prod, n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = swiglu(c, hg, hu, n_h, L->limit, sg, su, n_sh, L->limit_shared);
    if (e == cudaSuccess && q_mid) ds4_cuda_quantize_q8k(c, hg, I, (int)P, (int64_t)I, hgq);
    n = 0;
    for (uint64_t k = 0, r0 = 0; k < E; k++) {
        const uint64_t r1 = (uint64_t)count[k];
        if (r1 == r0) continue;
        const bool qa = q_mid && r1 - r0 < DS4_CUDA_GEMM_MIN_T;
        prod[n] = (ds4_cuda_product){L->down_exps, D, hg + r0 * I, I, (int)(r1 - r0), ys + r0 * D, D, 0, 0, qa,
                                     qa ? hgq + r0 * qb_mid : NULL};
        prod[n++].w.offset += k * D * L->down_exps.row_bytes;
        r0 = r1;
    }
    if (Is) prod[n++] = (ds4_cuda_product){L->down_sh, D, sg, Is, T, y, D, 0, 0, 0, NULL};
    if (e == cudaSuccess) {
        ds4_cuda_run(c, prod, n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) {
        combine_kernel<<<(unsigned)((n_out + 255) / 256), 256, 0, c->stream>>>(y, Is != 0, ys, dinv, ch, weight, T,
                                                                                L->K, L->D);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream); /* (the host's lists are freed next) */
    free(host);
    free(prod);
    return e == cudaSuccess ? 0 : fail(err, cap, "the MoE layer", e);
}

extern "C" int ds4_cuda_floats(ds4_cuda *c, const float *host, size_t n, float **dev, char *err, size_t cap) {
    if (ds4_cuda_graph_end(c, err, cap) < 0) return -1;
    cudaError_t e = cudaMalloc((void **)dev, n * sizeof(float));
    if (e == cudaSuccess) e = cudaMemcpy(*dev, host, n * sizeof(float), cudaMemcpyHostToDevice);
    return e == cudaSuccess ? 0 : fail(err, cap, "parameters", e);
}
