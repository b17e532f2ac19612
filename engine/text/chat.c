/* chat.c - see chat.h. The rendering follows the official Jinja template line by line;
 * the strings below are its strings. */
#include "chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DSML "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c" /* ｜DSML｜ */
#define USER_TOK "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define ASSISTANT_TOK "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define EOS_TOK "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define BOS_TOK "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define THINK "<think>"
#define END_THINK "</think>"

static const char reasoning_effort_max[] =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
    "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial "
    "scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

static const char response_format_template[] =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

static const char tools_header[] =
    "## Tools\n\nYou have access to a set of tools to help answer the user's question. You can invoke tools by "
    "writing a \"<" DSML "tool_calls>\" block like the following:\n\n"
    "<" DSML "tool_calls>\n<" DSML "invoke name=\"$TOOL_NAME\">\n<" DSML
    "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" DSML "parameter>\n...\n</" DSML
    "invoke>\n<" DSML "invoke name=\"$TOOL_NAME2\">\n...\n</" DSML "invoke>\n</" DSML "tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, "
    "booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by " THINK "), you MUST output your complete reasoning inside " THINK
    "..." END_THINK " BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after " END_THINK " with tool calls or final response.\n\n### Available Tool Schemas\n\n";

static const char tools_footer[] = "\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";

static int put(ds4_buf *b, const char *s) { return ds4_buf_append(b, s, strlen(s)); }

/* ---- tojson ---- */

/* Python's repr of a float: the shortest digits that read back, fixed notation for
 * exponents -4..15, else d.ddde+XX. */
static int put_py_float(ds4_buf *b, double x) {
    char buf[64];
    if (isnan(x)) return put(b, "NaN");
    if (isinf(x)) return put(b, x > 0 ? "Infinity" : "-Infinity");
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    char digits[32];
    int nd = 0, exp10 = 0;
    bool neg = false;
    for (const char *c = buf; *c; c++) {
        if (*c == '-' && nd == 0) neg = true;
        else if (*c >= '0' && *c <= '9') digits[nd++] = *c;
        else if (*c == 'e') { exp10 = atoi(c + 1); break; }
    }
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    ds4_buf_append(b, "-", neg ? 1 : 0);
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            put(b, "0.");
            for (int i = -1; i > exp10; i--) put(b, "0");
            return put(b, digits);
        }
        for (int i = 0; i <= exp10; i++) ds4_buf_append(b, i < nd ? &digits[i] : "0", 1);
        put(b, ".");
        return nd > exp10 + 1 ? put(b, digits + exp10 + 1) : put(b, "0");
    }
    ds4_buf_append(b, digits, 1);
    if (nd > 1) {
        put(b, ".");
        put(b, digits + 1);
    }
    snprintf(buf, sizeof buf, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    return put(b, buf);
}

static int put_py_string(ds4_buf *b, const char *s, size_t n) {
    put(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '"': put(b, "\\\""); break;
        case '\\': put(b, "\\\\"); break;
        case '\n': put(b, "\\n"); break;
        case '\r': put(b, "\\r"); break;
        case '\t': put(b, "\\t"); break;
        case '\b': put(b, "\\b"); break;
        case '\f': put(b, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                put(b, esc);
            } else {
                ds4_buf_append(b, &s[i], 1);
            }
        }
    }
    return put(b, "\"");
}

int ds4_json_dump_py(json_object *o, ds4_buf *b) {
    char buf[32];
    switch (json_object_get_type(o)) {
    case json_type_null: return put(b, "null");
    case json_type_boolean: return put(b, json_object_get_boolean(o) ? "true" : "false");
    case json_type_int:
        snprintf(buf, sizeof buf, "%lld", (long long)json_object_get_int64(o));
        return put(b, buf);
    case json_type_double: return put_py_float(b, json_object_get_double(o));
    case json_type_string: return put_py_string(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
    case json_type_array: {
        put(b, "[");
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            if (i) put(b, ", ");
            if (ds4_json_dump_py(json_object_array_get_idx(o, i), b) < 0) return -1;
        }
        return put(b, "]");
    }
    case json_type_object: {
        put(b, "{");
        bool first = true;
        json_object_object_foreach(o, key, val) {
            if (!first) put(b, ", ");
            first = false;
            put_py_string(b, key, strlen(key));
            put(b, ": ");
            if (ds4_json_dump_py(val, b) < 0) return -1;
        }
        return put(b, "}");
    }
    }
    return -1;
}

/* ---- rendering ---- */

static json_object *get(json_object *o, const char *k) {
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* Jinja truthiness of a JSON value (null, "", [], {} and false are false). */
static bool truthy(json_object *v) {
    switch (json_object_get_type(v)) {
    case json_type_null: return false;
    case json_type_boolean: return json_object_get_boolean(v);
    case json_type_string: return json_object_get_string_len(v) > 0;
    case json_type_array: return json_object_array_length(v) > 0;
    case json_type_object: return json_object_object_length(v) > 0;
    case json_type_int: return json_object_get_int64(v) != 0;
    case json_type_double: return json_object_get_double(v) != 0;
    }
    return false;
}

/* `content or ''`: a string (or nothing); other types are an error. */
static int text_of(json_object *m, const char *key, const char **out, int index) {
    json_object *v = get(m, key);
    *out = "";
    if (!v || json_object_is_type(v, json_type_null)) return 0;
    if (!json_object_is_type(v, json_type_string)) return ds4_fail("message %d: %s must be a string", index, key);
    *out = json_object_get_string(v);
    return 0;
}

static const char *role_of(json_object *m) {
    json_object *r = get(m, "role");
    return r && json_object_is_type(r, json_type_string) ? json_object_get_string(r) : "";
}

static int render_tool_calls(json_object *calls, ds4_buf *out, int index) {
    put(out, "\n\n<" DSML "tool_calls>\n");
    for (size_t i = 0; i < json_object_array_length(calls); i++) {
        json_object *fn = get(json_object_array_get_idx(calls, i), "function"), *name = get(fn, "name");
        json_object *args = get(fn, "arguments"), *parsed = NULL;
        if (!name || !json_object_is_type(name, json_type_string))
            return ds4_fail("message %d: tool call %zu needs function.name", index, i);
        if (args && json_object_is_type(args, json_type_string)) {
            parsed = json_tokener_parse(json_object_get_string(args));
            if (!parsed || !json_object_is_type(parsed, json_type_object)) {
                if (parsed) json_object_put(parsed);
                return ds4_fail("message %d: tool call %zu arguments are not a JSON object", index, i);
            }
            args = parsed;
        }
        if (args && !json_object_is_type(args, json_type_object)) return ds4_fail("message %d: arguments must be an object", index);
        put(out, "<" DSML "invoke name=\"");
        put(out, json_object_get_string(name));
        put(out, "\">\n");
        if (args) {
            json_object_object_foreach(args, key, val) {
                put(out, "<" DSML "parameter name=\"");
                put(out, key);
                if (json_object_is_type(val, json_type_string)) {
                    put(out, "\" string=\"true\">");
                    ds4_buf_append(out, json_object_get_string(val), (size_t)json_object_get_string_len(val));
                } else {
                    put(out, "\" string=\"false\">");
                    ds4_json_dump_py(val, out);
                }
                put(out, "</" DSML "parameter>\n");
            }
        }
        if (!truthy(args)) put(out, "\n");
        put(out, "</" DSML "invoke>\n");
        if (parsed) json_object_put(parsed);
    }
    return put(out, "</" DSML "tool_calls>");
}

int ds4_chat_render(json_object *messages, const ds4_chat_opts *o, ds4_buf *out) {
    if (!messages || !json_object_is_type(messages, json_type_array)) return ds4_fail("messages must be a JSON array");
    const int n = (int)json_object_array_length(messages);
    ds4_buf sp = {0};
    bool first_sp = true, has_tools = false, has_tool_results = false;
    int last_user = -1, rc = -1;
    for (int i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(messages, i);
        if (!json_object_is_type(m, json_type_object)) {
            ds4_fail("message %d is not an object", i);
            goto done;
        }
        const char *role = role_of(m), *content;
        if (!strcmp(role, "system")) {
            if (text_of(m, "content", &content, i) < 0) goto done;
            if (!first_sp) put(&sp, "\n\n");
            put(&sp, content);
            first_sp = false;
        }
        if (!strcmp(role, "user") || !strcmp(role, "developer") || !strcmp(role, "tool")) last_user = i;
        if (!strcmp(role, "tool")) has_tool_results = true;
    }
    if (o->tools && truthy(o->tools)) {
        has_tools = true;
        ds4_buf schemas = {0};
        for (size_t i = 0; i < json_object_array_length(o->tools); i++) {
            json_object *tool = json_object_array_get_idx(o->tools, i), *type = get(tool, "type");
            if (type && json_object_is_type(type, json_type_string) && !strcmp(json_object_get_string(type), "function")) {
                ds4_json_dump_py(get(tool, "function"), &schemas);
                put(&schemas, "\n");
            }
        }
        if (sp.len) put(&sp, "\n\n");
        put(&sp, tools_header);
        ds4_buf_append(&sp, schemas.data, schemas.len);
        put(&sp, tools_footer);
        ds4_buf_free(&schemas);
    }
    if (o->response_format) {
        if (sp.len) put(&sp, "\n\n");
        put(&sp, response_format_template);
        ds4_json_dump_py(o->response_format, &sp);
    }
    put(out, o->bos ? o->bos : BOS_TOK);
    if (n && o->thinking && o->reasoning_effort && !strcmp(o->reasoning_effort, "max")) put(out, reasoning_effort_max);
    ds4_buf_append(out, sp.data, sp.len);

    bool in_user = false;
    for (int i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(messages, i);
        const char *role = role_of(m), *content;
        if (text_of(m, "content", &content, i) < 0) goto done;
        if (!strcmp(role, "user") || !strcmp(role, "developer") || !strcmp(role, "tool")) {
            put(out, in_user ? "\n\n" : USER_TOK);
            in_user = true;
            if (!strcmp(role, "tool")) {
                put(out, "<tool_result>");
                put(out, content);
                put(out, "</tool_result>");
            } else {
                put(out, content);
            }
        } else if (!strcmp(role, "assistant")) {
            in_user = false;
            put(out, ASSISTANT_TOK);
            bool keep = o->thinking && (o->keep_thinking || has_tools || i > last_user || has_tool_results);
            if (keep) {
                const char *reasoning;
                if (text_of(m, "reasoning_content", &reasoning, i) < 0) goto done;
                put(out, THINK);
                put(out, reasoning);
            }
            put(out, END_THINK);
            put(out, content);
            json_object *calls = get(m, "tool_calls");
            if (truthy(calls)) {
                if (!json_object_is_type(calls, json_type_array)) {
                    ds4_fail("message %d: tool_calls must be an array", i);
                    goto done;
                }
                if (render_tool_calls(calls, out, i) < 0) goto done;
            }
            put(out, EOS_TOK);
        }
    }
    if (o->add_generation_prompt) {
        put(out, ASSISTANT_TOK);
        put(out, o->thinking ? THINK : END_THINK);
    }
    rc = 0;
done:
    ds4_buf_free(&sp);
    return rc;
}

/* ---- parsing ---- */

static char *dup_range(const char *s, size_t n) { return ds4_strndup(s, n); }

/* Reads `name="VALUE"` at *p; returns the value (allocated) and advances. */
static char *attr(const char **p, const char *name) {
    size_t n = strlen(name);
    if (strncmp(*p, name, n) || (*p)[n] != '=' || (*p)[n + 1] != '"') return NULL;
    const char *v = *p + n + 2, *end = strchr(v, '"');
    if (!end) return NULL;
    *p = end + 1;
    return dup_range(v, (size_t)(end - v));
}

int ds4_chat_parse_tool_calls(const char *p, json_object **out) {
    static const char open_calls[] = "<" DSML "tool_calls>", close_calls[] = "</" DSML "tool_calls>";
    static const char open_inv[] = "<" DSML "invoke ", close_inv[] = "</" DSML "invoke>";
    static const char open_par[] = "<" DSML "parameter ", close_par[] = "</" DSML "parameter>";
    json_object *calls = json_object_new_array();
    p += strlen(open_calls);
    for (;;) {
        while (*p == '\n') p++;
        if (!strncmp(p, close_calls, strlen(close_calls))) break;
        if (strncmp(p, open_inv, strlen(open_inv))) {
            json_object_put(calls);
            return ds4_fail("malformed tool call block: expected an invoke or the end of the block at '%.20s'", p);
        }
        p += strlen(open_inv);
        char *name = attr(&p, "name");
        if (!name || *p != '>') {
            free(name);
            json_object_put(calls);
            return ds4_fail("malformed tool call: invoke needs name=\"...\"");
        }
        p++;
        json_object *args = json_object_new_object();
        for (;;) {
            while (*p == '\n') p++;
            if (!strncmp(p, close_inv, strlen(close_inv))) {
                p += strlen(close_inv);
                break;
            }
            char *key = NULL, *is_str = NULL;
            const char *end = NULL;
            if (!strncmp(p, open_par, strlen(open_par))) {
                p += strlen(open_par);
                key = attr(&p, "name");
                if (*p == ' ') p++;
                is_str = attr(&p, "string");
            }
            if (!key || !is_str || *p != '>' || !(end = strstr(p + 1, close_par))) {
                free(key);
                free(is_str);
                json_object_put(args);
                json_object_put(calls);
                int rc = ds4_fail("malformed tool call parameter in invoke of '%s'", name);
                free(name);
                return rc;
            }
            p++;
            json_object *val;
            if (!strcmp(is_str, "true")) {
                val = json_object_new_string_len(p, (int)(end - p));
            } else {
                char *raw = dup_range(p, (size_t)(end - p));
                enum json_tokener_error err;
                val = raw ? json_tokener_parse_verbose(raw, &err) : NULL;
                bool is_null = raw && !strcmp(raw, "null");
                free(raw);
                if (!val && !is_null) {
                    free(key);
                    free(is_str);
                    json_object_put(args);
                    json_object_put(calls);
                    int rc = ds4_fail("tool '%s': parameter is marked string=\"false\" but is not JSON", name);
                    free(name);
                    return rc;
                }
            }
            json_object_object_add(args, key, val);
            free(key);
            free(is_str);
            p = end + strlen(close_par);
        }
        json_object *call = json_object_new_object();
        json_object_object_add(call, "name", json_object_new_string(name));
        json_object_object_add(call, "arguments", args);
        json_object_array_add(calls, call);
        free(name);
    }
    *out = calls;
    return 0;
}

int ds4_chat_parse(const char *text, bool in_thinking, ds4_chat_reply *r) {
    memset(r, 0, sizeof *r);
    size_t n = strlen(text);
    if (n >= strlen(EOS_TOK) && !strcmp(text + n - strlen(EOS_TOK), EOS_TOK)) n -= strlen(EOS_TOK);
    const char *p = text, *end = text + n;
    if (in_thinking || !strncmp(p, THINK, strlen(THINK))) {
        if (!strncmp(p, THINK, strlen(THINK))) p += strlen(THINK);
        const char *close = strstr(p, END_THINK);
        if (!close || close > end) close = end; /* reasoning cut short */
        r->reasoning = dup_range(p, (size_t)(close - p));
        p = close < end ? close + strlen(END_THINK) : end;
    } else if (!strncmp(p, END_THINK, strlen(END_THINK))) {
        p += strlen(END_THINK);
    }
    char *body = dup_range(p, (size_t)(end - p));
    if (!body) return -1;
    char *calls = strstr(body, "<" DSML "tool_calls>");
    if (calls) {
        if (ds4_chat_parse_tool_calls(calls, &r->tool_calls) < 0) {
            free(body);
            ds4_chat_reply_free(r);
            return -1;
        }
        while (calls > body && calls[-1] == '\n') calls--;
        *calls = 0;
    }
    r->content = body;
    return 0;
}

void ds4_chat_reply_free(ds4_chat_reply *r) {
    free(r->reasoning);
    free(r->content);
    if (r->tool_calls) json_object_put(r->tool_calls);
    memset(r, 0, sizeof *r);
}

int ds4_chat_render_head(json_object *messages, const ds4_chat_opts *opts, ds4_buf *out) {
    if (!messages || !json_object_is_type(messages, json_type_array)) return ds4_fail("messages must be a JSON array");
    const size_t n = json_object_array_length(messages);
    size_t k = 0;
    while (k < n) {
        const char *role = role_of(json_object_array_get_idx(messages, k));
        if (strcmp(role, "system") && strcmp(role, "developer")) break;
        k++;
    }
    if (k == 0 || k == n) return 0;
    json_object *head = json_object_new_array();
    if (!head) return ds4_fail("out of memory");
    for (size_t i = 0; i < k; i++) json_object_array_add(head, json_object_get(json_object_array_get_idx(messages, i)));
    ds4_chat_opts o = *opts;
    o.add_generation_prompt = false;
    const int rc = ds4_chat_render(head, &o, out);
    json_object_put(head);
    return rc;
}

uint64_t ds4_chat_head_length(const ds4_tokenizer *t, const char *head, size_t len, const int32_t *ids, uint64_t n) {
    int32_t *h = NULL;
    size_t k = 0;
    uint64_t got = 0;
    if (len && ds4_tokenize(t, head, len, true, &h, &k) == 0 && k < n && !memcmp(h, ids, k * sizeof *h)) got = k;
    free(h);
    return got;
}

int ds4_chat_render_user(const char *text, bool thinking, ds4_buf *out) {
    json_object *msgs = json_object_new_array(), *msg = json_object_new_object();
    if (!msgs || !msg) {
        json_object_put(msgs);
        json_object_put(msg);
        return ds4_fail("out of memory");
    }
    json_object_object_add(msg, "role", json_object_new_string("user"));
    json_object_object_add(msg, "content", json_object_new_string(text));
    json_object_array_add(msgs, msg);
    ds4_chat_opts o = {.thinking = thinking, .add_generation_prompt = true};
    int rc = ds4_chat_render(msgs, &o, out);
    json_object_put(msgs);
    return rc;
}
