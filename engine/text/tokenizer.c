/* tokenizer.c - see tokenizer.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* The "deepseek-v3" pre-tokenizer: three Split stages, each keeping matches and the text
 * between them as separate pieces (tokenizers' "Isolated" behaviour). */
static const char *const pre_patterns[3] = {
    "\\p{N}{1,3}",
    "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

struct ds4_tokenizer {
    uint32_t n;
    char **text;         /* token strings as stored (byte-level for ordinary tokens) */
    int32_t *type;
    char **bytes;        /* decoded bytes of each token */
    uint32_t *n_bytes;
    ds4_strmap vocab;    /* token text -> id */
    ds4_strmap merges;   /* "left right" -> rank */
    char **merge_keys;
    size_t n_merges;
    int32_t *added;      /* ids of added tokens, longest text first */
    size_t n_added;
    bool starts_added[256]; /* some added token begins with this byte */
    pcre2_code *re[3];
    int32_t bos, eos;
    char byte_char[256][3]; /* byte -> its byte-level character (UTF-8, NUL-terminated) */
    int16_t cp_byte[512];   /* byte-level character (code point) -> byte, -1 if none */
};

/* GPT-2's byte-to-unicode map: printable bytes map to themselves, the rest to 256+k. */
static void build_byte_map(ds4_tokenizer *t) {
    int k = 0;
    for (int i = 0; i < 512; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)k++;
        t->cp_byte[cp] = (int16_t)b;
        char *o = t->byte_char[b];
        if (cp < 0x80) o[0] = (char)cp, o[1] = 0;
        else o[0] = (char)(0xC0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3F)), o[2] = 0;
    }
}

/* Inverse of the byte map for one token: byte-level text -> bytes. Characters outside
 * the map (not produced by byte-level encoding) are kept as their UTF-8. */
static char *decode_byte_level(const ds4_tokenizer *t, const char *s, uint32_t *out_len) {
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int cp = -1, l = 1;
        if (c < 0x80) cp = c;
        else if ((c & 0xE0) == 0xC0 && i + 1 < n) cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F), l = 2;
        if (cp >= 0 && cp < 512 && t->cp_byte[cp] >= 0) {
            out[o++] = (char)t->cp_byte[cp];
            i += (size_t)l;
        } else {
            out[o++] = s[i++];
        }
    }
    out[o] = 0;
    *out_len = (uint32_t)o;
    return out;
}

static int cmp_added_len(const void *a, const void *b, void *ctx) {
    const ds4_tokenizer *t = ctx;
    size_t la = t->n_bytes[*(const int32_t *)a], lb = t->n_bytes[*(const int32_t *)b];
    return la < lb ? 1 : la > lb ? -1 : *(const int32_t *)a - *(const int32_t *)b;
}

static ds4_tokenizer *from_vocab(const ds4_vocab_data *v, int32_t bos, int32_t eos) {
    ds4_tokenizer *t = ds4_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n = v->n;
    t->bos = bos;
    t->eos = eos;
    build_byte_map(t);
    t->text = ds4_calloc(v->n, sizeof *t->text);
    t->type = ds4_calloc(v->n, sizeof *t->type);
    t->bytes = ds4_calloc(v->n, sizeof *t->bytes);
    t->n_bytes = ds4_calloc(v->n, sizeof *t->n_bytes);
    t->added = ds4_calloc(v->n, sizeof *t->added);
    t->merge_keys = ds4_calloc(v->n_merges ? v->n_merges : 1, sizeof *t->merge_keys);
    if (!t->text || !t->type || !t->bytes || !t->n_bytes || !t->added || !t->merge_keys ||
        ds4_strmap_init(&t->vocab, v->n) < 0 || ds4_strmap_init(&t->merges, v->n_merges) < 0)
        goto fail;
    for (uint32_t i = 0; i < v->n; i++) {
        if (!(t->text[i] = strdup(v->tokens[i]))) goto fail;
        t->type[i] = v->types[i];
        bool added = v->types[i] == DS4_TOKEN_CONTROL || v->types[i] == DS4_TOKEN_USER_DEFINED;
        if (added) {
            t->bytes[i] = strdup(v->tokens[i]);
            t->n_bytes[i] = (uint32_t)strlen(v->tokens[i]);
            if (t->n_bytes[i]) t->added[t->n_added++] = (int32_t)i;
        } else {
            t->bytes[i] = decode_byte_level(t, v->tokens[i], &t->n_bytes[i]);
        }
        if (!t->bytes[i]) goto fail;
        if (ds4_strmap_put(&t->vocab, t->text[i], strlen(t->text[i]), i) < 0) goto fail;
    }
    for (size_t i = 0; i < v->n_merges; i++) {
        if (!(t->merge_keys[i] = strdup(v->merges[i]))) goto fail;
        t->n_merges++;
        if (ds4_strmap_put(&t->merges, t->merge_keys[i], strlen(t->merge_keys[i]), i) < 0) goto fail;
    }
    qsort_r(t->added, t->n_added, sizeof *t->added, cmp_added_len, t);
    for (size_t a = 0; a < t->n_added; a++) t->starts_added[(unsigned char)t->bytes[t->added[a]][0]] = true;
    for (int k = 0; k < 3; k++) {
        int err;
        PCRE2_SIZE off;
        t->re[k] = pcre2_compile((PCRE2_SPTR)pre_patterns[k], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
        if (!t->re[k]) {
            ds4_fail("pre-tokenizer regex %d does not compile (PCRE2 error %d)", k, err);
            goto fail;
        }
        pcre2_jit_compile(t->re[k], PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    }
    return t;
fail:
    ds4_tokenizer_free(t);
    return NULL;
}

void ds4_tokenizer_free(ds4_tokenizer *t) {
    if (!t) return;
    for (uint32_t i = 0; i < t->n; i++) {
        if (t->text) free(t->text[i]);
        if (t->bytes) free(t->bytes[i]);
    }
    for (size_t i = 0; i < t->n_merges; i++) free(t->merge_keys[i]);
    for (int k = 0; k < 3; k++) pcre2_code_free(t->re[k]);
    ds4_strmap_free(&t->vocab);
    ds4_strmap_free(&t->merges);
    free(t->text); free(t->type); free(t->bytes); free(t->n_bytes); free(t->added); free(t->merge_keys);
    free(t);
}

ds4_tokenizer *ds4_tokenizer_from_json(const char *path, const char *overlay) {
    ds4_vocab_data v;
    if (ds4_vocab_from_json(path, 0, &v) < 0) return NULL;
    if (overlay && ds4_vocab_add_tokens(&v, overlay) < 0) {
        ds4_vocab_data_free(&v);
        return NULL;
    }
    ds4_tokenizer *t = from_vocab(&v, -1, -1);
    if (t) {
        t->bos = ds4_token_id(t, "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
        t->eos = ds4_token_id(t, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
    }
    ds4_vocab_data_free(&v);
    return t;
}

ds4_tokenizer *ds4_tokenizer_if_any(const gguf_file *f) {
    return ds4_gguf_get(f, "tokenizer.ggml.model") ? ds4_tokenizer_from_gguf(f) : NULL;
}

ds4_tokenizer *ds4_tokenizer_from_gguf(const gguf_file *f) {
    gguf_str model, pre;
    if (!ds4_gguf_get_str(f, "tokenizer.ggml.model", &model)) {
        ds4_fail("%s: the model has no tokenizer (no tokenizer.ggml.model)", f->path);
        return NULL;
    }
    if (!ds4_gguf_str_eq(model, "gpt2")) {
        ds4_fail("%s: tokenizer model '%.*s' is not supported (byte-level BPE, 'gpt2')", f->path,
                 (int)(model.len > 32 ? 32 : model.len), model.ptr);
        return NULL;
    }
    if (ds4_gguf_get_str(f, "tokenizer.ggml.pre", &pre) && !ds4_gguf_str_eq(pre, "deepseek-v3") && !ds4_gguf_str_eq(pre, "joyai-llm")) {
        ds4_fail("%s: pre-tokenizer '%.*s' is not supported (deepseek-v3)", f->path, (int)(pre.len > 32 ? 32 : pre.len),
                 pre.ptr);
        return NULL;
    }
    const gguf_value *toks = ds4_gguf_get(f, "tokenizer.ggml.tokens"), *types = ds4_gguf_get(f, "tokenizer.ggml.token_type");
    const gguf_value *merges = ds4_gguf_get(f, "tokenizer.ggml.merges");
    if (!toks || toks->type != GGUF_TYPE_ARRAY || toks->arr.type != GGUF_TYPE_STRING || !merges ||
        merges->type != GGUF_TYPE_ARRAY || merges->arr.type != GGUF_TYPE_STRING) {
        ds4_fail("%s: tokenizer.ggml.tokens and .merges must be string arrays", f->path);
        return NULL;
    }
    ds4_vocab_data v = {0};
    ds4_tokenizer *t = NULL;
    if (toks->arr.n == 0 || toks->arr.n > (1u << 24)) {
        ds4_fail("%s: tokenizer.ggml.tokens has %llu entries", f->path, (unsigned long long)toks->arr.n);
        return NULL;
    }
    v.n = (uint32_t)toks->arr.n;
    v.tokens = ds4_calloc(v.n, sizeof *v.tokens);
    v.types = ds4_calloc(v.n, sizeof *v.types);
    v.merges = ds4_calloc(merges->arr.n ? merges->arr.n : 1, sizeof *v.merges);
    if (!v.tokens || !v.types || !v.merges) goto done;
    for (uint32_t i = 0; i < v.n; i++) {
        const gguf_str *s = &toks->arr.items[i].str;
        if (memchr(s->ptr, 0, s->len)) {
            ds4_fail("%s: token %u contains a NUL byte", f->path, i);
            goto done;
        }
        if (!(v.tokens[i] = ds4_strndup(s->ptr, s->len))) goto done;
        uint64_t ty = DS4_TOKEN_NORMAL;
        if (types && !ds4_gguf_arr_u64(types, i, &ty)) ty = DS4_TOKEN_NORMAL;
        v.types[i] = (int32_t)ty;
    }
    for (uint64_t i = 0; i < merges->arr.n; i++) {
        const gguf_str *s = &merges->arr.items[i].str;
        if (!(v.merges[i] = ds4_strndup(s->ptr, s->len))) goto done;
        v.n_merges++;
    }
    uint64_t bos = UINT64_MAX, eos = UINT64_MAX;
    ds4_gguf_get_u64(f, "tokenizer.ggml.bos_token_id", &bos);
    ds4_gguf_get_u64(f, "tokenizer.ggml.eos_token_id", &eos);
    t = from_vocab(&v, bos < v.n ? (int32_t)bos : -1, eos < v.n ? (int32_t)eos : -1);
    if (!t) ds4_error_prefix(f->path);
done:
    ds4_vocab_data_free(&v);
    return t;
}

/* ---- encoding ---- */

typedef struct { int32_t **ids; size_t *n, cap; } id_out;

static int push_id(id_out *o, int32_t id) {
    if (*o->n == o->cap || !*o->ids) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(*o->ids, cap * sizeof *p);
        if (!p) return ds4_fail("out of memory");
        *o->ids = p;
        o->cap = cap;
    }
    (*o->ids)[(*o->n)++] = id;
    return 0;
}

/* BPE on one pre-tokenized piece: byte-level characters, then repeatedly merge the
 * adjacent pair of lowest rank (leftmost first). */
static int bpe(const ds4_tokenizer *t, const char *piece, size_t len, id_out *o) {
    size_t cap = len * 2 + 1;
    char *s = malloc(cap);
    size_t *start = malloc((len + 1) * sizeof *start), *slen = malloc((len + 1) * sizeof *slen);
    char *key = malloc(cap + 2);
    int rc = -1;
    if (!s || !start || !slen || !key) {
        ds4_fail("out of memory");
        goto done;
    }
    size_t n = 0, pos = 0;
    for (size_t i = 0; i < len; i++) {
        const char *c = t->byte_char[(unsigned char)piece[i]];
        size_t l = strlen(c);
        memcpy(s + pos, c, l);
        start[n] = pos;
        slen[n++] = l;
        pos += l;
    }
    for (;;) {
        uint64_t best = UINT64_MAX;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            size_t kl = slen[i] + 1 + slen[i + 1];
            memcpy(key, s + start[i], slen[i]);
            key[slen[i]] = ' ';
            memcpy(key + slen[i] + 1, s + start[i + 1], slen[i + 1]);
            uint64_t rank;
            if (ds4_strmap_get(&t->merges, key, kl, &rank) && rank < best) best = rank, at = i;
        }
        if (best == UINT64_MAX) break;
        slen[at] += slen[at + 1]; /* symbols are adjacent in s */
        memmove(start + at + 1, start + at + 2, (n - at - 2) * sizeof *start);
        memmove(slen + at + 1, slen + at + 2, (n - at - 2) * sizeof *slen);
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t id;
        if (ds4_strmap_get(&t->vocab, s + start[i], slen[i], &id)) {
            if (push_id(o, (int32_t)id) < 0) goto done;
            continue;
        }
        /* Not in the vocabulary (cannot happen with a complete byte-level vocab): its bytes. */
        for (size_t b = start[i]; b < start[i] + slen[i];) {
            size_t l = ((unsigned char)s[b] >= 0xC0) ? 2 : 1;
            if (!ds4_strmap_get(&t->vocab, s + b, l, &id)) {
                ds4_fail("the vocabulary lacks a byte-level character");
                goto done;
            }
            if (push_id(o, (int32_t)id) < 0) goto done;
            b += l;
        }
    }
    rc = 0;
done:
    free(s); free(start); free(slen); free(key);
    return rc;
}

/* Split [text, text+len) with pre-tokenizer stage k and pass each piece on. */
static int pre_split(const ds4_tokenizer *t, int k, const char *text, size_t len, id_out *o) {
    if (!len) return 0;
    if (k == 3) return bpe(t, text, len, o);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re[k], NULL);
    if (!md) return ds4_fail("out of memory");
    size_t pos = 0, last = 0;
    int rc = 0;
    while (pos <= len && rc == 0) {
        int m = pcre2_match(t->re[k], (PCRE2_SPTR)text, len, pos, 0, md, NULL);
        if (m < 0) break; /* no more matches (or a match error: keep the rest whole) */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e == s) { /* empty match: step over one character */
            pos = e + 1;
            while (pos < len && ((unsigned char)text[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (s > last) rc = pre_split(t, k + 1, text + last, s - last, o);
        if (rc == 0) rc = pre_split(t, k + 1, text + s, e - s, o);
        last = pos = e;
    }
    pcre2_match_data_free(md);
    if (rc == 0 && last < len) rc = pre_split(t, k + 1, text + last, len - last, o);
    return rc;
}

int ds4_tokenize(const ds4_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids, size_t *n) {
    id_out o = {ids, n, *ids ? *n : 0};
    if (*ids) o.cap = *n; /* unknown capacity: grow on the next push */
    size_t seg = 0, i = 0;
    while (i < len) {
        int32_t hit = -1;
        if (parse_special && t->starts_added[(unsigned char)text[i]])
            for (size_t a = 0; a < t->n_added && hit < 0; a++) {
                int32_t id = t->added[a];
                if (t->n_bytes[id] <= len - i && !memcmp(text + i, t->bytes[id], t->n_bytes[id])) hit = id;
            }
        if (hit < 0) {
            i++;
            continue;
        }
        if (pre_split(t, 0, text + seg, i - seg, &o) < 0 || push_id(&o, hit) < 0) return -1;
        i += t->n_bytes[hit];
        seg = i;
    }
    return pre_split(t, 0, text + seg, len - seg, &o);
}

/* ---- decoding ---- */

uint64_t ds4_tokenizer_hash(const ds4_tokenizer *t) {
    uint64_t h = ds4_fnv1a(DS4_FNV_START, &t->n, sizeof t->n);
    for (uint32_t i = 0; i < t->n; i++) {
        h = ds4_fnv1a(h, &t->n_bytes[i], sizeof t->n_bytes[i]);
        h = ds4_fnv1a(h, t->bytes[i], t->n_bytes[i]);
        h = ds4_fnv1a(h, &t->type[i], sizeof t->type[i]);
    }
    return ds4_fnv1a(h, &t->bos, sizeof t->bos);
}

int ds4_token_bytes(const ds4_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
    if (id < 0 || (uint32_t)id >= t->n) return ds4_fail("token id %d is outside the vocabulary (0..%u)", id, t->n - 1);
    *bytes = t->bytes[id];
    *len = t->n_bytes[id];
    return 0;
}

int ds4_detokenize(const ds4_tokenizer *t, const int32_t *ids, size_t n, bool show_special, ds4_buf *out) {
    for (size_t i = 0; i < n; i++) {
        const char *b = NULL;
        size_t l = 0;
        if (ds4_token_bytes(t, ids[i], &b, &l) < 0) return -1;
        if (!show_special && t->type[ids[i]] == DS4_TOKEN_CONTROL) continue;
        if (ds4_buf_append(out, b, l) < 0) return -1;
    }
    return 0;
}

size_t ds4_utf8_complete(const char *buf, size_t len) {
    /* Look back at most 3 bytes for the start of a character that is not finished. */
    for (size_t back = 1; back <= 4 && back <= len; back++) {
        unsigned char c = (unsigned char)buf[len - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back && c >= 0xC0 ? len - back : len;
    }
    return len;
}

int32_t ds4_token_id(const ds4_tokenizer *t, const char *text) {
    uint64_t id;
    return ds4_strmap_get(&t->vocab, text, strlen(text), &id) ? (int32_t)id : -1;
}

int32_t ds4_token_from_bytes(const ds4_tokenizer *t, const char *bytes, size_t len) {
    char *s = malloc(len * 2 + 1);
    if (!s) return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        const char *c = t->byte_char[(unsigned char)bytes[i]];
        size_t l = strlen(c);
        memcpy(s + o, c, l);
        o += l;
    }
    uint64_t id;
    bool found = ds4_strmap_get(&t->vocab, s, o, &id) || ds4_strmap_get(&t->vocab, bytes, len, &id);
    free(s);
    return found ? (int32_t)id : -1;
}

uint32_t ds4_tokenizer_size(const ds4_tokenizer *t) { return t->n; }
int32_t ds4_tokenizer_bos(const ds4_tokenizer *t) { return t->bos; }
int32_t ds4_tokenizer_eos(const ds4_tokenizer *t) { return t->eos; }
