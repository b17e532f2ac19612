/* The chat template: every golden case (vectors/chat/golden.jsonl, rendered by Jinja2
 * from the official template) renders to the same text; replies parse back into
 * reasoning, content and tool calls; malformed DSML is an error. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "test.h"

static json_object *opt(json_object *o, const char *k) {
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static void renders_every_golden_case(void) {
    char *text = ds4_read_file("vectors/chat/golden.jsonl", NULL);
    CHECK(text);
    int cases = 0, bad = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *c = json_tokener_parse(line), *o = opt(c, "options");
        ds4_chat_opts co = {0};
        json_object *v;
        co.thinking = (v = opt(o, "thinking")) && json_object_get_boolean(v);
        co.add_generation_prompt = (v = opt(o, "add_generation_prompt")) && json_object_get_boolean(v);
        co.keep_thinking = (v = opt(o, "drop_thinking")) && !json_object_get_boolean(v);
        co.reasoning_effort = (v = opt(o, "reasoning_effort")) ? json_object_get_string(v) : NULL;
        co.tools = opt(o, "tools");
        co.response_format = opt(o, "response_format");
        ds4_buf out = {0};
        int rc = ds4_chat_render(opt(c, "messages"), &co, &out);
        ds4_buf_append(&out, "", 1);
        const char *want = json_object_get_string(opt(c, "text"));
        cases++;
        if (rc < 0 || strcmp((char *)out.data, want)) {
            bad++;
            if (bad <= 3)
                test_fail(__FILE__, __LINE__, "case %s differs:\n--- ours\n%s\n--- golden\n%s",
                          json_object_get_string(opt(c, "name")), rc < 0 ? ds4_error() : (char *)out.data, want);
        }
        ds4_buf_free(&out);
        json_object_put(c);
    }
    free(text);
    CHECK(cases >= 20);
    CHECKF(bad == 0, "%d of %d golden prompts differ", bad, cases);
}

static void parses_replies(void) {
    ds4_chat_reply r;
    CHECK(ds4_chat_parse("Let me think.</think>The answer is 4.<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                         true, &r) == 0);
    CHECK(r.reasoning && !strcmp(r.reasoning, "Let me think.") && !strcmp(r.content, "The answer is 4.") && !r.tool_calls);
    ds4_chat_reply_free(&r);
    CHECK(ds4_chat_parse("Plain answer.", false, &r) == 0 && !r.reasoning && !strcmp(r.content, "Plain answer."));
    ds4_chat_reply_free(&r);
    const char *calls =
        "Checking.\n\n<\xef\xbd\x9c" "DSML\xef\xbd\x9ctool_calls>\n"
        "<\xef\xbd\x9c" "DSML\xef\xbd\x9cinvoke name=\"get_weather\">\n"
        "<\xef\xbd\x9c" "DSML\xef\xbd\x9cparameter name=\"city\" string=\"true\">Roma 42</\xef\xbd\x9c" "DSML\xef\xbd\x9cparameter>\n"
        "<\xef\xbd\x9c" "DSML\xef\xbd\x9cparameter name=\"days\" string=\"false\">3</\xef\xbd\x9c" "DSML\xef\xbd\x9cparameter>\n"
        "<\xef\xbd\x9c" "DSML\xef\xbd\x9cparameter name=\"opts\" string=\"false\">{\"x\": [1, 2]}</\xef\xbd\x9c" "DSML\xef\xbd\x9cparameter>\n"
        "</\xef\xbd\x9c" "DSML\xef\xbd\x9cinvoke>\n"
        "<\xef\xbd\x9c" "DSML\xef\xbd\x9cinvoke name=\"now\">\n\n</\xef\xbd\x9c" "DSML\xef\xbd\x9cinvoke>\n"
        "</\xef\xbd\x9c" "DSML\xef\xbd\x9ctool_calls>";
    CHECKF(ds4_chat_parse(calls, false, &r) == 0, "%s", ds4_error());
    CHECK(!strcmp(r.content, "Checking.") && r.tool_calls && json_object_array_length(r.tool_calls) == 2);
    json_object *first = json_object_array_get_idx(r.tool_calls, 0), *args, *v;
    CHECK(json_object_object_get_ex(first, "arguments", &args));
    CHECK(json_object_object_get_ex(args, "city", &v) && json_object_is_type(v, json_type_string) &&
          !strcmp(json_object_get_string(v), "Roma 42"));
    CHECK(json_object_object_get_ex(args, "days", &v) && json_object_is_type(v, json_type_int) && json_object_get_int(v) == 3);
    CHECK(json_object_object_get_ex(args, "opts", &v) && json_object_is_type(v, json_type_object));
    ds4_chat_reply_free(&r);
    /* malformed: bad JSON in a non-string parameter, missing close tag */
    char broken[2048];
    snprintf(broken, sizeof broken, "%s", calls);
    char *three = strstr(broken, ">3<");
    three[1] = '{';
    CHECK(ds4_chat_parse(broken, false, &r) < 0 && strstr(ds4_error(), "not JSON"));
    snprintf(broken, sizeof broken, "%s", calls);
    *strstr(broken, "</\xef\xbd\x9c" "DSML\xef\xbd\x9ctool_calls>") = 0; /* cut off before the end */
    CHECK(ds4_chat_parse(broken, false, &r) < 0 && strstr(ds4_error(), "malformed"));
    snprintf(broken, sizeof broken, "%s", calls);
    strstr(broken, "invoke name=")[7] = 'X'; /* name= -> Xame= */
    CHECK(ds4_chat_parse(broken, false, &r) < 0 && strstr(ds4_error(), "invoke needs name"));
}

static void json_dump_matches_python(void) {
    json_object *o = json_tokener_parse("{\"a\": [1, 2.50, 1e-05, 100.0, 1e16, 0.1, -3.25e-7, true, null], "
                                        "\"s\": \"\\u00e9\\n\\t\\\"q\\\"\\u0001/\", \"e\": {}, \"l\": []}");
    ds4_buf b = {0};
    CHECK(o && ds4_json_dump_py(o, &b) == 0);
    ds4_buf_append(&b, "", 1);
    const char *want = "{\"a\": [1, 2.5, 1e-05, 100.0, 1e+16, 0.1, -3.25e-07, true, null], "
                       "\"s\": \"\xc3\xa9\\n\\t\\\"q\\\"\\u0001/\", \"e\": {}, \"l\": []}";
    CHECKF(!strcmp((char *)b.data, want), "got %s", (char *)b.data);
    ds4_buf_free(&b);
    json_object_put(o);
}

const test_case chat_tests[] = {
    {"renders_every_golden_case", renders_every_golden_case},
    {"parses_replies", parses_replies},
    {"json_dump_matches_python", json_dump_matches_python},
    {0, 0},
};
