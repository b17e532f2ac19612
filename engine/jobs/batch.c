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

#include "appendfile.h"
#include "chat.h"
#include "generate.h"
#include "hash.h"
#include "scheduler.h"
#include "util.h"

#define PREFILL_PERIOD 8192 /* prompt tokens between cache saves of a long prefill */
#define MIN_SHARED 16       /* leading ids shared with the request before worth a saved state */
#define MAX_STOPS 8

typedef struct {
    const ds4_model *m;
    const ds4_tokenizer *tok;
    const ds4_batch_opts *o;
    ds4_ctx *ctx;
    ds4_sched *sched;
    uint64_t kv_in_flight; /* KV bytes the running requests may reach */
    int32_t *prev;    /* the previous request's prompt */
    uint64_t n_prev;
    ds4_strmap done;  /* keys of requests already in the output -> index in `made` */
    ds4_arena keys;   /* their bytes */
    ds4_buf made;     /* provenance of each result in the output */
    ds4_strmap seen;  /* keys met in this input, to report repeats */
    ds4_appendfile out, csv;
    char fingerprint[17]; /* this model's, as results record it */
} job;

/* Where a result in the output came from: the model and the request (empty for lines
 * written before results recorded them). */
typedef struct {
    char fingerprint[17];
    char request[41];
} provenance;

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
    char hash[41]; /* of what decides the result: the request and the default max_tokens */
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
    ds4_buf head = {0};
    const uint64_t n = ds4_chat_render_head(r->messages, opts, &head) == 0
                           ? ds4_chat_head_length(j->tok, (const char *)head.data, head.len, r->ids, r->n_ids)
                           : 0;
    ds4_buf_free(&head);
    return n;
}

static void hex_digest(ds4_sha1 *h, char hex[41]) {
    uint8_t d[20];
    ds4_sha1_final(h, d);
    for (int i = 0; i < 20; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* The key and request hash of a line, from its JSON alone (no tokenizing): the id, or
 * "line:N" for a line without one; the hash of its canonical JSON (or of its bytes when
 * it is not JSON) and of the default max_tokens that applies to it. */
static void identify(const job *j, const char *line, size_t len, uint64_t lineno, request *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->key_buf, sizeof r->key_buf, "line:%llu", (unsigned long long)lineno);
    r->key = r->key_buf;
    json_tokener *jt = json_tokener_new();
    r->obj = jt ? json_tokener_parse_ex(jt, line, (int)len) : NULL;
    if (!jt || json_tokener_get_error(jt) != json_tokener_success) {
        json_object_put(r->obj);
        r->obj = NULL;
    }
    json_tokener_free(jt);
    ds4_sha1 h;
    ds4_sha1_init(&h);
    if (r->obj) {
        const char *canon = json_object_to_json_string_ext(r->obj, JSON_C_TO_STRING_PLAIN);
        ds4_sha1_update(&h, canon, strlen(canon));
    } else {
        ds4_sha1_update(&h, line, len);
    }
    char defaults[32];
    snprintf(defaults, sizeof defaults, "\nmax_tokens=%d", j->o->default_max_tokens);
    ds4_sha1_update(&h, defaults, strlen(defaults));
    hex_digest(&h, r->hash);
    if (r->obj && json_object_is_type(r->obj, json_type_object) && json_object_object_get_ex(r->obj, "id", &r->id) &&
        (json_object_is_type(r->id, json_type_string) || json_object_is_type(r->id, json_type_int)))
        r->key = json_object_to_json_string_ext(r->id, JSON_C_TO_STRING_PLAIN);
    else
        r->id = NULL;
}

/* Check and tokenize an identified line; -1 with a message in err. */
static int parse_request(job *j, request *r, char *err, size_t esize) {
    if (!r->obj) return fail_req(err, esize, "not valid JSON");
    if (!json_object_is_type(r->obj, json_type_object)) return fail_req(err, esize, "not a JSON object");
    if (!r->id) return fail_req(err, esize, "no \"id\" (a string or an integer)");
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

/* Append one result line (with its provenance), whole and synced. */
static int emit(job *j, json_object *out, const request *r) {
    json_object_object_add(out, "model_fingerprint", json_object_new_string(j->fingerprint));
    json_object_object_add(out, "request_hash", json_object_new_string(r->hash));
    const char *s = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    const size_t len = strlen(s);
    char *line = ds4_malloc(len + 2);
    if (!line) return -1;
    memcpy(line, s, len);
    line[len] = '\n';
    const int rc = ds4_appendfile_write(&j->out, line, len + 1);
    free(line);
    return rc;
}

static json_object *error_line(const request *r, uint64_t lineno, const char *err) {
    json_object *out = json_object_new_object();
    json_object_object_add(out, "id", r->id ? json_object_get(r->id) : NULL);
    json_object_object_add(out, "line", json_object_new_int64((int64_t)lineno));
    json_object_object_add(out, "error", json_object_new_string(err));
    return out;
}

/* A request between its line and its output line: running, or done and waiting for the
 * lines before it (results go out in input order). */
typedef struct {
    job *j;
    request r;
    uint64_t lineno;
    uint64_t kv_bytes;   /* reserved while it runs */
    json_object *out;    /* the line to write, once ready */
    bool ready, failed;
} entry;

static void free_entry(entry *e) {
    free(e->r.ids);
    json_object_put(e->r.obj);
    json_object_put(e->out);
    free(e);
}

/* The result line of a finished generation. */
static json_object *result_line(const job *j, const request *r, ds4_gen_result *g) {
    json_object *tokens = json_object_new_array();
    for (int i = 0; i < g->n_tokens; i++) json_object_array_add(tokens, json_object_new_int(g->tokens[i]));
    ds4_buf_append(&g->text, "", 1);
    const char *text = (const char *)g->text.data;
    json_object *out = json_object_new_object();
    json_object_object_add(out, "id", json_object_get(r->id));
    json_object *reasoning = NULL, *tool_calls = NULL, *content = NULL;
    if (j->tok && r->messages) {
        ds4_chat_reply reply = {0};
        if (ds4_chat_parse(text, r->think, &reply) == 0) {
            content = json_object_new_string(reply.content ? reply.content : "");
            if (reply.reasoning) reasoning = json_object_new_string(reply.reasoning);
            if (reply.tool_calls) tool_calls = json_object_get(reply.tool_calls);
        } else {
            content = json_object_new_string(text); /* unparsable: the raw text */
        }
        ds4_chat_reply_free(&reply);
    } else if (j->tok) {
        content = json_object_new_string(text);
    }
    json_object_object_add(out, "text", content);
    json_object_object_add(out, "reasoning", reasoning);
    json_object_object_add(out, "tool_calls", tool_calls);
    json_object_object_add(out, "tokens", tokens);
    json_object_object_add(out, "finish_reason", json_object_new_string(g->finish));
    json_object_object_add(out, "prompt_tokens", json_object_new_int64((int64_t)r->n_ids));
    json_object_object_add(out, "completion_tokens", json_object_new_int(g->n_tokens));
    const double prefill_tps = g->prefill_seconds > 0 ? (double)(r->n_ids - g->cached) / g->prefill_seconds : 0;
    const double decode_tps = g->decode_seconds > 0 && g->n_tokens ? g->n_tokens / g->decode_seconds : 0;
    json_object_object_add(out, "prefill_tps", json_object_new_double(prefill_tps));
    json_object_object_add(out, "decode_tps", json_object_new_double(decode_tps));
    json_object_object_add(out, "cached_tokens", json_object_new_int64((int64_t)g->cached));
    json_object_object_add(out, "error", NULL);
    return out;
}

static void request_done(void *arg, int rc, ds4_gen_result *g) {
    entry *e = arg;
    e->j->kv_in_flight -= e->kv_bytes;
    e->out = rc == 0 ? result_line(e->j, &e->r, g) : error_line(&e->r, e->lineno, ds4_error());
    e->failed = rc < 0;
    e->ready = true;
    ds4_gen_result_free(g);
}

/* Start a parsed request on a free sequence; a failure to start is its error line. */
static void start_request(job *j, entry *e) {
    request *r = &e->r;
    uint64_t stable = r->stable;
    if (!stable && j->prev) { /* leading ids shared with the request before */
        const uint64_t k = ds4_shared_prefix(r->ids, r->n_ids, j->prev, j->n_prev);
        if (k >= MIN_SHARED && k < r->n_ids) stable = k;
    }
    const ds4_gen_opts go = {.cache = j->o->kvcache, .cache_period = PREFILL_PERIOD, .cache_stable = stable,
                             .max_tokens = r->max_tokens, .temperature = r->temperature, .top_p = r->top_p,
                             .seed = r->seed, .tok = j->tok, .show_special = true,
                             .stops = r->stops, .n_stops = r->n_stops};
    e->kv_bytes = ds4_config_kv_bytes(&j->m->cfg, r->n_ids + (uint64_t)r->max_tokens);
    j->kv_in_flight += e->kv_bytes;
    if (ds4_sched_add(j->sched, r->ids, r->n_ids, &go, request_done, e) < 0) {
        j->kv_in_flight -= e->kv_bytes;
        e->out = error_line(r, e->lineno, ds4_error());
        e->failed = e->ready = true;
        return;
    }
    free(j->prev);
    j->prev = ds4_malloc(r->n_ids * sizeof *r->ids);
    j->n_prev = j->prev ? r->n_ids : 0;
    if (j->prev) memcpy(j->prev, r->ids, r->n_ids * sizeof *r->ids);
}

/* The CSV row of a result: its speeds. */
static int log_speeds(job *j, json_object *out) {
    if (!j->o->csv_path) return 0;
    json_object *v;
    char row[256];
    const int len = snprintf(
        row, sizeof row, "%lld,%lld,%lld,%.2f,%.2f,%s\n",
        (long long)json_object_get_int64(json_object_object_get_ex(out, "prompt_tokens", &v) ? v : NULL),
        (long long)json_object_get_int64(json_object_object_get_ex(out, "cached_tokens", &v) ? v : NULL),
        (long long)json_object_get_int64(json_object_object_get_ex(out, "completion_tokens", &v) ? v : NULL),
        json_object_get_double(json_object_object_get_ex(out, "prefill_tps", &v) ? v : NULL),
        json_object_get_double(json_object_object_get_ex(out, "decode_tps", &v) ? v : NULL),
        json_object_get_string(json_object_object_get_ex(out, "finish_reason", &v) ? v : NULL));
    ds4_buf b = {0};
    json_object *id = json_object_object_get(out, "id");
    int rc = ds4_csv_field(&b, json_object_get_string(id)); /* a string id bare, an integer as digits */
    if (rc == 0) rc = ds4_buf_append(&b, ",", 1);
    if (rc == 0) rc = ds4_buf_append(&b, row, (size_t)len);
    if (rc == 0) rc = ds4_appendfile_write(&j->csv, (const char *)b.data, b.len);
    ds4_buf_free(&b);
    return rc;
}

static void mark_done(job *j, const char *key, const char *fingerprint, const char *request_hash) {
    provenance p = {"", ""};
    snprintf(p.fingerprint, sizeof p.fingerprint, "%s", fingerprint ? fingerprint : "");
    snprintf(p.request, sizeof p.request, "%s", request_hash ? request_hash : "");
    const uint64_t at = j->made.len / sizeof p;
    char *copy = ds4_arena_strndup(&j->keys, key, strlen(key));
    if (copy && ds4_buf_append(&j->made, &p, sizeof p) == 0) ds4_strmap_put(&j->done, copy, strlen(copy), at);
}

static const provenance *made_of(const job *j, const char *key) {
    uint64_t at;
    return ds4_strmap_get(&j->done, key, strlen(key), &at) ? (const provenance *)(const void *)j->made.data + at : NULL;
}

static const char *string_field(json_object *o, const char *k) {
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                            : NULL;
}

/* The key of an output line: its id, or "line:N" for an error line without one. */
static bool output_key(json_object *o, char *buf, size_t cap, const char **key) {
    json_object *id = NULL, *ln = NULL;
    if (o && json_object_object_get_ex(o, "id", &id) && id && !json_object_is_type(id, json_type_null)) {
        *key = json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN);
        return true;
    }
    if (o && json_object_object_get_ex(o, "line", &ln)) {
        snprintf(buf, cap, "line:%lld", (long long)json_object_get_int64(ln));
        *key = buf;
        return true;
    }
    return false;
}

/* Note every result the output holds with where it came from. */
static int load_done(job *j) {
    ds4_strmap_free(&j->done);
    j->made.len = 0;
    size_t len = 0;
    char *data = ds4_read_file(j->o->out_path, &len);
    if (!data) return -1;
    if (ds4_strmap_init(&j->done, 1024) < 0) {
        free(data);
        return -1;
    }
    for (char *line = data; line < data + len;) {
        char *end = memchr(line, '\n', (size_t)(data + len - line));
        json_object *o = json_tokener_parse(line); /* stops at the newline */
        char buf[64];
        const char *key;
        if (output_key(o, buf, sizeof buf, &key))
            mark_done(j, key, string_field(o, "model_fingerprint"), string_field(o, "request_hash"));
        json_object_put(o);
        line = end ? end + 1 : data + len;
    }
    free(data);
    return 0;
}

/* Open the output for appending (locked; a torn last line cut) and note its results. */
static int open_output(job *j) {
    return ds4_appendfile_open(&j->out, j->o->out_path, true, NULL) < 0 ? -1 : load_done(j);
}

/* Results in the output that another model made, or that answer a request the input
 * has since changed: refused (-1, naming the first), or with redo_stale taken out of the
 * output (rewritten whole) so that they are computed again. */
static int check_stale(job *j, const char *input, size_t size) {
    ds4_strmap stale;
    if (ds4_strmap_init(&stale, 64) < 0) return -1;
    uint64_t lineno = 0, n_stale = 0, unknown = 0;
    char first[256] = "";
    for (const char *line = input; line < input + size;) {
        const char *end = memchr(line, '\n', (size_t)(input + size - line));
        const size_t len = end ? (size_t)(end - line) : (size_t)(input + size - line);
        lineno++;
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k < len) {
            request r;
            identify(j, line, len, lineno, &r);
            const provenance *p = made_of(j, r.key);
            if (p && !p->fingerprint[0]) unknown++;
            else if (p && (strcmp(p->fingerprint, j->fingerprint) || strcmp(p->request, r.hash))) {
                if (!n_stale++)
                    snprintf(first, sizeof first, "the result for %s %s", r.key,
                             strcmp(p->fingerprint, j->fingerprint) ? "was made by another model"
                                                                     : "answers a different request (edited since)");
                char *copy = ds4_arena_strndup(&j->keys, r.key, strlen(r.key));
                if (copy) ds4_strmap_put(&stale, copy, strlen(copy), 1);
            }
            json_object_put(r.obj);
        }
        line = end ? end + 1 : input + size;
    }
    int rc = 0;
    if (unknown)
        fprintf(stderr, "ds4: %llu results in %s record no model fingerprint (an older ds4 wrote them): kept\n",
                (unsigned long long)unknown, j->o->out_path);
    if (n_stale && !j->o->redo_stale)
        rc = ds4_fail("%s: %s (%llu such results): use --redo-stale to compute them again, or another --out",
                      j->o->out_path, first, (unsigned long long)n_stale);
    else if (n_stale) {
        /* keep every other line; the stale ids are then missing and run again */
        size_t len = 0;
        char *data = ds4_read_file(j->o->out_path, &len);
        ds4_buf keep = {0};
        rc = data ? 0 : -1;
        for (char *line = data; rc == 0 && line < data + len;) {
            char *end = memchr(line, '\n', (size_t)(data + len - line));
            const size_t n = end ? (size_t)(end - line) + 1 : (size_t)(data + len - line);
            json_object *o = json_tokener_parse(line);
            char buf[64];
            const char *key;
            uint64_t dummy;
            if (!(output_key(o, buf, sizeof buf, &key) && ds4_strmap_get(&stale, key, strlen(key), &dummy)))
                rc = ds4_buf_append(&keep, line, n);
            json_object_put(o);
            line += n;
        }
        if (rc == 0) rc = ds4_appendfile_replace(&j->out, (const char *)keep.data, keep.len);
        if (rc == 0) rc = load_done(j);
        if (rc == 0)
            fprintf(stderr, "ds4: %s: %llu stale results removed, computing them again\n", j->o->out_path,
                    (unsigned long long)n_stale);
        ds4_buf_free(&keep);
        free(data);
    }
    ds4_strmap_free(&stale);
    return rc;
}

/* The first few failed lines, for the summary on stderr. */
static void note_error(ds4_batch_stats *st, const char *key, const char *err) {
    if (st->errors > DS4_BATCH_ERRORS_SHOWN) return;
    char *to = st->first_errors[st->errors - 1];
    const size_t cap = sizeof st->first_errors[0];
    const int n = snprintf(to, cap, "%.80s: ", key);
    if (n > 0 && (size_t)n < cap) snprintf(to + n, cap - (size_t)n, "%.*s", (int)(cap - (size_t)n - 1), err);
}

int ds4_batch_run(const ds4_model *m, const ds4_tokenizer *tok, const ds4_batch_opts *o, ds4_batch_stats *st) {
    memset(st, 0, sizeof *st);
    const double t_start = ds4_time_now();
    if (ds4_same_file(o->in_path, o->out_path)) {
        ds4_fail("--out %s is the input file itself: give another path", o->out_path);
        return -2;
    }
    if (o->csv_path && (ds4_same_file(o->in_path, o->csv_path) || ds4_same_file(o->out_path, o->csv_path))) {
        ds4_fail("--csv %s is the input or the output: give another path", o->csv_path);
        return -2;
    }
    size_t size;
    char *input = ds4_read_file(o->in_path, &size);
    if (!input) return -2;
    job j = {.m = m, .tok = tok, .o = o};
    snprintf(j.fingerprint, sizeof j.fingerprint, "%016llx", (unsigned long long)ds4_model_fingerprint(m));
    static const char header[] = "id,prompt_tokens,cached_tokens,completion_tokens,prefill_tps,decode_tps,finish_reason\n";
    int rc = open_output(&j);
    if (rc == 0) rc = check_stale(&j, input, size);
    if (rc == 0 && o->csv_path) rc = ds4_appendfile_open(&j.csv, o->csv_path, true, header);
    if (rc < 0) rc = -2; /* refused before the first request */
    if (rc == 0) rc = ds4_strmap_init(&j.seen, 1024);
    if (rc == 0) {
        ds4_ctx_opts co = o->ctx;
        co.n_seq = o->parallel > 0 ? o->parallel : 1;
        j.ctx = ds4_ctx_new(m, &co);
        j.sched = j.ctx ? ds4_sched_new(j.ctx, 0) : NULL;
        if (!j.sched) rc = -1;
    }
    /* Lines are read in order; a request waits for a free sequence (and, with a KV
     * limit, for memory: never while nothing runs); finished results go out in input
     * order, and at most `window` wait for the lines before them. */
    const int parallel = o->parallel > 0 ? o->parallel : 1;
    const size_t window = 4 * (size_t)parallel + 16;
    entry **queue = ds4_calloc(window, sizeof *queue);
    size_t head = 0, queued = 0;
    entry *waiting = NULL;
    uint64_t lineno = 0, total = 0;
    for (const char *p = input; p < input + size; p++) total += *p == '\n' || p + 1 == input + size;
    ds4_progress prog;
    ds4_progress_begin_count(&prog, "batch", total, "req");
    prog.tty = prog.tty && !o->quiet;
    if (!queue) rc = -1;
    char *line = input;
    while (rc == 0) {
        /* read lines until one must wait for a sequence, or the window is full */
        while (!waiting && line < input + size && queued < window) {
            char *end = memchr(line, '\n', (size_t)(input + size - line));
            const size_t len = end ? (size_t)(end - line) : (size_t)(input + size - line);
            const char *here = line;
            line = end ? end + 1 : input + size;
            lineno++;
            size_t k = 0;
            while (k < len && (here[k] == ' ' || here[k] == '\t' || here[k] == '\r')) k++;
            if (k == len) {
                ds4_progress_add(&prog, 1);
                continue;
            }
            st->requests++;
            entry *e = ds4_calloc(1, sizeof *e);
            if (!e) {
                rc = -1;
                break;
            }
            e->j = &j;
            e->lineno = lineno;
            identify(&j, here, len, lineno, &e->r);
            uint64_t first_line;
            if (ds4_strmap_get(&j.seen, e->r.key, strlen(e->r.key), &first_line)) {
                /* one result per id: a repeat cannot get its own */
                fprintf(stderr, "ds4: %s:%llu: id %s repeats line %llu: skipped (ids must be unique)\n", o->in_path,
                        (unsigned long long)lineno, e->r.key, (unsigned long long)first_line);
                st->duplicates++;
                free_entry(e);
                ds4_progress_add(&prog, 1);
                continue;
            }
            char *copy = ds4_arena_strndup(&j.keys, e->r.key, strlen(e->r.key));
            if (copy) ds4_strmap_put(&j.seen, copy, strlen(copy), lineno);
            if (made_of(&j, e->r.key)) {
                st->skipped++;
                free_entry(e);
                ds4_progress_add(&prog, 1);
                continue;
            }
            char err[DS4_ERROR_MAX + 64];
            if (parse_request(&j, &e->r, err, sizeof err) < 0) {
                e->out = error_line(&e->r, lineno, err);
                e->failed = e->ready = true;
            } else {
                waiting = e;
            }
            queue[(head + queued++) % window] = e;
        }
        if (rc < 0) break;
        if (waiting && ds4_sched_free_slots(j.sched) > 0 &&
            (!o->kv_max_bytes || ds4_sched_active(j.sched) == 0 ||
             j.kv_in_flight + ds4_config_kv_bytes(&m->cfg, waiting->r.n_ids + (uint64_t)waiting->r.max_tokens) <=
                 o->kv_max_bytes)) {
            start_request(&j, waiting);
            waiting = NULL;
            continue;
        }
        /* the results whose turn it is */
        while (rc == 0 && queued && queue[head]->ready) {
            entry *e = queue[head];
            if (e->failed) {
                st->errors++;
                note_error(st, e->r.key, json_object_get_string(json_object_object_get(e->out, "error")));
            } else {
                st->done++;
                st->prompt_tokens += e->r.n_ids;
                st->cached_tokens += (uint64_t)json_object_get_int64(json_object_object_get(e->out, "cached_tokens"));
                st->completion_tokens +=
                    (uint64_t)json_object_get_int64(json_object_object_get(e->out, "completion_tokens"));
            }
            rc = emit(&j, e->out, &e->r);
            if (rc == 0 && !e->failed) rc = log_speeds(&j, e->out);
            if (rc == 0) mark_done(&j, e->r.key, j.fingerprint, e->r.hash);
            free_entry(e);
            head = (head + 1) % window;
            queued--;
            ds4_progress_add(&prog, 1);
        }
        if (rc < 0) break;
        if (ds4_sched_active(j.sched)) {
            ds4_sched_step(j.sched); /* a failed step ends its requests with error lines */
            continue;
        }
        if (!waiting && !queued && line >= input + size) break;
    }
    ds4_progress_end(&prog);
    /* the job's own row: its wall time's rates over everything it computed */
    const double wall = ds4_time_now() - t_start;
    if (rc == 0 && o->csv_path && st->done) {
        char row[256];
        const int n = snprintf(row, sizeof row, "(job),%llu,%llu,%llu,%.2f,%.2f,parallel=%d\n",
                               (unsigned long long)st->prompt_tokens, (unsigned long long)st->cached_tokens,
                               (unsigned long long)st->completion_tokens,
                               (double)(st->prompt_tokens - st->cached_tokens) / wall,
                               (double)st->completion_tokens / wall, parallel);
        rc = ds4_appendfile_write(&j.csv, row, (size_t)n);
    }
    /* after a failed write the requests in flight end unwritten ("cancelled"); the
     * write's error is the one to report */
    char err[DS4_ERROR_MAX];
    snprintf(err, sizeof err, "%s", ds4_error());
    ds4_sched_free(j.sched);
    if (rc < 0) ds4_fail("%s", err);
    j.sched = NULL;
    for (size_t i = 0; i < queued; i++) free_entry(queue[(head + i) % window]);
    free(queue);
    ds4_appendfile_close(&j.out);
    ds4_appendfile_close(&j.csv);
    ds4_strmap_free(&j.done);
    ds4_strmap_free(&j.seen);
    ds4_buf_free(&j.made);
    ds4_arena_free(&j.keys);
    free(j.prev);
    ds4_sched_free(j.sched);
    ds4_ctx_free(j.ctx);
    free(input);
    st->seconds = ds4_time_now() - t_start;
    return rc;
}
