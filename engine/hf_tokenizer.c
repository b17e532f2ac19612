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

typedef struct {
    const char **tokens;
    int32_t *types;
    char **merges;
    size_t n_merges;
    uint32_t n;
} vocab;

static int set_token(vocab *v, int64_t id, const char *text, int32_t type, const char *path) {
    if (id < 0 || id >= (int64_t)v->n)
        return ds4_fail("%s: token id %lld is outside the model's vocabulary of %u", path, (long long)id, v->n);
    if (v->tokens[id] && strcmp(v->tokens[id], text))
        return ds4_fail("%s: token id %lld is given twice", path, (long long)id);
    v->tokens[id] = text;
    v->types[id] = type;
    return 0;
}

static int read_vocab(vocab *v, json_object *root, const char *path) {
    json_object *model = member(root, "model"), *tv = member(model, "vocab"), *merges = member(model, "merges");
    const char *type = json_object_get_string(member(model, "type"));
    if (!type || strcmp(type, "BPE") || !tv || !json_object_is_type(tv, json_type_object))
        return ds4_fail("%s: only byte-level BPE tokenizers are supported", path);
    json_object_object_foreach(tv, text, idobj) {
        if (!json_object_is_type(idobj, json_type_int)) return ds4_fail("%s: vocab id of '%.40s' is not an integer", path, text);
        if (set_token(v, json_object_get_int64(idobj), text, DS4_TOKEN_NORMAL, path) < 0) return -1;
    }
    json_object *added = member(root, "added_tokens");
    for (size_t i = 0; added && i < json_object_array_length(added); i++) {
        json_object *t = json_object_array_get_idx(added, i), *id = member(t, "id"), *content = member(t, "content");
        if (!id || !content || !json_object_is_type(content, json_type_string))
            return ds4_fail("%s: added_tokens[%zu] needs id and content", path, i);
        bool special = json_object_get_boolean(member(t, "special"));
        if (set_token(v, json_object_get_int64(id), json_object_get_string(content),
                      special ? DS4_TOKEN_CONTROL : DS4_TOKEN_USER_DEFINED, path) < 0)
            return -1;
    }
    size_t nm = merges && json_object_is_type(merges, json_type_array) ? json_object_array_length(merges) : 0;
    v->merges = ds4_calloc(nm, sizeof *v->merges);
    if (!v->merges) return -1;
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
        if (!s) return ds4_fail("%s: merges[%zu] is malformed", path, i);
        v->merges[v->n_merges++] = s;
    }
    return 0;
}

int ds4_tokenizer_to_gguf(const char *dir, gguf_writer *w, uint32_t n_vocab, int64_t bos_id, int64_t eos_id) {
    char path[PATH_MAX], cfg_path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, R_OK) != 0) return 0;
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    json_object *root = parse_json_file(path);
    json_object *cfg = access(cfg_path, R_OK) == 0 ? parse_json_file(cfg_path) : NULL;
    vocab v = {.n = n_vocab};
    char **pads = NULL;
    int rc = -1;
    if (!root) goto done;
    v.tokens = ds4_calloc(n_vocab, sizeof *v.tokens);
    v.types = ds4_calloc(n_vocab, sizeof *v.types);
    pads = ds4_calloc(n_vocab, sizeof *pads);
    if (!v.tokens || !v.types || !pads || read_vocab(&v, root, path) < 0) goto done;
    for (uint32_t i = 0; i < n_vocab; i++) {
        if (v.tokens[i]) continue;
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%u]", i);
        if (!(pads[i] = strdup(buf))) goto done;
        v.tokens[i] = pads[i];
        v.types[i] = DS4_TOKEN_UNUSED;
    }
    if (gguf_writer_kv_str(w, "tokenizer.ggml.model", "gpt2") < 0 ||
        gguf_writer_kv_str(w, "tokenizer.ggml.pre", "deepseek-v3") < 0 ||
        gguf_writer_kv_arr_str(w, "tokenizer.ggml.tokens", v.tokens, n_vocab) < 0 ||
        gguf_writer_kv_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.types, n_vocab) < 0 ||
        gguf_writer_kv_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, v.n_merges) < 0)
        goto done;
    if (bos_id >= 0 && gguf_writer_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos_id) < 0) goto done;
    if (eos_id >= 0 && gguf_writer_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos_id) < 0) goto done;
    json_object *tmpl = member(cfg, "chat_template"), *add_bos = member(cfg, "add_bos_token");
    if (tmpl && json_object_is_type(tmpl, json_type_string) &&
        gguf_writer_kv_str(w, "tokenizer.chat_template", json_object_get_string(tmpl)) < 0)
        goto done;
    if (add_bos && json_object_is_type(add_bos, json_type_boolean) &&
        gguf_writer_kv_bool(w, "tokenizer.ggml.add_bos_token", json_object_get_boolean(add_bos)) < 0)
        goto done;
    rc = 1;
done:
    for (size_t i = 0; i < v.n_merges; i++) free(v.merges[i]);
    if (pads)
        for (uint32_t i = 0; i < n_vocab; i++) free(pads[i]);
    free(pads);
    free(v.merges);
    free(v.tokens);
    free(v.types);
    if (root) json_object_put(root);
    if (cfg) json_object_put(cfg);
    return rc;
}
