/* chat_stream.c - see chat_stream.h. */
#include "chat_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "util.h"

#define DSML "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c"
static const char end_think[] = "</think>";
static const char open_calls[] = "<" DSML "tool_calls>", close_calls[] = "</" DSML "tool_calls>";
static const char open_invoke[] = "<" DSML "invoke ", close_invoke[] = "</" DSML "invoke>";

typedef enum { IN_REASONING, IN_CONTENT, IN_CALLS } where;

struct ds4_chat_stream {
    where at;
    ds4_buf held; /* text not handed on yet */
    ds4_chat_event_fn fn;
    void *arg;
};

ds4_chat_stream *ds4_chat_stream_new(bool in_thinking, ds4_chat_event_fn fn, void *arg) {
    ds4_chat_stream *s = ds4_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->at = in_thinking ? IN_REASONING : IN_CONTENT;
    s->fn = fn;
    s->arg = arg;
    return s;
}

void ds4_chat_stream_free(ds4_chat_stream *s) {
    if (!s) return;
    ds4_buf_free(&s->held);
    free(s);
}

static int say(ds4_chat_stream *s, ds4_chat_event_kind kind, const char *text, size_t len) {
    if (!len && kind != DS4_CHAT_WARNING) return 0;
    const ds4_chat_event ev = {kind, text, len, NULL};
    return s->fn(s->arg, &ev);
}

/* Drop the first n held bytes. */
static void consume(ds4_chat_stream *s, size_t n) {
    memmove(s->held.data, (char *)s->held.data + n, s->held.len - n);
    s->held.len -= n;
}

/* The length of the longest tail of text[0..len) that is a proper prefix of tag. */
static size_t partial_tail(const char *text, size_t len, const char *tag) {
    const size_t tl = strlen(tag);
    for (size_t k = tl - 1 < len ? tl - 1 : len; k > 0; k--)
        if (!memcmp(text + len - k, tag, k)) return k;
    return 0;
}

/* A block that will not parse: its text is content after all. */
static int not_a_call(ds4_chat_stream *s, size_t n, const char *why) {
    char msg[300];
    snprintf(msg, sizeof msg, "malformed tool call, passed on as text: %s", why);
    int rc = say(s, DS4_CHAT_WARNING, msg, strlen(msg));
    if (rc == 0) rc = say(s, DS4_CHAT_CONTENT, (const char *)s->held.data, n);
    consume(s, n);
    s->at = IN_CONTENT;
    return rc;
}

/* Work through the held text as far as it is decided; at_end: nothing more comes. */
static int drain(ds4_chat_stream *s, bool at_end) {
    for (;;) {
        const char *h = (const char *)s->held.data;
        const size_t len = s->held.len;
        if (!len) return 0;
        if (s->at == IN_REASONING || s->at == IN_CONTENT) {
            const char *tag = s->at == IN_REASONING ? end_think : open_calls;
            const char *hit = memmem(h, len, tag, strlen(tag));
            if (hit) {
                size_t upto = (size_t)(hit - h);
                if (s->at == IN_CONTENT)
                    while (upto > 0 && h[upto - 1] == '\n') upto--; /* the newlines before a block are its own */
                int rc = say(s, s->at == IN_REASONING ? DS4_CHAT_REASONING : DS4_CHAT_CONTENT, h, upto);
                if (s->at == IN_CONTENT) {
                    consume(s, (size_t)(hit - h)); /* the block itself stays held */
                    s->at = IN_CALLS;
                } else {
                    consume(s, (size_t)(hit - h) + strlen(tag));
                    s->at = IN_CONTENT;
                }
                if (rc < 0) return rc;
                continue;
            }
            size_t keep = at_end ? 0 : partial_tail(h, len, tag);
            if (s->at == IN_CONTENT && !at_end)
                while (keep < len && h[len - keep - 1] == '\n') keep++;
            int rc = say(s, s->at == IN_REASONING ? DS4_CHAT_REASONING : DS4_CHAT_CONTENT, h, len - keep);
            consume(s, len - keep);
            return rc;
        }
        /* IN_CALLS: the held text starts with the opening tag, then invokes */
        size_t p = strlen(open_calls);
        while (p < len && h[p] == '\n') p++;
        const size_t rest = len - p;
        if (rest >= strlen(close_calls) && !memcmp(h + p, close_calls, strlen(close_calls))) {
            consume(s, p + strlen(close_calls));
            s->at = IN_CONTENT;
            continue;
        }
        if (rest >= strlen(open_invoke) && !memcmp(h + p, open_invoke, strlen(open_invoke))) {
            const char *close = memmem(h + p, rest, close_invoke, strlen(close_invoke));
            if (!close) {
                if (at_end) return not_a_call(s, len, "the tool call block is unfinished");
                return 0;
            }
            const size_t end = (size_t)(close - h) + strlen(close_invoke);
            /* one invoke, parsed as a block of its own */
            ds4_buf one = {0};
            ds4_buf_append(&one, open_calls, strlen(open_calls));
            ds4_buf_append(&one, h + p, end - p);
            ds4_buf_append(&one, close_calls, strlen(close_calls) + 1);
            json_object *calls = NULL;
            const int ok = one.data && ds4_chat_parse_tool_calls((const char *)one.data, &calls) == 0;
            ds4_buf_free(&one);
            if (!ok) return not_a_call(s, len, ds4_error());
            json_object *call = json_object_get(json_object_array_get_idx(calls, 0));
            json_object_put(calls);
            const ds4_chat_event ev = {DS4_CHAT_TOOL_CALL, NULL, 0, call};
            int rc = s->fn(s->arg, &ev);
            json_object_put(call);
            /* the calls handed on are gone; the opening tag stays for the next one */
            memmove((char *)s->held.data + strlen(open_calls), h + end, len - end);
            s->held.len = strlen(open_calls) + (len - end);
            if (rc < 0) return rc;
            continue;
        }
        /* neither: decided once the text could no longer become one of the two */
        const bool could_be = (!memcmp(h + p, close_calls, rest < strlen(close_calls) ? rest : strlen(close_calls))) ||
                              (!memcmp(h + p, open_invoke, rest < strlen(open_invoke) ? rest : strlen(open_invoke)));
        if (could_be && !at_end) return 0;
        return not_a_call(s, len, at_end && could_be ? "the tool call block is unfinished"
                                                      : "expected an invoke or the end of the block");
    }
}

int ds4_chat_stream_feed(ds4_chat_stream *s, const char *text, size_t len) {
    if (ds4_buf_append(&s->held, text, len) < 0) return -1;
    return drain(s, false);
}

int ds4_chat_stream_end(ds4_chat_stream *s) { return drain(s, true); }
