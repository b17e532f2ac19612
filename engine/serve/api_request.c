/* api_request.c - requests of both APIs into ds4_api_request (api.h). Chat requests
 * become OpenAI-style messages (what chat.h renders): Anthropic's content blocks are
 * split into user text, tool results, reasoning and tool calls on the way. */
#include "api.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "util.h"

void ds4_api_error_set(ds4_api_error *e, int status, const char *fmt, ...) {
    e->status = status;
    const char *type = status == 401   ? "authentication_error"
                       : status == 404 ? "not_found_error"
                       : status == 413 ? "request_too_large"
                       : status == 429 ? "rate_limit_error"
                       : status == 503 ? "overloaded_error"
                       : status >= 500 ? "api_error"
                                       : "invalid_request_error";
    snprintf(e->type, sizeof e->type, "%s", type);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *ds4_api_error_json(ds4_api_flavor flavor, const ds4_api_error *e) {
    json_object *err = json_object_new_object(), *doc = json_object_new_object();
    json_object_object_add(err, "type", json_object_new_string(e->type));
    json_object_object_add(err, "message", ds4_api_text(e->message, strlen(e->message))); /* it may quote the request */
    if (flavor == DS4_API_OPENAI) {
        json_object_object_add(err, "param", NULL);
        json_object_object_add(err, "code", NULL);
    } else {
        json_object_object_add(doc, "type", json_object_new_string("error"));
    }
    json_object_object_add(doc, "error", err);
    const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
    char *s = ds4_strndup(text, strlen(text));
    json_object_put(doc);
    return s;
}

void ds4_api_request_free(ds4_api_request *r) {
    free(r->model);
    ds4_buf_free(&r->prompt);
    ds4_buf_free(&r->head);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    memset(r, 0, sizeof *r);
}

/* ---- reading fields ---- */

/* A field that is present and not null. */
static json_object *field(json_object *o, const char *key) {
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) return NULL;
    return v;
}

static bool is_number(json_object *v) { return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double); }

static int bad(ds4_api_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(ds4_api_error *e, const char *fmt, ...) {
    char msg[sizeof e->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ds4_api_error_set(e, 400, "%s", msg);
    return -1;
}

static int get_string(json_object *o, const char *key, const char **out, bool required, ds4_api_error *e) {
    json_object *v = field(o, key);
    *out = NULL;
    if (!v) return required ? bad(e, "%s: a required field is missing", key) : 0;
    if (!json_object_is_type(v, json_type_string)) return bad(e, "%s must be a string", key);
    *out = json_object_get_string(v);
    return 0;
}

static int get_bool(json_object *o, const char *key, bool *out, ds4_api_error *e) {
    json_object *v = field(o, key);
    if (!v) return 0;
    if (!json_object_is_type(v, json_type_boolean)) return bad(e, "%s must be true or false", key);
    *out = json_object_get_boolean(v);
    return 0;
}

static int get_number(json_object *o, const char *key, double lo, double hi, double *out, ds4_api_error *e) {
    json_object *v = field(o, key);
    if (!v) return 0;
    const double x = is_number(v) ? json_object_get_double(v) : NAN;
    if (!(x >= lo && x <= hi)) return bad(e, "%s must be a number from %g to %g", key, lo, hi);
    *out = x;
    return 0;
}

static int get_int(json_object *o, const char *key, int64_t lo, int64_t hi, int64_t *out, bool *given, ds4_api_error *e) {
    json_object *v = field(o, key);
    if (given) *given = v != NULL;
    if (!v) return 0;
    const double x = is_number(v) ? json_object_get_double(v) : NAN;
    if (!(x >= (double)lo && x <= (double)hi) || x != floor(x))
        return bad(e, "%s must be an integer from %lld to %lld", key, (long long)lo, (long long)hi);
    *out = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : (int64_t)x;
    return 0;
}

/* A string, or an array of strings (up to DS4_API_MAX_STOPS), into the stops. */
static int get_stops(json_object *o, const char *key, ds4_api_request *r, ds4_api_error *e) {
    json_object *v = field(o, key);
    if (!v) return 0;
    if (json_object_is_type(v, json_type_string)) {
        r->stops[r->n_stops++] = ds4_strndup(json_object_get_string(v), (size_t)json_object_get_string_len(v));
        return 0;
    }
    if (!json_object_is_type(v, json_type_array)) return bad(e, "%s must be a string or an array of strings", key);
    const size_t n = json_object_array_length(v);
    if (n > DS4_API_MAX_STOPS) return bad(e, "%s: at most %d stop strings", key, DS4_API_MAX_STOPS);
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(v, i);
        if (!json_object_is_type(s, json_type_string)) return bad(e, "%s[%zu] must be a string", key, i);
        if (json_object_get_string_len(s) == 0) continue;
        r->stops[r->n_stops++] = ds4_strndup(json_object_get_string(s), (size_t)json_object_get_string_len(s));
    }
    return 0;
}

/* Text as a string or an array of {"type": "text", "text": ...} parts, appended to out. */
static int text_parts(json_object *v, const char *where, ds4_buf *out, ds4_api_error *e) {
    if (!v) return 0;
    if (json_object_is_type(v, json_type_string))
        return ds4_buf_append(out, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    if (!json_object_is_type(v, json_type_array)) return bad(e, "%s must be a string or an array of text parts", where);
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *part = json_object_array_get_idx(v, i);
        const char *type, *text;
        char name[96];
        snprintf(name, sizeof name, "%s[%zu]", where, i);
        if (!json_object_is_type(part, json_type_object)) return bad(e, "%s must be an object", name);
        if (get_string(part, "type", &type, true, e) < 0) return -1;
        if (strcmp(type, "text")) return bad(e, "%s: content of type '%s' is not supported (text only)", name, type);
        if (get_string(part, "text", &text, true, e) < 0) return -1;
        ds4_buf_append(out, text, strlen(text));
    }
    return 0;
}

static json_object *message(const char *role, const char *content, size_t len) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", content ? json_object_new_string_len(content, (int)len) : NULL);
    return m;
}

static const char *buf_str(ds4_buf *b) {
    ds4_buf_append(b, "", 1);
    b->len--;
    return (const char *)b->data;
}

/* ---- OpenAI ---- */

static int openai_messages(json_object *msgs, json_object *out, ds4_api_error *e) {
    if (!msgs) return bad(e, "messages: a required field is missing");
    if (!json_object_is_type(msgs, json_type_array)) return bad(e, "messages must be an array");
    if (json_object_array_length(msgs) == 0) return bad(e, "messages must not be empty");
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        char where[96];
        if (!json_object_is_type(m, json_type_object)) return bad(e, "messages[%zu] must be an object", i);
        const char *role;
        snprintf(where, sizeof where, "messages[%zu].role", i);
        json_object *rv = field(m, "role");
        if (!rv) return bad(e, "%s: a required field is missing", where);
        if (!json_object_is_type(rv, json_type_string)) return bad(e, "%s must be a string", where);
        role = json_object_get_string(rv);
        if (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") && strcmp(role, "assistant") &&
            strcmp(role, "tool"))
            return bad(e, "%s: unknown role '%.40s' (system, developer, user, assistant or tool)", where, role);
        ds4_buf text = {0};
        snprintf(where, sizeof where, "messages[%zu].content", i);
        json_object *content = field(m, "content");
        if (!content && strcmp(role, "assistant")) return bad(e, "%s: a required field is missing", where);
        if (text_parts(content, where, &text, e) < 0) {
            ds4_buf_free(&text);
            return -1;
        }
        json_object *nm = message(!strcmp(role, "developer") ? "user" : role, content ? buf_str(&text) : NULL, text.len);
        ds4_buf_free(&text);
        json_object_array_add(out, nm);
        if (!strcmp(role, "tool")) {
            const char *id;
            snprintf(where, sizeof where, "messages[%zu].tool_call_id", i);
            json_object *idv = field(m, "tool_call_id");
            if (!idv) return bad(e, "%s: a required field is missing", where);
            if (!json_object_is_type(idv, json_type_string)) return bad(e, "%s must be a string", where);
            id = json_object_get_string(idv);
            json_object_object_add(nm, "tool_call_id", json_object_new_string(id));
        }
        if (!strcmp(role, "assistant")) {
            json_object *rc = field(m, "reasoning_content");
            if (rc && !json_object_is_type(rc, json_type_string))
                return bad(e, "messages[%zu].reasoning_content must be a string", i);
            if (rc) json_object_object_add(nm, "reasoning_content", json_object_get(rc));
            json_object *calls = field(m, "tool_calls");
            if (calls) {
                if (!json_object_is_type(calls, json_type_array)) return bad(e, "messages[%zu].tool_calls must be an array", i);
                for (size_t k = 0; k < json_object_array_length(calls); k++) {
                    json_object *c = json_object_array_get_idx(calls, k), *fn = field(c, "function");
                    const char *name, *args;
                    snprintf(where, sizeof where, "messages[%zu].tool_calls[%zu].function", i, k);
                    if (!json_object_is_type(c, json_type_object) || !fn || !json_object_is_type(fn, json_type_object))
                        return bad(e, "%s: a required object is missing", where);
                    if (get_string(fn, "name", &name, true, e) < 0) return -1;
                    if (get_string(fn, "arguments", &args, false, e) < 0) return -1;
                    json_object *parsed = args ? json_tokener_parse(args) : json_object_new_object();
                    if (!parsed || !json_object_is_type(parsed, json_type_object)) {
                        json_object_put(parsed);
                        return bad(e, "%s.arguments must be a JSON object in a string", where);
                    }
                    json_object_put(parsed);
                }
                json_object_object_add(nm, "tool_calls", json_object_get(calls));
            }
        }
    }
    return 0;
}

/* tools: [{"type": "function", "function": {"name", "description", "parameters"}}] */
static int check_openai_tools(json_object *tools, ds4_api_error *e) {
    if (!json_object_is_type(tools, json_type_array)) return bad(e, "tools must be an array");
    for (size_t i = 0; i < json_object_array_length(tools); i++) {
        json_object *t = json_object_array_get_idx(tools, i), *fn = field(t, "function");
        const char *type, *name;
        if (!json_object_is_type(t, json_type_object)) return bad(e, "tools[%zu] must be an object", i);
        if (get_string(t, "type", &type, true, e) < 0) return -1;
        if (strcmp(type, "function")) return bad(e, "tools[%zu].type must be \"function\"", i);
        if (!fn || !json_object_is_type(fn, json_type_object)) return bad(e, "tools[%zu].function must be an object", i);
        if (get_string(fn, "name", &name, true, e) < 0) return -1;
    }
    return 0;
}

/* Thinking, in any of the ways clients ask for it. */
static int openai_thinking(json_object *body, bool *thinking, const char **effort, ds4_api_error *e) {
    if (get_string(body, "reasoning_effort", effort, false, e) < 0) return -1;
    if (*effort) *thinking = strcmp(*effort, "none") != 0;
    json_object *t = field(body, "thinking"), *kw = field(body, "chat_template_kwargs");
    if (t) {
        const char *type;
        if (!json_object_is_type(t, json_type_object)) return bad(e, "thinking must be an object");
        if (get_string(t, "type", &type, true, e) < 0) return -1;
        *thinking = !strcmp(type, "enabled");
    }
    if (kw && json_object_is_type(kw, json_type_object) && get_bool(kw, "thinking", thinking, e) < 0) return -1;
    return 0;
}

static int render(json_object *messages, json_object *tools, json_object *format, bool thinking, const char *effort,
                  ds4_api_request *r, ds4_api_error *e) {
    ds4_chat_opts co = {.thinking = thinking, .add_generation_prompt = true, .reasoning_effort = effort,
                        .tools = tools, .response_format = format};
    r->thinking = thinking;
    if (ds4_chat_render(messages, &co, &r->prompt) < 0 || ds4_chat_render_head(messages, &co, &r->head) < 0)
        return bad(e, "%s", ds4_error());
    buf_str(&r->prompt);
    return 0;
}

static int parse_openai(ds4_api_endpoint ep, json_object *body, ds4_api_request *r, ds4_api_error *e) {
    int64_t v = 0;
    bool given;
    if (get_bool(body, "stream", &r->stream, e) < 0) return -1;
    json_object *so = field(body, "stream_options");
    if (so && !json_object_is_type(so, json_type_object)) return bad(e, "stream_options must be an object");
    if (so && get_bool(so, "include_usage", &r->include_usage, e) < 0) return -1;
    if (get_number(body, "temperature", 0, 2, &r->temperature, e) < 0) return -1;
    if (get_number(body, "top_p", 0, 1, &r->top_p, e) < 0) return -1;
    if (get_int(body, "seed", INT64_MIN / 2, INT64_MAX / 2, &v, &given, e) < 0) return -1;
    if (given) r->seed = (uint64_t)v;
    if (get_int(body, "n", 1, 1, &v, NULL, e) < 0) return bad(e, "n: only one choice per request (n = 1)");
    if (get_int(body, "max_tokens", 1, INT32_MAX, &v, &given, e) < 0) return -1;
    if (given) r->max_tokens = (int)v;
    if (get_int(body, "max_completion_tokens", 1, INT32_MAX, &v, &given, e) < 0) return -1;
    if (given) r->max_tokens = (int)v;
    if (get_stops(body, "stop", r, e) < 0) return -1;
    if (ep == DS4_EP_COMPLETIONS) {
        if (r->max_tokens < 0) r->max_tokens = 16; /* the API's default */
        r->raw = true;
        json_object *p = field(body, "prompt");
        if (!p) return bad(e, "prompt: a required field is missing");
        if (json_object_is_type(p, json_type_array) && json_object_array_length(p) == 1 &&
            json_object_is_type(json_object_array_get_idx(p, 0), json_type_string))
            p = json_object_array_get_idx(p, 0);
        if (json_object_is_type(p, json_type_string)) {
            ds4_buf_append(&r->prompt, json_object_get_string(p), (size_t)json_object_get_string_len(p));
            buf_str(&r->prompt);
        } else if (json_object_is_type(p, json_type_array) && json_object_array_length(p) > 0) {
            const size_t n = json_object_array_length(p);
            r->prompt_ids = ds4_malloc(n * sizeof *r->prompt_ids);
            if (!r->prompt_ids) return bad(e, "prompt: out of memory");
            for (size_t i = 0; i < n; i++) {
                json_object *t = json_object_array_get_idx(p, i);
                if (!json_object_is_type(t, json_type_int) || json_object_get_int64(t) < 0 ||
                    json_object_get_int64(t) > INT32_MAX)
                    return bad(e, "prompt must be a string, one string in an array, or an array of token ids");
                r->prompt_ids[i] = (int32_t)json_object_get_int64(t);
            }
            r->n_prompt_ids = n;
        } else {
            return bad(e, "prompt must be a string, one string in an array, or an array of token ids");
        }
        return 0;
    }
    bool logprobs = false;
    if (get_bool(body, "logprobs", &logprobs, e) < 0) return -1;
    v = 0;
    if (get_int(body, "top_logprobs", 0, 20, &v, NULL, e) < 0) return -1;
    r->top_logprobs = logprobs ? (int)v : -1;
    json_object *tools = field(body, "tools"), *choice = field(body, "tool_choice");
    if (tools && check_openai_tools(tools, e) < 0) return -1;
    if (choice) {
        if (json_object_is_type(choice, json_type_string)) {
            const char *c = json_object_get_string(choice);
            if (strcmp(c, "none") && strcmp(c, "auto") && strcmp(c, "required"))
                return bad(e, "tool_choice must be \"none\", \"auto\", \"required\" or a function");
            if (!strcmp(c, "none")) tools = NULL;
        } else if (!json_object_is_type(choice, json_type_object)) {
            return bad(e, "tool_choice must be a string or an object");
        }
    }
    json_object *format = field(body, "response_format");
    if (format) {
        const char *type;
        if (!json_object_is_type(format, json_type_object)) return bad(e, "response_format must be an object");
        if (get_string(format, "type", &type, true, e) < 0) return -1;
        if (strcmp(type, "text") && strcmp(type, "json_object") && strcmp(type, "json_schema"))
            return bad(e, "response_format.type must be text, json_object or json_schema");
        if (!strcmp(type, "text")) format = NULL;
    }
    bool thinking = false;
    const char *effort = NULL;
    if (openai_thinking(body, &thinking, &effort, e) < 0) return -1;
    json_object *msgs = json_object_new_array();
    int rc = openai_messages(field(body, "messages"), msgs, e);
    if (rc == 0) rc = render(msgs, tools, format, thinking, effort, r, e);
    json_object_put(msgs);
    return rc;
}

/* ---- Anthropic ---- */

/* A tool_result's content (a string or blocks) as text. */
static int tool_result_text(json_object *block, const char *where, ds4_buf *out, ds4_api_error *e) {
    json_object *c = field(block, "content");
    if (!c || json_object_is_type(c, json_type_string)) return text_parts(c, where, out, e);
    if (!json_object_is_type(c, json_type_array)) return bad(e, "%s.content must be a string or an array", where);
    for (size_t i = 0; i < json_object_array_length(c); i++) {
        json_object *b = json_object_array_get_idx(c, i);
        const char *type, *text;
        if (!json_object_is_type(b, json_type_object) || get_string(b, "type", &type, true, e) < 0)
            return bad(e, "%s.content[%zu] must be a block with a type", where, i);
        if (strcmp(type, "text")) continue; /* images in tool results are left out */
        if (get_string(b, "text", &text, true, e) < 0) return -1;
        if (out->len) ds4_buf_append(out, "\n", 1);
        ds4_buf_append(out, text, strlen(text));
    }
    return 0;
}

static int anthropic_message(json_object *m, size_t i, json_object *out, ds4_api_error *e) {
    char where[80];
    if (!json_object_is_type(m, json_type_object)) return bad(e, "messages[%zu] must be an object", i);
    snprintf(where, sizeof where, "messages[%zu].role", i);
    json_object *rv = field(m, "role");
    if (!rv) return bad(e, "%s: a required field is missing", where);
    if (!json_object_is_type(rv, json_type_string)) return bad(e, "%s must be a string", where);
    const char *role = json_object_get_string(rv);
    const bool user = !strcmp(role, "user");
    if (!user && strcmp(role, "assistant")) return bad(e, "%s: unknown role '%.40s' (user or assistant)", where, role);
    snprintf(where, sizeof where, "messages[%zu].content", i);
    json_object *content = field(m, "content");
    if (!content) return bad(e, "%s: a required field is missing", where);
    if (json_object_is_type(content, json_type_string)) {
        json_object_array_add(out, message(role, json_object_get_string(content),
                                           (size_t)json_object_get_string_len(content)));
        return 0;
    }
    if (!json_object_is_type(content, json_type_array)) return bad(e, "%s must be a string or an array of blocks", where);
    ds4_buf text = {0}, reasoning = {0};
    json_object *calls = NULL;
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < json_object_array_length(content); k++) {
        json_object *b = json_object_array_get_idx(content, k);
        const char *type, *s;
        char bw[112];
        snprintf(bw, sizeof bw, "%s[%zu]", where, k);
        if (!json_object_is_type(b, json_type_object)) {
            rc = bad(e, "%s must be an object", bw);
            break;
        }
        json_object *tv = field(b, "type");
        if (!tv || !json_object_is_type(tv, json_type_string)) {
            rc = bad(e, "%s.type: a required string is missing", bw);
            break;
        }
        type = json_object_get_string(tv);
        if (!strcmp(type, "text")) {
            rc = get_string(b, "text", &s, true, e);
            if (rc == 0) ds4_buf_append(&text, s, strlen(s));
        } else if (!strcmp(type, "thinking") && !user) {
            rc = get_string(b, "thinking", &s, true, e);
            if (rc == 0) ds4_buf_append(&reasoning, s, strlen(s));
        } else if (!strcmp(type, "redacted_thinking")) {
            continue;
        } else if (!strcmp(type, "tool_use") && !user) {
            const char *id, *name;
            json_object *input = field(b, "input");
            if ((rc = get_string(b, "id", &id, true, e)) < 0 || (rc = get_string(b, "name", &name, true, e)) < 0) break;
            if (input && !json_object_is_type(input, json_type_object)) {
                rc = bad(e, "%s.input must be an object", bw);
                break;
            }
            json_object *call = json_object_new_object(), *fn = json_object_new_object();
            json_object_object_add(call, "id", json_object_new_string(id));
            json_object_object_add(call, "type", json_object_new_string("function"));
            json_object_object_add(fn, "name", json_object_new_string(name));
            json_object_object_add(fn, "arguments", input ? json_object_get(input) : json_object_new_object());
            json_object_object_add(call, "function", fn);
            if (!calls) calls = json_object_new_array();
            json_object_array_add(calls, call);
        } else if (!strcmp(type, "tool_result") && user) {
            const char *id;
            ds4_buf result = {0};
            if ((rc = get_string(b, "tool_use_id", &id, true, e)) < 0) break;
            if ((rc = tool_result_text(b, bw, &result, e)) == 0) {
                if (text.len) { /* text before the result stays before it */
                    json_object_array_add(out, message("user", buf_str(&text), text.len));
                    text.len = 0;
                }
                json_object *tm = message("tool", buf_str(&result), result.len);
                json_object_object_add(tm, "tool_call_id", json_object_new_string(id));
                json_object_array_add(out, tm);
            }
            ds4_buf_free(&result);
        } else {
            rc = bad(e, "%s: a %s message cannot hold a block of type '%.40s'", bw, role, type);
        }
    }
    if (rc == 0 && (text.len || !user || json_object_array_length(content) == 0)) {
        json_object *nm = message(role, buf_str(&text), text.len);
        if (reasoning.len) json_object_object_add(nm, "reasoning_content", json_object_new_string(buf_str(&reasoning)));
        if (calls) json_object_object_add(nm, "tool_calls", json_object_get(calls));
        json_object_array_add(out, nm);
    }
    json_object_put(calls);
    ds4_buf_free(&text);
    ds4_buf_free(&reasoning);
    return rc;
}

/* tools: [{"name", "description", "input_schema"}] as OpenAI's function tools. */
static int anthropic_tools(json_object *tools, json_object **out, ds4_api_error *e) {
    *out = NULL;
    if (!tools) return 0;
    if (!json_object_is_type(tools, json_type_array)) return bad(e, "tools must be an array");
    json_object *list = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(tools); i++) {
        json_object *t = json_object_array_get_idx(tools, i), *schema;
        const char *name, *desc, *type;
        if (!json_object_is_type(t, json_type_object)) {
            json_object_put(list);
            return bad(e, "tools[%zu] must be an object", i);
        }
        if (get_string(t, "name", &name, true, e) < 0 || get_string(t, "description", &desc, false, e) < 0 ||
            get_string(t, "type", &type, false, e) < 0) {
            json_object_put(list);
            return -1;
        }
        if (type && strcmp(type, "custom")) continue; /* the API's own server tools: not ours to run */
        json_object *fn = json_object_new_object(), *tool = json_object_new_object();
        json_object_object_add(fn, "name", json_object_new_string(name));
        if (desc) json_object_object_add(fn, "description", json_object_new_string(desc));
        if ((schema = field(t, "input_schema"))) json_object_object_add(fn, "parameters", json_object_get(schema));
        json_object_object_add(tool, "type", json_object_new_string("function"));
        json_object_object_add(tool, "function", fn);
        json_object_array_add(list, tool);
    }
    *out = list;
    return 0;
}

static int parse_anthropic(ds4_api_endpoint ep, json_object *body, ds4_api_request *r, ds4_api_error *e) {
    int64_t v = 0;
    bool given;
    if (ep == DS4_EP_MESSAGES) {
        if (get_int(body, "max_tokens", 1, INT32_MAX, &v, &given, e) < 0) return -1;
        if (!given) return bad(e, "max_tokens: a required field is missing");
        r->max_tokens = (int)v;
    }
    if (get_bool(body, "stream", &r->stream, e) < 0) return -1;
    if (get_number(body, "temperature", 0, 1, &r->temperature, e) < 0) return -1;
    if (get_number(body, "top_p", 0, 1, &r->top_p, e) < 0) return -1;
    if (get_stops(body, "stop_sequences", r, e) < 0) return -1;
    bool thinking = false;
    json_object *t = field(body, "thinking");
    if (t) {
        const char *type;
        if (!json_object_is_type(t, json_type_object)) return bad(e, "thinking must be an object");
        if (get_string(t, "type", &type, true, e) < 0) return -1;
        if (strcmp(type, "enabled") && strcmp(type, "disabled"))
            return bad(e, "thinking.type must be \"enabled\" or \"disabled\"");
        thinking = !strcmp(type, "enabled");
    }
    json_object *msgs = json_object_new_array(), *sys = field(body, "system"), *tools = NULL;
    int rc = 0;
    if (sys) {
        ds4_buf text = {0};
        rc = text_parts(sys, "system", &text, e);
        if (rc == 0) json_object_array_add(msgs, message("system", buf_str(&text), text.len));
        ds4_buf_free(&text);
    }
    json_object *list = field(body, "messages");
    if (rc == 0 && !list) rc = bad(e, "messages: a required field is missing");
    if (rc == 0 && !json_object_is_type(list, json_type_array)) rc = bad(e, "messages must be an array");
    if (rc == 0 && json_object_array_length(list) == 0) rc = bad(e, "messages must not be empty");
    for (size_t i = 0; rc == 0 && i < json_object_array_length(list); i++)
        rc = anthropic_message(json_object_array_get_idx(list, i), i, msgs, e);
    if (rc == 0) rc = anthropic_tools(field(body, "tools"), &tools, e);
    json_object *choice = field(body, "tool_choice");
    if (rc == 0 && choice) {
        const char *type;
        if (!json_object_is_type(choice, json_type_object)) rc = bad(e, "tool_choice must be an object");
        else if ((rc = get_string(choice, "type", &type, true, e)) == 0 && !strcmp(type, "none")) {
            json_object_put(tools);
            tools = NULL;
        }
    }
    if (rc == 0) rc = render(msgs, tools, NULL, thinking, NULL, r, e);
    json_object_put(tools);
    json_object_put(msgs);
    return rc;
}

int ds4_api_parse(ds4_api_flavor flavor, ds4_api_endpoint ep, json_object *body, ds4_api_request *r, ds4_api_error *e) {
    memset(r, 0, sizeof *r);
    r->flavor = flavor;
    r->endpoint = ep;
    r->max_tokens = -1;
    r->temperature = 1;
    r->top_p = 1;
    r->top_logprobs = -1;
    r->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)r;
    int rc;
    const char *model;
    if (!body || !json_object_is_type(body, json_type_object)) rc = bad(e, "the request body must be a JSON object");
    else if ((rc = get_string(body, "model", &model, true, e)) == 0) {
        r->model = ds4_strndup(model, strlen(model));
        rc = flavor == DS4_API_OPENAI ? parse_openai(ep, body, r, e) : parse_anthropic(ep, body, r, e);
    }
    if (rc < 0) ds4_api_request_free(r);
    return rc;
}
