/* synth.c - see synth.h. */
#include "synth.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fill.h"
#include "gguf.h"
#include "progress.h"
#include "threads.h"
#include "util.h"

#define CHUNK_BYTES (32u << 20)
#define MAX_THREADS 512

/* Seeds come from splitmix64 (ds4_fill_mix), one per (tensor, row), so rows can be made
 * in any order on any thread. */

/* Approximately standard normal values: a sum of four 16-bit uniforms, rescaled
 * (Irwin-Hall; plenty for weights, and fast enough to feed the quantizers). */
static void normal_row(uint64_t seed, float *x, uint64_t n, float scale) {
    uint64_t s = ds4_fill_mix(seed);
    const float k = scale * (float)(1.7320508 / 65536.0); /* the sum's sd is 65536 / sqrt(3) */
    for (uint64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const int32_t sum = (int32_t)(s & 0xFFFF) + (int32_t)((s >> 16) & 0xFFFF) + (int32_t)((s >> 32) & 0xFFFF) +
                            (int32_t)(s >> 48);
        x[i] = (float)(sum - 2 * 65535) * k;
    }
}

/* The random values of one row of a tensor, by its role (see synth.h). */
static void make_row(const ds4_config *c, const ds4_tensor_spec *t, uint64_t seed, float *x) {
    const uint64_t n = t->ne[0];
    const float fan_in = (float)n;
    switch (t->role) {
    case DS4_T_TOKEN_EMBD: normal_row(seed, x, n, 1.0f); return;
    case DS4_T_OUTPUT: normal_row(seed, x, n, 3.0f / sqrtf(fan_in)); return;
    case DS4_T_ATTN_OUT_B: case DS4_T_FFN_DOWN_EXPS: case DS4_T_FFN_DOWN_SHEXP:
        normal_row(seed, x, n, 0.1f / sqrtf(fan_in));
        return;
    case DS4_T_FFN_GATE_INP: normal_row(seed, x, n, 6.0f / sqrtf(fan_in)); return;
    case DS4_T_ATTN_SINKS: case DS4_T_COMP_APE: case DS4_T_IDX_COMP_APE: case DS4_T_HC_ATTN_BASE:
    case DS4_T_HC_FFN_BASE: case DS4_T_OUTPUT_HC_BASE:
        normal_row(seed, x, n, 0.5f);
        return;
    case DS4_T_FFN_EXP_PROBS_B: normal_row(seed, x, n, 0.1f); return;
    case DS4_T_HC_ATTN_SCALE: case DS4_T_HC_FFN_SCALE: case DS4_T_OUTPUT_HC_SCALE:
        normal_row(seed, x, n, 0.25f);
        for (uint64_t i = 0; i < n; i++) x[i] += 1.0f;
        return;
    case DS4_T_FFN_TID2EID: { /* n distinct experts per token */
        uint64_t s = ds4_fill_mix(seed);
        int32_t *ids = (int32_t *)(void *)x;
        for (uint64_t i = 0; i < n; i++) {
            int32_t e;
            bool dup;
            do {
                s = ds4_fill_mix(s);
                e = (int32_t)(s % c->n_expert);
                dup = false;
                for (uint64_t j = 0; j < i; j++) dup |= ids[j] == e;
            } while (dup);
            ids[i] = e;
        }
        return;
    }
    default:
        if (ds4_role_class(t->role) == DS4_CLASS_VECTOR) { /* norms */
            normal_row(seed, x, n, 0.1f);
            for (uint64_t i = 0; i < n; i++) x[i] += 1.0f;
        } else {
            normal_row(seed, x, n, 1.0f / sqrtf(fan_in));
        }
    }
}

typedef struct {
    const ds4_config *cfg;
    const ds4_tensor_spec *t;
    uint32_t type;
    uint64_t seed, row0, row_bytes;
    uint8_t *out;
    float **rows;
    double *seconds; /* per thread, inside the quantizer */
    ds4_tensor_fill fill; /* fast mode: its pool of quantized blocks, or none (pool NULL) */
    pthread_mutex_t lock;
    char error[DS4_ERROR_MAX];
} synth_job;

#define POOL_BLOCKS 4096

/* The pool for a block-quantized tensor: rows of it made and quantized as usual. Every
 * block of a row is then one of the pool's, picked by the row's seed (ds4_fill_rows):
 * valid blocks with the scales of quantized random weights, at the speed of copying. */
static uint8_t *make_pool(synth_job *j, uint64_t *n_blocks) {
    const ds4_type_info *ti = ds4_type_get(j->type);
    const uint64_t per_row = j->row_bytes / ti->bytes;
    const uint64_t rows = (POOL_BLOCKS + per_row - 1) / per_row;
    uint8_t *pool = ds4_malloc(rows * j->row_bytes);
    if (!pool) return NULL;
    for (uint64_t r = 0; r < rows; r++) {
        make_row(j->cfg, j->t, ds4_fill_mix(j->seed ^ ds4_fill_mix(~r)), j->rows[0]);
        if (ds4_quantize_row(j->type, j->rows[0], pool + r * j->row_bytes, (int64_t)j->t->ne[0],
                             ds4_quantize_needs_imatrix(j->type) ? j->rows[0] + j->t->ne[0] : NULL) < 0) {
            free(pool);
            return NULL;
        }
    }
    *n_blocks = rows * per_row;
    j->fill.block_bytes = ti->bytes;
    return pool;
}

static void synth_rows(void *arg, uint64_t begin, uint64_t end, int thread) {
    synth_job *j = arg;
    const uint64_t n = j->t->ne[0];
    int rc = 0;
    for (uint64_t i = begin; i < end && rc == 0; i++) {
        const uint64_t r = j->row0 + i;
        if (j->fill.pool) {
            ds4_fill_rows(&j->fill, r, 1, j->out + i * j->row_bytes);
            continue;
        }
        float *x = j->rows[thread];
        make_row(j->cfg, j->t, ds4_fill_mix(j->seed ^ ds4_fill_mix(r)), x);
        uint8_t *dst = j->out + i * j->row_bytes;
        if (j->type == GGML_TYPE_I32) {
            memcpy(dst, x, n * 4);
            continue;
        }
        const double t0 = ds4_time_now();
        /* Random weights have no activation statistics: uniform importance where the
         * format needs some. */
        rc = ds4_quantize_row(j->type, x, dst, (int64_t)n,
                              ds4_quantize_needs_imatrix(j->type) ? j->rows[thread] + n : NULL);
        j->seconds[thread] += ds4_time_now() - t0;
    }
    if (rc < 0) {
        pthread_mutex_lock(&j->lock);
        if (!j->error[0]) snprintf(j->error, sizeof j->error, "%s", ds4_error());
        pthread_mutex_unlock(&j->lock);
    }
}

int ds4_synth(const ds4_synth_opts *o, ds4_synth_stats *st) {
    memset(st, 0, sizeof *st);
    const double t_start = ds4_time_now();
    if (ds4_config_check(o->cfg) < 0) return -1;
    ds4_tensor_spec *specs;
    size_t n_specs;
    if (ds4_expected_tensors(o->cfg, &specs, &n_specs) < 0) return -1;
    int n_threads = o->n_threads > 0 ? o->n_threads : ds4_cpu_count();
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    uint32_t *types = ds4_calloc(n_specs, sizeof *types);
    float **rows = ds4_calloc((size_t)n_threads, sizeof *rows);
    double *seconds = ds4_calloc((size_t)n_threads, sizeof *seconds);
    gguf_writer *w = NULL;
    int rc = types && rows && seconds ? 0 : -1;
    uint64_t widest = 0, f32_total = 0;
    for (size_t i = 0; i < n_specs && rc == 0; i++) {
        types[i] = ds4_recipe_type(o->recipe, &specs[i], NULL);
        if (specs[i].ne[0] > widest) widest = specs[i].ne[0];
        f32_total += specs[i].ne[0] * specs[i].ne[1] * specs[i].ne[2] * 4;
    }
    /* Each thread's row buffer is followed by uniform importances. */
    for (int i = 0; i < n_threads && rc == 0; i++) {
        if (!(rows[i] = ds4_malloc(2 * widest * sizeof(float)))) rc = -1;
        else for (uint64_t k = 0; k < widest; k++) rows[i][widest + k] = 1.0f;
    }
    if (rc == 0 && (!(w = ds4_gguf_writer_open(o->out_path)) || ds4_gguf_writer_kv_str(w, "general.architecture", DS4_ARCH) < 0 ||
                    ds4_gguf_writer_kv_str(w, "general.name", "ds4-synth") < 0 ||
                    ds4_gguf_writer_kv_u32(w, "general.file_type", ds4_recipe_file_type(o->recipe)) < 0 ||
                    ds4_gguf_writer_kv_u32(w, "general.quantization_version", 2) < 0 ||
                    ds4_config_to_gguf(o->cfg, w) < 0))
        rc = -1;
    for (size_t i = 0; i < n_specs && rc == 0; i++)
        rc = ds4_gguf_writer_add_tensor(w, specs[i].name, types[i], specs[i].n_dims, specs[i].ne);
    ds4_progress prog;
    ds4_progress_begin(&prog, "synth", o->progress ? f32_total : 0);
    prog.tty = prog.tty && o->progress;
    for (size_t i = 0; i < n_specs && rc == 0; i++) {
        const ds4_tensor_spec *t = &specs[i];
        const uint64_t n_rows = t->ne[1] * t->ne[2] * t->ne[3];
        const uint64_t row_bytes = types[i] == GGML_TYPE_I32 ? t->ne[0] * 4 : ds4_row_size(types[i], t->ne[0]);
        uint64_t chunk = CHUNK_BYTES / (t->ne[0] * 4 + 1);
        chunk = chunk < 1 ? 1 : chunk > n_rows ? n_rows : chunk;
        synth_job j = {.cfg = o->cfg, .t = t, .type = types[i], .seed = ds4_fill_mix(o->seed ^ ds4_fill_mix(i + 1)),
                       .row_bytes = row_bytes, .rows = rows, .seconds = seconds};
        if (!(j.out = ds4_malloc(chunk * row_bytes))) { rc = -1; break; }
        const ds4_type_info *ti = ds4_type_get(types[i]);
        if (o->fast && ti && ti->block > 1 && !(j.fill.pool = make_pool(&j, &j.fill.pool_blocks))) {
            free(j.out);
            rc = -1;
            break;
        }
        j.fill.seed = j.seed;
        j.fill.row_bytes = row_bytes;
        j.fill.n_rows = n_rows;
        /* Holes: the pool and the seed are the tensor; the embedding stays in the file,
         * since its rows are read on the host. */
        if (o->holes && j.fill.pool && t->role != DS4_T_TOKEN_EMBD) {
            ds4_tensor_fill *grown = ds4_realloc(st->fills, (st->n_fills + 1) * sizeof *grown);
            rc = grown ? ds4_gguf_writer_skip(w, n_rows * row_bytes) : -1;
            if (grown) st->fills = grown;
            if (rc == 0) {
                snprintf(j.fill.name, sizeof j.fill.name, "%s", t->name);
                st->fills[st->n_fills++] = j.fill;
                j.fill.pool = NULL;
                ds4_progress_add(&prog, n_rows * t->ne[0] * 4);
            }
            free(j.out);
            st->n_tensors++;
            continue;
        }
        for (int k = 0; k < n_threads; k++) seconds[k] = 0;
        pthread_mutex_init(&j.lock, NULL);
        for (uint64_t r = 0; r < n_rows && rc == 0; r += chunk) {
            const uint64_t n = n_rows - r < chunk ? n_rows - r : chunk;
            j.row0 = r;
            ds4_parallel_for(n_threads, n, synth_rows, &j);
            if (j.error[0]) rc = ds4_fail("%s: %s", t->name, j.error);
            else rc = ds4_gguf_writer_write(w, j.out, n * row_bytes);
            ds4_progress_add(&prog, n * t->ne[0] * 4);
        }
        pthread_mutex_destroy(&j.lock);
        free(j.out);
        free(j.fill.pool);
        if (types[i] != GGML_TYPE_I32) {
            st->type_bytes[types[i]] += n_rows * t->ne[0] * 4;
            for (int k = 0; k < n_threads; k++) st->type_seconds[types[i]] += seconds[k];
        }
        st->n_tensors++;
    }
    ds4_progress_end(&prog);
    if (rc == 0) {
        rc = ds4_gguf_writer_finish(w);
        w = NULL;
        if (rc == 0) st->bytes_out = ds4_file_size(o->out_path);
    }
    if (w) ds4_gguf_writer_abort(w);
    for (int i = 0; rows && i < n_threads; i++) free(rows[i]);
    free(rows);
    free(seconds);
    free(types);
    free(specs);
    st->seconds = ds4_time_now() - t_start;
    if (rc < 0) ds4_synth_fills_free(st);
    return rc;
}

void ds4_synth_fills_free(ds4_synth_stats *st) {
    for (size_t i = 0; i < st->n_fills; i++) free(st->fills[i].pool);
    free(st->fills);
    st->fills = NULL;
    st->n_fills = 0;
}

/* /dev/shm where it has room for the file (a RAM disk: the CPU's weights in memory),
 * else $TMPDIR or /tmp. */
static const char *synth_dir(const ds4_config *cfg, const ds4_recipe *recipe, bool in_backend) {
    ds4_size_plan plan;
    struct statvfs fs;
    if (ds4_recipe_plan(recipe, cfg, &plan) == 0 && statvfs("/dev/shm", &fs) == 0 && access("/dev/shm", W_OK) == 0) {
        /* holes: the other matrices (the embedding among them), the small tensors, the vectors */
        const uint64_t need = in_backend ? plan.class_bytes[3] + plan.class_bytes[4] + plan.class_bytes[5] : plan.bytes;
        if ((uint64_t)fs.f_bavail * fs.f_frsize > need + need / 8) return "/dev/shm";
    }
    return getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
}

ds4_model *ds4_synth_model(const ds4_config *cfg, const ds4_recipe *recipe, uint64_t seed, bool in_backend,
                           bool progress) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ds4-synth-%d.gguf", synth_dir(cfg, recipe, in_backend), (int)getpid());
    const ds4_synth_opts o = {.cfg = cfg, .recipe = recipe, .out_path = path, .seed = seed, .progress = progress,
                              .fast = true, .holes = in_backend};
    ds4_synth_stats st;
    if (ds4_synth(&o, &st) < 0) return NULL;
    ds4_model *m = ds4_model_load(path);
    unlink(path); /* the mapping keeps it while the model lives */
    if (!m) {
        ds4_synth_fills_free(&st);
        return NULL;
    }
    if (ds4_model_attach_fills(m, st.fills, st.n_fills) < 0) {
        ds4_model_free(m);
        return NULL;
    }
    return m;
}