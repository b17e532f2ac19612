/* api.h - the two HTTP APIs the server speaks, OpenAI's (chat completions, completions)
 * and Anthropic's (messages, count_tokens), turned into one neutral request (the prompt
 * text of the chat template, the sampling settings, the stops) and back: a reply built
 * from the chat stream's events (chat_stream.h) and the generation's result, either as
 * one JSON document or as each API's server-sent events.
 *
 * Parsing checks every field it reads: a wrong type, an unknown role, a missing required
 * field or a value out of range is a 400 naming the field, in the API's own error
 * shape; fields it does not know are ignored, as both APIs' clients send many. */
#ifndef DS4_API_H
#define DS4_API_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "chat_stream.h"
#include "mem.h"

typedef enum { DS4_API_OPENAI, DS4_API_ANTHROPIC } ds4_api_flavor;
typedef enum { DS4_EP_CHAT, DS4_EP_COMPLETIONS, DS4_EP_MESSAGES, DS4_EP_COUNT_TOKENS } ds4_api_endpoint;

#define DS4_API_MAX_STOPS 16

typedef struct {
    ds4_api_flavor flavor;
    ds4_api_endpoint endpoint;
    char *model;
    ds4_buf prompt;        /* the prompt text, NUL-terminated */
    ds4_buf head;          /* its stable head (chat.h: system messages and tools), or empty */
    int32_t *prompt_ids;   /* /v1/completions with token ids (n_prompt_ids of them), else NULL */
    uint64_t n_prompt_ids;
    bool raw;              /* /v1/completions: the prompt is the user's text, not the template's */
    bool thinking;         /* the prompt ends in <think>: the reply starts as reasoning */
    bool stream, include_usage;
    int max_tokens;        /* -1: until the context is full */
    double temperature, top_p;
    uint64_t seed;
    char *stops[DS4_API_MAX_STOPS];
    int n_stops;
    int top_logprobs;      /* -1: no logprobs; else per token, with this many alternatives */
} ds4_api_request;

typedef struct {
    int status;            /* HTTP status */
    char type[48];         /* the API's error type */
    char message[400];
} ds4_api_error;

/* body: the parsed JSON of the request. 0, or -1 with e filled (r then freed). */
int ds4_api_parse(ds4_api_flavor flavor, ds4_api_endpoint ep, json_object *body, ds4_api_request *r, ds4_api_error *e);
void ds4_api_request_free(ds4_api_request *r);

/* An error as the flavor's JSON document. */
char *ds4_api_error_json(ds4_api_flavor flavor, const ds4_api_error *e);
/* Fill e (printf-style message); the error type follows the status. */
void ds4_api_error_set(ds4_api_error *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The reply to one request. Events and log-probabilities add to it; in streaming mode
 * each call appends the SSE bytes to send now to `out`, otherwise `finish` writes the
 * whole document. */
typedef struct ds4_api_reply ds4_api_reply;

typedef struct {
    uint64_t prompt_tokens, cached_tokens, completion_tokens;
    const char *finish;    /* "stop" or "length" (generate.h) */
    const char *stop_text; /* the stop string that ended it, or NULL */
} ds4_api_usage;

ds4_api_reply *ds4_api_reply_new(const ds4_api_request *r, const char *model, uint64_t created);
/* The stream's first event (the role chunk; message_start), once the prompt is counted. */
int ds4_api_reply_start(ds4_api_reply *p, uint64_t prompt_tokens, uint64_t cached_tokens, ds4_buf *out);
int ds4_api_reply_event(ds4_api_reply *p, const ds4_chat_event *ev, ds4_buf *out);
/* A token's log-probability and its alternatives (OpenAI's logprobs). */
int ds4_api_reply_logprob(ds4_api_reply *p, json_object *entry);
int ds4_api_reply_finish(ds4_api_reply *p, const ds4_api_usage *u, ds4_buf *out);
/* A failure after a stream began: an error event (and the end of the stream). */
int ds4_api_reply_fail(ds4_api_reply *p, const ds4_api_error *e, ds4_buf *out);
void ds4_api_reply_free(ds4_api_reply *p);

/* Generated text made fit for JSON: bytes that are not UTF-8 (a token can be part of a
 * character, and a model can write any bytes) become U+FFFD, so every reply is valid
 * JSON (OpenAI's logprobs carry the exact bytes beside). Appends to out; as a string. */
int ds4_api_clean_utf8(const char *s, size_t n, ds4_buf *out);
json_object *ds4_api_text(const char *s, size_t n);

/* A keep-alive line for a stream with nothing to say yet (an SSE comment). */
extern const char ds4_api_keepalive[];

#endif
