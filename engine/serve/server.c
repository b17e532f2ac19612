/* server.c - see server.h. The HTTP side: libmicrohttpd with a thread per connection,
 * so a handler may wait for its job; limits on the header (the connection's memory
 * pool) and the body, and a deadline for sending the request, so a slow client costs
 * its own thread and nothing else; the routes; the request log and metrics CSV. */
#include "server.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "appendfile.h"
#include "chat.h"
#include "chat_stream.h"
#include "kvcache_disk.h"
#include "worker.h"
#include "util.h"

#define HEADER_LIMIT (64 * 1024)     /* bytes of request line and headers */
#define KEEPALIVE_SECONDS 5.0        /* quiet time on a stream before a keep-alive comment */
#define MAX_JSON_DEPTH 64

typedef struct {
    const ds4_model *m;
    const ds4_tokenizer *tok;
    const ds4_server_opts *o;
    const char *name;          /* the model's name in replies */
    uint64_t n_ctx, created;
    ds4_worker *w;
    int32_t *prev;             /* the last prompt, for shared-prefix checkpoints */
    uint64_t n_prev;
    pthread_mutex_t mu;        /* prev, metrics */
    ds4_appendfile metrics;
    bool have_metrics;
} server;

/* One HTTP request. */
typedef struct {
    server *s;
    struct MHD_Connection *conn;
    ds4_buf body;
    double t0;
    bool too_big;
    /* a generation, once submitted */
    ds4_api_request req;
    ds4_api_reply *reply;
    ds4_chat_stream *parser;  /* chat replies: text into reasoning, content and tool calls */
    ds4_job *job;
    ds4_buf out;               /* bytes ready to send */
    size_t out_sent;
    bool finished, reply_started;
    char what[96];             /* "POST /v1/messages", for the log */
    double last_write;
    int status;
} request;

/* ---- responses ---- */

static enum MHD_Result send_body(struct MHD_Connection *c, int status, const char *type, const char *body, size_t n) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    const enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_object *doc) {
    const char *s = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    const enum MHD_Result rc = send_body(c, status, "application/json", s, strlen(s));
    json_object_put(doc);
    return rc;
}

static enum MHD_Result send_error(request *q, ds4_api_flavor flavor, const ds4_api_error *e) {
    q->status = e->status;
    char *doc = ds4_api_error_json(flavor, e);
    if (!doc) return MHD_NO;
    const enum MHD_Result rc = send_body(q->conn, e->status, "application/json", doc, strlen(doc));
    free(doc);
    return rc;
}

static enum MHD_Result fail(request *q, ds4_api_flavor flavor, int status, const char *msg) {
    ds4_api_error e;
    ds4_api_error_set(&e, status, "%s", msg);
    return send_error(q, flavor, &e);
}

/* Whether the client closed its end (a reader waiting on a job asks now and then). */
static bool peer_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    char b;
    const ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* ---- the request log and the metrics CSV ---- */

static void log_request(request *q, bool aborted) {
    server *s = q->s;
    ds4_job *j = q->job;
    char line[512];
    if (j && j->done) {
        const ds4_gen_result *r = &j->result;
        const double pre = r->prefill_seconds > 0 ? (double)(j->n_ids - j->cached) / r->prefill_seconds : 0;
        const double dec = r->decode_seconds > 0 ? r->decode_steps / r->decode_seconds : 0;
        snprintf(line, sizeof line,
                 "%s %d: prompt %llu, cached %llu, completion %d tokens; prefill %.1f tok/s, decode %.1f tok/s%s%s",
                 q->what, q->status, (unsigned long long)j->n_ids, (unsigned long long)j->cached, r->n_tokens, pre,
                 dec, j->failed ? "; " : "", j->failed ? j->error : "");
        if (s->have_metrics) {
            char row[400];
            const int n = snprintf(row, sizeof row, "%.3f,%s,%d,%llu,%llu,%d,%.2f,%.2f,%.3f,%.3f,%s\n",
                                   (double)time(NULL), q->what, q->status, (unsigned long long)j->n_ids,
                                   (unsigned long long)j->cached, r->n_tokens, pre, dec, j->t_start - j->t_submit,
                                   ds4_time_now() - q->t0, j->failed ? "failed" : r->finish);
            pthread_mutex_lock(&s->mu);
            if (n > 0 && (size_t)n < sizeof row && ds4_appendfile_write(&s->metrics, row, (size_t)n) < 0)
                fprintf(stderr, "ds4-server: metrics: %s\n", ds4_error());
            pthread_mutex_unlock(&s->mu);
        }
    } else {
        snprintf(line, sizeof line, "%s %d", q->what, q->status);
    }
    fprintf(stderr, "ds4-server: %s%s\n", line, aborted ? " (the client went away)" : "");
}

/* ---- generation ---- */

static int on_chat_event(void *arg, const ds4_chat_event *ev) {
    request *q = arg;
    if (ev->kind == DS4_CHAT_WARNING) fprintf(stderr, "ds4-server: warning: %.*s\n", (int)ev->len, ev->text);
    return ds4_api_reply_event(q->reply, ev, &q->out);
}

/* Take what the job made since the last call (the lock held): its text through the
 * chat parser into the reply, and at the end the reply's last part. */
static void take_output(request *q) {
    ds4_job *j = q->job;
    if ((j->started || j->done) && !q->reply_started) {
        ds4_api_reply_start(q->reply, j->n_ids, j->cached, &q->out);
        q->reply_started = true;
    }
    if (j->logprobs) {
        for (size_t i = 0; i < json_object_array_length(j->logprobs); i++)
            ds4_api_reply_logprob(q->reply, json_object_get(json_object_array_get_idx(j->logprobs, i)));
        json_object_put(j->logprobs);
        j->logprobs = NULL;
    }
    if (j->text.len > j->read) {
        /* the pieces end on whole characters (generate.h), so each is cleaned alone */
        ds4_buf clean = {0};
        ds4_api_clean_utf8((const char *)j->text.data + j->read, j->text.len - j->read, &clean);
        j->read = j->text.len;
        if (q->parser) {
            ds4_chat_stream_feed(q->parser, (const char *)clean.data, clean.len);
        } else { /* /v1/completions: the text as it is */
            const ds4_chat_event ev = {DS4_CHAT_CONTENT, (const char *)clean.data, clean.len, NULL};
            ds4_api_reply_event(q->reply, &ev, &q->out);
        }
        ds4_buf_free(&clean);
    }
    if (!j->done || q->finished) return;
    q->finished = true;
    if (j->failed) {
        ds4_api_error e;
        ds4_api_error_set(&e, !strcmp(j->error, "cancelled") ? 503 : 500, "generation failed: %s", j->error);
        q->status = e.status;
        if (q->req.stream) {
            ds4_api_reply_fail(q->reply, &e, &q->out);
        } else {
            char *doc = ds4_api_error_json(q->req.flavor, &e);
            q->out.len = 0;
            if (doc) ds4_buf_append(&q->out, doc, strlen(doc));
            free(doc);
        }
        return;
    }
    if (q->parser) ds4_chat_stream_end(q->parser);
    const ds4_gen_result *r = &j->result;
    const ds4_api_usage u = {j->n_ids, j->cached, (uint64_t)r->n_tokens, r->finish,
                             r->stop_index >= 0 && r->stop_index < j->n_stops ? j->stops[r->stop_index] : NULL};
    q->status = 200;
    ds4_api_reply_finish(q->reply, &u, &q->out);
}

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max) {
    request *q = cls;
    (void)pos;
    for (;;) {
        if (q->out_sent < q->out.len) {
            size_t n = q->out.len - q->out_sent;
            if (n > max) n = max;
            memcpy(buf, q->out.data + q->out_sent, n);
            q->out_sent += n;
            if (q->out_sent == q->out.len) q->out.len = q->out_sent = 0;
            q->last_write = ds4_time_now();
            return (ssize_t)n;
        }
        if (q->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        ds4_worker_lock(q->s->w);
        take_output(q);
        if (!q->out.len && !q->finished) {
            ds4_worker_wait(q->s->w, q->job, 1.0);
            take_output(q);
        }
        const bool quiet = !q->out.len && !q->finished;
        if (quiet && peer_gone(q->conn)) {
            ds4_worker_cancel(q->s->w, q->job);
            ds4_worker_unlock(q->s->w);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        ds4_worker_unlock(q->s->w);
        if (quiet && ds4_time_now() - q->last_write > KEEPALIVE_SECONDS)
            ds4_buf_append(&q->out, ds4_api_keepalive, strlen(ds4_api_keepalive));
    }
}

/* Wait for a whole reply; false when the client went away (the job then cancelled). */
static bool wait_whole(request *q) {
    ds4_worker_lock(q->s->w);
    for (;;) {
        take_output(q);
        if (q->finished) break;
        ds4_worker_wait(q->s->w, q->job, 0.5);
        if (!q->job->done && peer_gone(q->conn)) {
            ds4_worker_cancel(q->s->w, q->job);
            ds4_worker_unlock(q->s->w);
            return false;
        }
    }
    ds4_worker_unlock(q->s->w);
    return true;
}

/* The prompt's token ids (the template's text is trusted: its special tokens count). */
static int prompt_ids(request *q, int32_t **ids, uint64_t *n, ds4_api_error *e) {
    const ds4_api_request *r = &q->req;
    const uint32_t V = q->s->m->cfg.n_vocab;
    if (r->prompt_ids) {
        for (uint64_t i = 0; i < r->n_prompt_ids; i++)
            if ((uint32_t)r->prompt_ids[i] >= V) {
                ds4_api_error_set(e, 400, "prompt[%llu]: token id %d is outside the vocabulary (%u)",
                                  (unsigned long long)i, r->prompt_ids[i], V);
                return -1;
            }
        *ids = ds4_malloc(r->n_prompt_ids * sizeof **ids);
        if (!*ids) return -1;
        memcpy(*ids, r->prompt_ids, r->n_prompt_ids * sizeof **ids);
        *n = r->n_prompt_ids;
        return 0;
    }
    size_t k = 0;
    *ids = NULL;
    if (ds4_tokenize(q->s->tok, (const char *)r->prompt.data, r->prompt.len, true, ids, &k) < 0) {
        ds4_api_error_set(e, 400, "the prompt cannot be tokenized: %s", ds4_error());
        return -1;
    }
    *n = k;
    if (!k) {
        ds4_api_error_set(e, 400, "the prompt is empty");
        return -1;
    }
    return 0;
}

static enum MHD_Result generate(request *q) {
    server *s = q->s;
    ds4_api_request *r = &q->req;
    ds4_api_error e;
    int32_t *ids;
    uint64_t n;
    if (prompt_ids(q, &ids, &n, &e) < 0) return send_error(q, r->flavor, &e);
    if (r->endpoint == DS4_EP_COUNT_TOKENS) {
        free(ids);
        json_object *doc = json_object_new_object();
        json_object_object_add(doc, "input_tokens", json_object_new_int64((int64_t)n));
        q->status = 200;
        return send_json(q->conn, 200, doc);
    }
    if (n >= s->n_ctx) {
        free(ids);
        ds4_api_error_set(&e, 400, "the prompt is %llu tokens; the context holds %llu (--ctx), the reply included",
                          (unsigned long long)n, (unsigned long long)s->n_ctx);
        return send_error(q, r->flavor, &e);
    }
    ds4_job *j = q->job = ds4_job_new();
    if (!j) {
        free(ids);
        return MHD_NO;
    }
    j->ids = ids;
    j->n_ids = n;
    const uint64_t room = s->n_ctx - n;
    j->max_tokens = (int)(r->max_tokens < 0 || (uint64_t)r->max_tokens > room ? room : (uint64_t)r->max_tokens);
    j->temperature = r->temperature;
    j->top_p = r->top_p;
    j->seed = r->seed;
    j->top_logprobs = r->top_logprobs;
    j->stops = ds4_calloc(DS4_API_MAX_STOPS, sizeof *j->stops);
    for (int i = 0; j->stops && i < r->n_stops; i++) j->stops[j->n_stops++] = ds4_strndup(r->stops[i], strlen(r->stops[i]));
    /* a checkpoint where other requests will start alike: after the system prompt and the
     * tools, else after what this prompt shares with the one before */
    j->stable = ds4_chat_head_length(s->tok, (const char *)r->head.data, r->head.len, ids, n);
    pthread_mutex_lock(&s->mu);
    const uint64_t shared = ds4_shared_prefix(ids, n, s->prev, s->n_prev);
    if (!j->stable && shared >= 64 && shared < n) j->stable = shared;
    free(s->prev);
    s->prev = ds4_malloc(n * sizeof *ids);
    s->n_prev = s->prev ? n : 0;
    if (s->prev) memcpy(s->prev, ids, n * sizeof *ids);
    pthread_mutex_unlock(&s->mu);

    q->reply = ds4_api_reply_new(r, s->name, s->created);
    if (r->endpoint != DS4_EP_COMPLETIONS) q->parser = ds4_chat_stream_new(r->thinking, on_chat_event, q);
    if (!q->reply || (r->endpoint != DS4_EP_COMPLETIONS && !q->parser)) return MHD_NO;
    const int queued = ds4_worker_submit(s->w, j);
    if (queued == -1)
        return fail(q, r->flavor, 429, "the server is busy: every slot is taken and the queue is full; retry later");
    if (queued < 0) return fail(q, r->flavor, 503, "the server is shutting down");
    if (!r->stream) {
        if (!wait_whole(q)) return MHD_NO;
        return send_body(q->conn, q->status, "application/json", (const char *)q->out.data, q->out.len);
    }
    q->last_write = ds4_time_now();
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, read_stream, q, NULL);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    q->status = 200;
    const enum MHD_Result rc = MHD_queue_response(q->conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* ---- routes ---- */

static bool authorized(server *s, struct MHD_Connection *c) {
    const char *key = s->o->api_key;
    if (!key) return true;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *x = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    return (auth && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, key)) || (x && !strcmp(x, key));
}

/* The model in the fields of both APIs' model objects. */
static json_object *model_object(const server *s) {
    json_object *m = json_object_new_object();
    char created[32];
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&(time_t){(time_t)s->created}));
    json_object_object_add(m, "id", json_object_new_string(s->name));
    json_object_object_add(m, "object", json_object_new_string("model"));
    json_object_object_add(m, "created", json_object_new_int64((int64_t)s->created));
    json_object_object_add(m, "owned_by", json_object_new_string("ds4"));
    json_object_object_add(m, "type", json_object_new_string("model"));
    json_object_object_add(m, "display_name", json_object_new_string(s->name));
    json_object_object_add(m, "created_at", json_object_new_string(created));
    json_object_object_add(m, "context_length", json_object_new_int64((int64_t)s->n_ctx));
    return m;
}

static enum MHD_Result models(request *q) {
    server *s = q->s;
    json_object *doc = json_object_new_object(), *list = json_object_new_array();
    json_object_array_add(list, model_object(s));
    json_object_object_add(doc, "object", json_object_new_string("list"));
    json_object_object_add(doc, "data", list);
    json_object_object_add(doc, "has_more", json_object_new_boolean(0));
    json_object_object_add(doc, "first_id", json_object_new_string(s->name));
    json_object_object_add(doc, "last_id", json_object_new_string(s->name));
    q->status = 200;
    return send_json(q->conn, 200, doc);
}

static enum MHD_Result health(request *q) {
    int queued, running;
    ds4_worker_load(q->s->w, &queued, &running);
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "status", json_object_new_string("ok"));
    json_object_object_add(doc, "slots", json_object_new_int(q->s->o->parallel));
    json_object_object_add(doc, "running", json_object_new_int(running));
    json_object_object_add(doc, "queued", json_object_new_int(queued));
    q->status = 200;
    return send_json(q->conn, 200, doc);
}

static enum MHD_Result route(request *q, const char *url, const char *method) {
    server *s = q->s;
    static const struct {
        const char *path;
        ds4_api_flavor flavor;
        ds4_api_endpoint ep;
    } posts[] = {{"/v1/chat/completions", DS4_API_OPENAI, DS4_EP_CHAT},
                 {"/v1/completions", DS4_API_OPENAI, DS4_EP_COMPLETIONS},
                 {"/v1/messages", DS4_API_ANTHROPIC, DS4_EP_MESSAGES},
                 {"/v1/messages/count_tokens", DS4_API_ANTHROPIC, DS4_EP_COUNT_TOKENS}};
    const ds4_api_flavor flavor = !strncmp(url, "/v1/messages", 12) ? DS4_API_ANTHROPIC : DS4_API_OPENAI;
    const bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/health")) return get ? health(q) : fail(q, flavor, 405, "/health takes GET");
    if (strncmp(url, "/v1/", 4)) return fail(q, flavor, 404, "no such endpoint");
    if (!authorized(s, q->conn)) return fail(q, flavor, 401, "invalid API key (Authorization: Bearer KEY or x-api-key)");
    if (q->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %llu bytes", (unsigned long long)s->o->max_body_bytes);
        return fail(q, flavor, 413, msg);
    }
    if (!strcmp(url, "/v1/models")) return get ? models(q) : fail(q, flavor, 405, "/v1/models takes GET");
    if (!strncmp(url, "/v1/models/", 11)) { /* one model: the SDKs' retrieve */
        if (!get) return fail(q, flavor, 405, "/v1/models/ID takes GET");
        if (strcmp(url + 11, s->name)) return fail(q, flavor, 404, "no such model");
        q->status = 200;
        return send_json(q->conn, 200, model_object(s));
    }
    for (size_t i = 0; i < sizeof posts / sizeof posts[0]; i++) {
        if (strcmp(url, posts[i].path)) continue;
        if (strcmp(method, "POST")) return fail(q, flavor, 405, "this endpoint takes POST");
        json_tokener *t = json_tokener_new_ex(MAX_JSON_DEPTH);
        json_object *body = t ? json_tokener_parse_ex(t, (const char *)q->body.data, (int)q->body.len) : NULL;
        const enum json_tokener_error err = t ? json_tokener_get_error(t) : json_tokener_error_depth;
        const bool whole = t && body && json_tokener_get_parse_end(t) == q->body.len;
        if (t) json_tokener_free(t);
        if (!body || !whole) {
            json_object_put(body);
            char msg[160];
            snprintf(msg, sizeof msg, "the body is not one JSON document: %s",
                     body                              ? "text follows it"
                     : !q->body.len                    ? "the body is empty"
                     : err == json_tokener_continue    ? "it ends before the document does"
                                                       : json_tokener_error_desc(err));
            return fail(q, flavor, 400, msg);
        }
        ds4_api_error e;
        const int rc = ds4_api_parse(posts[i].flavor, posts[i].ep, body, &q->req, &e);
        json_object_put(body);
        if (rc < 0) return send_error(q, flavor, &e);
        if (s->o->alias && strcmp(q->req.model, s->o->alias)) {
            ds4_api_error_set(&e, 404, "model '%.100s' not found: this server serves '%s'", q->req.model, s->o->alias);
            return send_error(q, flavor, &e);
        }
        return generate(q);
    }
    return fail(q, flavor, 404, "no such endpoint");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    server *s = cls;
    request *q = *con_cls;
    (void)version;
    if (!q) {
        if (!(q = ds4_calloc(1, sizeof *q))) return MHD_NO;
        q->s = s;
        q->conn = c;
        q->t0 = ds4_time_now();
        snprintf(q->what, sizeof q->what, "%s %.80s", method, url);
        *con_cls = q;
        const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (len && strtoull(len, NULL, 10) > s->o->max_body_bytes) { /* refused before it is read */
            q->too_big = true;
            return route(q, url, method);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        /* a client that takes too long to send its request loses the connection */
        if (ds4_time_now() - q->t0 > s->o->read_timeout) return MHD_NO;
        if (q->body.len + *upload_size > s->o->max_body_bytes) q->too_big = true;
        else if (ds4_buf_append(&q->body, upload, *upload_size) < 0) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->status) return MHD_YES; /* answered already */
    return route(q, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    server *s = cls;
    request *q = *con_cls;
    (void)c;
    if (!q) return;
    if (q->job) {
        ds4_worker_lock(s->w);
        if (!q->job->done) ds4_worker_cancel(s->w, q->job); /* the client went away */
        ds4_worker_unlock(s->w);
    }
    if (q->status || q->job) log_request(q, why != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (q->job) ds4_job_release(s->w, q->job);
    ds4_api_request_free(&q->req);
    ds4_api_reply_free(q->reply);
    ds4_chat_stream_free(q->parser);
    ds4_buf_free(&q->body);
    ds4_buf_free(&q->out);
    free(q);
    *con_cls = NULL;
}

/* ---- start and stop ---- */

static void cache_warning(const char *msg) { fprintf(stderr, "ds4-server: %s\n", msg); }

static int listen_address(const char *host, int port, struct sockaddr_storage *ss, bool *v6) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    const int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) return ds4_fail("--host %s: %s", host, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

int ds4_server_run(const ds4_model *m, const ds4_tokenizer *tok, const char *model_name, const ds4_server_opts *o) {
    if (!tok) return ds4_fail("the model has no tokenizer: the server takes text");
    ds4_server_opts opts = *o;
    if (!opts.host) opts.host = "127.0.0.1";
    if (!opts.port) opts.port = 8000;
    if (opts.parallel <= 0) opts.parallel = 4;
    if (opts.queue <= 0) opts.queue = 64;
    if (!opts.read_timeout) opts.read_timeout = 30;
    if (!opts.max_body_bytes) opts.max_body_bytes = 16u << 20;
    if (!opts.kv_space_bytes) opts.kv_space_bytes = 4ull << 30;
    server s = {.m = m, .tok = tok, .o = &opts, .name = opts.alias ? opts.alias : model_name,
                .created = (uint64_t)time(NULL)};
    s.n_ctx = opts.n_ctx ? opts.n_ctx : 32768;
    if (m->cfg.context_length && s.n_ctx > m->cfg.context_length) s.n_ctx = m->cfg.context_length;
    pthread_mutex_init(&s.mu, NULL);
    struct sockaddr_storage addr;
    bool v6 = false;
    int rc = listen_address(opts.host, opts.port, &addr, &v6);
    if (rc == 0 && opts.metrics_csv) {
        rc = ds4_appendfile_open(&s.metrics, opts.metrics_csv, true,
                                 "time,request,status,prompt_tokens,cached_tokens,completion_tokens,prefill_tps,"
                                 "decode_tps,queue_seconds,total_seconds,finish\n");
        s.have_metrics = rc == 0;
    }
    ds4_ctx_opts co = opts.ctx;
    co.n_seq = opts.parallel;
    co.kv_capacity = s.n_ctx;
    ds4_ctx *ctx = rc == 0 ? ds4_ctx_new(m, &co) : NULL;
    ds4_kvcache *cache = ctx ? ds4_kvcache_open(opts.kv_dir, opts.kv_space_bytes, 1ull << 30, m, cache_warning) : NULL;
    s.w = cache ? ds4_worker_start(ctx, tok, cache, opts.queue) : NULL;
    struct MHD_Daemon *d = NULL;
    MHD_socket listener = MHD_INVALID_SOCKET;
    if (s.w) {
        const unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                               MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
        d = MHD_start_daemon(flags, (uint16_t)opts.port, NULL, NULL, handle, &s, MHD_OPTION_SOCK_ADDR, &addr,
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEADER_LIMIT, MHD_OPTION_CONNECTION_LIMIT,
                             (unsigned)(opts.queue + opts.parallel + 64), MHD_OPTION_CONNECTION_TIMEOUT,
                             (unsigned)opts.read_timeout, MHD_OPTION_NOTIFY_COMPLETED, completed, &s, MHD_OPTION_END);
        if (!d) ds4_fail("cannot listen on %s port %d (is it taken?)", opts.host, opts.port);
    }
    if (d) {
        fprintf(stderr,
                "ds4-server: serving %s on http://%s:%d: %d slots of %llu tokens (KV %.1f MiB reserved per slot), "
                "queue %d\n",
                s.name, opts.host, opts.port, opts.parallel, (unsigned long long)s.n_ctx,
                (double)ds4_config_kv_bytes(&m->cfg, s.n_ctx) / (1 << 20), opts.queue);
        while (!*o->stop) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        fprintf(stderr, "ds4-server: stopping: no new connections; finishing what runs\n");
        listener = MHD_quiesce_daemon(d);
    }
    rc = d ? 0 : -1;
    char err[DS4_ERROR_MAX];
    snprintf(err, sizeof err, "%s", ds4_error());
    if (s.w) ds4_worker_stop(s.w, 7.0); /* what has not finished is cancelled, its state saved */
    if (d) MHD_stop_daemon(d);
    if (listener != MHD_INVALID_SOCKET) close(listener); /* quiesced: ours to close */
    ds4_worker_free(s.w);
    if (cache) {
        const ds4_kvcache_stats st = ds4_kvcache_get_stats(cache);
        fprintf(stderr, "ds4-server: kv cache: %llu hits, %llu tokens restored, %llu states stored\n",
                (unsigned long long)st.hits, (unsigned long long)st.tokens_restored, (unsigned long long)st.stores);
    }
    ds4_kvcache_close(cache);
    ds4_ctx_free(ctx);
    if (s.have_metrics) ds4_appendfile_close(&s.metrics);
    free(s.prev);
    pthread_mutex_destroy(&s.mu);
    if (rc < 0) ds4_fail("%s", err);
    return rc;
}
