/* recipe.c - see recipe.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "recipe.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "quants.h"
#include "util.h"

typedef struct {
    pcre2_code *re;
    uint32_t type;
    char pattern[128]; /* as given, for messages */
} override;

struct ds4_recipe {
    char name[8];
    uint32_t experts[3]; /* gate, up, down of the routed experts */
    uint32_t matrix;     /* other weight matrices */
    uint32_t small;      /* mixers, compressor, indexer, router */
    uint32_t embd;       /* token embedding */
    override *overrides;
    size_t n_overrides;
};

static const struct {
    const char *name;
    uint32_t gate, up, down, matrix, small, embd, file_type; /* file_type: llama.cpp's llama_ftype */
} recipes[] = {
    {"q2", GGML_TYPE_IQ2_XXS, GGML_TYPE_IQ2_XXS, GGML_TYPE_Q2_K, GGML_TYPE_Q8_0, GGML_TYPE_F16, GGML_TYPE_F16, 19},
    {"q4", GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q8_0, GGML_TYPE_F16, GGML_TYPE_F16, 15},
    {"mxfp4", GGML_TYPE_MXFP4, GGML_TYPE_MXFP4, GGML_TYPE_MXFP4, GGML_TYPE_Q8_0, GGML_TYPE_F16, GGML_TYPE_F16, 38},
    {"q8", GGML_TYPE_Q8_0, GGML_TYPE_Q8_0, GGML_TYPE_Q8_0, GGML_TYPE_Q8_0, GGML_TYPE_F16, GGML_TYPE_Q8_0, 7},
    {"f16", GGML_TYPE_F16, GGML_TYPE_F16, GGML_TYPE_F16, GGML_TYPE_F16, GGML_TYPE_F16, GGML_TYPE_F16, 1},
    {"bf16", GGML_TYPE_BF16, GGML_TYPE_BF16, GGML_TYPE_BF16, GGML_TYPE_BF16, GGML_TYPE_BF16, GGML_TYPE_BF16, 32},
    {"f32", GGML_TYPE_F32, GGML_TYPE_F32, GGML_TYPE_F32, GGML_TYPE_F32, GGML_TYPE_F32, GGML_TYPE_F32, 0},
};

static int recipe_index(const char *name) {
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        if (!strcmp(recipes[i].name, name)) return (int)i;
    return -1;
}

ds4_recipe *ds4_recipe_new(const char *name) {
    const int i = recipe_index(name);
    if (i < 0) {
        ds4_fail("unknown recipe '%s' (q2, q4, mxfp4, q8, f16, bf16, f32)", name);
        return NULL;
    }
    ds4_recipe *r = ds4_calloc(1, sizeof *r);
    if (!r) return NULL;
    snprintf(r->name, sizeof r->name, "%s", recipes[i].name);
    r->experts[0] = recipes[i].gate;
    r->experts[1] = recipes[i].up;
    r->experts[2] = recipes[i].down;
    r->matrix = recipes[i].matrix;
    r->small = recipes[i].small;
    r->embd = recipes[i].embd;
    return r;
}

int ds4_recipe_add_override(ds4_recipe *r, const char *spec) {
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec) return ds4_fail("override '%s' is not REGEX=TYPE", spec);
    const int type = ds4_type_from_name(eq + 1);
    if (type < 0 || !ds4_quantize_supported((uint32_t)type))
        return ds4_fail("override '%s': '%s' is not a type ds4-quant writes", spec, eq + 1);
    int err;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)spec, (PCRE2_SIZE)(eq - spec), 0, &err, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ds4_fail("override '%s': bad regex at offset %zu: %s", spec, (size_t)at, (const char *)msg);
    }
    override *grown = realloc(r->overrides, (r->n_overrides + 1) * sizeof *grown);
    if (!grown) {
        pcre2_code_free(re);
        return ds4_fail("out of memory");
    }
    r->overrides = grown;
    override *o = &r->overrides[r->n_overrides++];
    *o = (override){re, (uint32_t)type, ""};
    snprintf(o->pattern, sizeof o->pattern, "%.*s", (int)(eq - spec), spec);
    return 0;
}

void ds4_recipe_free(ds4_recipe *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_overrides; i++) pcre2_code_free(r->overrides[i].re);
    free(r->overrides);
    free(r);
}


uint32_t ds4_recipe_file_type(const ds4_recipe *r) { return recipes[recipe_index(r->name)].file_type; }

static bool matches(const override *o, const char *name) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(o->re, NULL);
    const int rc = md ? pcre2_match(o->re, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    return rc >= 0;
}

uint32_t ds4_recipe_type(const ds4_recipe *r, const ds4_tensor_spec *s, bool *fell_back) {
    uint32_t type;
    switch (ds4_role_class(s->role)) {
    case DS4_CLASS_VECTOR: return GGML_TYPE_F32;
    case DS4_CLASS_INDEX: return GGML_TYPE_I32;
    case DS4_CLASS_SMALL: type = r->small; break;
    case DS4_CLASS_EXPERTS:
        type = r->experts[s->role == DS4_T_FFN_GATE_EXPS ? 0 : s->role == DS4_T_FFN_UP_EXPS ? 1 : 2];
        break;
    default: type = s->role == DS4_T_TOKEN_EMBD ? r->embd : r->matrix; break;
    }
    for (size_t i = 0; i < r->n_overrides; i++)
        if (matches(&r->overrides[i], s->name)) type = r->overrides[i].type;
    if (fell_back) *fell_back = !ds4_row_size(type, s->ne[0]);
    if (!ds4_row_size(type, s->ne[0])) type = ds4_row_size(GGML_TYPE_Q8_0, s->ne[0]) ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
    return type;
}

int ds4_recipe_check_overrides(const ds4_recipe *r, const ds4_tensor_spec *specs, size_t n) {
    for (size_t i = 0; i < r->n_overrides; i++) {
        bool used = false;
        for (size_t k = 0; k < n && !used; k++) used = matches(&r->overrides[i], specs[k].name);
        if (!used) return ds4_fail("--type-for '%s' matches no tensor of this model", r->overrides[i].pattern);
    }
    return 0;
}

static const char *const class_names[6] = {"routed experts gate", "routed experts up", "routed experts down",
                                           "other weight matrices", "small matrices + embedding", "vectors, tables"};

int ds4_recipe_plan(const ds4_recipe *r, const ds4_config *c, ds4_size_plan *p) {
    memset(p, 0, sizeof *p);
    ds4_tensor_spec *specs;
    size_t n;
    if (ds4_expected_tensors(c, &specs, &n) < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        const ds4_tensor_spec *s = &specs[i];
        const uint32_t type = ds4_recipe_type(r, s, NULL);
        const uint64_t elems = s->ne[0] * s->ne[1] * s->ne[2] * s->ne[3];
        const uint64_t bytes = type == GGML_TYPE_I32 ? elems * 4 : ds4_row_size(type, s->ne[0]) * (elems / s->ne[0]);
        const ds4_tensor_class cls = ds4_role_class(s->role);
        int k;
        uint64_t per_token = bytes;
        if (cls == DS4_CLASS_EXPERTS) {
            k = s->role == DS4_T_FFN_GATE_EXPS ? 0 : s->role == DS4_T_FFN_UP_EXPS ? 1 : 2;
            per_token = bytes / c->n_expert * c->n_expert_used;
        } else if (s->role == DS4_T_TOKEN_EMBD) {
            k = 4;
            per_token = bytes / s->ne[1];
        } else {
            k = cls == DS4_CLASS_MATRIX ? 3 : cls == DS4_CLASS_SMALL ? 4 : 5;
        }
        p->class_bytes[k] += bytes;
        p->class_params[k] += elems;
        p->bytes += bytes;
        p->params += elems;
        p->bytes_per_token += per_token;
    }
    free(specs);
    return 0;
}

void ds4_size_plan_print(const ds4_size_plan *p, const ds4_recipe *r, const ds4_config *c, FILE *out) {
    ds4_tensor_spec probe[3] = {{.role = DS4_T_FFN_GATE_EXPS, .ne = {c->n_embd, c->expert_ff, c->n_expert, 1}},
                                {.role = DS4_T_FFN_UP_EXPS, .ne = {c->n_embd, c->expert_ff, c->n_expert, 1}},
                                {.role = DS4_T_FFN_DOWN_EXPS, .ne = {c->expert_ff, c->n_embd, c->n_expert, 1}}};
    fprintf(out, "recipe %s: routed experts gate %s, up %s, down %s\n", r->name,
            ds4_type_name(ds4_recipe_type(r, &probe[0], NULL)), ds4_type_name(ds4_recipe_type(r, &probe[1], NULL)),
            ds4_type_name(ds4_recipe_type(r, &probe[2], NULL)));
    fprintf(out, "%-28s %16s %16s %10s %8s\n", "weight class", "parameters", "bytes", "GiB", "bits/w");
    for (int k = 0; k < 6; k++)
        fprintf(out, "%-28s %16llu %16llu %10.2f %8.3f\n", class_names[k], (unsigned long long)p->class_params[k],
                (unsigned long long)p->class_bytes[k], (double)p->class_bytes[k] / (1u << 30),
                p->class_params[k] ? 8.0 * (double)p->class_bytes[k] / (double)p->class_params[k] : 0.0);
    fprintf(out, "%-28s %16llu %16llu %10.2f %8.3f\n", "total", (unsigned long long)p->params,
            (unsigned long long)p->bytes, (double)p->bytes / (1u << 30), 8.0 * (double)p->bytes / (double)p->params);
    fprintf(out, "weights read per decoded token: %llu bytes (%.2f GiB; %u of %u routed experts per layer)\n",
            (unsigned long long)p->bytes_per_token, (double)p->bytes_per_token / (1u << 30), c->n_expert_used,
            c->n_expert);
}
