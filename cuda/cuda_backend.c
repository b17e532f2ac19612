/* cuda_backend.c - see cuda_backend.h: the C side of cuda_matmul.cu and cuda_ffn.cu (the
 * upload with its progress line and out-of-memory message, the weights' lookup, the
 * offload hook the CPU's matrix products call, and the FFN stage, which runs on the
 * device for decode-sized chunks). */
#include "cuda_backend.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cuda_matmul.h"
#include "iq_tables.h"
#include "profile.h"
#include "progress.h"
#include "quants.h"
#include "types.h"
#include "util.h"

typedef struct {
    const uint8_t *host;
    uint64_t bytes, offset;
} resident;

/* A layer's MoE as the device runs it (ok: every matrix is on the device). */
typedef struct {
    bool ok;
    ds4_cuda_ffn_layer L;
    const gguf_tensor *tid2eid; /* hash layers: the choices, read on the host */
} ffn_layer;

typedef struct {
    ds4_cuda *dev;
    bool broken;       /* the device failed: the CPU runs everything from then on */
    ds4_matmul_offload offload;
    resident *weights; /* by host address */
    size_t n_weights;
    ffn_layer *ffn;    /* by layer */
    uint32_t n_layer;
    bool observed;     /* a matmul observer (imatrix) must see every product: no device MoE */
    bool device_only;  /* a synthetic model's matrices exist only here: the CPU cannot stand in */
    float *x, *y;      /* a chunk's FFN input and output, on the host */
    int32_t *choice;
    char name[96];
} cuda_ctx;

static int by_host(const void *a, const void *b) {
    const resident *x = a, *y = b;
    return x->host < y->host ? -1 : x->host > y->host;
}

/* The device copy of host bytes p (inside an uploaded tensor), or NULL. */
static const resident *find(const cuda_ctx *c, const uint8_t *p) {
    size_t lo = 0, hi = c->n_weights;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (c->weights[mid].host + c->weights[mid].bytes <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo < c->n_weights && c->weights[lo].host <= p ? &c->weights[lo] : NULL;
}


static void ctx_free(cuda_ctx *c) {
    if (!c) return;
    ds4_cuda_destroy(c->dev); /* (the biases go with the device's memory) */
    free(c->weights);
    free(c->ffn);
    free(c->x);
    free(c->y);
    free(c->choice);
    free(c);
}

/* W's rows on the device, or false. */
static bool matrix(const cuda_ctx *c, const gguf_tensor *W, ds4_cuda_matrix *out) {
    if (!W || !ds4_cuda_type_supported(W->type)) return false;
    const ds4_type_info *t = ds4_type_get(W->type);
    const resident *r = find(c, W->data);
    if (!r || W->ne[0] % (t->block > 1 ? t->block : 32)) return false;
    *out = (ds4_cuda_matrix){r->offset + (uint64_t)((const uint8_t *)W->data - r->host), ds4_row_size(W->type, W->ne[0]),
                             W->type, t->block > 1 ? t->bytes : t->bytes * 32, (int64_t)W->ne[0]};
    return true;
}

/* The CPU computes what the device does not: false, unless the weights exist only on the
 * device, which ends the process (the CPU would read holes: silent zeros). */
static bool cpu_stands_in(const cuda_ctx *c, const char *why) {
    if (!c->device_only) return false;
    fprintf(stderr, "ds4: %s, and this synthetic model's weights exist only on the device\n", why);
    abort();
}

static bool run_products(void *arg, const ds4_matmul_part *parts, int n) {
    /* (after a device failure `broken` sends everything back to the CPU) */
    cuda_ctx *c = arg;
    ds4_cuda_product p[64];
    if (n > 64 || c->broken) return cpu_stands_in(c, "the device failed");
    for (int k = 0; k < n; k++) {
        p[k] = (ds4_cuda_product){.n_out = parts[k].n_out, .x = parts[k].x, .ldx = parts[k].ldx, .T = parts[k].T,
                                  .y = parts[k].y, .ldy = parts[k].ldy};
        if (!matrix(c, parts[k].W, &p[k].w)) return cpu_stands_in(c, "a product the device cannot run");
        p[k].w.offset += parts[k].row0 * p[k].w.row_bytes;
    }
    char err[256];
    const double t0 = ds4_prof_begin();
    if (ds4_cuda_products(c->dev, p, n, err, sizeof err) < 0) {
        /* the same results either way, only slower: say so once and go on on the CPU */
        fprintf(stderr, "ds4: %s; the CPU runs the model from here\n", err);
        c->broken = true;
        return cpu_stands_in(c, err);
    }
    if (ds4_profile_on) { /* the call's time (copies included), shared out by the bytes each product read */
        uint64_t bytes[64], all = 0;
        for (int k = 0; k < n; k++) all += bytes[k] = p[k].w.row_bytes * p[k].n_out;
        const double dt = ds4_time_now() - t0;
        for (int k = 0; k < n; k++) ds4_prof_matmul(parts[k].W->type, bytes[k], all ? dt * (double)bytes[k] / all : 0);
    }
    return true;
}

/* Each layer's MoE on the device where all its matrices are there. */
static int prepare_ffn(cuda_ctx *c, const ds4_model *m) {
    const ds4_config *cf = &m->cfg;
    c->n_layer = cf->n_layer;
    c->ffn = ds4_calloc(cf->n_layer, sizeof *c->ffn);
    if (!c->ffn) return -1;
    if (cf->n_expert_used > DS4_CUDA_FFN_MAX_K) return 0;
    char err[256];
    for (uint32_t il = 0; il < cf->n_layer; il++) {
        ffn_layer *f = &c->ffn[il];
        ds4_cuda_ffn_layer *L = &f->L;
#define M(role, dst) matrix(c, ds4_model_tensor(m, (int)il, role), dst)
        *L = (ds4_cuda_ffn_layer){.D = cf->n_embd, .E = cf->n_expert, .I = cf->expert_ff, .K = cf->n_expert_used,
                                  .Is = cf->expert_ff * cf->n_expert_shared, .gating = cf->gating_func,
                                  .norm = cf->expert_weights_norm, .scale = cf->expert_weights_scale,
                                  .limit = cf->swiglu_limit[il], .limit_shared = cf->swiglu_limit_shared[il]};
        f->ok = M(DS4_T_FFN_GATE_INP, &L->gate_inp) && M(DS4_T_FFN_GATE_EXPS, &L->gate_exps) &&
                M(DS4_T_FFN_UP_EXPS, &L->up_exps) && M(DS4_T_FFN_DOWN_EXPS, &L->down_exps) &&
                (!L->Is || (M(DS4_T_FFN_GATE_SHEXP, &L->gate_sh) && M(DS4_T_FFN_UP_SHEXP, &L->up_sh) &&
                            M(DS4_T_FFN_DOWN_SHEXP, &L->down_sh)));
#undef M
        f->tid2eid = ds4_model_tensor(m, (int)il, DS4_T_FFN_TID2EID);
        const gguf_tensor *bias = ds4_model_tensor(m, (int)il, DS4_T_FFN_EXP_PROBS_B);
        if (f->ok && bias && !f->tid2eid) {
            float *v = ds4_tensor_f32(bias);
            float *dev = NULL;
            const int rc = v ? ds4_cuda_floats(c->dev, v, cf->n_expert, &dev, err, sizeof err) : -1;
            free(v);
            if (rc < 0) return ds4_fail("%s", v ? err : ds4_error());
            L->bias = dev;
        }
    }
    return 0;
}

static cuda_ctx *ctx_of(const ds4_backend *b) { return ds4_cpu_backend_offload(b)->ctx; }

/* The FFN of a few tokens on the device; the CPU's (with its products on the device)
 * otherwise. */
static int cuda_ffn(ds4_backend *b, int il, const int32_t *tokens, int T) {
    cuda_ctx *c = ctx_of(b);
    const ffn_layer *f = &c->ffn[il];
    if (c->broken || c->observed || !f->ok || T > DS4_CUDA_FFN_MAX_T) return ds4_cpu_backend.ffn(b, il, tokens, T);
    const uint32_t D = f->L.D, K = f->L.K;
    if (!c->x) {
        c->x = ds4_malloc((size_t)DS4_CUDA_FFN_MAX_T * D * sizeof(float));
        c->y = ds4_malloc((size_t)DS4_CUDA_FFN_MAX_T * D * sizeof(float));
        c->choice = ds4_malloc((size_t)DS4_CUDA_FFN_MAX_T * DS4_CUDA_FFN_MAX_K * sizeof(int32_t));
        if (!c->x || !c->y || !c->choice) return -1;
    }
    if (ds4_cpu_backend.chunk_read(b, DS4_CHUNK_X, T, c->x) < 0) return -1;
    if (f->tid2eid) /* ids were checked against E when the model loaded */
        for (int t = 0; t < T; t++)
            memcpy(c->choice + (size_t)t * K, (const uint8_t *)f->tid2eid->data + (size_t)tokens[t] * K * sizeof(int32_t),
                   K * sizeof(int32_t));
    char err[256];
    if (ds4_cuda_ffn(c->dev, &f->L, c->x, T, f->tid2eid ? c->choice : NULL, c->y, err, sizeof err) < 0) {
        fprintf(stderr, "ds4: %s; the CPU runs the model from here\n", err);
        c->broken = true;
        return ds4_cpu_backend.ffn(b, il, tokens, T);
    }
    return ds4_cpu_backend.chunk_write(b, DS4_CHUNK_Y, T, c->y);
}

/* Every matrix (two dimensions or more) to the device, once; a synthetic model's are
 * made there (fill.h). */
static int upload(cuda_ctx *c, const ds4_model *m) {
    const gguf_file *f = m->gguf;
    uint64_t total = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].n_dims >= 2) total += (f->tensors[i].size + 255) & ~(uint64_t)255, c->n_weights++;
    uint64_t free_b, total_b;
    ds4_cuda_memory(c->dev, &free_b, &total_b);
    if (total + (1ull << 30) > free_b)
        return ds4_fail("cuda: the weights need %.2f GiB and %s has %.2f GiB free of %.2f GiB (and 1 GiB for work)",
                        (double)total / (1 << 30), c->name, (double)free_b / (1 << 30), (double)total_b / (1 << 30));
    char err[256];
    if (ds4_cuda_reserve(c->dev, total, err, sizeof err) < 0) return ds4_fail("%s", err);
    c->weights = ds4_calloc(c->n_weights ? c->n_weights : 1, sizeof *c->weights);
    if (!c->weights) return -1;
    ds4_progress prog;
    ds4_progress_begin(&prog, "cuda upload", total);
    const double t0 = ds4_time_now();
    size_t k = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->n_dims < 2) continue;
        resident *r = &c->weights[k++];
        r->host = t->data;
        r->bytes = t->size;
        const ds4_tensor_fill *fill = ds4_model_fill(m, t);
        if (fill ? ds4_cuda_fill(c->dev, fill->pool, fill->pool_blocks, (uint32_t)fill->block_bytes, fill->row_bytes,
                                 fill->n_rows, fill->seed, &r->offset, err, sizeof err) < 0
                 : ds4_cuda_upload(c->dev, t->data, t->size, &r->offset, err, sizeof err) < 0) {
            ds4_progress_end(&prog);
            return ds4_fail("%s", err);
        }
        ds4_progress_add(&prog, t->size);
    }
    ds4_progress_end(&prog);
    qsort(c->weights, c->n_weights, sizeof *c->weights, by_host);
    fprintf(stderr, "ds4: %.2f GiB of weights on %s in %.1f s\n", (double)total / (1 << 30), c->name,
            ds4_time_now() - t0);
    return 0;
}

static int cuda_open(const ds4_model *m, const ds4_ctx_opts *o, ds4_backend **out) {
    char err[256];
    cuda_ctx *c = ds4_calloc(1, sizeof *c);
    if (!c) return -1;
    if (!(c->dev = ds4_cuda_create(o->device, err, sizeof err))) {
        free(c);
        return ds4_fail("%s", err);
    }
    snprintf(c->name, sizeof c->name, "cuda-%s", ds4_cuda_name(c->dev));
    c->offload = (ds4_matmul_offload){run_products, c};
    if (ds4_cuda_tables(c->dev, ds4_iq2xxs_grid, ds4_ksigns_iq2xs, ds4_kmask_iq2xs, err, sizeof err) < 0) {
        ctx_free(c);
        return ds4_fail("%s", err);
    }
    c->observed = o->observer != NULL;
    c->device_only = m->n_fills > 0;
    if (upload(c, m) < 0 || prepare_ffn(c, m) < 0 ||
        ds4_cpu_backend_open_offload(m, o, &c->offload, c->name, out) < 0) {
        ctx_free(c);
        return -1;
    }
    return 0;
}

static void cuda_close(ds4_backend *b) {
    const ds4_matmul_offload *off = ds4_cpu_backend_offload(b);
    cuda_ctx *c = off ? off->ctx : NULL;
    ds4_cpu_backend.close(b);
    ctx_free(c);
}

/* Decode streams the weights from device memory. */
static double cuda_probe_gbps(ds4_backend *b) {
    const ds4_matmul_offload *off = ds4_cpu_backend_offload(b);
    return off ? ds4_cuda_copy_gbps(((cuda_ctx *)off->ctx)->dev) : 0;
}

/* The device as a whole (what another process holds counts too: the GPU is a shared
 * resource, and this is what is left for it). */
static uint64_t cuda_device_bytes(ds4_backend *b) {
    const ds4_matmul_offload *off = ds4_cpu_backend_offload(b);
    uint64_t free_b = 0, total_b = 0;
    if (off) ds4_cuda_memory(((cuda_ctx *)off->ctx)->dev, &free_b, &total_b);
    return total_b - free_b;
}

static ds4_backend_ops table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    table = ds4_cpu_backend;
    table.name = "cuda";
    table.open = cuda_open;
    table.close = cuda_close;
    table.probe_gbps = cuda_probe_gbps;
    table.device_bytes = cuda_device_bytes;
    table.ffn = cuda_ffn;
}

const ds4_backend_ops *ds4_cuda_backend(void) {
    pthread_once(&table_once, build_table);
    return &table;
}
