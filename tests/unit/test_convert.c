/* The converter on the committed synthetic checkpoints: every layout and output type
 * loads, the two layouts agree bit for bit, values match the checkpoint, and broken
 * checkpoints or GGUFs are reported by name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "gguf.h"
#include "model.h"
#include "numeric.h"
#include "quants.h"
#include "safetensors.h"
#include "st_image.h"
#include "test.h"

#define MODELS "vectors/models"

static int convert(const char *in, const char *out, uint32_t type) {
    ds4_convert_opts o = {.in_dir = in, .out_path = out, .type = type, .n_threads = 2};
    ds4_convert_stats s;
    return ds4_convert(&o, &s);
}

static const char *out_path(const char *name) {
    static char path[8][600];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 600, "%s/%s", test_tmpdir(), name);
    return p;
}

static void every_model_and_type_loads(void) {
    const char *models[] = {"tiny-a", "tiny-a-official", "tiny-b"};
    const char *types[] = {"f32", "f16", "bf16", "q8_0"};
    for (int m = 0; m < 3; m++)
        for (int t = 0; t < 4; t++) {
            char in[256], name[128];
            snprintf(in, sizeof in, MODELS "/%s", models[m]);
            snprintf(name, sizeof name, "%s-%s.gguf", models[m], types[t]);
            const char *out = out_path(name);
            CHECKF(convert(in, out, (uint32_t)ds4_type_from_name(types[t])) == 0, "%s: %s", name, ds4_error());
            ds4_model *model = ds4_model_load(out);
            CHECKF(model, "%s", ds4_error());
            CHECK(model->cfg.n_layer == (m == 2 ? 4u : 6u));
            ds4_model_free(model);
        }
}

static bool same_tensors(const char *pa, const char *pb, char *why, size_t n) {
    gguf_file *a = ds4_gguf_open(pa), *b = ds4_gguf_open(pb);
    bool same = a && b && a->n_tensors == b->n_tensors;
    for (uint64_t i = 0; same && i < a->n_tensors; i++) {
        const gguf_tensor *ta = &a->tensors[i], *tb = ds4_gguf_find_tensor(b, ta->name);
        same = tb && ta->type == tb->type && ta->size == tb->size && !memcmp(ta->data, tb->data, ta->size);
        if (!same) snprintf(why, n, "%s differs", ta->name);
    }
    for (uint64_t i = 0; same && a && i < a->n_kv; i++) {
        const gguf_kv *kv = &a->kv[i];
        if (ds4_gguf_str_eq(kv->key, "general.name")) continue;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        const gguf_value *o = ds4_gguf_get(b, key);
        same = o && ds4_gguf_value_equal(&kv->value, o);
        if (!same) snprintf(why, n, "metadata %.200s differs", key);
    }
    ds4_gguf_close(a);
    ds4_gguf_close(b);
    return same;
}

/* The release layout (FP8 + block scales, MXFP4 experts, release names, release config)
 * holds the same model as the transformers save: the GGUFs must be identical. */
static void release_and_hf_layouts_agree(void) {
    const char *a = out_path("agree-hf.gguf"), *b = out_path("agree-rel.gguf");
    CHECKF(convert(MODELS "/tiny-a", a, GGML_TYPE_F32) == 0, "%s", ds4_error());
    CHECKF(convert(MODELS "/tiny-a-official", b, GGML_TYPE_F32) == 0, "%s", ds4_error());
    char why[256] = "";
    CHECKF(same_tensors(a, b, why, sizeof why), "%s", why);
}

static void f32_values_match_checkpoint(void) {
    const char *path = out_path("values.gguf");
    CHECKF(convert(MODELS "/tiny-b", path, GGML_TYPE_F32) == 0, "%s", ds4_error());
    gguf_file *g = ds4_gguf_open(path);
    st_model *st = ds4_st_open(MODELS "/tiny-b");
    CHECK(g && st);
    /* A stacked expert tensor: expert 3, row 5 of the up projection. */
    const gguf_tensor *up = ds4_gguf_find_tensor(g, "blk.2.ffn_up_exps.weight");
    const st_tensor *w3 = ds4_st_find(st, "model.layers.2.ffn.experts.3.w3.weight");
    CHECK(up && w3 && w3->dtype == ST_BF16);
    const uint64_t D = up->ne[0], I = up->ne[1];
    int bad = 0;
    for (uint64_t c = 0; c < D; c++) {
        float got, want;
        uint16_t h;
        memcpy(&got, (const uint8_t *)up->data + ((3 * I + 5) * D + c) * 4, 4);
        memcpy(&h, w3->data + (5 * D + c) * 2, 2);
        want = ds4_bf16_to_f32(h);
        bad += got != want;
    }
    CHECKF(bad == 0, "%d values of expert 3 differ", bad);
    /* The hash routing table: I64 [V, k] in the checkpoint, I32 [k, V] in the GGUF. */
    const gguf_tensor *t = ds4_gguf_find_tensor(g, "blk.1.ffn_gate_tid2eid.weight");
    const st_tensor *s = ds4_st_find(st, "model.layers.1.ffn.gate.tid2eid");
    CHECK(t && s && t->type == GGML_TYPE_I32 && s->dtype == ST_I64 && t->ne[0] == s->shape[1] && t->ne[1] == s->shape[0]);
    for (uint64_t i = 0; i < ds4_st_nelements(s); i++) {
        int32_t a;
        int64_t b;
        memcpy(&a, (const uint8_t *)t->data + 4 * i, 4);
        memcpy(&b, s->data + 8 * i, 8);
        bad += a != b;
    }
    CHECKF(bad == 0, "%d routing entries differ", bad);
    /* The correction bias keeps its .bias name; norms stay F32. */
    CHECK(ds4_gguf_find_tensor(g, "blk.3.exp_probs_b.bias") && !ds4_gguf_find_tensor(g, "blk.1.exp_probs_b.bias"));
    CHECK(ds4_gguf_find_tensor(g, "output_norm.weight")->type == GGML_TYPE_F32);
    ds4_st_close(st);
    ds4_gguf_close(g);
}

/* Q8_0 output stays within half a quantization step of the F32 values (plus the
 * rounding of the step itself to F16: 127 * 2^-11 of a step). */
static void q8_0_within_half_a_step(void) {
    const char *pf = out_path("q-f32.gguf"), *pq = out_path("q-q8.gguf");
    CHECK(convert(MODELS "/tiny-b", pf, GGML_TYPE_F32) == 0 && convert(MODELS "/tiny-b", pq, GGML_TYPE_Q8_0) == 0);
    gguf_file *f = ds4_gguf_open(pf), *q = ds4_gguf_open(pq);
    CHECK(f && q);
    int n_q8 = 0, bad = 0;
    float *x = malloc(4096 * sizeof *x), *y = malloc(4096 * sizeof *y);
    for (uint64_t i = 0; i < q->n_tensors; i++) {
        const gguf_tensor *tq = &q->tensors[i], *tf = ds4_gguf_find_tensor(f, tq->name);
        if (tq->type != GGML_TYPE_Q8_0) continue;
        n_q8++;
        const uint64_t cols = tq->ne[0], rows = tq->ne[1] * tq->ne[2];
        for (uint64_t r = 0; r < rows && cols <= 4096; r++) {
            memcpy(x, (const uint8_t *)tf->data + r * cols * 4, cols * 4);
            ds4_row_to_f32(GGML_TYPE_Q8_0, (const uint8_t *)tq->data + r * ds4_row_size(GGML_TYPE_Q8_0, cols), y, (int64_t)cols);
            for (uint64_t b = 0; b < cols; b += 32) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b + j]));
                for (int j = 0; j < 32; j++) bad += fabsf(x[b + j] - y[b + j]) > amax / 127.0f * (0.5f + 127.0f / 2048.0f) + 1e-6f;
            }
        }
    }
    free(x);
    free(y);
    ds4_gguf_close(f);
    ds4_gguf_close(q);
    CHECK(n_q8 > 10);
    CHECKF(bad == 0, "%d values off by more than half a step", bad);
}

/* transformers' in-memory names, with experts merged into gate_up_proj / down_proj. */
static void merged_in_memory_layout_converts(void) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/merged", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "cp " MODELS "/tiny-a/config.json %s/", dir);
    CHECK(system(path) == 0);
    st_model *st = ds4_st_open(MODELS "/tiny-a");
    CHECK(st);
    st_image im = {0};
    const uint64_t E = 8, I = 32, D = 64;
    for (int il = 0; il < 6; il++) {
        float *gate_up = malloc(E * 2 * I * D * 4), *down = malloc(E * D * I * 4);
        for (uint64_t e = 0; e < E; e++) {
            char n1[128], n2[128], n3[128];
            snprintf(n1, sizeof n1, "model.layers.%d.ffn.experts.%llu.w1.weight", il, (unsigned long long)e);
            snprintf(n3, sizeof n3, "model.layers.%d.ffn.experts.%llu.w3.weight", il, (unsigned long long)e);
            snprintf(n2, sizeof n2, "model.layers.%d.ffn.experts.%llu.w2.weight", il, (unsigned long long)e);
            memcpy(gate_up + e * 2 * I * D, ds4_st_find(st, n1)->data, I * D * 4);
            memcpy(gate_up + e * 2 * I * D + I * D, ds4_st_find(st, n3)->data, I * D * 4);
            memcpy(down + e * D * I, ds4_st_find(st, n2)->data, D * I * 4);
        }
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj", il);
        st_image_add(&im, name, "F32", 3, (uint64_t[]){E, 2 * I, D}, gate_up, E * 2 * I * D * 4);
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj", il);
        st_image_add(&im, name, "F32", 3, (uint64_t[]){E, D, I}, down, E * D * I * 4);
        free(gate_up);
        free(down);
    }
    static const char *const renames[][2] = {
        {".attn.wq_a.", ".self_attn.q_a_proj."}, {".attn.norm.", ".self_attn.kv_norm."},
        {".attn.attn_sink", ".self_attn.sinks"}, {".hc_ffn_fn", ".ffn_hc.fn"},
        {".ffn.gate.bias", ".mlp.gate.e_score_correction_bias"}, {".attn_norm.", ".input_layernorm."},
        {".attn.indexer.compressor.ape", ".self_attn.compressor.indexer.position_bias"},
        {"model.hc_head.hc_fn", "model.hc_head.hc_fn"}, {"head.weight", "lm_head.weight"},
    };
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (strstr(t->name, ".ffn.experts.")) continue;
        char name[256];
        snprintf(name, sizeof name, "%s", t->name);
        for (size_t r = 0; r < sizeof renames / sizeof renames[0]; r++) {
            char *at = strstr(name, renames[r][0]);
            if (!at || (r == 8 && at != name)) continue;
            char tail[256];
            snprintf(tail, sizeof tail, "%s", at + strlen(renames[r][0]));
            snprintf(at, sizeof name - (size_t)(at - name), "%s%s", renames[r][1], tail);
        }
        st_image_add(&im, name, ds4_st_dtype_name(t->dtype), (int)t->n_dims, t->shape, t->data, t->nbytes);
    }
    ds4_st_close(st);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(st_image_write(&im, path) == 0);
    const char *a = out_path("merged.gguf"), *b = out_path("merged-ref.gguf");
    CHECKF(convert(dir, a, GGML_TYPE_F32) == 0, "%s", ds4_error());
    CHECK(convert(MODELS "/tiny-a", b, GGML_TYPE_F32) == 0);
    char why[256] = "";
    CHECKF(same_tensors(a, b, why, sizeof why), "%s", why);
}

static void broken_checkpoint_is_reported(void) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/broken", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "cp " MODELS "/tiny-a/config.json %s/", dir);
    CHECK(system(path) == 0);
    st_model *st = ds4_st_open(MODELS "/tiny-a");
    st_image im = {0};
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (!strcmp(t->name, "model.layers.3.attn.wq_a.weight")) continue;
        if (!strcmp(t->name, "model.norm.weight")) {
            st_image_add(&im, t->name, "F32", 1, (uint64_t[]){32}, t->data, 128);
            continue;
        }
        st_image_add(&im, t->name, ds4_st_dtype_name(t->dtype), (int)t->n_dims, t->shape, t->data, t->nbytes);
    }
    ds4_st_close(st);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(st_image_write(&im, path) == 0);
    const char *out = out_path("broken.gguf");
    CHECK(convert(dir, out, GGML_TYPE_F32) < 0);
    const char *e = ds4_error();
    CHECKF(strstr(e, "2 problems") && strstr(e, "layers.3.attn.wq_a.weight") && strstr(e, "norm.weight"), "%s", e);
    CHECK(access(out, F_OK) != 0);
    CHECK(convert("/nonexistent", out, GGML_TYPE_F32) < 0 && strstr(ds4_error(), "/nonexistent/config.json"));
}

/* A checkpoint with a tied LM head stores no head: the output is the embedding. */
static void tied_embeddings(void) {
    char dir[300], cmd[2048];
    snprintf(dir, sizeof dir, "%s/tied", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && sed 's/\"tie_word_embeddings\": false/\"tie_word_embeddings\": true/' "
             MODELS "/tiny-a/config.json > %s/config.json && grep -q '\"tie_word_embeddings\": true' %s/config.json",
             dir, dir, dir);
    CHECK(system(cmd) == 0);
    st_model *st = ds4_st_open(MODELS "/tiny-a");
    st_image im = {0};
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (strcmp(t->name, "head.weight"))
            st_image_add(&im, t->name, ds4_st_dtype_name(t->dtype), (int)t->n_dims, t->shape, t->data, t->nbytes);
    }
    ds4_st_close(st);
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", dir);
    CHECK(st_image_write(&im, cmd) == 0);
    const char *out = out_path("tied.gguf");
    CHECKF(convert(dir, out, GGML_TYPE_F32) == 0, "%s", ds4_error());
    gguf_file *f = ds4_gguf_open(out);
    const gguf_tensor *e = ds4_gguf_find_tensor(f, "token_embd.weight"), *o = ds4_gguf_find_tensor(f, "output.weight");
    CHECK(e && o && e->size == o->size && !memcmp(e->data, o->data, e->size));
    ds4_gguf_close(f);
}

/* Copy a GGUF, dropping one tensor and declaring another with a different type/shape. */
static int copy_modified(const char *src, const char *dst, const char *drop, const char *change,
                         uint32_t new_type, uint64_t new_ne0) {
    gguf_file *f = ds4_gguf_open(src);
    gguf_writer *w = ds4_gguf_writer_open(dst);
    int rc = f && w ? 0 : -1;
    for (uint64_t i = 0; rc == 0 && i < f->n_kv; i++) {
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)f->kv[i].key.len, f->kv[i].key.ptr);
        rc = ds4_gguf_writer_kv(w, key, &f->kv[i].value);
    }
    for (uint64_t i = 0; rc == 0 && i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (!strcmp(t->name, drop)) continue;
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t type = t->type;
        if (!strcmp(t->name, change)) { type = new_type; ne[0] = new_ne0; }
        rc = ds4_gguf_writer_add_tensor(w, t->name, type, t->n_dims, ne);
    }
    static uint8_t zeros[1 << 16];
    for (uint64_t i = 0; rc == 0 && i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (!strcmp(t->name, drop)) continue;
        if (!strcmp(t->name, change)) {
            uint64_t n = ds4_row_size(new_type, new_ne0) * t->ne[1] * t->ne[2] * t->ne[3];
            rc = ds4_gguf_writer_write(w, zeros, n);
        } else {
            rc = ds4_gguf_writer_write(w, t->data, t->size);
        }
    }
    ds4_gguf_close(f);
    if (rc == 0) return ds4_gguf_writer_finish(w);
    if (w) ds4_gguf_writer_abort(w);
    return -1;
}

static void broken_gguf_is_reported(void) {
    const char *src = out_path("gg-src.gguf"), *dst = out_path("gg-bad.gguf");
    CHECK(convert(MODELS "/tiny-a", src, GGML_TYPE_F32) == 0);
    CHECK(copy_modified(src, dst, "blk.4.indexer.proj.weight", "blk.0.attn_q_a.weight", GGML_TYPE_F32, 32) == 0);
    CHECK(!ds4_model_load(dst));
    const char *e = ds4_error();
    CHECKF(strstr(e, "missing blk.4.indexer.proj.weight") && strstr(e, "blk.0.attn_q_a.weight has shape [32, 32], expected [64, 32]"), "%s", e);
    CHECK(copy_modified(src, dst, "", "blk.1.ffn_norm.weight", GGML_TYPE_I32, 64) == 0);
    CHECK(!ds4_model_load(dst) && strstr(ds4_error(), "blk.1.ffn_norm.weight has type i32"));
    /* The metadata round-trips through the writer unchanged. */
    CHECK(copy_modified(src, dst, "", "", 0, 0) == 0);
    char why[256] = "";
    CHECKF(same_tensors(src, dst, why, sizeof why), "%s", why);
    ds4_model *m = ds4_model_load(dst);
    CHECKF(m, "%s", ds4_error());
    ds4_model_free(m);
}

static void tokenizer_json_is_written(void) {
    char dir[600], cmd[1400];
    snprintf(dir, sizeof dir, "%s/with-tokenizer", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp " MODELS "/tiny-a/* tests/data/tokenizer/*.json %s/", dir, dir);
    CHECK(system(cmd) == 0);
    const char *out = out_path("tok.gguf");
    CHECKF(convert(dir, out, GGML_TYPE_F16) == 0, "%s", ds4_error());
    gguf_file *f = ds4_gguf_open(out);
    CHECK(f);
    const gguf_value *toks = ds4_gguf_get(f, "tokenizer.ggml.tokens"), *types = ds4_gguf_get(f, "tokenizer.ggml.token_type");
    const gguf_value *merges = ds4_gguf_get(f, "tokenizer.ggml.merges");
    gguf_str s;
    double t0, t10, t300;
    CHECK(toks && toks->arr.n == 512 && types && types->arr.n == 512 && merges && merges->arr.n == 3);
    CHECK(ds4_gguf_str_eq(toks->arr.items[0].str, "<｜begin▁of▁sentence｜>") && ds4_gguf_str_eq(toks->arr.items[4].str, "ab"));
    CHECK(ds4_gguf_str_eq(toks->arr.items[300].str, "[PAD300]") && ds4_gguf_str_eq(merges->arr.items[1].str, "Ġ ab"));
    CHECK(ds4_gguf_arr_f64(types, 0, &t0) && t0 == 3 && ds4_gguf_arr_f64(types, 10, &t10) && t10 == 4);
    CHECK(ds4_gguf_arr_f64(types, 300, &t300) && t300 == 5);
    CHECK(ds4_gguf_get_str(f, "tokenizer.ggml.pre", &s) && ds4_gguf_str_eq(s, "deepseek-v3"));
    CHECK(ds4_gguf_get_str(f, "tokenizer.chat_template", &s) && s.len > 10);
    uint64_t bos;
    CHECK(ds4_gguf_get_u64(f, "tokenizer.ggml.bos_token_id", &bos) && bos == 0);
    ds4_gguf_close(f);
}

/* A deepseek4 GGUF with zero weights for config `c`; with `mtp`, llama.cpp's layout of
 * the next-token-prediction head: one more block, counted in block_count. */
static int write_micro_model(const char *path, const ds4_config *c, bool mtp) {
    gguf_writer *w = ds4_gguf_writer_open(path);
    ds4_config written = *c;
    if (mtp) written.n_layer++;
    if (!w || ds4_gguf_writer_kv_str(w, "general.architecture", DS4_ARCH) < 0 || ds4_config_to_gguf(&written, w) < 0 ||
        (mtp && ds4_gguf_writer_kv_u32(w, DS4_ARCH ".nextn_predict_layers", 1) < 0)) {
        if (w) ds4_gguf_writer_abort(w);
        return -1;
    }
    ds4_tensor_spec *specs;
    size_t n;
    if (ds4_expected_tensors(c, &specs, &n) < 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint32_t type = ds4_role_class(specs[i].role) == DS4_CLASS_INDEX ? GGML_TYPE_I32 : GGML_TYPE_F32;
        rc = ds4_gguf_writer_add_tensor(w, specs[i].name, type, specs[i].n_dims, specs[i].ne);
    }
    char mtp_name[GGUF_MAX_NAME];
    snprintf(mtp_name, sizeof mtp_name, "blk.%u.nextn.eh_proj.weight", c->n_layer);
    const uint64_t ne[2] = {2ull * c->n_embd, c->n_embd};
    if (mtp && rc == 0) rc = ds4_gguf_writer_add_tensor(w, mtp_name, GGML_TYPE_F32, 2, ne);
    static uint8_t zeros[1 << 16];
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = ds4_gguf_writer_write(w, zeros, 4 * specs[i].ne[0] * specs[i].ne[1] * specs[i].ne[2]);
    if (mtp && rc == 0) rc = ds4_gguf_writer_write(w, zeros, 4 * ne[0] * ne[1]);
    free(specs);
    if (rc < 0) {
        ds4_gguf_writer_abort(w);
        return -1;
    }
    return ds4_gguf_writer_finish(w);
}

/* A hand-made config survives metadata writing and reading field by field; the model
 * file (zero weights) becomes a fuzzing seed small enough to mutate quickly. */
static void config_metadata_round_trips(void) {
    ds4_config c = {.n_layer = 4, .n_embd = 32, .n_vocab = 40, .n_head = 2, .n_head_kv = 1, .head_dim = 16,
                    .value_dim = 16, .rope_dim = 4, .q_lora_rank = 8, .o_groups = 2, .o_lora_rank = 4,
                    .sliding_window = 4, .n_expert = 4, .n_expert_used = 2, .n_expert_shared = 1, .expert_ff = 8,
                    .n_hash_layers = 1, .gating_func = DS4_GATING_SQRT_SOFTPLUS, .hc_mult = 2,
                    .hc_sinkhorn_iters = 5, .indexer_heads = 2, .indexer_dim = 8, .indexer_topk = 2,
                    .context_length = 1024, .rope_orig_ctx = 64, .rms_eps = 1e-5f, .rope_base = 10000,
                    .compress_rope_base = 40000, .rope_scale = 4, .yarn_beta_fast = 32, .yarn_beta_slow = 1,
                    .expert_weights_scale = 2.5f, .hc_eps = 1e-6f, .expert_weights_norm = false,
                    .compress_ratio = {0, 4, 16, 2}, .kind = {DS4_LAYER_SWA, DS4_LAYER_CSA, DS4_LAYER_HCA, DS4_LAYER_CSA},
                    .swiglu_limit = {1, 2, 3, 4}, .swiglu_limit_shared = {5, 6, 7, 8}};
    CHECKF(ds4_config_check(&c) == 0, "%s", ds4_error());
    mkdir("build/tests/corpus", 0755);
    mkdir("build/tests/corpus/gguf", 0755);
    const char *path = "build/tests/corpus/gguf/micro-model.gguf";
    CHECKF(write_micro_model(path, &c, false) == 0, "%s", ds4_error());
    ds4_model *m = ds4_model_load(path);
    CHECKF(m, "%s", ds4_error());
    const ds4_config *r = &m->cfg;
    CHECK(r->n_layer == 4 && r->n_embd == 32 && r->n_vocab == 40 && r->head_dim == 16 && r->rope_dim == 4);
    CHECK(r->q_lora_rank == 8 && r->o_groups == 2 && r->o_lora_rank == 4 && r->sliding_window == 4);
    CHECK(r->n_expert == 4 && r->n_expert_used == 2 && r->expert_ff == 8 && r->n_hash_layers == 1);
    CHECK(r->hc_mult == 2 && r->hc_sinkhorn_iters == 5 && r->indexer_topk == 2 && r->context_length == 1024);
    CHECK(r->rope_orig_ctx == 64 && r->rms_eps == 1e-5f && r->compress_rope_base == 40000 && r->rope_scale == 4);
    CHECK(r->expert_weights_scale == 2.5f && !r->expert_weights_norm);
    for (int i = 0; i < 4; i++) {
        CHECKF(r->kind[i] == c.kind[i] && r->compress_ratio[i] == c.compress_ratio[i], "layer %d kind", i);
        CHECK(r->swiglu_limit[i] == c.swiglu_limit[i] && r->swiglu_limit_shared[i] == c.swiglu_limit_shared[i]);
    }
    CHECK(m->n_mtp_tensors == 0);
    ds4_model_free(m);
    /* llama.cpp's MTP block: counted in block_count, recognised and set aside. */
    const char *mtp = out_path("micro-mtp.gguf");
    CHECKF(write_micro_model(mtp, &c, true) == 0, "%s", ds4_error());
    m = ds4_model_load(mtp);
    CHECKF(m, "%s", ds4_error());
    CHECK(m->cfg.n_layer == 4 && m->n_mtp_tensors == 1);
    ds4_model_free(m);
}

static void canonical_names(void) {
    static const char *const cases[][2] = {
        {"model.layers.3.self_attn.compressor.indexer.scorer.weights_proj.weight", "layers.3.attn.indexer.weights_proj.weight"},
        {"model.layers.0.attn.norm.weight", "layers.0.attn.kv_norm.weight"},
        {"layers.7.attn.wq_b.weight_scale_inv", "layers.7.attn.wq_b.scale"},
        {"model.embed_tokens.weight", "embed.weight"},
        {"lm_head.weight", "head.weight"},
        {"layers.2.ffn.experts.5.w1.scale", "layers.2.ffn.experts.5.w1.scale"},
        {"model.layers.1.mlp.gate.tid2eid", "layers.1.ffn.gate.tid2eid"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(ds4_canonical_name(cases[i][0], out, sizeof out));
        CHECKF(!strcmp(out, cases[i][1]), "%s -> %s, expected %s", cases[i][0], out, cases[i][1]);
    }
    CHECK(!ds4_canonical_name("mtp.0.embed.weight", out, sizeof out));
}

const test_case convert_tests[] = {
    {"every_model_and_type_loads", every_model_and_type_loads},
    {"release_and_hf_layouts_agree", release_and_hf_layouts_agree},
    {"f32_values_match_checkpoint", f32_values_match_checkpoint},
    {"q8_0_within_half_a_step", q8_0_within_half_a_step},
    {"merged_in_memory_layout_converts", merged_in_memory_layout_converts},
    {"broken_checkpoint_is_reported", broken_checkpoint_is_reported},
    {"broken_gguf_is_reported", broken_gguf_is_reported},
    {"tied_embeddings", tied_embeddings},
    {"tokenizer_json_is_written", tokenizer_json_is_written},
    {"config_metadata_round_trips", config_metadata_round_trips},
    {"canonical_names", canonical_names},
    {0, 0},
};
