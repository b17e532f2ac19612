/* hf_tokenizer.c - see hf_tokenizer.h. */
#include "hf_tokenizer.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_object *parse_json_file(const char *path) {
    char *text = ds4_read_file(path, NULL);
    if (!text) return NULL;
    json_object *o = json_tokener_parse(text);
    free(text);
    if (!o) ds4_fail("%s: not valid JSON", path);
    return o;
}

static json_object *member(json_object *o, const char *key) {
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static int set_token(ds4_vocab_data *v, int64_t id, const char *text, int32_t type, const char *path) {
    if (id < 0 || id >= (int64_t)v->n) return ds4_fail("%s: token id %lld is out of range", path, (long long)id);
    if (v->tokens[id]) {
        if (strcmp(v->tokens[id], text)) return ds4_fail("%s: token id %lld is given twice", path, (long long)id);
        v->types[id] = type; /* an added token that repeats a vocab entry */
        return 0;
    }
    if (!(v->tokens[id] = strdup(text))) return ds4_fail("out of memory");
    v->types[id] = type;
    return 0;
}

void ds4_vocab_data_free(ds4_vocab_data *v) {
    for (uint32_t i = 0; v->tokens && i < v->n; i++) free(v->tokens[i]);
    for (size_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

int ds4_vocab_from_json(const char *path, uint32_t n_min, ds4_vocab_data *v) {
    memset(v, 0, sizeof *v);
    json_object *root = parse_json_file(path);
    if (!root) return -1;
    json_object *model = member(root, "model"), *tv = member(model, "vocab"), *merges = member(model, "merges");
    json_object *added = member(root, "added_tokens");
    const char *type = json_object_get_string(member(model, "type"));
    int rc = -1;
    if (!type || strcmp(type, "BPE") || !tv || !json_object_is_type(tv, json_type_object)) {
        ds4_fail("%s: only byte-level BPE tokenizers are supported", path);
        goto done;
    }
    /* The vocabulary covers every id used, and at least n_min. */
    int64_t max_id = -1;
    json_object_object_foreach(tv, t0, id0) {
        (void)t0;
        if (!json_object_is_type(id0, json_type_int)) {
            ds4_fail("%s: a vocab id is not an integer", path);
            goto done;
        }
        if (json_object_get_int64(id0) > max_id) max_id = json_object_get_int64(id0);
    }
    for (size_t i = 0; added && i < json_object_array_length(added); i++) {
        int64_t id = json_object_get_int64(member(json_object_array_get_idx(added, i), "id"));
        if (id > max_id) max_id = id;
    }
    if (max_id >= (1 << 24)) {
        ds4_fail("%s: token id %lld is implausibly large", path, (long long)max_id);
        goto done;
    }
    v->n = (uint32_t)(max_id + 1) > n_min ? (uint32_t)(max_id + 1) : n_min;
    v->tokens = ds4_calloc(v->n, sizeof *v->tokens);
    v->types = ds4_calloc(v->n, sizeof *v->types);
    if (!v->tokens || !v->types) goto done;
    json_object_object_foreach(tv, text, idobj)
        if (set_token(v, json_object_get_int64(idobj), text, DS4_TOKEN_NORMAL, path) < 0) goto done;
    for (size_t i = 0; added && i < json_object_array_length(added); i++) {
        json_object *t = json_object_array_get_idx(added, i), *id = member(t, "id"), *content = member(t, "content");
        if (!id || !content || !json_object_is_type(content, json_type_string)) {
            ds4_fail("%s: added_tokens[%zu] needs id and content", path, i);
            goto done;
        }
        bool special = json_object_get_boolean(member(t, "special"));
        if (set_token(v, json_object_get_int64(id), json_object_get_string(content),
                      special ? DS4_TOKEN_CONTROL : DS4_TOKEN_USER_DEFINED, path) < 0)
            goto done;
    }
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->tokens[i]) continue;
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%u]", i);
        if (!(v->tokens[i] = strdup(buf))) goto done;
        v->types[i] = DS4_TOKEN_UNUSED;
    }
    size_t nm = merges && json_object_is_type(merges, json_type_array) ? json_object_array_length(merges) : 0;
    v->merges = ds4_calloc(nm, sizeof *v->merges);
    if (!v->merges) goto done;
    for (size_t i = 0; i < nm; i++) {
        json_object *m = json_object_array_get_idx(merges, i);
        char *s = NULL;
        if (json_object_is_type(m, json_type_string)) {
            s = strdup(json_object_get_string(m));
        } else if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2) {
            /* newer tokenizers store merges as pairs */
            const char *a = json_object_get_string(json_object_array_get_idx(m, 0));
            const char *b = json_object_get_string(json_object_array_get_idx(m, 1));
            if (a && b && (s = malloc(strlen(a) + strlen(b) + 2))) sprintf(s, "%s %s", a, b);
        }
        if (!s) {
            ds4_fail("%s: merges[%zu] is malformed", path, i);
            goto done;
        }
        v->merges[v->n_merges++] = s;
    }
    rc = 0;
done:
    json_object_put(root);
    if (rc < 0) ds4_vocab_data_free(v);
    return rc;
}

int ds4_vocab_add_tokens(ds4_vocab_data *v, const char *path) {
    json_object *root = parse_json_file(path);
    if (!root) return -1;
    int rc = 0;
    if (!json_object_is_type(root, json_type_array)) rc = ds4_fail("%s: expected a JSON array of tokens", path);
    for (size_t i = 0; rc == 0 && i < json_object_array_length(root); i++) {
        json_object *t = json_object_array_get_idx(root, i), *id = member(t, "id"), *content = member(t, "content");
        if (!id || !json_object_is_type(id, json_type_int) || !content || !json_object_is_type(content, json_type_string)) {
            rc = ds4_fail("%s: entry %zu needs an integer id and a content string", path, i);
            break;
        }
        int64_t k = json_object_get_int64(id);
        if (k < 0 || k >= (int64_t)v->n) {
            rc = ds4_fail("%s: token id %lld is outside the vocabulary of %u", path, (long long)k, v->n);
            break;
        }
        char *text = strdup(json_object_get_string(content));
        if (!text) { rc = ds4_fail("out of memory"); break; }
        free(v->tokens[k]);
        v->tokens[k] = text;
        v->types[k] = json_object_get_boolean(member(t, "special")) ? DS4_TOKEN_CONTROL : DS4_TOKEN_USER_DEFINED;
    }
    json_object_put(root);
    return rc;
}

int ds4_vocab_write_gguf(const ds4_vocab_data *v, gguf_writer *w) {
    if (ds4_gguf_writer_kv_str(w, "tokenizer.ggml.model", "gpt2") < 0 ||
        ds4_gguf_writer_kv_str(w, "tokenizer.ggml.pre", "deepseek-v3") < 0 ||
        ds4_gguf_writer_kv_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, v->n) < 0 ||
        ds4_gguf_writer_kv_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types, v->n) < 0 ||
        ds4_gguf_writer_kv_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, v->n_merges) < 0)
        return -1;
    return 0;
}

int ds4_tokenizer_to_gguf(const char *dir, gguf_writer *w, uint32_t n_vocab, int64_t bos_id, int64_t eos_id,
                          const char *overlay) {
    char path[PATH_MAX], cfg_path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, R_OK) != 0) return 0;
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    ds4_vocab_data v;
    if (ds4_vocab_from_json(path, n_vocab, &v) < 0) return -1;
    if (overlay && ds4_vocab_add_tokens(&v, overlay) < 0) {
        ds4_vocab_data_free(&v);
        return -1;
    }
    json_object *cfg = access(cfg_path, R_OK) == 0 ? parse_json_file(cfg_path) : NULL;
    int rc = -1;
    if (v.n != n_vocab) {
        ds4_fail("%s: %u tokens, but the model's vocabulary has %u", path, v.n, n_vocab);
        goto done;
    }
    if (ds4_vocab_write_gguf(&v, w) < 0) goto done;
    if (bos_id >= 0 && ds4_gguf_writer_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos_id) < 0) goto done;
    if (eos_id >= 0 && ds4_gguf_writer_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos_id) < 0) goto done;
    json_object *tmpl = member(cfg, "chat_template"), *add_bos = member(cfg, "add_bos_token");
    if (tmpl && json_object_is_type(tmpl, json_type_string) &&
        ds4_gguf_writer_kv_str(w, "tokenizer.chat_template", json_object_get_string(tmpl)) < 0)
        goto done;
    if (add_bos && json_object_is_type(add_bos, json_type_boolean) &&
        ds4_gguf_writer_kv_bool(w, "tokenizer.ggml.add_bos_token", json_object_get_boolean(add_bos)) < 0)
        goto done;
    rc = 1;
done:
    ds4_vocab_data_free(&v);
    if (cfg) json_object_put(cfg);
    return rc;
}
