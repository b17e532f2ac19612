/* chat.h - DeepSeek V4's prompt format, both ways. Rendering turns OpenAI-style
 * messages (system, user, developer, assistant with reasoning_content and tool_calls,
 * tool results) and tool schemas into the exact prompt text of the official template
 * (reference/chat-template-deepseek-v4.jinja): thinking on/off, the reasoning_effort
 * "max" preamble, dropping earlier reasoning, DSML tool-call blocks, the generation
 * prompt. Parsing splits generated text into reasoning, content and tool calls. */
#ifndef DS4_CHAT_H
#define DS4_CHAT_H

#include <json-c/json.h>
#include <stdbool.h>

#include "tokenizer.h"
#include "util.h"

typedef struct {
    bool thinking;              /* thinking mode (<think> after the generation prompt) */
    bool add_generation_prompt;
    bool keep_thinking;         /* keep every earlier turn's reasoning (template: drop_thinking=false) */
    const char *reasoning_effort; /* "max" adds the preamble in thinking mode; NULL otherwise */
    json_object *tools;         /* array of {"type": "function", "function": {...}} or NULL */
    json_object *response_format; /* or NULL */
    const char *bos;            /* BOS text; NULL: "<｜begin▁of▁sentence｜>" */
} ds4_chat_opts;

/* messages: a JSON array of message objects. Appends the prompt text to out. */
int ds4_chat_render(json_object *messages, const ds4_chat_opts *opts, ds4_buf *out);

/* The prompt's stable head: the leading system (and developer) messages with the tools,
 * without a generation prompt, which every later turn of the conversation (and other
 * conversations with the same instructions) begins with: worth a KV checkpoint of its
 * own. Empty when the messages have no such head or are nothing but it. */
int ds4_chat_render_head(json_object *messages, const ds4_chat_opts *opts, ds4_buf *out);
/* The head's token count when its tokens begin ids[0..n) (and leave some over), else 0. */
uint64_t ds4_chat_head_length(const ds4_tokenizer *t, const char *head, size_t len, const int32_t *ids, uint64_t n);

/* Render `text` as one user message with the generation prompt (thinking on or off). */
int ds4_chat_render_user(const char *text, bool thinking, ds4_buf *out);

/* Python's json.dumps (separators ", " and ": ", non-ASCII kept), as the template's
 * tojson filter writes it. */
int ds4_json_dump_py(json_object *o, ds4_buf *out);

typedef struct {
    char *reasoning;   /* NULL when none */
    char *content;
    json_object *tool_calls; /* array of {"name", "arguments"} or NULL */
} ds4_chat_reply;

/* Parse generated text (what follows the prompt). in_thinking: the prompt ended with
 * <think>, so the text starts with reasoning. Malformed DSML blocks are an error. */
int ds4_chat_parse(const char *text, bool in_thinking, ds4_chat_reply *reply);
void ds4_chat_reply_free(ds4_chat_reply *r);

/* A DSML tool-call block (from its "<｜DSML｜tool_calls>" to its closing tag) into an
 * array of {"name", "arguments"}; -1 with the error set when it is malformed. */
int ds4_chat_parse_tool_calls(const char *block, json_object **calls);

#endif
