/* The streaming reply parser on canned completions (random weights never write DSML):
 * fed whole or a byte at a time it hands on the same reasoning, content and tool calls,
 * the same as ds4_chat_parse for well-formed replies; a malformed or unfinished tool
 * block becomes content plus a warning. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "chat_stream.h"
#include "test.h"
#include "util.h"

#define DSML "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c"

typedef struct {
    ds4_buf reasoning, content;
    json_object *calls;
    int warnings;
} collected;

static int collect(void *arg, const ds4_chat_event *ev) {
    collected *c = arg;
    switch (ev->kind) {
    case DS4_CHAT_REASONING: return ds4_buf_append(&c->reasoning, ev->text, ev->len);
    case DS4_CHAT_CONTENT: return ds4_buf_append(&c->content, ev->text, ev->len);
    case DS4_CHAT_TOOL_CALL: return json_object_array_add(c->calls, json_object_get(ev->call));
    case DS4_CHAT_WARNING: c->warnings++; return 0;
    }
    return -1;
}

/* Feed text in pieces of `step` bytes (0: whole). */
static void run(const char *text, bool thinking, size_t step, collected *c) {
    memset(c, 0, sizeof *c);
    c->calls = json_object_new_array();
    ds4_chat_stream *s = ds4_chat_stream_new(thinking, collect, c);
    const size_t n = strlen(text);
    for (size_t i = 0; i < n; i += step ? step : n) ds4_chat_stream_feed(s, text + i, step && i + step < n ? step : n - i);
    ds4_chat_stream_end(s);
    ds4_chat_stream_free(s);
    ds4_buf_append(&c->reasoning, "", 1);
    ds4_buf_append(&c->content, "", 1);
}

static void done(collected *c) {
    ds4_buf_free(&c->reasoning);
    ds4_buf_free(&c->content);
    json_object_put(c->calls);
}

static const char two_calls[] =
    "I should look it up.</think>Let me check.\n\n<" DSML "tool_calls>\n<" DSML "invoke name=\"get_weather\">\n<" DSML
    "parameter name=\"city\" string=\"true\">Paris</" DSML "parameter>\n<" DSML
    "parameter name=\"days\" string=\"false\">3</" DSML "parameter>\n</" DSML "invoke>\n<" DSML
    "invoke name=\"get_time\">\n<" DSML "parameter name=\"zone\" string=\"true\">CET</" DSML "parameter>\n</" DSML
    "invoke>\n</" DSML "tool_calls>";

static void stream_matches_whole_parse(void) {
    ds4_chat_reply r;
    CHECK(ds4_chat_parse(two_calls, true, &r) == 0);
    for (size_t step = 0; step <= 7; step++) {
        collected c;
        run(two_calls, true, step, &c);
        CHECKF(!strcmp((char *)c.reasoning.data, r.reasoning), "step %zu: reasoning '%s'", step, (char *)c.reasoning.data);
        CHECKF(!strcmp((char *)c.content.data, r.content), "step %zu: content '%s'", step, (char *)c.content.data);
        CHECKF(json_object_equal(c.calls, r.tool_calls), "step %zu: calls %s", step,
               json_object_to_json_string(c.calls));
        CHECK(c.warnings == 0);
        done(&c);
    }
    CHECK(!strcmp(r.content, "Let me check."));
    json_object *first = json_object_array_get_idx(r.tool_calls, 0), *args, *days;
    CHECK(json_object_object_get_ex(first, "arguments", &args) && json_object_object_get_ex(args, "days", &days));
    CHECK(json_object_is_type(days, json_type_int) && json_object_get_int(days) == 3);
    ds4_chat_reply_free(&r);
}

static void tags_split_across_pieces(void) {
    /* "</think>" and the block's opening tag cut anywhere: nothing of them leaks out */
    collected c;
    run("abc</think>def <" DSML "tool_c", true, 1, &c);
    CHECK(!strcmp((char *)c.reasoning.data, "abc"));
    CHECKF(!strcmp((char *)c.content.data, "def <" DSML "tool_c"), "content '%s'", (char *)c.content.data);
    done(&c);
    run("plain text, no thinking\n\n", false, 3, &c);
    CHECK(!strcmp((char *)c.content.data, "plain text, no thinking\n\n") && c.reasoning.len == 1);
    done(&c);
}

static void malformed_block_becomes_text(void) {
    static const char *bad[] = {
        "Hi <" DSML "tool_calls>\n<" DSML "invoke>\n</" DSML "invoke>\n</" DSML "tool_calls>",         /* no name */
        "Hi <" DSML "tool_calls>\n<" DSML "invoke name=\"f\">\n<" DSML "parameter name=\"x\" string=\"false\">{oops</" DSML
        "parameter>\n</" DSML "invoke>\n</" DSML "tool_calls>",                                      /* not JSON */
        "Hi <" DSML "tool_calls>\nsomething else",                                                   /* not an invoke */
        "Hi <" DSML "tool_calls>\n<" DSML "invoke name=\"f\">\n<" DSML "parameter name=\"x\" string=\"true\">unfinis",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        for (size_t step = 0; step <= 2; step++) {
            collected c;
            run(bad[k], false, step, &c);
            CHECKF(c.warnings == 1, "case %zu step %zu: %d warnings", k, step, c.warnings);
            CHECKF(json_object_array_length(c.calls) == 0, "case %zu: no call", k);
            CHECKF(!strncmp((char *)c.content.data, "Hi", 2) && strstr((char *)c.content.data, "tool_calls>"),
                   "case %zu step %zu: the text is kept: '%s'", k, step, (char *)c.content.data);
            done(&c);
        }
}

static void call_then_malformed_keeps_the_call(void) {
    /* a good invoke goes out as soon as it closes, whatever follows */
    const char *text = "<" DSML "tool_calls>\n<" DSML "invoke name=\"a\">\n</" DSML "invoke>\n<" DSML "invoke oops";
    collected c;
    run(text, false, 1, &c);
    CHECK(json_object_array_length(c.calls) == 1 && c.warnings == 1);
    done(&c);
}

const test_case chat_stream_tests[] = {
    {"matches_whole_parse", stream_matches_whole_parse},
    {"tags_split_across_pieces", tags_split_across_pieces},
    {"malformed_block_becomes_text", malformed_block_becomes_text},
    {"call_then_malformed_keeps_the_call", call_then_malformed_keeps_the_call},
    {NULL, NULL},
};
