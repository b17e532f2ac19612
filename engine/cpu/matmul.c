/* matmul.c - see matmul.h. */
#include "matmul.h"

#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "qdot.h"
#include "quants.h"
#include "threads.h"
#include "vec.h"

#define ROWDOT_MAX_T 2 /* activation rows up to which F16/Q8_0 rows are not converted first */
/* Activation rows up to which stored rows go through rowdot2x4 (each pass of four
 * converts them again; past two passes one converted copy costs less: a 512-token
 * prefill was 5-10% slower through it) */
#define ROWDOT2X4_MAX_T 8

/* The int8 kernel a matrix product over W uses under a mode and level, or NULL for
 * dequantized rows times F32 activations. */
static ds4_qdot_fn int8_kernel(const ds4_matmul_ctx *mc, uint32_t type) {
    if (!ds4_qdot_act_applies(mc->act, type)) return NULL;
    if (mc->level >= ds4_cpu_detect()) return ds4_qdot_best(type);
    ds4_qdot_fn fn = NULL;
    for (int level = (int)mc->level; level >= DS4_CPU_SCALAR && !fn; level--) fn = ds4_qdot_kernel(type, level);
    return fn;
}

typedef struct {
    ds4_matmul_part p;
    ds4_qdot_fn qdot;     /* NULL: F32 path */
    ds4_qdot_rows_fn qdot_rows; /* its several-rows twin, or NULL */
    const uint8_t *act;   /* p.T quantized activation rows */
    size_t act_row_bytes;
    ds4_rowdot_fn rowdot; /* F32 path, stored F16/Q8_0 rows times a few activation rows */
    ds4_dot_fn dot;       /* F32 path, otherwise */
    ds4_dot2x4_fn dot2x4; /* F32 path, four or more activation rows: rows in pairs, tokens in fours */
    ds4_rowdot2x4_fn rowdot2x4; /* the same over stored rows (Q8_0), in place of dot2x4 on converted ones */
} matmul_job;

/* Per-thread buffers that only grow, so a matrix product allocates nothing once warm
 * (a decoded token runs hundreds of them). Pool threads live as long as the process. */
static _Thread_local void *scratch_mem[2];
static _Thread_local size_t scratch_cap[2];

static void *scratch(int k, size_t bytes) {
    if (bytes > scratch_cap[k]) {
        void *grown = realloc(scratch_mem[k], bytes);
        if (!grown) return NULL;
        scratch_mem[k] = grown;
        scratch_cap[k] = bytes;
    }
    return scratch_mem[k];
}
static float *scratch_floats(uint64_t n) { return scratch(0, n * sizeof(float)); }
static uint8_t *scratch_bytes(size_t n) { return scratch(1, n); }

/* Output rows [begin, end) of one product. */
static void matmul_rows(const matmul_job *j, uint64_t begin, uint64_t end) {
    const ds4_matmul_part *p = &j->p;
    const uint64_t n = p->W->ne[0], row_bytes = ds4_row_size(p->W->type, n);
    if (j->qdot) {
        for (uint64_t o = begin; o < end; o++) {
            const uint8_t *w = (const uint8_t *)p->W->data + (p->row0 + o) * row_bytes;
            int t = 0;
            for (int k; j->qdot_rows && p->T - t >= 2; t += k) {
                k = p->T - t < DS4_QDOT_ROWS ? p->T - t : DS4_QDOT_ROWS;
                float out[DS4_QDOT_ROWS];
                j->qdot_rows(w, j->act + (size_t)t * j->act_row_bytes, j->act_row_bytes, k, (int64_t)n, out);
                for (int i = 0; i < k; i++) p->y[(uint64_t)(t + i) * p->ldy + o] = out[i];
            }
            for (; t < p->T; t++)
                p->y[(uint64_t)t * p->ldy + o] = j->qdot(w, j->act + (size_t)t * j->act_row_bytes, (int64_t)n);
        }
        return;
    }
    /* A few activation rows: multiply straight from the stored row; more: convert the
     * row once and reuse it for every activation row. */
    const ds4_rowdot_fn rowdot = p->T <= ROWDOT_MAX_T ? j->rowdot : NULL;
    if (rowdot) {
        for (uint64_t o = begin; o < end; o++) {
            const uint8_t *w = (const uint8_t *)p->W->data + (p->row0 + o) * row_bytes;
            for (int t = 0; t < p->T; t++) p->y[(uint64_t)t * p->ldy + o] = rowdot(w, p->x + (uint64_t)t * p->ldx, n);
        }
        return;
    }
    /* Rows two at a time, so four activation rows at a time go through the level's dot2x4
     * (AVX2, AVX-512) and what is left over through its dot, over F32 rows or rows
     * converted once; or Q8_0 rows read in place by its rowdot2x4 and rowdot, the same
     * bits with no converted copy written and read back (a quarter of an 8-sequence decode
     * step's time). */
    const bool stored = j->rowdot2x4 && j->rowdot, direct = stored || p->W->type == GGML_TYPE_F32;
    float *tmp = direct ? NULL : scratch_floats(2 * n);
    for (uint64_t o = begin; o < end; o += 2) {
        const int rows = end - o >= 2 ? 2 : 1;
        const void *w[2] = {NULL, NULL};
        for (int r = 0; r < rows; r++) {
            const uint8_t *src = (const uint8_t *)p->W->data + (p->row0 + o + (uint64_t)r) * row_bytes;
            w[r] = src;
            if (!direct) {
                ds4_row_to_f32(p->W->type, src, tmp + (uint64_t)r * n, (int64_t)n);
                w[r] = tmp + (uint64_t)r * n;
            }
        }
        int t = 0;
        if (rows == 2 && (stored || j->dot2x4))
            for (; t + 4 <= p->T; t += 4) {
                float out[2][4];
                const float *x = p->x + (uint64_t)t * p->ldx;
                if (stored) j->rowdot2x4(w[0], w[1], x, p->ldx, n, out);
                else j->dot2x4(w[0], w[1], x, p->ldx, n, out);
                for (int k = 0; k < 4; k++)
                    for (int r = 0; r < 2; r++) p->y[(uint64_t)(t + k) * p->ldy + o + (uint64_t)r] = out[r][k];
            }
        for (; t < p->T; t++)
            for (int r = 0; r < rows; r++) {
                const float *x = p->x + (uint64_t)t * p->ldx;
                p->y[(uint64_t)t * p->ldy + o + (uint64_t)r] = stored ? j->rowdot(w[r], x, n) : j->dot(w[r], x, n);
            }
    }
}

/* The products of one batch, cut into chunks of rows (`unit`: where each part's chunks
 * begin), which the threads share as one loop. */
typedef struct {
    const matmul_job *jobs;
    const uint64_t *unit; /* n + 1 entries */
    const uint64_t *grain;
    int n;
} batch_job;

static void batch_units(void *arg, uint64_t begin, uint64_t end, int thread) {
    (void)thread;
    const batch_job *b = arg;
    int k = 0;
    for (uint64_t u = begin; u < end; u++) {
        while (u >= b->unit[k + 1]) k++;
        const uint64_t r0 = (u - b->unit[k]) * b->grain[k], n_out = b->jobs[k].p.n_out;
        matmul_rows(&b->jobs[k], r0, r0 + b->grain[k] < n_out ? r0 + b->grain[k] : n_out);
    }
}

#define BATCH_MAX 64 /* products in one loop (ds4_matmul_batch) */

void ds4_matmul_batch(const ds4_matmul_ctx *mc, const ds4_matmul_part *parts, int n) {
    matmul_job jobs[BATCH_MAX];
    uint64_t unit[BATCH_MAX + 1], grain[BATCH_MAX], act_at[BATCH_MAX], work = 0;
    size_t act_bytes = 0;
    if (n > BATCH_MAX) {
        ds4_matmul_batch(mc, parts, BATCH_MAX);
        ds4_matmul_batch(mc, parts + BATCH_MAX, n - BATCH_MAX);
        return;
    }
    if (mc->observer)
        for (int k = 0; k < n; k++) mc->observer(mc->observer_ctx, parts[k].W, parts[k].row0, parts[k].x, parts[k].ldx, parts[k].T);
    if (mc->offload && mc->offload->run(mc->offload->ctx, parts, n)) return;
    /* Each product as ds4_matmul runs it alone: its kernel, its quantized activations. */
    int act_from[BATCH_MAX]; /* the product whose quantized activations a product reads */
    for (int k = 0; k < n; k++) {
        const ds4_matmul_part *p = &parts[k];
        act_from[k] = k;
        jobs[k] = (matmul_job){*p, int8_kernel(mc, p->W->type), NULL, NULL, 0, ds4_rowdot_for_level(p->W->type, (int)mc->level),
                               ds4_dot_for_level((int)mc->level), p->T >= 4 ? ds4_dot2x4_for_level((int)mc->level) : NULL,
                               p->T >= 4 && p->T <= ROWDOT2X4_MAX_T ? ds4_rowdot2x4_for_level(p->W->type, (int)mc->level)
                                                                    : NULL};
        act_at[k] = act_bytes;
        jobs[k].qdot_rows = jobs[k].qdot ? ds4_qdot_rows_for(jobs[k].qdot) : NULL;
        if (jobs[k].qdot) {
            jobs[k].act_row_bytes = ds4_qdot_act_size(ds4_qdot_act_type(p->W->type), (int64_t)p->W->ne[0]);
            /* products of one input in one format (an expert's gate and up) share it */
            for (int i = 0; i < k && act_from[k] == k; i++)
                if (jobs[i].qdot && act_from[i] == i && parts[i].x == p->x && parts[i].ldx == p->ldx &&
                    parts[i].T == p->T && parts[i].W->ne[0] == p->W->ne[0] &&
                    ds4_qdot_act_type(parts[i].W->type) == ds4_qdot_act_type(p->W->type))
                    act_from[k] = i;
            act_at[k] = act_from[k] == k ? act_bytes : act_at[act_from[k]];
            if (act_from[k] == k) act_bytes += jobs[k].act_row_bytes * (size_t)p->T;
        }
    }
    uint8_t *act = act_bytes ? scratch_bytes(act_bytes) : NULL;
    unit[0] = 0;
    for (int k = 0; k < n; k++) {
        const ds4_matmul_part *p = &parts[k];
        matmul_job *j = &jobs[k];
        if (j->qdot && !act) j->qdot = NULL; /* no room for int8 activations: the F32 path */
        if (j->qdot) {
            /* Quantize the activations once for all output rows. */
            const int act_type = ds4_qdot_act_type(p->W->type);
            j->act = act + act_at[k];
            for (int t = 0; t < p->T && act_from[k] == k; t++)
                ds4_qdot_quantize_act(act_type, p->x + (uint64_t)t * p->ldx, act + act_at[k] + (size_t)t * j->act_row_bytes,
                                      (int64_t)p->W->ne[0]);
        }
        /* Rows go out in chunks of about 32 KiB of weights times activation rows: small
         * enough that threads end together, large enough that claiming one costs next to
         * nothing; two rows at least, for the row pairs of the F32 path. */
        const uint64_t chunk_bytes = ds4_row_size(p->W->type, p->W->ne[0]) * (uint64_t)p->T;
        grain[k] = (32u << 10) / chunk_bytes + 2;
        unit[k + 1] = unit[k] + (p->n_out + grain[k] - 1) / grain[k];
        work += p->n_out * p->W->ne[0] * (uint64_t)p->T;
    }
    /* Threads only pay off on enough work. */
    const batch_job b = {jobs, unit, grain, n};
    const double t0 = ds4_prof_begin();
    ds4_parallel_for_chunked(work < (1u << 16) ? 1 : mc->n_threads, unit[n], 1, batch_units, (void *)&b);
    if (ds4_profile_on) {
        /* the loop's time, shared out by the bytes each product read */
        uint64_t bytes[BATCH_MAX], all = 0;
        for (int k = 0; k < n; k++) all += bytes[k] = ds4_row_size(parts[k].W->type, parts[k].W->ne[0]) * parts[k].n_out;
        const double dt = ds4_time_now() - t0;
        for (int k = 0; k < n; k++) ds4_prof_matmul(parts[k].W->type, bytes[k], all ? dt * (double)bytes[k] / all : 0);
    }
}

void ds4_matmul(const ds4_matmul_ctx *mc, const gguf_tensor *W, uint64_t row0, uint64_t n_out, const float *x,
                uint64_t ldx, int T, float *y, uint64_t ldy) {
    const ds4_matmul_part p = {W, row0, n_out, x, ldx, T, y, ldy};
    ds4_matmul_batch(mc, &p, 1);
}
