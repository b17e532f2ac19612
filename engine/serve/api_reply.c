/* api_reply.c - replies in both APIs' shapes (api.h): OpenAI's chat.completion and
 * text_completion documents and their chunks ending in [DONE]; Anthropic's message and
 * its event sequence (message_start, a content block per reasoning, text and tool call
 * with their deltas and stops, message_delta, message_stop). */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char ds4_api_keepalive[] = ": keep-alive\n\n";

typedef enum { NO_BLOCK, THINKING_BLOCK, TEXT_BLOCK } block_kind;

struct ds4_api_reply {
    ds4_api_flavor flavor;
    ds4_api_endpoint ep;
    bool stream, include_usage;
    char id[48];
    char *model;
    uint64_t created, prompt_tokens, cached_tokens;
    ds4_buf content, reasoning;  /* whole replies */
    json_object *calls;          /* [{"id", "name", "arguments": {...}}] */
    json_object *logprobs;       /* OpenAI's logprobs.content entries, NULL without */
    size_t logprobs_sent;        /* streamed so far */
    int n_blocks;                /* Anthropic streams: blocks opened */
    block_kind open;
};

static uint64_t next_id(void) {
    static uint64_t counter;
    return __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
}

ds4_api_reply *ds4_api_reply_new(const ds4_api_request *r, const char *model, uint64_t created) {
    ds4_api_reply *p = ds4_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->flavor = r->flavor;
    p->ep = r->endpoint;
    p->stream = r->stream;
    p->include_usage = r->include_usage;
    p->created = created;
    p->model = ds4_strndup(model, strlen(model));
    p->calls = json_object_new_array();
    if (r->top_logprobs >= 0) p->logprobs = json_object_new_array();
    const uint64_t n = next_id() ^ (created << 20);
    snprintf(p->id, sizeof p->id, "%s%016llx",
             r->endpoint == DS4_EP_MESSAGES ? "msg_" : r->endpoint == DS4_EP_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long long)n);
    return p;
}

void ds4_api_reply_free(ds4_api_reply *p) {
    if (!p) return;
    free(p->model);
    ds4_buf_free(&p->content);
    ds4_buf_free(&p->reasoning);
    json_object_put(p->calls);
    json_object_put(p->logprobs);
    free(p);
}

static int put_json(ds4_buf *out, json_object *o) {
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    return ds4_buf_append(out, s, strlen(s));
}

/* One server-sent event (Anthropic's carry their type as the event name); o is consumed. */
static int sse(ds4_api_reply *p, ds4_buf *out, json_object *o) {
    json_object *type;
    if (p->flavor == DS4_API_ANTHROPIC && json_object_object_get_ex(o, "type", &type)) {
        ds4_buf_append(out, "event: ", 7);
        ds4_buf_append(out, json_object_get_string(type), (size_t)json_object_get_string_len(type));
        ds4_buf_append(out, "\n", 1);
    }
    ds4_buf_append(out, "data: ", 6);
    put_json(out, o);
    json_object_put(o);
    return ds4_buf_append(out, "\n\n", 2);
}

/* The length of the valid UTF-8 character at s (n bytes left), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    size_t len;
    uint32_t min;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) len = 2, min = 0x80;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) len = 3, min = 0x800;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    uint32_t c = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    return c >= min && c <= 0x10ffff && (c < 0xd800 || c > 0xdfff) ? len : 0;
}

int ds4_api_clean_utf8(const char *s, size_t n, ds4_buf *out) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        const size_t k = utf8_char(u + i, n - i);
        if (ds4_buf_append(out, k ? s + i : "\xef\xbf\xbd", k ? k : 3) < 0) return -1;
        i += k ? k : 1;
    }
    return 0;
}

json_object *ds4_api_text(const char *s, size_t n) {
    ds4_buf b = {0};
    ds4_api_clean_utf8(s, n, &b);
    json_object *o = json_object_new_string_len(b.data ? (const char *)b.data : "", (int)b.len);
    ds4_buf_free(&b);
    return o;
}

static json_object *str(const char *s, size_t n) { return json_object_new_string_len(s, (int)n); }

static json_object *openai_usage(const ds4_api_usage *u) {
    json_object *usage = json_object_new_object(), *details = json_object_new_object();
    json_object_object_add(usage, "prompt_tokens", json_object_new_int64((int64_t)u->prompt_tokens));
    json_object_object_add(usage, "completion_tokens", json_object_new_int64((int64_t)u->completion_tokens));
    json_object_object_add(usage, "total_tokens", json_object_new_int64((int64_t)(u->prompt_tokens + u->completion_tokens)));
    json_object_object_add(details, "cached_tokens", json_object_new_int64((int64_t)u->cached_tokens));
    json_object_object_add(usage, "prompt_tokens_details", details);
    return usage;
}

/* Anthropic counts input tokens read from the cache apart from the others. */
static json_object *anthropic_usage(uint64_t prompt, uint64_t cached, uint64_t output) {
    json_object *usage = json_object_new_object();
    json_object_object_add(usage, "input_tokens", json_object_new_int64((int64_t)(prompt - cached)));
    json_object_object_add(usage, "cache_creation_input_tokens", json_object_new_int64(0));
    json_object_object_add(usage, "cache_read_input_tokens", json_object_new_int64((int64_t)cached));
    json_object_object_add(usage, "output_tokens", json_object_new_int64((int64_t)output));
    return usage;
}

/* The frame of an OpenAI chunk with one choice; returns the choice to fill. */
static json_object *openai_chunk(ds4_api_reply *p, json_object **choice) {
    json_object *c = json_object_new_object(), *choices = json_object_new_array();
    json_object_object_add(c, "id", json_object_new_string(p->id));
    json_object_object_add(c, "object", json_object_new_string(p->ep == DS4_EP_CHAT ? "chat.completion.chunk"
                                                                                     : "text_completion"));
    json_object_object_add(c, "created", json_object_new_int64((int64_t)p->created));
    json_object_object_add(c, "model", json_object_new_string(p->model));
    if (choice) {
        *choice = json_object_new_object();
        json_object_object_add(*choice, "index", json_object_new_int(0));
        json_object_array_add(choices, *choice);
    }
    json_object_object_add(c, "choices", choices);
    return c;
}

/* A chat chunk whose delta has one field (consumed); the logprobs made since the last. */
static int openai_delta(ds4_api_reply *p, ds4_buf *out, const char *key, json_object *val) {
    json_object *choice, *c = openai_chunk(p, &choice), *delta = json_object_new_object();
    if (p->ep == DS4_EP_CHAT) {
        json_object_object_add(delta, key, val);
        json_object_object_add(choice, "delta", delta);
    } else {
        json_object_put(delta);
        json_object_object_add(choice, "text", val);
    }
    json_object *lp = NULL;
    if (p->logprobs && json_object_array_length(p->logprobs) > p->logprobs_sent) {
        json_object *entries = json_object_new_array();
        for (size_t i = p->logprobs_sent; i < json_object_array_length(p->logprobs); i++)
            json_object_array_add(entries, json_object_get(json_object_array_get_idx(p->logprobs, i)));
        p->logprobs_sent = json_object_array_length(p->logprobs);
        lp = json_object_new_object();
        json_object_object_add(lp, "content", entries);
    }
    json_object_object_add(choice, "logprobs", lp);
    json_object_object_add(choice, "finish_reason", NULL);
    return sse(p, out, c);
}

int ds4_api_reply_start(ds4_api_reply *p, uint64_t prompt_tokens, uint64_t cached_tokens, ds4_buf *out) {
    p->prompt_tokens = prompt_tokens;
    p->cached_tokens = cached_tokens;
    if (!p->stream) return 0;
    if (p->flavor == DS4_API_OPENAI)
        return p->ep == DS4_EP_CHAT ? openai_delta(p, out, "role", json_object_new_string("assistant")) : 0;
    json_object *ev = json_object_new_object(), *msg = json_object_new_object();
    json_object_object_add(ev, "type", json_object_new_string("message_start"));
    json_object_object_add(msg, "id", json_object_new_string(p->id));
    json_object_object_add(msg, "type", json_object_new_string("message"));
    json_object_object_add(msg, "role", json_object_new_string("assistant"));
    json_object_object_add(msg, "model", json_object_new_string(p->model));
    json_object_object_add(msg, "content", json_object_new_array());
    json_object_object_add(msg, "stop_reason", NULL);
    json_object_object_add(msg, "stop_sequence", NULL);
    json_object_object_add(msg, "usage", anthropic_usage(prompt_tokens, cached_tokens, 0));
    json_object_object_add(ev, "message", msg);
    return sse(p, out, ev);
}

/* An Anthropic event of the block open last, with one more field (key NULL: none). */
static int block_event(ds4_api_reply *p, ds4_buf *out, const char *type, const char *key, json_object *val) {
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "type", json_object_new_string(type));
    json_object_object_add(ev, "index", json_object_new_int(p->n_blocks - 1));
    if (key) json_object_object_add(ev, key, val);
    return sse(p, out, ev);
}

static int close_block(ds4_api_reply *p, ds4_buf *out) {
    if (p->open == NO_BLOCK) return 0;
    p->open = NO_BLOCK;
    return block_event(p, out, "content_block_stop", NULL, NULL);
}

static int open_block(ds4_api_reply *p, ds4_buf *out, json_object *block) {
    p->n_blocks++;
    return block_event(p, out, "content_block_start", "content_block", block);
}

static json_object *typed(const char *type) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string(type));
    return o;
}

static int anthropic_text(ds4_api_reply *p, ds4_buf *out, block_kind kind, const char *text, size_t len) {
    const bool thinking = kind == THINKING_BLOCK;
    if (p->open != kind) {
        close_block(p, out);
        json_object *b = typed(thinking ? "thinking" : "text");
        json_object_object_add(b, thinking ? "thinking" : "text", json_object_new_string(""));
        if (thinking) json_object_object_add(b, "signature", json_object_new_string(""));
        open_block(p, out, b);
        p->open = kind;
    }
    json_object *d = typed(thinking ? "thinking_delta" : "text_delta");
    json_object_object_add(d, thinking ? "thinking" : "text", str(text, len));
    return block_event(p, out, "content_block_delta", "delta", d);
}

/* A stored call {"id", "name", "arguments"} as OpenAI writes it (its "index" in a stream,
 * index >= 0) and as Anthropic's tool_use block (input: the arguments, or {} where the
 * stream sends them as a delta). */
static json_object *field_of(json_object *o, const char *key) {
    json_object *v = NULL;
    json_object_object_get_ex(o, key, &v);
    return v;
}

static json_object *openai_tool_call(json_object *call, int index) {
    json_object *tc = json_object_new_object(), *fn = json_object_new_object();
    if (index >= 0) json_object_object_add(tc, "index", json_object_new_int(index));
    json_object_object_add(tc, "id", json_object_get(field_of(call, "id")));
    json_object_object_add(tc, "type", json_object_new_string("function"));
    json_object_object_add(fn, "name", json_object_get(field_of(call, "name")));
    json_object_object_add(fn, "arguments", json_object_new_string(json_object_to_json_string_ext(
                                                field_of(call, "arguments"), JSON_C_TO_STRING_PLAIN)));
    json_object_object_add(tc, "function", fn);
    return tc;
}

static json_object *anthropic_tool_use(json_object *call, bool with_input) {
    json_object *b = typed("tool_use");
    json_object_object_add(b, "id", json_object_get(field_of(call, "id")));
    json_object_object_add(b, "name", json_object_get(field_of(call, "name")));
    json_object_object_add(b, "input", with_input ? json_object_get(field_of(call, "arguments")) : json_object_new_object());
    return b;
}

int ds4_api_reply_event(ds4_api_reply *p, const ds4_chat_event *ev, ds4_buf *out) {
    if (ev->kind == DS4_CHAT_WARNING) return 0;
    if (ev->kind == DS4_CHAT_TOOL_CALL) {
        const size_t k = json_object_array_length(p->calls);
        char id[96];
        snprintf(id, sizeof id, "%s%s_%zu", p->flavor == DS4_API_OPENAI ? "call_" : "toolu_", p->id, k);
        json_object *call = json_object_new_object();
        json_object_object_add(call, "id", json_object_new_string(id));
        json_object_object_add(call, "name", json_object_get(field_of(ev->call, "name")));
        json_object_object_add(call, "arguments", json_object_get(field_of(ev->call, "arguments")));
        json_object_array_add(p->calls, call);
        if (!p->stream) return 0;
        if (p->flavor == DS4_API_OPENAI) {
            json_object *list = json_object_new_array();
            json_object_array_add(list, openai_tool_call(call, (int)k));
            return openai_delta(p, out, "tool_calls", list);
        }
        close_block(p, out);
        open_block(p, out, anthropic_tool_use(call, false));
        json_object *d = typed("input_json_delta");
        json_object_object_add(d, "partial_json", json_object_new_string(json_object_to_json_string_ext(
                                                      field_of(call, "arguments"), JSON_C_TO_STRING_PLAIN)));
        block_event(p, out, "content_block_delta", "delta", d);
        return block_event(p, out, "content_block_stop", NULL, NULL);
    }
    const bool reasoning = ev->kind == DS4_CHAT_REASONING;
    if (!p->stream) return ds4_buf_append(reasoning ? &p->reasoning : &p->content, ev->text, ev->len);
    if (p->flavor == DS4_API_OPENAI)
        return openai_delta(p, out, reasoning ? "reasoning_content" : "content", str(ev->text, ev->len));
    return anthropic_text(p, out, reasoning ? THINKING_BLOCK : TEXT_BLOCK, ev->text, ev->len);
}

int ds4_api_reply_logprob(ds4_api_reply *p, json_object *entry) {
    if (!p->logprobs) {
        json_object_put(entry);
        return 0;
    }
    return json_object_array_add(p->logprobs, entry);
}

static const char *openai_finish(ds4_api_reply *p, const ds4_api_usage *u) {
    return json_object_array_length(p->calls) ? "tool_calls" : u->finish;
}

static const char *anthropic_stop(ds4_api_reply *p, const ds4_api_usage *u) {
    if (json_object_array_length(p->calls)) return "tool_use";
    if (!strcmp(u->finish, "length")) return "max_tokens";
    return u->stop_text ? "stop_sequence" : "end_turn";
}

static json_object *openai_calls(ds4_api_reply *p) {
    json_object *list = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(p->calls); i++)
        json_object_array_add(list, openai_tool_call(json_object_array_get_idx(p->calls, i), -1));
    return list;
}

static int finish_openai(ds4_api_reply *p, const ds4_api_usage *u, ds4_buf *out) {
    const char *finish = openai_finish(p, u);
    if (p->stream) {
        json_object *choice, *c = openai_chunk(p, &choice);
        if (p->ep == DS4_EP_CHAT) json_object_object_add(choice, "delta", json_object_new_object());
        else json_object_object_add(choice, "text", json_object_new_string(""));
        json_object_object_add(choice, "logprobs", NULL);
        json_object_object_add(choice, "finish_reason", json_object_new_string(finish));
        sse(p, out, c);
        if (p->include_usage) {
            c = openai_chunk(p, NULL);
            json_object_object_add(c, "usage", openai_usage(u));
            sse(p, out, c);
        }
        return ds4_buf_append(out, "data: [DONE]\n\n", 14);
    }
    json_object *choice, *c = openai_chunk(p, &choice);
    json_object_object_add(c, "object", json_object_new_string(p->ep == DS4_EP_CHAT ? "chat.completion"
                                                                                     : "text_completion"));
    if (p->ep == DS4_EP_CHAT) {
        json_object *msg = json_object_new_object();
        const bool calls = json_object_array_length(p->calls) > 0;
        json_object_object_add(msg, "role", json_object_new_string("assistant"));
        json_object_object_add(msg, "content",
                               calls && !p->content.len ? NULL : str((const char *)p->content.data, p->content.len));
        if (p->reasoning.len)
            json_object_object_add(msg, "reasoning_content", str((const char *)p->reasoning.data, p->reasoning.len));
        if (calls) json_object_object_add(msg, "tool_calls", openai_calls(p));
        json_object_object_add(choice, "message", msg);
    } else {
        json_object_object_add(choice, "text", str((const char *)p->content.data, p->content.len));
    }
    json_object *lp = NULL;
    if (p->logprobs) {
        lp = json_object_new_object();
        json_object_object_add(lp, "content", json_object_get(p->logprobs));
    }
    json_object_object_add(choice, "logprobs", lp);
    json_object_object_add(choice, "finish_reason", json_object_new_string(finish));
    json_object_object_add(c, "usage", openai_usage(u));
    put_json(out, c);
    json_object_put(c);
    return 0;
}

static int finish_anthropic(ds4_api_reply *p, const ds4_api_usage *u, ds4_buf *out) {
    const char *stop = anthropic_stop(p, u);
    json_object *stop_seq = u->stop_text && !json_object_array_length(p->calls) ? json_object_new_string(u->stop_text)
                                                                                : NULL;
    if (p->stream) {
        close_block(p, out);
        json_object *ev = typed("message_delta"), *d = json_object_new_object();
        json_object_object_add(d, "stop_reason", json_object_new_string(stop));
        json_object_object_add(d, "stop_sequence", stop_seq);
        json_object_object_add(ev, "delta", d);
        json_object_object_add(ev, "usage", anthropic_usage(u->prompt_tokens, u->cached_tokens, u->completion_tokens));
        sse(p, out, ev);
        return sse(p, out, typed("message_stop"));
    }
    json_object *msg = typed("message"), *content = json_object_new_array();
    json_object_object_add(msg, "id", json_object_new_string(p->id));
    json_object_object_add(msg, "role", json_object_new_string("assistant"));
    json_object_object_add(msg, "model", json_object_new_string(p->model));
    if (p->reasoning.len) {
        json_object *b = typed("thinking");
        json_object_object_add(b, "thinking", str((const char *)p->reasoning.data, p->reasoning.len));
        json_object_object_add(b, "signature", json_object_new_string(""));
        json_object_array_add(content, b);
    }
    if (p->content.len || !json_object_array_length(p->calls)) {
        json_object *b = typed("text");
        json_object_object_add(b, "text", str((const char *)p->content.data, p->content.len));
        json_object_array_add(content, b);
    }
    for (size_t i = 0; i < json_object_array_length(p->calls); i++)
        json_object_array_add(content, anthropic_tool_use(json_object_array_get_idx(p->calls, i), true));
    json_object_object_add(msg, "content", content);
    json_object_object_add(msg, "stop_reason", json_object_new_string(stop));
    json_object_object_add(msg, "stop_sequence", stop_seq);
    json_object_object_add(msg, "usage", anthropic_usage(u->prompt_tokens, u->cached_tokens, u->completion_tokens));
    put_json(out, msg);
    json_object_put(msg);
    return 0;
}

int ds4_api_reply_finish(ds4_api_reply *p, const ds4_api_usage *u, ds4_buf *out) {
    return p->flavor == DS4_API_OPENAI ? finish_openai(p, u, out) : finish_anthropic(p, u, out);
}

int ds4_api_reply_fail(ds4_api_reply *p, const ds4_api_error *e, ds4_buf *out) {
    char *doc = ds4_api_error_json(p->flavor, e);
    if (!doc) return -1;
    if (p->flavor == DS4_API_ANTHROPIC) ds4_buf_append(out, "event: error\n", 13);
    ds4_buf_append(out, "data: ", 6);
    ds4_buf_append(out, doc, strlen(doc));
    free(doc);
    ds4_buf_append(out, "\n\n", 2);
    return p->flavor == DS4_API_OPENAI ? ds4_buf_append(out, "data: [DONE]\n\n", 14) : 0;
}
