/* chat_stream.h - generated text split as it streams in: reasoning (up to </think>),
 * content, and DSML tool calls, each call handed on as soon as its invoke block closes.
 * Text that may be the start of a tag is held back until it is not. A malformed or
 * unfinished tool-call block becomes content plus a warning: never an error, since
 * whatever a model writes must reach the client. Both the server's streaming and its
 * whole replies go through it, so the two say the same. */
#ifndef DS4_CHAT_STREAM_H
#define DS4_CHAT_STREAM_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { DS4_CHAT_REASONING, DS4_CHAT_CONTENT, DS4_CHAT_TOOL_CALL, DS4_CHAT_WARNING } ds4_chat_event_kind;

typedef struct {
    ds4_chat_event_kind kind;
    const char *text;  /* reasoning, content or the warning; not NUL-terminated */
    size_t len;
    json_object *call; /* a tool call {"name", "arguments": {...}}, the callee's to keep (get) */
} ds4_chat_event;

typedef int (*ds4_chat_event_fn)(void *arg, const ds4_chat_event *ev);

typedef struct ds4_chat_stream ds4_chat_stream;

/* in_thinking: the prompt ended with <think>, so the text starts as reasoning. */
ds4_chat_stream *ds4_chat_stream_new(bool in_thinking, ds4_chat_event_fn fn, void *arg);
/* More text; the callback's -1 is returned. */
int ds4_chat_stream_feed(ds4_chat_stream *s, const char *text, size_t len);
/* The end: what was held back goes out. */
int ds4_chat_stream_end(ds4_chat_stream *s);
void ds4_chat_stream_free(ds4_chat_stream *s);

#endif
