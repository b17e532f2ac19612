/* cuda_act.cu - see cuda_device.h: activation rows quantized to int8 on the device, value
 * for value as the CPU's qdot.c (ggml's Q8_K) and quants.c (Q8_0) quantize them: the same
 * scale from the same largest magnitude (the first of equals, with its sign, for Q8_K),
 * the same rounding (lrintf's ties to even for Q8_K, roundf's ties away for Q8_0), so the
 * int8 values and scales are the CPU's bits. */
#include <math.h>

#include "cuda_device.h"
#include "cuda_qdot.cuh"

/* A warp per 256-value block (blockIdx.x) of row blockIdx.y, eight values a lane. */
__global__ void q8k_kernel(const float *x, uint64_t ldx, int64_t n, uint8_t *out, float *round, uint64_t ld_round) {
    const int lane = threadIdx.x;
    const int64_t b = blockIdx.x, nb = n / QK_K;
    const float *src = x + (uint64_t)blockIdx.y * ldx + b * QK_K + 8 * lane;
    const float4 lo = ((const float4 *)src)[0], hi = ((const float4 *)src)[1];
    const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    /* the largest magnitude, the first index among equals (qdot.c's strict comparison) */
    float amax = 0.0f, max = 0.0f;
    int at = 1 << 30;
    for (int j = 0; j < 8; j++)
        if (fabsf(v[j]) > amax) amax = fabsf(v[j]), max = v[j], at = 8 * lane + j;
    for (int off = 16; off > 0; off >>= 1) {
        const float oa = __shfl_xor_sync(0xffffffffu, amax, off), om = __shfl_xor_sync(0xffffffffu, max, off);
        const int oi = __shfl_xor_sync(0xffffffffu, at, off);
        if (oa > amax || (oa == amax && oi < at)) amax = oa, max = om, at = oi;
    }
    int8_t q[8];
    float d = 0.0f;
    if (amax == 0.0f) {
        for (int j = 0; j < 8; j++) q[j] = 0;
    } else {
        const float iscale = -127.0f / max;
        for (int j = 0; j < 8; j++) {
            const int r = __float2int_rn(__fmul_rn(iscale, v[j]));
            q[j] = (int8_t)(r < 127 ? r : 127);
        }
        d = 1.0f / iscale;
    }
    if (round) { /* back to floats: the values the int8 kernels multiply */
        float *dst = round + (uint64_t)blockIdx.y * ld_round + b * QK_K + 8 * lane;
        for (int j = 0; j < 8; j++) dst[j] = __fmul_rn(d, (float)q[j]);
        return;
    }
    uint8_t *row = out + (uint64_t)blockIdx.y * q8k_row_bytes(n);
    uint32_t w0 = 0, w1 = 0;
    for (int j = 0; j < 4; j++) w0 |= (uint32_t)(uint8_t)q[j] << (8 * j), w1 |= (uint32_t)(uint8_t)q[4 + j] << (8 * j);
    ((uint2 *)(row + b * QK_K + 8 * lane))[0] = make_uint2(w0, w1);
    int s = 0;
    for (int j = 0; j < 8; j++) s += q[j];
    s += __shfl_xor_sync(0xffffffffu, s, 1); /* lanes 2g and 2g + 1 hold the 16 values of group g */
    if ((lane & 1) == 0) ((int16_t *)(row + n + nb * 4))[b * 16 + lane / 2] = (int16_t)s;
    if (lane == 0) ((float *)(row + n))[b] = d;
}

/* Q8_0 and back, a warp per 32-value block: d = amax / 127 kept as F16, q = roundf(x / d). */
__global__ void q8_0_round_kernel(const float *x, uint64_t ldx, float *round, uint64_t ld_round) {
    const int lane = threadIdx.x;
    const uint64_t i = (uint64_t)blockIdx.x * 32 + lane;
    const float v = x[(uint64_t)blockIdx.y * ldx + i];
    float amax = fabsf(v);
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const float q = roundf(__fmul_rn(v, id));
    round[(uint64_t)blockIdx.y * ld_round + i] = __fmul_rn(__half2float(__float2half_rn(d)), q);
}

void ds4_cuda_quantize_q8k(ds4_cuda *c, const float *x, uint64_t ldx, int T, int64_t n, uint8_t *out) {
    if (T > 0 && n >= QK_K)
        q8k_kernel<<<dim3((unsigned)(n / QK_K), (unsigned)T), 32, 0, c->stream>>>(x, ldx, n, out, NULL, 0);
}

const uint8_t *ds4_cuda_q8k_scratch(ds4_cuda *c, const float *x, uint64_t ldx, int T, int64_t n) {
    uint8_t *xq = (uint8_t *)ds4_cuda_grow_kept(c, (void **)&c->act_q8, &c->act_q8_cap, (size_t)T * q8k_row_bytes(n));
    if (xq) ds4_cuda_quantize_q8k(c, x, ldx, T, n, xq);
    return xq;
}

const float *ds4_cuda_round_scratch(ds4_cuda *c, int fmt, const float *x, uint64_t ldx, int T, int64_t n,
                                    uint64_t groups, uint64_t group_x) {
    float *xr = (float *)ds4_cuda_grow_kept(c, (void **)&c->act_round, &c->act_round_cap,
                                            (size_t)T * groups * n * sizeof(float));
    if (!xr || T <= 0) return xr;
    const uint64_t ldo = groups * (uint64_t)n;
    for (uint64_t g = 0; g < groups; g++) {
        const float *src = x + g * group_x;
        if (fmt == DS4_CUDA_ACT_Q8_K)
            q8k_kernel<<<dim3((unsigned)(n / QK_K), (unsigned)T), 32, 0, c->stream>>>(src, ldx, n, NULL, xr + g * n,
                                                                                     ldo);
        else
            q8_0_round_kernel<<<dim3((unsigned)(n / 32), (unsigned)T), 32, 0, c->stream>>>(src, ldx, xr + g * n, ldo);
    }
    return xr;
}

extern "C" void ds4_cuda_act_formats(ds4_cuda *c, const uint8_t *fmt, int n_types) {
    for (int t = 0; t < DS4_CUDA_TYPE_IDS; t++) c->act_fmt[t] = t < n_types ? fmt[t] : 0;
}
