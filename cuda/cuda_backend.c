/* cuda_backend.c - see cuda_backend.h: the C side of cuda_matmul.cu (the upload with its
 * progress line and out-of-memory message, the weights' lookup, the offload hook the
 * CPU's matrix products call). */
#include "cuda_backend.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cuda_matmul.h"
#include "iq_tables.h"
#include "progress.h"
#include "types.h"
#include "util.h"

typedef struct {
    const uint8_t *host;
    uint64_t bytes, offset;
} resident;

typedef struct {
    ds4_cuda *dev;
    bool broken;       /* a product failed on the device: the CPU runs them from then on */
    ds4_matmul_offload offload;
    resident *weights; /* by host address */
    size_t n_weights;
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

static bool run_products(void *arg, const ds4_matmul_part *parts, int n) {
    cuda_ctx *c = arg;
    ds4_cuda_product p[64];
    if (n > 64 || c->broken) return false;
    for (int k = 0; k < n; k++) {
        const gguf_tensor *W = parts[k].W;
        const ds4_type_info *t = ds4_type_get(W->type);
        const uint64_t row_bytes = ds4_row_size(W->type, W->ne[0]);
        const uint8_t *first = (const uint8_t *)W->data + parts[k].row0 * row_bytes;
        const resident *r = find(c, first);
        const uint32_t block = t->block > 1 ? t->block : 32;
        if (!r || !ds4_cuda_type_supported(W->type) || W->ne[0] % block) return false;
        p[k] = (ds4_cuda_product){.w_offset = r->offset + (uint64_t)(first - r->host), .row_bytes = row_bytes,
                                  .type = W->type, .block = block,
                                  .block_bytes = (uint32_t)(t->block > 1 ? t->bytes : t->bytes * 32),
                                  .n = (int64_t)W->ne[0], .n_out = parts[k].n_out, .x = parts[k].x,
                                  .ldx = parts[k].ldx, .T = parts[k].T, .y = parts[k].y, .ldy = parts[k].ldy};
    }
    char err[256];
    if (ds4_cuda_products(c->dev, p, n, err, sizeof err) < 0) {
        /* the same results either way, only slower: say so once and go on on the CPU */
        fprintf(stderr, "ds4: %s; the CPU runs the matrix products from here\n", err);
        c->broken = true;
        return false;
    }
    return true;
}

static void ctx_free(cuda_ctx *c) {
    if (!c) return;
    ds4_cuda_destroy(c->dev);
    free(c->weights);
    free(c);
}

/* Every matrix (two dimensions or more) to the device, once. */
static int upload(cuda_ctx *c, const gguf_file *f) {
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
        if (ds4_cuda_upload(c->dev, t->data, t->size, &r->offset, err, sizeof err) < 0) {
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
    if (upload(c, m->gguf) < 0 || ds4_cpu_backend_open_offload(m, o, &c->offload, c->name, out) < 0) {
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

static ds4_backend_ops table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    table = ds4_cpu_backend;
    table.name = "cuda";
    table.open = cuda_open;
    table.close = cuda_close;
    table.probe_gbps = cuda_probe_gbps;
}

const ds4_backend_ops *ds4_cuda_backend(void) {
    pthread_once(&table_once, build_table);
    return &table;
}
