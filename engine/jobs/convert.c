/* convert.c - see convert.h. */
#include "convert.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf.h"
#include "hf_config.h"
#include "hf_tokenizer.h"
#include "imatrix.h"
#include "model.h"
#include "numeric.h"
#include "progress.h"
#include "quants.h"
#include "recipe.h"
#include "requant.h"
#include "safetensors.h"
#include "threads.h"

#define CHUNK_BYTES (32u << 20) /* F32 bytes converted per parallel step */

/* ---- names ---- */

/* Renames applied to the part after "layers.N.", first match wins. The left sides are
 * transformers' names (in memory, or as save_pretrained writes them); the right sides
 * DeepSeek's release names. A trailing '.' matches a prefix, otherwise the whole rest. */
static const char *const layer_renames[][2] = {
    {"attn.norm.", "attn.kv_norm."}, /* save_pretrained's spelling of kv_norm */
    {"input_layernorm.", "attn_norm."},
    {"post_attention_layernorm.", "ffn_norm."},
    {"attn_hc.fn", "hc_attn_fn"}, {"attn_hc.base", "hc_attn_base"}, {"attn_hc.scale", "hc_attn_scale"},
    {"ffn_hc.fn", "hc_ffn_fn"}, {"ffn_hc.base", "hc_ffn_base"}, {"ffn_hc.scale", "hc_ffn_scale"},
    {"self_attn.sinks", "attn.attn_sink"},
    {"self_attn.q_a_proj.", "attn.wq_a."}, {"self_attn.q_a_norm.", "attn.q_norm."},
    {"self_attn.q_b_proj.", "attn.wq_b."}, {"self_attn.kv_proj.", "attn.wkv."},
    {"self_attn.kv_norm.", "attn.kv_norm."}, {"self_attn.o_a_proj.", "attn.wo_a."},
    {"self_attn.o_b_proj.", "attn.wo_b."},
    {"self_attn.compressor.indexer.q_b_proj.", "attn.indexer.wq_b."},
    {"self_attn.compressor.indexer.scorer.weights_proj.", "attn.indexer.weights_proj."},
    {"self_attn.compressor.indexer.kv_proj.", "attn.indexer.compressor.wkv."},
    {"self_attn.compressor.indexer.gate_proj.", "attn.indexer.compressor.wgate."},
    {"self_attn.compressor.indexer.kv_norm.", "attn.indexer.compressor.norm."},
    {"self_attn.compressor.indexer.position_bias", "attn.indexer.compressor.ape"},
    {"self_attn.compressor.kv_proj.", "attn.compressor.wkv."},
    {"self_attn.compressor.gate_proj.", "attn.compressor.wgate."},
    {"self_attn.compressor.kv_norm.", "attn.compressor.norm."},
    {"self_attn.compressor.position_bias", "attn.compressor.ape"},
    {"mlp.gate.e_score_correction_bias", "ffn.gate.bias"},
    {"mlp.gate.", "ffn.gate."},
    {"mlp.shared_experts.gate_proj.", "ffn.shared_experts.w1."},
    {"mlp.shared_experts.up_proj.", "ffn.shared_experts.w3."},
    {"mlp.shared_experts.down_proj.", "ffn.shared_experts.w2."},
    {"mlp.experts.", "ffn.experts."},
};

static const char *const top_renames[][2] = {
    {"embed_tokens.weight", "embed.weight"}, {"lm_head.weight", "head.weight"},
    {"hc_head.hc_fn", "hc_head_fn"}, {"hc_head.hc_base", "hc_head_base"}, {"hc_head.hc_scale", "hc_head_scale"},
};

bool ds4_canonical_name(const char *in, char *out, size_t out_size) {
    if (!strncmp(in, "model.", 6)) in += 6;
    if (!strncmp(in, "mtp.", 4)) return false;
    char buf[512];
    unsigned il;
    int used = 0;
    if (sscanf(in, "layers.%u.%n", &il, &used) == 1 && used > 0) {
        const char *rest = in + used;
        const char *to = NULL;
        size_t n = 0;
        for (size_t i = 0; i < sizeof layer_renames / sizeof layer_renames[0] && !to; i++) {
            const char *from = layer_renames[i][0];
            n = strlen(from);
            bool prefix = from[n - 1] == '.';
            if (prefix ? !strncmp(rest, from, n) : !strcmp(rest, from)) to = layer_renames[i][1];
        }
        snprintf(buf, sizeof buf, "layers.%u.%s%s", il, to ? to : "", to ? rest + n : rest);
    } else {
        snprintf(buf, sizeof buf, "%s", in);
        for (size_t i = 0; i < sizeof top_renames / sizeof top_renames[0]; i++)
            if (!strcmp(in, top_renames[i][0])) snprintf(buf, sizeof buf, "%s", top_renames[i][1]);
    }
    /* FP8 scales: transformers' quantizer calls them weight_scale_inv. */
    size_t len = strlen(buf);
    if (len > 17 && !strcmp(buf + len - 17, ".weight_scale_inv")) strcpy(buf + len - 17, ".scale");
    if (strlen(buf) + 1 > out_size) return false;
    strcpy(out, buf);
    return true;
}

/* Release name of the source of each GGUF role ("%d" is the layer). */
static const char *const source_names[DS4_T_COUNT] = {
    [DS4_T_TOKEN_EMBD] = "embed.weight", [DS4_T_OUTPUT_NORM] = "norm.weight", [DS4_T_OUTPUT] = "head.weight",
    [DS4_T_OUTPUT_HC_FN] = "hc_head_fn", [DS4_T_OUTPUT_HC_BASE] = "hc_head_base",
    [DS4_T_OUTPUT_HC_SCALE] = "hc_head_scale",
    [DS4_T_ATTN_NORM] = "layers.%d.attn_norm.weight", [DS4_T_ATTN_Q_A] = "layers.%d.attn.wq_a.weight",
    [DS4_T_ATTN_Q_A_NORM] = "layers.%d.attn.q_norm.weight", [DS4_T_ATTN_Q_B] = "layers.%d.attn.wq_b.weight",
    [DS4_T_ATTN_KV] = "layers.%d.attn.wkv.weight", [DS4_T_ATTN_KV_NORM] = "layers.%d.attn.kv_norm.weight",
    [DS4_T_ATTN_OUT_A] = "layers.%d.attn.wo_a.weight", [DS4_T_ATTN_OUT_B] = "layers.%d.attn.wo_b.weight",
    [DS4_T_ATTN_SINKS] = "layers.%d.attn.attn_sink",
    [DS4_T_HC_ATTN_FN] = "layers.%d.hc_attn_fn", [DS4_T_HC_ATTN_BASE] = "layers.%d.hc_attn_base",
    [DS4_T_HC_ATTN_SCALE] = "layers.%d.hc_attn_scale", [DS4_T_HC_FFN_FN] = "layers.%d.hc_ffn_fn",
    [DS4_T_HC_FFN_BASE] = "layers.%d.hc_ffn_base", [DS4_T_HC_FFN_SCALE] = "layers.%d.hc_ffn_scale",
    [DS4_T_COMP_KV] = "layers.%d.attn.compressor.wkv.weight",
    [DS4_T_COMP_GATE] = "layers.%d.attn.compressor.wgate.weight",
    [DS4_T_COMP_APE] = "layers.%d.attn.compressor.ape",
    [DS4_T_COMP_NORM] = "layers.%d.attn.compressor.norm.weight",
    [DS4_T_IDX_Q_B] = "layers.%d.attn.indexer.wq_b.weight",
    [DS4_T_IDX_PROJ] = "layers.%d.attn.indexer.weights_proj.weight",
    [DS4_T_IDX_COMP_KV] = "layers.%d.attn.indexer.compressor.wkv.weight",
    [DS4_T_IDX_COMP_GATE] = "layers.%d.attn.indexer.compressor.wgate.weight",
    [DS4_T_IDX_COMP_APE] = "layers.%d.attn.indexer.compressor.ape",
    [DS4_T_IDX_COMP_NORM] = "layers.%d.attn.indexer.compressor.norm.weight",
    [DS4_T_FFN_NORM] = "layers.%d.ffn_norm.weight", [DS4_T_FFN_GATE_INP] = "layers.%d.ffn.gate.weight",
    [DS4_T_FFN_EXP_PROBS_B] = "layers.%d.ffn.gate.bias", [DS4_T_FFN_TID2EID] = "layers.%d.ffn.gate.tid2eid",
    [DS4_T_FFN_GATE_EXPS] = "layers.%d.ffn.experts.%d.w1.weight",
    [DS4_T_FFN_UP_EXPS] = "layers.%d.ffn.experts.%d.w3.weight",
    [DS4_T_FFN_DOWN_EXPS] = "layers.%d.ffn.experts.%d.w2.weight",
    [DS4_T_FFN_GATE_SHEXP] = "layers.%d.ffn.shared_experts.w1.weight",
    [DS4_T_FFN_UP_SHEXP] = "layers.%d.ffn.shared_experts.w3.weight",
    [DS4_T_FFN_DOWN_SHEXP] = "layers.%d.ffn.shared_experts.w2.weight",
};

/* ---- sources ---- */

typedef enum { ENC_PLAIN, ENC_FP8, ENC_FP4 } encoding;

typedef struct {
    const st_tensor *w, *scale;
    encoding enc;
    uint64_t rows;        /* logical rows of the source matrix */
    uint32_t block_r, block_c;
} source;

/* One output tensor: its rows come from one source (possibly a merged expert stack
 * indexed with a stride) or from one source per expert. Output row R reads source
 * (per_expert ? R / block_rows : 0), row (R / block_rows) * stride + offset + R % block_rows. */
typedef struct {
    ds4_tensor_spec spec;
    uint32_t out_type;
    source *src;
    uint32_t n_src;
    bool per_expert;
    uint64_t block_rows, stride, offset;
} plan_item;

typedef struct {
    const ds4_convert_opts *opts;
    const ds4_recipe *recipe; /* the options' recipe, or one made from their type */
    ds4_hf_config hf;
    st_model *st;
    ds4_strmap canon;     /* release name -> index into st->tensors */
    char **canon_names;
    uint8_t *used;        /* per checkpoint tensor */
    plan_item *items;
    size_t n_items;
    ds4_problems problems;
} converter;

static const st_tensor *lookup(converter *cv, const char *name) {
    uint64_t i;
    if (!ds4_strmap_get(&cv->canon, name, strlen(name), &i)) return NULL;
    cv->used[i] = 1;
    return &cv->st->tensors[i];
}

static bool is_float_dtype(st_dtype t) {
    return t == ST_F32 || t == ST_F16 || t == ST_BF16 || t == ST_F64 || t == ST_F8_E4M3;
}

static bool is_int_dtype(st_dtype t) {
    return t == ST_I64 || t == ST_I32 || t == ST_I16 || t == ST_I8 || t == ST_U8 || t == ST_U16 ||
           t == ST_U32 || t == ST_U64;
}

static bool is_scale_dtype(st_dtype t) {
    return t == ST_F8_E8M0 || t == ST_U8 || t == ST_F32 || t == ST_BF16 || t == ST_F16;
}

static void shape_text(char *buf, size_t n, const uint64_t *dims, uint32_t nd) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (uint32_t i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Set up `s` to read a [rows, cols] matrix (or vector) named `name`. */
static bool bind_source(converter *cv, source *s, const char *name, uint64_t rows, uint64_t cols,
                        const char *what) {
    memset(s, 0, sizeof *s);
    s->w = lookup(cv, name);
    if (!s->w) {
        ds4_problem(&cv->problems, "%s: checkpoint has no %s", what, name);
        return false;
    }
    char scale_name[600];
    snprintf(scale_name, sizeof scale_name, "%.*s.scale",
             (int)(strlen(name) - (strstr(name, ".weight") ? 7 : 0)), name);
    const st_tensor *w = s->w;
    s->rows = rows;
    uint64_t nd = w->n_dims, last = nd ? w->shape[nd - 1] : 1, nel = ds4_st_nelements(w);
    char got[96];
    shape_text(got, sizeof got, w->shape, w->n_dims);
    if ((w->dtype == ST_I8 || w->dtype == ST_U8) && (s->scale = lookup(cv, scale_name))) {
        /* MXFP4: two E2M1 values per byte, one E8M0 scale per 32 values of a row. */
        s->enc = ENC_FP4;
        const st_tensor *sc = s->scale;
        if (cols % 32 || last * 2 != cols || nel * 2 != rows * cols || !is_scale_dtype(sc->dtype) ||
            ds4_st_nelements(sc) != rows * (cols / 32)) {
            ds4_problem(&cv->problems, "%s: FP4 tensor %s %s (scale %s) does not hold [%llu, %llu]", what, name,
                        got, ds4_st_dtype_name(sc->dtype), (unsigned long long)rows, (unsigned long long)cols);
            return false;
        }
        return true;
    }
    if (!is_float_dtype(w->dtype) && !(is_int_dtype(w->dtype) && strstr(name, "tid2eid"))) {
        ds4_problem(&cv->problems, "%s: %s has dtype %s", what, name, ds4_st_dtype_name(w->dtype));
        return false;
    }
    if (nel != rows * cols || (nd > 0 && last != cols)) {
        ds4_problem(&cv->problems, "%s: %s has shape %s, expected %llu x %llu values", what, name, got,
                    (unsigned long long)rows, (unsigned long long)cols);
        return false;
    }
    if (w->dtype == ST_F8_E4M3 && (s->scale = lookup(cv, scale_name))) {
        s->enc = ENC_FP8;
        s->block_r = cv->hf.fp8_block[0];
        s->block_c = cv->hf.fp8_block[1];
        uint64_t br = (rows + s->block_r - 1) / s->block_r, bc = (cols + s->block_c - 1) / s->block_c;
        if (!is_scale_dtype(s->scale->dtype) || ds4_st_nelements(s->scale) != br * bc) {
            ds4_problem(&cv->problems, "%s: FP8 scale %s holds %llu values, expected %llu x %llu blocks", what,
                        scale_name, (unsigned long long)ds4_st_nelements(s->scale), (unsigned long long)br,
                        (unsigned long long)bc);
            return false;
        }
    }
    return true;
}

static float scale_at(const st_tensor *t, uint64_t i) {
    const uint8_t *p = t->data;
    uint16_t h;
    float f;
    switch (t->dtype) {
    case ST_F32: memcpy(&f, p + 4 * i, 4); return f;
    case ST_BF16: memcpy(&h, p + 2 * i, 2); return ds4_bf16_to_f32(h);
    case ST_F16: memcpy(&h, p + 2 * i, 2); return ds4_f16_to_f32(h);
    default: return ds4_e8m0_to_f32(p[i]);
    }
}

/* Decode row r of a source into cols floats. */
static void read_row(const source *s, uint64_t r, uint64_t cols, float *dst) {
    const st_tensor *w = s->w;
    const uint8_t *p = w->data;
    if (s->enc == ENC_FP4) {
        const uint8_t *q = p + r * (cols / 2);
        for (uint64_t g = 0; g < cols / 32; g++) {
            float sc = scale_at(s->scale, r * (cols / 32) + g);
            for (int j = 0; j < 16; j++) {
                uint8_t b = q[g * 16 + j];
                dst[g * 32 + 2 * j] = ds4_fp4_e2m1_to_f32(b & 15) * sc;
                dst[g * 32 + 2 * j + 1] = ds4_fp4_e2m1_to_f32(b >> 4) * sc;
            }
        }
        return;
    }
    uint64_t base = r * cols;
    switch (w->dtype) {
    case ST_F32: memcpy(dst, p + 4 * base, cols * 4); break;
    case ST_F64:
        for (uint64_t c = 0; c < cols; c++) {
            double d;
            memcpy(&d, p + 8 * (base + c), 8);
            dst[c] = (float)d;
        }
        break;
    case ST_F16:
        for (uint64_t c = 0; c < cols; c++) {
            uint16_t h;
            memcpy(&h, p + 2 * (base + c), 2);
            dst[c] = ds4_f16_to_f32(h);
        }
        break;
    case ST_BF16:
        for (uint64_t c = 0; c < cols; c++) {
            uint16_t h;
            memcpy(&h, p + 2 * (base + c), 2);
            dst[c] = ds4_bf16_to_f32(h);
        }
        break;
    case ST_F8_E4M3:
        for (uint64_t c = 0; c < cols; c++) dst[c] = ds4_fp8_e4m3_to_f32(p[base + c]);
        if (s->enc == ENC_FP8) {
            uint64_t bc = (cols + s->block_c - 1) / s->block_c, srow = r / s->block_r;
            for (uint64_t c = 0; c < cols; c++) dst[c] *= scale_at(s->scale, srow * bc + c / s->block_c);
        }
        break;
    default: break;
    }
}

/* Integer row (hash routing table) into I32, checking every id names an expert. */
static int read_index_row(const source *s, uint64_t r, uint64_t cols, int32_t *dst, uint32_t n_expert) {
    const st_tensor *w = s->w;
    size_t es = ds4_st_dtype_size(w->dtype);
    bool is_signed = w->dtype == ST_I64 || w->dtype == ST_I32 || w->dtype == ST_I16 || w->dtype == ST_I8;
    for (uint64_t c = 0; c < cols; c++) {
        uint64_t raw = 0;
        memcpy(&raw, w->data + (r * cols + c) * es, es);
        int64_t v = (int64_t)raw;
        if (is_signed && es < 8) v = (int64_t)(raw << (64 - 8 * es)) >> (64 - 8 * es);
        if (v < 0 || v >= (int64_t)n_expert)
            return ds4_fail("%s: row %llu holds expert id %lld, outside [0, %u)", w->name,
                            (unsigned long long)r, (long long)v, n_expert);
        dst[c] = (int32_t)v;
    }
    return 0;
}

/* ---- planning ---- */

static uint32_t output_type(const converter *cv, const ds4_tensor_spec *s, uint64_t *fallbacks) {
    bool fell_back = false;
    const uint32_t type = ds4_recipe_type(cv->recipe, s, &fell_back);
    *fallbacks += fell_back;
    return type;
}

static bool plan_experts(converter *cv, plan_item *it, const char *what) {
    const ds4_tensor_spec *s = &it->spec;
    const uint64_t cols = s->ne[0], rows = s->ne[1], E = s->ne[2];
    char name[256];
    snprintf(name, sizeof name, source_names[s->role], s->layer, 0);
    if (lookup(cv, name)) {
        it->per_expert = true;
        it->n_src = (uint32_t)E;
        it->src = ds4_calloc(E, sizeof *it->src);
        if (!it->src) return false;
        it->block_rows = rows;
        bool ok = true;
        for (uint64_t e = 0; e < E && ok; e++) {
            snprintf(name, sizeof name, source_names[s->role], s->layer, (int)e);
            ok = bind_source(cv, &it->src[e], name, rows, cols, what);
        }
        return ok;
    }
    /* transformers' in-memory layout: gate_up_proj [E, 2I, D] (gate rows first), down_proj [E, D, I]. */
    bool down = s->role == DS4_T_FFN_DOWN_EXPS;
    snprintf(name, sizeof name, "layers.%d.ffn.experts.%s", s->layer, down ? "down_proj" : "gate_up_proj");
    if (!lookup(cv, name)) {
        snprintf(name, sizeof name, source_names[s->role], s->layer, 0);
        ds4_problem(&cv->problems, "%s: checkpoint has neither %s nor a merged expert tensor", what, name);
        return false;
    }
    it->n_src = 1;
    it->src = ds4_calloc(1, sizeof *it->src);
    if (!it->src) return false;
    it->block_rows = rows;
    it->stride = down ? rows : 2 * rows;
    it->offset = s->role == DS4_T_FFN_UP_EXPS ? rows : 0;
    return bind_source(cv, it->src, name, E * it->stride, cols, what);
}

/* transformers sizes the shared expert at moe_intermediate_size whatever
 * n_shared_experts says, where DeepSeek's code and llama.cpp use n_shared x that: follow
 * the checkpoint, and describe it in llama.cpp's terms. */
static void match_shared_expert_width(converter *cv) {
    ds4_config *c = &cv->hf.cfg;
    const st_tensor *w1 = lookup(cv, "layers.0.ffn.shared_experts.w1.weight");
    if (!w1 || w1->n_dims != 2 || c->n_expert_shared <= 1) return;
    if (w1->shape[0] == c->expert_ff) c->n_expert_shared = 1;
}

static int make_plan(converter *cv, ds4_convert_stats *stats) {
    ds4_tensor_spec *specs;
    size_t n;
    match_shared_expert_width(cv);
    if (ds4_expected_tensors(&cv->hf.cfg, &specs, &n) < 0) return -1;
    cv->items = ds4_calloc(n, sizeof *cv->items);
    if (!cv->items) {
        free(specs);
        return -1;
    }
    cv->n_items = n;
    for (size_t i = 0; i < n; i++) {
        plan_item *it = &cv->items[i];
        it->spec = specs[i];
        it->out_type = output_type(cv, &specs[i], &stats->n_type_fallback);
        const char *what = it->spec.name;
        if (ds4_role_class(it->spec.role) == DS4_CLASS_EXPERTS) {
            plan_experts(cv, it, what);
            continue;
        }
        char name[256];
        snprintf(name, sizeof name, source_names[it->spec.role], it->spec.layer);
        it->n_src = 1;
        it->src = ds4_calloc(1, sizeof *it->src);
        if (!it->src) break;
        uint64_t rows = it->spec.ne[1] * it->spec.ne[2] * it->spec.ne[3];
        it->block_rows = rows;
        /* A tied LM head is stored once, as the embedding. */
        if (it->spec.role == DS4_T_OUTPUT && cv->hf.tied_embeddings && !lookup(cv, name))
            snprintf(name, sizeof name, "%s", source_names[DS4_T_TOKEN_EMBD]);
        bind_source(cv, it->src, name, rows, it->spec.ne[0], what);
    }
    free(specs);
    return ds4_problems_report(&cv->problems, "the checkpoint");
}

/* ---- streaming the data ---- */

typedef struct {
    converter *cv;
    const plan_item *it;
    uint64_t row0;
    uint8_t *out;
    uint64_t row_bytes;
    ds4_row_quantizer *q; /* per thread */
    pthread_mutex_t lock;
    char error[DS4_ERROR_MAX];
} chunk_job;

static void convert_rows(void *arg, uint64_t begin, uint64_t end, int thread) {
    chunk_job *job = arg;
    const plan_item *it = job->it;
    const uint64_t cols = it->spec.ne[0];
    float *tmp = malloc(cols * sizeof *tmp);
    int rc = tmp ? 0 : ds4_fail("out of memory");
    for (uint64_t i = begin; i < end && rc == 0; i++) {
        uint64_t R = job->row0 + i, blk = R / it->block_rows, within = R % it->block_rows;
        const source *s = &it->src[it->per_expert ? blk : 0];
        uint64_t r = it->per_expert ? within : blk * it->stride + it->offset + within;
        uint8_t *dst = job->out + i * job->row_bytes;
        if (it->out_type == GGML_TYPE_I32) {
            rc = read_index_row(s, r, cols, (int32_t *)(void *)dst, job->cv->hf.cfg.n_expert);
        } else {
            read_row(s, r, cols, tmp);
            rc = ds4_row_quantize(&job->q[thread], R / it->spec.ne[1], tmp, dst);
        }
    }
    free(tmp);
    if (rc < 0) {
        pthread_mutex_lock(&job->lock);
        if (!job->error[0]) snprintf(job->error, sizeof job->error, "%s", ds4_error());
        pthread_mutex_unlock(&job->lock);
    }
}

/* Source pages are read once: drop them from this process once a tensor is written, so
 * converting a checkpoint larger than memory keeps the resident set small. */
static void release_sources(const plan_item *it) {
    const long page = sysconf(_SC_PAGESIZE);
    for (uint32_t i = 0; i < it->n_src; i++) {
        const st_tensor *parts[2] = {it->src[i].w, it->src[i].scale};
        for (int k = 0; k < 2; k++) {
            if (!parts[k] || !parts[k]->nbytes) continue;
            uintptr_t a = (uintptr_t)parts[k]->data, b = a + parts[k]->nbytes;
            a = (a + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
            b = b / (uintptr_t)page * (uintptr_t)page;
            if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
        }
    }
}

static int write_tensor(converter *cv, gguf_writer *w, const plan_item *it, ds4_progress *prog, int n_threads,
                        ds4_tensor_loss *loss) {
    const uint64_t rows = it->spec.ne[1] * it->spec.ne[2] * it->spec.ne[3];
    const uint64_t row_bytes = it->out_type == GGML_TYPE_I32 ? it->spec.ne[0] * 4
                                                             : ds4_row_size(it->out_type, it->spec.ne[0]);
    uint64_t chunk_rows = CHUNK_BYTES / (it->spec.ne[0] * 4 + 1);
    if (chunk_rows == 0) chunk_rows = 1;
    if (chunk_rows > rows) chunk_rows = rows;
    uint8_t *buf = ds4_malloc(chunk_rows * row_bytes);
    if (!buf) return -1;
    chunk_job job = {.cv = cv, .it = it, .out = buf, .row_bytes = row_bytes};
    int rc = (job.q = ds4_calloc((size_t)n_threads, sizeof *job.q)) ? 0 : -1;
    for (int i = 0; i < n_threads && rc == 0; i++)
        rc = ds4_row_quantizer_init(&job.q[i], cv->opts->imatrix, it->spec.name, it->out_type, it->spec.ne[0]);
    const double t0 = ds4_time_now();
    pthread_mutex_init(&job.lock, NULL);
    for (uint64_t r = 0; r < rows && rc == 0; r += chunk_rows) {
        uint64_t n = rows - r < chunk_rows ? rows - r : chunk_rows;
        job.row0 = r;
        ds4_parallel_for(n_threads, n, convert_rows, &job);
        if (job.error[0]) rc = ds4_fail("%s: %s", it->spec.name, job.error);
        else rc = ds4_gguf_writer_write(w, buf, n * row_bytes);
        ds4_progress_add(prog, n * it->spec.ne[0] * 4);
    }
    snprintf(loss->name, sizeof loss->name, "%s", it->spec.name);
    loss->type_in = GGML_TYPE_F32; /* the checkpoint's values as read (FP8/FP4 dequantized) */
    loss->type_out = it->out_type;
    loss->n_elements = rows * it->spec.ne[0];
    loss->bytes_out = rows * row_bytes;
    if (job.q) ds4_row_quantizers_finish(job.q, n_threads, loss);
    loss->seconds = ds4_time_now() - t0;
    free(job.q);
    pthread_mutex_destroy(&job.lock);
    free(buf);
    release_sources(it);
    return rc;
}

/* ---- metadata ---- */

static int write_metadata(converter *cv, gguf_writer *w) {
    const char *base = strrchr(cv->opts->in_dir, '/');
    base = base && base[1] ? base + 1 : cv->opts->in_dir;
    if (ds4_gguf_writer_kv_str(w, "general.architecture", DS4_ARCH) < 0 ||
        ds4_gguf_writer_kv_str(w, "general.name", base) < 0 ||
        ds4_gguf_writer_kv_u32(w, "general.file_type", ds4_recipe_file_type(cv->recipe)) < 0 ||
        ds4_gguf_writer_kv_u32(w, "general.quantization_version", 2) < 0)
        return -1;
    return ds4_config_to_gguf(&cv->hf.cfg, w);
}

/* ---- driver ---- */

static int index_checkpoint(converter *cv) {
    st_model *st = cv->st;
    cv->used = ds4_calloc(st->n_tensors, 1);
    cv->canon_names = ds4_calloc(st->n_tensors, sizeof *cv->canon_names);
    if (!cv->used || !cv->canon_names || ds4_strmap_init(&cv->canon, st->n_tensors) < 0) return -1;
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        char name[512];
        if (!ds4_canonical_name(st->tensors[i].name, name, sizeof name)) continue;
        if (!(cv->canon_names[i] = ds4_strndup(name, strlen(name)))) return -1;
        if (ds4_strmap_put(&cv->canon, cv->canon_names[i], strlen(name), i) == 0)
            return ds4_fail("checkpoint holds '%s' under two names", name);
    }
    return 0;
}

static void converter_free(converter *cv) {
    for (size_t i = 0; i < cv->n_items; i++) free(cv->items[i].src);
    free(cv->items);
    if (cv->canon_names)
        for (uint64_t i = 0; i < cv->st->n_tensors; i++) free(cv->canon_names[i]);
    free(cv->canon_names);
    free(cv->used);
    ds4_strmap_free(&cv->canon);
    ds4_st_close(cv->st);
}

int ds4_convert(const ds4_convert_opts *opts, ds4_convert_stats *stats) {
    memset(stats, 0, sizeof *stats);
    double t0 = ds4_time_now();
    converter cv = {.opts = opts};
    char path[PATH_MAX];
    int rc = -1;
    gguf_writer *w = NULL;
    ds4_tensor_loss *loss = NULL;
    ds4_recipe *own_recipe = NULL;
    if (!opts->recipe) {
        const char *name = opts->type == GGML_TYPE_F32    ? "f32"
                           : opts->type == GGML_TYPE_F16  ? "f16"
                           : opts->type == GGML_TYPE_BF16 ? "bf16"
                           : opts->type == GGML_TYPE_Q8_0 ? "q8"
                                                          : NULL;
        if (!name) return ds4_fail("convert writes f32, f16, bf16 or q8_0, not %s", ds4_type_name(opts->type));
        if (!(own_recipe = ds4_recipe_new(name))) return -1;
    }
    cv.recipe = opts->recipe ? opts->recipe : own_recipe;
    snprintf(path, sizeof path, "%s/config.json", opts->in_dir);
    if (ds4_hf_config_load(path, &cv.hf) < 0) {
        ds4_recipe_free(own_recipe);
        return -1;
    }
    if (!(cv.st = ds4_st_open(opts->in_dir)) || index_checkpoint(&cv) < 0 || make_plan(&cv, stats) < 0) goto done;
    ds4_tensor_spec *specs = NULL;
    size_t n_specs = 0;
    if (ds4_expected_tensors(&cv.hf.cfg, &specs, &n_specs) < 0) goto done;
    const int unused = ds4_recipe_check_overrides(cv.recipe, specs, n_specs);
    free(specs);
    if (unused < 0) goto done;
    if (!(loss = ds4_calloc(cv.n_items + 1, sizeof *loss))) goto done;
    if (opts->want_loss) stats->loss = loss;
    int n_threads = opts->n_threads > 0 ? opts->n_threads : ds4_cpu_count();

    if (!(w = ds4_gguf_writer_open(opts->out_path)) || write_metadata(&cv, w) < 0) goto done;
    int tok = ds4_tokenizer_to_gguf(opts->in_dir, w, cv.hf.cfg.n_vocab, cv.hf.bos_id, cv.hf.eos_id, opts->added_tokens);
    if (tok < 0) goto done;
    stats->tokenizer = tok > 0;
    uint64_t total = 0;
    for (size_t i = 0; i < cv.n_items; i++) {
        const plan_item *it = &cv.items[i];
        if (ds4_gguf_writer_add_tensor(w, it->spec.name, it->out_type, it->spec.n_dims, it->spec.ne) < 0) goto done;
        total += it->spec.ne[0] * it->spec.ne[1] * it->spec.ne[2] * 4;
    }
    ds4_progress prog;
    ds4_progress_begin(&prog, "convert", opts->progress ? total : 0);
    prog.tty = prog.tty && opts->progress;
    for (size_t i = 0; i < cv.n_items; i++)
        if (write_tensor(&cv, w, &cv.items[i], &prog, n_threads, &loss[i]) < 0) goto done;
    ds4_progress_end(&prog);
    for (uint64_t i = 0; i < cv.st->n_tensors; i++) {
        if (cv.used[i]) {
            stats->bytes_in += cv.st->tensors[i].nbytes;
            continue;
        }
        if (!stats->n_ignored++)
            snprintf(stats->first_ignored, sizeof stats->first_ignored, "%s", cv.st->tensors[i].name);
    }
    stats->n_tensors = cv.n_items;
    rc = ds4_gguf_writer_finish(w);
    w = NULL;
    if (rc == 0) stats->bytes_out = ds4_file_size(opts->out_path);
done:
    if (w) ds4_gguf_writer_abort(w);
    converter_free(&cv);
    ds4_recipe_free(own_recipe);
    if (rc < 0 || !opts->want_loss) {
        free(loss);
        stats->loss = NULL;
    }
    stats->seconds = ds4_time_now() - t0;
    return rc;
}
