/* batch.c - see batch.h. */
#include "batch.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat.h"
#include "sampler.h"
#include "util.h"

#define PREFILL_PERIOD 8192 /* prompt tokens between cache saves of a long prefill */
#define MIN_SHARED 16       /* leading ids shared with the request before worth a saved state */
#define MAX_STOPS 8

typedef struct {
    const ds4_model *m;
    const ds4_tokenizer *tok;
    const ds4_batch_opts *o;
    ds4_ctx *ctx;
    float *logits, *probs;
    int32_t *idx;
    int32_t *prev;    /* the previous request's prompt */
    uint64_t n_prev;
    ds4_strmap done;  /* keys of requests already in the output */
    ds4_arena keys;   /* their bytes */
    int fd;
    ds4_buf csv;
} job;

/* One request, parsed. */
typedef struct {
    json_object *obj, *id, *messages;
    const char *key; /* identifies the request in the output */
    char key_buf[64];
    const char *prompt;
    int32_t *ids;
    uint64_t n_ids, stable;
    int max_tokens;
    float temperature, top_p;
    uint64_t seed;
    bool think;
    const char *stops[MAX_STOPS];
    int n_stops;
} request;

static int fail_req(char *err, size_t size, const char *msg) {
    snprintf(err, size, "%s", msg);
    return -1;
}

static bool get_number(json_object *o, const char *k, double *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null)) return false;
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
        *out = NAN;
        return true;
    }
    *out = json_object_get_double(v);
    return true;
}

/* Tokens of the leading system/developer messages as the template renders them, when
 * they begin the whole prompt: the prefix other requests share. */
static uint64_t system_prefix(const job *j, const request *r, const ds4_chat_opts *opts) {
    const size_t n = json_object_array_length(r->messages);
    size_t k = 0;
    while (k < n) {
        json_object *role;
        if (!json_object_object_get_ex(json_object_array_get_idx(r->messages, k), "role", &role)) break;
        const char *s = json_object_get_string(role);
        if (!s || (strcmp(s, "system") && strcmp(s, "developer"))) break;
        k++;
    }
    if (k == 0 || k == n) return 0;
    json_object *head = json_object_new_array();
    for (size_t i = 0; i < k; i++) json_object_array_add(head, json_object_get(json_object_array_get_idx(r->messages, i)));
    ds4_chat_opts o = *opts;
    o.add_generation_prompt = false;
    ds4_buf text = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    uint64_t stable = 0;
    if (ds4_chat_render(head, &o, &text) == 0 &&
        ds4_tokenize(j->tok, (const char *)text.data, text.len, true, &ids, &n_ids) == 0 && n_ids < r->n_ids &&
        !memcmp(ids, r->ids, n_ids * sizeof *ids))
        stable = n_ids;
    free(ids);
    ds4_buf_free(&text);
    json_object_put(head);
    return stable;
}

/* Parse and tokenize one input line; -1 with a message in err. */
static int parse_request(job *j, const char *line, size_t len, uint64_t lineno, request *r, char *err,
                         size_t esize) {
    memset(r, 0, sizeof *r);
    snprintf(r->key_buf, sizeof r->key_buf, "line:%llu", (unsigned long long)lineno);
    r->key = r->key_buf;
    json_tokener *jt = json_tokener_new();
    r->obj = jt ? json_tokener_parse_ex(jt, line, (int)len) : NULL;
    const bool complete = jt && json_tokener_get_error(jt) == json_tokener_success;
    json_tokener_free(jt);
    if (!r->obj || !complete) return fail_req(err, esize, "not valid JSON");
    if (!json_object_is_type(r->obj, json_type_object)) return fail_req(err, esize, "not a JSON object");
    if (!json_object_object_get_ex(r->obj, "id", &r->id) ||
        !(json_object_is_type(r->id, json_type_string) || json_object_is_type(r->id, json_type_int)))
        return fail_req(err, esize, "no \"id\" (a string or an integer)");
    r->key = json_object_to_json_string_ext(r->id, JSON_C_TO_STRING_PLAIN);
    double v;
    r->max_tokens = j->o->default_max_tokens;
    if (get_number(r->obj, "max_tokens", &v)) {
        if (!(v >= 0 && v <= 1e7 && v == (double)(int)v))
            return fail_req(err, esize, "max_tokens must be a whole number from 0");
        r->max_tokens = (int)v;
    }
    r->temperature = 0;
    if (get_number(r->obj, "temperature", &v)) {
        if (!(v >= 0 && v <= 100)) return fail_req(err, esize, "temperature must be from 0 to 100");
        r->temperature = (float)v;
    }
    r->top_p = 1;
    if (get_number(r->obj, "top_p", &v)) {
        if (!(v > 0 && v <= 1)) return fail_req(err, esize, "top_p must be in (0, 1]");
        r->top_p = (float)v;
    }
    if (get_number(r->obj, "seed", &v)) {
        if (!(v >= 0 && v < 0x1p53)) return fail_req(err, esize, "seed must be a whole number from 0");
        r->seed = (uint64_t)v;
    }
    json_object *x;
    if (json_object_object_get_ex(r->obj, "think", &x)) r->think = json_object_get_boolean(x);
    if (json_object_object_get_ex(r->obj, "stop", &x) && !json_object_is_type(x, json_type_null)) {
        if (json_object_is_type(x, json_type_string)) {
            r->stops[r->n_stops++] = json_object_get_string(x);
        } else if (json_object_is_type(x, json_type_array) && json_object_array_length(x) <= MAX_STOPS) {
            for (size_t i = 0; i < json_object_array_length(x); i++) {
                json_object *s = json_object_array_get_idx(x, i);
                if (!json_object_is_type(s, json_type_string) || !json_object_get_string_len(s))
                    return fail_req(err, esize, "stop must be a string or up to 8 non-empty strings");
                r->stops[r->n_stops++] = json_object_get_string(s);
            }
        } else {
            return fail_req(err, esize, "stop must be a string or up to 8 non-empty strings");
        }
    }
    json_object *prompt = NULL, *ids = NULL;
    json_object_object_get_ex(r->obj, "prompt", &prompt);
    json_object_object_get_ex(r->obj, "prompt_ids", &ids);
    json_object_object_get_ex(r->obj, "messages", &r->messages);
    if (!!prompt + !!ids + !!r->messages != 1)
        return fail_req(err, esize, "give exactly one of \"prompt\", \"messages\" and \"prompt_ids\"");
    const uint32_t V = j->m->cfg.n_vocab;
    if (ids) {
        if (!json_object_is_type(ids, json_type_array) || !json_object_array_length(ids))
            return fail_req(err, esize, "prompt_ids must be a non-empty array of token ids");
        const size_t n = json_object_array_length(ids);
        if (!(r->ids = ds4_malloc(n * sizeof *r->ids))) return fail_req(err, esize, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(ids, i);
            const int64_t id = json_object_get_int64(e);
            if (!json_object_is_type(e, json_type_int) || id < 0 || id >= V) {
                char what[96];
                snprintf(what, sizeof what, "prompt_ids[%zu] is not a token id of this model (0..%u)", i, V - 1);
                return fail_req(err, esize, what);
            }
            r->ids[i] = (int32_t)id;
        }
        r->n_ids = n;
        return 0;
    }
    if (!j->tok)
        return fail_req(err, esize, "this model has no tokenizer: give \"prompt_ids\"");
    size_t n = 0;
    if (prompt) {
        if (!json_object_is_type(prompt, json_type_string)) return fail_req(err, esize, "prompt must be a string");
        const int32_t bos = ds4_tokenizer_bos(j->tok);
        if (bos >= 0) {
            if (!(r->ids = ds4_malloc(sizeof *r->ids))) return fail_req(err, esize, "out of memory");
            r->ids[n++] = bos;
        }
        if (ds4_tokenize(j->tok, json_object_get_string(prompt), (size_t)json_object_get_string_len(prompt), false,
                         &r->ids, &n) < 0)
            return fail_req(err, esize, ds4_error());
    } else {
        if (!json_object_is_type(r->messages, json_type_array) || !json_object_array_length(r->messages))
            return fail_req(err, esize, "messages must be a non-empty array");
        ds4_chat_opts opts = {.thinking = r->think, .add_generation_prompt = true};
        ds4_buf text = {0};
        const int rc = ds4_chat_render(r->messages, &opts, &text);
        if (rc == 0 && ds4_tokenize(j->tok, (const char *)text.data, text.len, true, &r->ids, &n) == 0) {
            r->n_ids = n;
            r->stable = system_prefix(j, r, &opts);
        }
        ds4_buf_free(&text);
        if (rc < 0 || !r->n_ids) return fail_req(err, esize, ds4_error());
    }
    r->n_ids = n;
    if (!n) return fail_req(err, esize, "the prompt has no tokens");
    return 0;
}

/* Append one line and sync it, in one write so that a line is whole or absent. */
static int emit(job *j, json_object *out) {
    const char *s = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    const size_t len = strlen(s);
    char *line = ds4_malloc(len + 2);
    if (!line) return -1;
    memcpy(line, s, len);
    line[len] = '\n';
    size_t at = 0;
    while (at < len + 1) {
        const ssize_t w = write(j->fd, line + at, len + 1 - at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            free(line);
            return ds4_fail("%s: %s", j->o->out_path, strerror(errno));
        }
        at += (size_t)w;
    }
    free(line);
    return fdatasync(j->fd) == 0 ? 0 : ds4_fail("%s: %s", j->o->out_path, strerror(errno));
}

static json_object *error_line(const request *r, uint64_t lineno, const char *err) {
    json_object *out = json_object_new_object();
    json_object_object_add(out, "id", r->id ? json_object_get(r->id) : NULL);
    json_object_object_add(out, "line", json_object_new_int64((int64_t)lineno));
    json_object_object_add(out, "error", json_object_new_string(err));
    return out;
}

static uint64_t common_prefix(const int32_t *a, uint64_t na, const int32_t *b, uint64_t nb) {
    uint64_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* Prefill and generate; the result line, or NULL with the error set. */
static json_object *run_request(job *j, request *r) {
    const uint32_t V = j->m->cfg.n_vocab;
    uint64_t stable = r->stable;
    if (!stable && j->prev) { /* leading ids shared with the request before */
        const uint64_t k = common_prefix(r->ids, r->n_ids, j->prev, j->n_prev);
        if (k >= MIN_SHARED && k < r->n_ids) stable = k;
    }
    uint64_t cached = 0;
    const double t0 = ds4_time_now();
    if (ds4_prefill_cached(j->ctx, j->o->kvcache, r->ids, r->n_ids, j->logits, PREFILL_PERIOD, stable, &cached) < 0)
        return NULL;
    const double t1 = ds4_time_now();
    free(j->prev);
    j->prev = r->ids;
    j->n_prev = r->n_ids;
    r->ids = NULL;

    ds4_sampler s;
    ds4_sampler_init(&s, r->temperature, r->top_p, r->seed);
    json_object *tokens = json_object_new_array();
    ds4_buf text = {0};
    const char *finish = "length";
    const int32_t eos = j->tok ? ds4_tokenizer_eos(j->tok) : -1;
    int n_gen = 0;
    for (int i = 0; i < r->max_tokens; i++) {
        const int32_t next = ds4_sample(&s, j->logits, V, j->probs, j->idx);
        if (next == eos) {
            finish = "stop";
            break;
        }
        json_object_array_add(tokens, json_object_new_int(next));
        n_gen++;
        if (j->tok) {
            const char *bytes;
            size_t len;
            if (ds4_token_bytes(j->tok, next, &bytes, &len) == 0) ds4_buf_append(&text, bytes, len);
            bool stopped = false;
            for (int k = 0; k < r->n_stops && !stopped; k++) {
                const size_t sl = strlen(r->stops[k]);
                const char *hit = text.len >= sl ? memmem(text.data, text.len, r->stops[k], sl) : NULL;
                if (hit) {
                    text.len = (size_t)(hit - (const char *)text.data);
                    stopped = true;
                }
            }
            if (stopped) {
                finish = "stop";
                break;
            }
        }
        if (i + 1 < r->max_tokens && ds4_eval(j->ctx, &next, 1, j->logits, false) < 0) {
            json_object_put(tokens);
            ds4_buf_free(&text);
            return NULL;
        }
    }
    const double t2 = ds4_time_now();
    ds4_buf_append(&text, "", 1);
    json_object *out = json_object_new_object();
    json_object_object_add(out, "id", json_object_get(r->id));
    json_object *reasoning = NULL, *tool_calls = NULL, *content = NULL;
    if (j->tok && r->messages) {
        ds4_chat_reply reply = {0};
        if (ds4_chat_parse((const char *)text.data, r->think, &reply) == 0) {
            content = json_object_new_string(reply.content ? reply.content : "");
            if (reply.reasoning) reasoning = json_object_new_string(reply.reasoning);
            if (reply.tool_calls) tool_calls = json_object_get(reply.tool_calls);
        } else {
            content = json_object_new_string((const char *)text.data); /* unparsable: the raw text */
        }
        ds4_chat_reply_free(&reply);
    } else if (j->tok) {
        content = json_object_new_string((const char *)text.data);
    }
    json_object_object_add(out, "text", content);
    json_object_object_add(out, "reasoning", reasoning);
    json_object_object_add(out, "tool_calls", tool_calls);
    json_object_object_add(out, "tokens", tokens);
    json_object_object_add(out, "finish_reason", json_object_new_string(finish));
    json_object_object_add(out, "prompt_tokens", json_object_new_int64((int64_t)j->n_prev));
    json_object_object_add(out, "completion_tokens", json_object_new_int(n_gen));
    const double prefill_tps = t1 > t0 ? (double)(j->n_prev - cached) / (t1 - t0) : 0;
    const double decode_tps = t2 > t1 && n_gen ? n_gen / (t2 - t1) : 0;
    json_object_object_add(out, "prefill_tps", json_object_new_double(prefill_tps));
    json_object_object_add(out, "decode_tps", json_object_new_double(decode_tps));
    json_object_object_add(out, "cached_tokens", json_object_new_int64((int64_t)cached));
    json_object_object_add(out, "error", NULL);
    ds4_buf_free(&text);
    char row[256];
    const int len = snprintf(row, sizeof row, "%llu,%llu,%d,%.2f,%.2f,%s\n", (unsigned long long)j->n_prev,
                             (unsigned long long)cached, n_gen, prefill_tps, decode_tps, finish);
    const char *id = json_object_get_string(r->id); /* a string id bare, an integer as digits */
    if (ds4_csv_field(&j->csv, id) == 0 && ds4_buf_append(&j->csv, ",", 1) == 0) ds4_buf_append(&j->csv, row, (size_t)len);
    return out;
}

static void mark_done(job *j, const char *key) {
    char *copy = ds4_arena_strndup(&j->keys, key, strlen(key));
    if (copy) ds4_strmap_put(&j->done, copy, strlen(copy), 1);
}

/* Open the output for appending, cut a torn last line and note every finished key. */
static int open_output(job *j) {
    j->fd = open(j->o->out_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (j->fd < 0) return ds4_fail("%s: cannot open: %s", j->o->out_path, strerror(errno));
    size_t len = 0;
    char *data = ds4_read_file(j->o->out_path, &len);
    if (!data) return -1;
    size_t whole = len;
    while (whole > 0 && data[whole - 1] != '\n') whole--;
    if (whole < len && ftruncate(j->fd, (off_t)whole) < 0) {
        free(data);
        return ds4_fail("%s: cannot cut the torn last line: %s", j->o->out_path, strerror(errno));
    }
    if (ds4_strmap_init(&j->done, 1024) < 0) {
        free(data);
        return -1;
    }
    uint64_t lineno = 0;
    for (char *line = data; line < data + whole;) {
        char *end = memchr(line, '\n', (size_t)(data + whole - line));
        lineno++;
        json_object *o = json_tokener_parse(line); /* stops at the newline */
        json_object *id = NULL, *ln = NULL;
        if (o && json_object_object_get_ex(o, "id", &id) && id && !json_object_is_type(id, json_type_null)) {
            mark_done(j, json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN));
        } else if (o && json_object_object_get_ex(o, "line", &ln)) {
            char key[64];
            snprintf(key, sizeof key, "line:%lld", (long long)json_object_get_int64(ln));
            mark_done(j, key);
        }
        json_object_put(o);
        line = end + 1;
    }
    free(data);
    return 0;
}

int ds4_batch_run(const ds4_model *m, const ds4_tokenizer *tok, const ds4_batch_opts *o, ds4_batch_stats *st) {
    memset(st, 0, sizeof *st);
    const double t_start = ds4_time_now();
    size_t size;
    char *input = ds4_read_file(o->in_path, &size);
    if (!input) return -1;
    job j = {.m = m, .tok = tok, .o = o, .fd = -1};
    const uint32_t V = m->cfg.n_vocab;
    j.ctx = ds4_ctx_new(m, o->n_threads);
    j.logits = ds4_malloc(V * sizeof *j.logits);
    j.probs = ds4_malloc(V * sizeof *j.probs);
    j.idx = ds4_malloc(V * sizeof *j.idx);
    int rc = j.ctx && j.logits && j.probs && j.idx ? open_output(&j) : -1;
    static const char header[] = "id,prompt_tokens,cached_tokens,completion_tokens,prefill_tps,decode_tps,finish_reason\n";
    if (rc == 0) rc = ds4_buf_append(&j.csv, header, sizeof header - 1);
    uint64_t lineno = 0;
    for (char *line = input; rc == 0 && line < input + size;) {
        char *end = memchr(line, '\n', (size_t)(input + size - line));
        const size_t len = end ? (size_t)(end - line) : (size_t)(input + size - line);
        lineno++;
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k < len) {
            st->requests++;
            request r;
            char err[DS4_ERROR_MAX + 64];
            const int parsed = parse_request(&j, line, len, lineno, &r, err, sizeof err);
            uint64_t dummy;
            if (ds4_strmap_get(&j.done, r.key, strlen(r.key), &dummy)) {
                st->skipped++;
            } else {
                json_object *out = parsed == 0 ? run_request(&j, &r) : NULL;
                if (parsed == 0 && !out) snprintf(err, sizeof err, "%s", ds4_error());
                if (!out) {
                    out = error_line(&r, lineno, err);
                    st->errors++;
                } else {
                    st->done++;
                    st->prompt_tokens += j.n_prev;
                    st->cached_tokens += (uint64_t)json_object_get_int64(json_object_object_get(out, "cached_tokens"));
                    st->completion_tokens +=
                        (uint64_t)json_object_get_int64(json_object_object_get(out, "completion_tokens"));
                }
                rc = emit(&j, out);
                if (rc == 0) mark_done(&j, r.key);
                json_object_put(out);
            }
            free(r.ids);
            json_object_put(r.obj);
        }
        line = end ? end + 1 : input + size;
    }
    if (rc == 0 && o->csv_path) rc = ds4_write_file_atomic(o->csv_path, j.csv.data, j.csv.len);
    if (j.fd >= 0) close(j.fd);
    ds4_buf_free(&j.csv);
    ds4_strmap_free(&j.done);
    ds4_arena_free(&j.keys);
    free(j.prev);
    free(j.logits);
    free(j.probs);
    free(j.idx);
    ds4_ctx_free(j.ctx);
    free(input);
    st->seconds = ds4_time_now() - t_start;
    return rc;
}
