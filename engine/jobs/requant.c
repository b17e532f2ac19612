/* requant.c - see requant.h. */
#include "requant.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf.h"
#include "model.h"
#include "progress.h"
#include "quants.h"
#include "threads.h"
#include "util.h"

#define CHUNK_BYTES (32u << 20) /* F32 bytes quantized per parallel step */
#define MAX_THREADS 512

int ds4_row_quantizer_init(ds4_row_quantizer *q, const ds4_imatrix *im, const char *tensor, uint32_t type,
                           uint64_t cols) {
    memset(q, 0, sizeof *q);
    q->imatrix = im;
    q->tensor = tensor;
    q->type = type;
    q->cols = cols;
    q->mat = -1;
    q->importance = ds4_malloc(cols * sizeof *q->importance);
    q->back = ds4_malloc(cols * sizeof *q->back);
    return q->importance && q->back ? 0 : -1;
}

static void row_quantizer_free(ds4_row_quantizer *q) {
    free(q->importance);
    free(q->back);
}

int ds4_row_quantize(ds4_row_quantizer *q, uint64_t mat, const float *x, void *dst) {
    const uint64_t n = q->cols;
    if ((int64_t)mat != q->mat) {
        q->mat = (int64_t)mat;
        q->have = q->imatrix ? ds4_imatrix_get(q->imatrix, q->tensor, mat, n, q->importance) : 0;
        if (q->have < 0) return -1;
        if (!q->have)
            for (uint64_t i = 0; i < n; i++) q->importance[i] = 1.0f;
        q->used_imatrix |= q->have;
    }
    const bool weigh = q->have || ds4_quantize_needs_imatrix(q->type);
    if (ds4_quantize_row(q->type, x, dst, (int64_t)n, weigh ? q->importance : NULL) < 0) return -1;
    if (ds4_row_to_f32(q->type, dst, q->back, (int64_t)n) < 0) return -1;
    for (uint64_t i = 0; i < n; i++) {
        const double e = (double)q->back[i] - x[i], w = q->importance[i];
        q->sum_x2 += (double)x[i] * x[i];
        q->sum_e2 += e * e;
        q->sum_wx2 += w * x[i] * x[i];
        q->sum_we2 += w * e * e;
    }
    return 0;
}

void ds4_row_quantizers_finish(ds4_row_quantizer *q, int n, ds4_tensor_loss *l) {
    double x2 = 0, e2 = 0, wx2 = 0, we2 = 0;
    for (int i = 0; i < n; i++) {
        x2 += q[i].sum_x2;
        e2 += q[i].sum_e2;
        wx2 += q[i].sum_wx2;
        we2 += q[i].sum_we2;
        l->imatrix |= q[i].used_imatrix;
        row_quantizer_free(&q[i]);
    }
    l->rel_rmse = x2 > 0 ? sqrt(e2 / x2) : 0;
    l->rel_wrmse = wx2 > 0 ? sqrt(we2 / wx2) : 0;
}

typedef struct {
    const gguf_tensor *in;
    uint32_t type;
    uint64_t row0, rows_per_mat, out_row_bytes;
    uint8_t *out;
    ds4_row_quantizer *q; /* per thread */
    float **rows;         /* per thread F32 scratch */
    pthread_mutex_t lock;
    char error[DS4_ERROR_MAX];
} chunk_job;

static void quantize_rows(void *arg, uint64_t begin, uint64_t end, int thread) {
    chunk_job *j = arg;
    const uint64_t cols = j->in->ne[0], in_row_bytes = ds4_row_size(j->in->type, cols);
    int rc = 0;
    for (uint64_t i = begin; i < end && rc == 0; i++) {
        const uint64_t r = j->row0 + i;
        rc = ds4_row_to_f32(j->in->type, (const uint8_t *)j->in->data + r * in_row_bytes, j->rows[thread],
                             (int64_t)cols);
        if (rc == 0) rc = ds4_row_quantize(&j->q[thread], r / j->rows_per_mat, j->rows[thread],
                                           j->out + i * j->out_row_bytes);
    }
    if (rc < 0) {
        pthread_mutex_lock(&j->lock);
        if (!j->error[0]) snprintf(j->error, sizeof j->error, "%s", ds4_error());
        pthread_mutex_unlock(&j->lock);
    }
}

/* Pages of the input are read once: drop them once a tensor is written. */
static void release(const gguf_tensor *t) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data, b = a + t->size;
    a = (a + page - 1) / page * page;
    b = b / page * page;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static int quantize_tensor(const ds4_requant_opts *o, gguf_writer *w, const gguf_tensor *t, uint32_t type,
                           int n_threads, ds4_progress *prog, ds4_tensor_loss *loss) {
    const uint64_t cols = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    const double t0 = ds4_time_now();
    if (type == t->type) { /* same type: bytes as they are */
        const int rc = ds4_gguf_writer_write(w, t->data, t->size);
        ds4_progress_add(prog, cols * rows * 4);
        loss->seconds = ds4_time_now() - t0;
        release(t);
        return rc;
    }
    uint64_t chunk = CHUNK_BYTES / (cols * 4 + 1);
    chunk = chunk < 1 ? 1 : chunk > rows ? rows : chunk;
    chunk_job j = {.in = t, .type = type, .rows_per_mat = t->n_dims >= 3 ? t->ne[1] : rows,
                   .out_row_bytes = ds4_row_size(type, cols)};
    j.out = ds4_malloc(chunk * j.out_row_bytes);
    j.q = ds4_calloc((size_t)n_threads, sizeof *j.q);
    j.rows = ds4_calloc((size_t)n_threads, sizeof *j.rows);
    int rc = j.out && j.q && j.rows ? 0 : -1;
    for (int i = 0; i < n_threads && rc == 0; i++) {
        rc = ds4_row_quantizer_init(&j.q[i], o->imatrix, t->name, type, cols);
        if (rc == 0 && !(j.rows[i] = ds4_malloc(cols * sizeof(float)))) rc = -1;
    }
    pthread_mutex_init(&j.lock, NULL);
    for (uint64_t r = 0; r < rows && rc == 0; r += chunk) {
        const uint64_t n = rows - r < chunk ? rows - r : chunk;
        j.row0 = r;
        ds4_parallel_for(n_threads, n, quantize_rows, &j);
        if (j.error[0]) rc = ds4_fail("%s: %s", t->name, j.error);
        else rc = ds4_gguf_writer_write(w, j.out, n * j.out_row_bytes);
        ds4_progress_add(prog, n * cols * 4);
    }
    if (j.q) ds4_row_quantizers_finish(j.q, n_threads, loss);
    for (int i = 0; i < n_threads && j.rows; i++) free(j.rows[i]);
    pthread_mutex_destroy(&j.lock);
    free(j.out);
    free(j.q);
    free(j.rows);
    loss->seconds = ds4_time_now() - t0;
    release(t);
    return rc;
}

/* Copy every metadata pair but the file type, which the recipe sets. */
static int copy_metadata(const gguf_file *f, gguf_writer *w, const ds4_recipe *r) {
    char key[256];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        if (kv->key.len >= sizeof key) return ds4_fail("metadata key too long");
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = 0;
        if (!strcmp(key, "general.file_type")) continue;
        if (ds4_gguf_writer_kv(w, key, &kv->value) < 0) return -1;
    }
    return ds4_gguf_writer_kv_u32(w, "general.file_type", ds4_recipe_file_type(r));
}

int ds4_requant(const ds4_requant_opts *o, ds4_requant_stats *st) {
    memset(st, 0, sizeof *st);
    const double t0 = ds4_time_now();
    ds4_model *m = ds4_model_load(o->in_path);
    if (!m) return -1;
    const gguf_file *f = m->gguf;
    ds4_tensor_spec *specs = NULL;
    size_t n_specs = 0;
    uint32_t *types = ds4_calloc(f->n_tensors + 1, sizeof *types);
    gguf_writer *w = NULL;
    int rc = -1;
    int n_threads = o->n_threads > 0 ? o->n_threads : ds4_cpu_count();
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if (!types || ds4_expected_tensors(&m->cfg, &specs, &n_specs) < 0 ||
        ds4_recipe_check_overrides(o->recipe, specs, n_specs) < 0)
        goto done;
    if (!(st->loss = ds4_calloc(f->n_tensors + 1, sizeof *st->loss))) goto done;
    /* Plan: each tensor's type from the recipe (tensors outside the model keep theirs). */
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        types[i] = t->type;
        for (size_t k = 0; k < n_specs; k++) {
            if (strcmp(specs[k].name, t->name)) continue;
            bool fell_back = false;
            types[i] = ds4_recipe_type(o->recipe, &specs[k], &fell_back);
            st->n_fallback += fell_back;
            break;
        }
        if (types[i] == t->type) st->n_copied++;
        /* Quantizing what is already below 8 bits compounds two errors: on request only. */
        const ds4_type_info *ti = ds4_type_get(t->type);
        if (types[i] != t->type && ti && ti->bytes * 8 < 8 * ti->block && !o->allow_requantize) {
            ds4_fail("%s is %s already: requantizing a sub-8-bit file loses more than quantizing its source "
                     "(--allow-requantize does it anyway)", t->name, ds4_type_name(t->type));
            goto done;
        }
        if (types[i] != t->type && (!ds4_type_get(t->type) || !ds4_type_get(t->type)->to_f32)) {
            ds4_fail("%s: cannot read %s to requantize it", t->name, ds4_type_name(t->type));
            goto done;
        }
        st->f32_bytes += ds4_gguf_tensor_nelements(t) * 4;
        st->bytes_in += t->size;
    }
    if (!(w = ds4_gguf_writer_open(o->out_path)) || copy_metadata(f, w, o->recipe) < 0) goto done;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (ds4_gguf_writer_add_tensor(w, f->tensors[i].name, types[i], f->tensors[i].n_dims, f->tensors[i].ne) < 0)
            goto done;
    ds4_progress prog;
    ds4_progress_begin(&prog, "quantize", o->progress ? st->f32_bytes : 0);
    prog.tty = prog.tty && o->progress;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        ds4_tensor_loss *l = &st->loss[i];
        snprintf(l->name, sizeof l->name, "%s", t->name);
        l->type_in = t->type;
        l->type_out = types[i];
        l->n_elements = ds4_gguf_tensor_nelements(t);
        l->bytes_out = types[i] == GGML_TYPE_I32 ? l->n_elements * 4 : ds4_row_size(types[i], t->ne[0]) * (l->n_elements / t->ne[0]);
        if (quantize_tensor(o, w, t, types[i], n_threads, &prog, l) < 0) goto done;
        st->n_tensors++;
    }
    ds4_progress_end(&prog);
    rc = ds4_gguf_writer_finish(w);
    w = NULL;
    if (rc == 0) st->bytes_out = ds4_file_size(o->out_path);
done:
    if (w) ds4_gguf_writer_abort(w);
    if (rc < 0) {
        free(st->loss);
        st->loss = NULL;
    }
    free(specs);
    free(types);
    ds4_model_free(m);
    st->seconds = ds4_time_now() - t0;
    return rc;
}

int ds4_tensor_loss_write_csv(const ds4_tensor_loss *loss, uint64_t n, const char *path) {
    ds4_buf b = {0};
    static const char header[] = "tensor,type_in,type_out,elements,bytes_out,rel_rmse,rel_weighted_rmse,imatrix,seconds\n";
    int rc = ds4_buf_append(&b, header, sizeof header - 1);
    char line[256];
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        const ds4_tensor_loss *l = &loss[i];
        const int len = snprintf(line, sizeof line, "%s,%s,%s,%llu,%llu,%.6g,%.6g,%d,%.4f\n", l->name,
                                 ds4_type_name(l->type_in), ds4_type_name(l->type_out),
                                 (unsigned long long)l->n_elements, (unsigned long long)l->bytes_out, l->rel_rmse,
                                 l->rel_wrmse, l->imatrix, l->seconds);
        rc = ds4_buf_append(&b, line, (size_t)len);
    }
    if (rc == 0) rc = ds4_write_file_atomic(path, b.data, b.len);
    ds4_buf_free(&b);
    return rc;
}
