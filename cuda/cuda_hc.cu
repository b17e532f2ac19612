/* cuda_hc.cu - see cuda_stages.h: RMS norms, the hyper-connections' mixing weights with
 * Sinkhorn, the collapse of the streams and the write back, as cpu_hc.c computes them:
 * the per-token mixing weights on one thread in the CPU's order, the weighted sums of the
 * streams product by product without fused multiply-adds (the CPU's bits), the norms'
 * sums of squares in a fixed tree. */
#include <math.h>

#include "cuda_device.h"
#include "cuda_stages.h"

#define THREADS 256
#define HC_MAX 64 /* model.h's DS4_HC_MAX */

__global__ void rmsnorm_kernel(float *dst, uint64_t ld_dst, const float *src, uint64_t ld_src, const int32_t *rows,
                               int n, const float *weight, float eps) {
    __shared__ float red[33];
    block_rmsnorm(dst + (uint64_t)blockIdx.x * ld_dst,
                  src + (uint64_t)(rows ? rows[blockIdx.x] : (int)blockIdx.x) * ld_src, n, weight, eps, red);
}

extern "C" void ds4_cuda_rmsnorm(ds4_cuda *c, float *dst, uint64_t ld_dst, const float *src, uint64_t ld_src,
                                 const int32_t *rows, int n_rows, int n, const float *weight, float eps) {
    if (n_rows > 0) rmsnorm_kernel<<<n_rows, THREADS, 0, c->stream>>>(dst, ld_dst, src, ld_src, rows, n, weight, eps);
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* The site's post weights and combination, in shared memory: thread j < hc owns row j
 * (then column j) of the combination, each row's and column's sums in the CPU's order.
 * WARP: warp 0 alone runs it (hc <= 32), the other warps go on meanwhile. */
template <bool WARP> __device__ __forceinline__ void sync_for() {
    if (WARP) __syncwarp();
    else __syncthreads();
}

template <bool WARP> __device__ void site_weights(const ds4_cuda_hc_site &s, const float *m, float *po, float *cb) {
    const int hc = s.hc, j = threadIdx.x;
    if (j < hc) {
        po[j] = 2.0f * sigmoid(__fadd_rn(__fmul_rn(m[hc + j], s.scale[1]), s.base[hc + j]));
        float *row = cb + j * hc, mx = -INFINITY, sum = 0.0f;
        for (int k = 0; k < hc; k++)
            row[k] = __fadd_rn(__fmul_rn(m[2 * hc + j * hc + k], s.scale[2]), s.base[2 * hc + j * hc + k]);
        for (int k = 0; k < hc; k++) mx = fmaxf(mx, row[k]);
        for (int k = 0; k < hc; k++) sum += (row[k] = expf(row[k] - mx));
        for (int k = 0; k < hc; k++) row[k] = row[k] / sum + s.hc_eps;
    }
    sync_for<WARP>();
    /* Sinkhorn: columns first, then rows and columns alternately. */
    for (int it = 0; it < s.sinkhorn_iters; it++) {
        if (it > 0) {
            if (j < hc) {
                float sum = 0.0f;
                for (int k = 0; k < hc; k++) sum += cb[j * hc + k];
                for (int k = 0; k < hc; k++) cb[j * hc + k] /= sum + s.hc_eps;
            }
            sync_for<WARP>();
        }
        if (j < hc) {
            float sum = 0.0f;
            for (int i = 0; i < hc; i++) sum += cb[i * hc + j];
            for (int i = 0; i < hc; i++) cb[i * hc + j] /= sum + s.hc_eps;
        }
        sync_for<WARP>();
    }
}

/* The same on warp 0 with the combination in registers, lane i*hc + k holding entry
 * (i, k) (hc*hc <= 32): a row's or column's values gathered by shuffles and added in the
 * CPU's order, then each lane divides its own entry, so an iteration is one division
 * deep instead of hc. */
__device__ void site_weights_lanes(const ds4_cuda_hc_site &s, const float *m, float *po, float *cb) {
    const int hc = s.hc, lane = threadIdx.x, i = lane / hc, k = lane % hc;
    const bool mine = lane < hc * hc;
    if (lane < hc) po[lane] = 2.0f * sigmoid(__fadd_rn(__fmul_rn(m[hc + lane], s.scale[1]), s.base[hc + lane]));
    float v = mine ? __fadd_rn(__fmul_rn(m[2 * hc + lane], s.scale[2]), s.base[2 * hc + lane]) : 0.0f;
    const int row0 = (mine ? i : 0) * hc, col = mine ? k : 0;
    float mx = -INFINITY;
    for (int j = 0; j < hc; j++) mx = fmaxf(mx, __shfl_sync(0xffffffffu, v, row0 + j));
    v = expf(v - mx);
    float sum = 0.0f;
    for (int j = 0; j < hc; j++) sum += __shfl_sync(0xffffffffu, v, row0 + j);
    v = v / sum + s.hc_eps;
    /* Sinkhorn: columns first, then rows and columns alternately. */
    for (int it = 0; it < s.sinkhorn_iters; it++) {
        if (it > 0) {
            sum = 0.0f;
            for (int j = 0; j < hc; j++) sum += __shfl_sync(0xffffffffu, v, row0 + j);
            v /= sum + s.hc_eps;
        }
        sum = 0.0f;
        for (int j = 0; j < hc; j++) sum += __shfl_sync(0xffffffffu, v, j * hc + col);
        v /= sum + s.hc_eps;
    }
    if (mine) cb[lane] = v;
    __syncwarp();
}

__global__ void hc_pre_kernel(ds4_cuda_hc_site s, const float *mix, const float *streams, const int32_t *rows,
                              float *post, float *comb, float *x) {
    __shared__ float pre[HC_MAX], po[HC_MAX], red[33];
    extern __shared__ float cb[]; /* hc x hc, then the row's mix */
    const int r = blockIdx.x, hc = s.hc, D = s.D;
    const float *st = streams + (uint64_t)(rows ? rows[r] : r) * hc * D;
    const float *m = mix + (uint64_t)r * s.nm;
    if (s.norm_mix) { /* the mixer ran on the raw streams: scale its outputs by their RMS norm */
        const float scale = block_inv_rms(st, hc * D, s.rms_eps, red);
        float *scaled = cb + hc * hc;
        for (int i = threadIdx.x; i < s.nm; i += blockDim.x) scaled[i] = __fmul_rn(m[i], scale);
        __syncthreads();
        m = scaled;
    }
    if (threadIdx.x < hc)
        pre[threadIdx.x] = sigmoid(__fadd_rn(__fmul_rn(m[threadIdx.x], s.scale[0]), s.base[threadIdx.x])) + s.hc_eps;
    if (post && hc > 32) site_weights<false>(s, m, po, cb);
    __syncthreads();
    /* at most 32 streams: warp 0 makes the weights while the other warps collapse */
    const bool warp0 = post && hc <= 32 && blockDim.x > 32;
    if (post && hc <= 32 && threadIdx.x < 32) {
        if (hc * hc <= 32) site_weights_lanes(s, m, po, cb);
        else site_weights<true>(s, m, po, cb);
    }
    if (post && (hc > 32 || threadIdx.x < 32)) {
        for (int i = threadIdx.x; i < hc * hc; i += hc > 32 ? blockDim.x : 32) comb[(uint64_t)r * hc * hc + i] = cb[i];
        if (threadIdx.x < hc) post[(uint64_t)r * hc + threadIdx.x] = po[threadIdx.x];
    }
    float *xr = x + (uint64_t)r * D, ss = 0.0f;
    const int first = warp0 ? (int)threadIdx.x - 32 : (int)threadIdx.x, step = warp0 ? blockDim.x - 32 : blockDim.x;
    for (int i0 = first; i0 >= 0 && i0 < D; i0 += 4 * step) { /* four values' loads in flight */
        float acc[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = i0 + u * step;
            if (i >= D) break;
            acc[u] = __fadd_rn(0.0f, __fmul_rn(pre[0], st[i]));
            for (int j = 1; j < hc; j++) acc[u] = __fadd_rn(acc[u], __fmul_rn(pre[j], st[(uint64_t)j * D + i]));
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = i0 + u * step;
            if (i >= D) break;
            xr[i] = acc[u];
            ss = __fadd_rn(ss, __fmul_rn(acc[u], acc[u]));
        }
    }
    ss = block_reduce(ss, red, false);
    const float scale = 1.0f / sqrtf(ss / (float)D + s.rms_eps);
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        const float v = __fmul_rn(xr[i], scale);
        xr[i] = s.norm ? __fmul_rn(s.norm[i], v) : v;
    }
}

extern "C" void ds4_cuda_hc_pre(ds4_cuda *c, const ds4_cuda_hc_site *s, const float *mix, const float *streams,
                                const int32_t *rows, int n_rows, float *post, float *comb, float *x) {
    /* few rows (decode): a wide block per row, its loads in flight at once */
    if (n_rows > 0)
        hc_pre_kernel<<<n_rows, n_rows < 32 ? 1024 : THREADS, ((size_t)s->hc * s->hc + (size_t)s->nm) * sizeof(float),
                        c->stream>>>(*s, mix, streams, rows, post, comb, x);
}

__global__ void hc_post_kernel(int hc, int D, float *streams, const float *y, const float *post, const float *comb) {
    const int t = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D) return;
    float *s = streams + (uint64_t)t * hc * D;
    const float *po = post + (uint64_t)t * hc, *cb = comb + (uint64_t)t * hc * hc;
    const float yv = y[(uint64_t)t * D + i];
    float out[HC_MAX];
    for (int k = 0; k < hc; k++) {
        float acc = __fmul_rn(po[k], yv);
        for (int j = 0; j < hc; j++) acc = __fadd_rn(acc, __fmul_rn(cb[j * hc + k], s[(uint64_t)j * D + i]));
        out[k] = acc;
    }
    for (int k = 0; k < hc; k++) s[(uint64_t)k * D + i] = out[k];
}

extern "C" void ds4_cuda_hc_post(ds4_cuda *c, int hc, int D, int T, float *streams, const float *y, const float *post,
                                 const float *comb) {
    if (T > 0)
        hc_post_kernel<<<dim3((unsigned)((D + THREADS - 1) / THREADS), (unsigned)T), THREADS, 0, c->stream>>>(
            hc, D, streams, y, post, comb);
}

__global__ void scale_kernel(float *x, uint64_t n, float s) {
    const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = __fmul_rn(x[i], s);
}

extern "C" void ds4_cuda_scale(ds4_cuda *c, float *x, uint64_t n, float s) {
    if (n) scale_kernel<<<(unsigned)((n + THREADS - 1) / THREADS), THREADS, 0, c->stream>>>(x, n, s);
}
