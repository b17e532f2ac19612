/* The server's request parsing (api.h): an Anthropic conversation with tool use renders
 * to the same prompt as its OpenAI equivalent; wrong types, unknown roles and missing
 * fields are 400s that name the field; unknown fields are ignored. */
#include <json-c/json.h>
#include <string.h>

#include "api.h"
#include "test.h"

static int parse(ds4_api_flavor f, ds4_api_endpoint ep, const char *body, ds4_api_request *r, ds4_api_error *e) {
    json_object *doc = json_tokener_parse(body);
    const int rc = ds4_api_parse(f, ep, doc, r, e);
    json_object_put(doc);
    return rc;
}

static void anthropic_equals_openai(void) {
    const char *openai =
        "{\"model\":\"m\",\"max_tokens\":9,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"w\","
        "\"description\":\"d\",\"parameters\":{\"type\":\"object\"}}}],\"messages\":["
        "{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Q\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
        "\"function\":{\"name\":\"w\",\"arguments\":\"{\\\"city\\\":\\\"P\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"R\"}]}";
    const char *anthropic =
        "{\"model\":\"m\",\"max_tokens\":9,\"metadata\":{\"user_id\":\"u\"},\"system\":[{\"type\":\"text\",\"text\":\"S\","
        "\"cache_control\":{\"type\":\"ephemeral\"}}],\"tools\":[{\"name\":\"w\",\"description\":\"d\","
        "\"input_schema\":{\"type\":\"object\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"c\",\"name\":\"w\",\"input\":{\"city\":\"P\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"c\",\"content\":[{\"type\":\"text\","
        "\"text\":\"R\"}]}]}]}";
    ds4_api_request a, b;
    ds4_api_error e;
    CHECKF(parse(DS4_API_OPENAI, DS4_EP_CHAT, openai, &a, &e) == 0, "%s", e.message);
    CHECKF(parse(DS4_API_ANTHROPIC, DS4_EP_MESSAGES, anthropic, &b, &e) == 0, "%s", e.message);
    CHECKF(a.prompt.len == b.prompt.len && !memcmp(a.prompt.data, b.prompt.data, a.prompt.len), "openai:\n%s\nanthropic:\n%s",
           (char *)a.prompt.data, (char *)b.prompt.data);
    CHECK(strstr((char *)a.prompt.data, "<tool_result>R</tool_result>") && a.max_tokens == 9);
    ds4_api_request_free(&a);
    ds4_api_request_free(&b);
}

static void bad_requests_name_the_field(void) {
    static const struct {
        ds4_api_flavor f;
        ds4_api_endpoint ep;
        const char *body, *names;
    } cases[] = {
        {DS4_API_OPENAI, DS4_EP_CHAT, "[1]", "JSON object"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"messages\":[]}", "model"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\"}", "messages"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", "role"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"\xff\xfe\",\"content\":\"x\"}]}", "role"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "tool_call_id"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"temperature\":\"hot\",\"messages\":[]}", "temperature"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"max_tokens\":0,\"messages\":[]}", "max_tokens"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"n\":3,\"messages\":[]}", "n:"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"stop\":5,\"messages\":[]}", "stop"},
        {DS4_API_OPENAI, DS4_EP_CHAT, "{\"model\":\"m\",\"tools\":[{\"type\":\"function\"}],\"messages\":[]}", "tools[0]"},
        {DS4_API_OPENAI, DS4_EP_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "image_url"},
        {DS4_API_OPENAI, DS4_EP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":{}}", "prompt"},
        {DS4_API_ANTHROPIC, DS4_EP_MESSAGES, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         "max_tokens"},
        {DS4_API_ANTHROPIC, DS4_EP_MESSAGES, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\","
                                             "\"content\":\"x\"}]}", "role"},
        {DS4_API_ANTHROPIC, DS4_EP_MESSAGES, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                                             "\"content\":[{\"type\":\"tool_result\"}]}]}", "tool_use_id"},
        {DS4_API_ANTHROPIC, DS4_EP_MESSAGES, "{\"model\":\"m\",\"max_tokens\":5,\"thinking\":{\"type\":\"maybe\"},"
                                             "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "thinking.type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ds4_api_request r;
        ds4_api_error e;
        CHECKF(parse(cases[i].f, cases[i].ep, cases[i].body, &r, &e) < 0, "case %zu accepted", i);
        CHECKF(e.status == 400 && strstr(e.message, cases[i].names), "case %zu: %d %s", i, e.status, e.message);
        char *doc = ds4_api_error_json(cases[i].f, &e);
        ds4_buf clean = {0};
        CHECK(doc && ds4_api_clean_utf8(doc, strlen(doc), &clean) == 0);
        CHECKF(clean.len == strlen(doc) && !memcmp(clean.data, doc, clean.len), "case %zu: error JSON not UTF-8", i);
        ds4_buf_free(&clean);
        json_object *o = json_tokener_parse(doc), *err;
        CHECKF(o && json_object_object_get_ex(o, "error", &err), "case %zu: error shape %s", i, doc);
        json_object_put(o);
        free(doc);
    }
}

static void sampling_and_thinking(void) {
    ds4_api_request r;
    ds4_api_error e;
    CHECK(parse(DS4_API_OPENAI, DS4_EP_CHAT,
                "{\"model\":\"m\",\"temperature\":0,\"top_p\":0.5,\"seed\":7,\"max_completion_tokens\":3,"
                "\"stop\":[\"a\",\"\",\"b\"],\"reasoning_effort\":\"high\",\"logprobs\":true,\"top_logprobs\":2,"
                "\"messages\":[{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
                &r, &e) == 0);
    CHECK(r.temperature == 0 && r.top_p == 0.5 && r.seed == 7 && r.max_tokens == 3 && r.n_stops == 2);
    CHECK(r.thinking && r.top_logprobs == 2);
    CHECK(strlen((char *)r.prompt.data) > 7 && !strcmp((char *)r.prompt.data + r.prompt.len - 7, "<think>"));
    ds4_api_request_free(&r);
}

static void text_is_always_utf8(void) {
    /* a lone continuation byte, a cut character, an overlong form, a surrogate: U+FFFD each */
    static const char in[] = "ok \x80 \xe4\xb8 \xc0\xaf \xed\xa0\x80 \xe4\xb8\xad";
    ds4_buf out = {0};
    CHECK(ds4_api_clean_utf8(in, sizeof in - 1, &out) == 0);
    ds4_buf_append(&out, "", 1);
    const char *want = "ok \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xe4\xb8\xad";
    CHECKF(!strcmp((char *)out.data, want), "got '%s'", (char *)out.data);
    ds4_buf_free(&out);
}

/* A tool call through the reply builder, whole and streamed, in both APIs' shapes. */
static void tool_call_replies(void) {
    json_object *call = json_tokener_parse("{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}");
    const ds4_chat_event ev = {DS4_CHAT_TOOL_CALL, NULL, 0, call};
    const ds4_api_usage u = {10, 2, 5, "stop", NULL};
    static const struct {
        ds4_api_flavor f;
        ds4_api_endpoint ep;
        bool stream;
        const char *want[4];
    } cases[] = {
        {DS4_API_OPENAI, DS4_EP_CHAT, false,
         {"\"finish_reason\":\"tool_calls\"", "\"content\":null",
          "\"tool_calls\":[{\"id\":\"call_", "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}"}},
        {DS4_API_OPENAI, DS4_EP_CHAT, true,
         {"\"tool_calls\":[{\"index\":0,\"id\":\"call_", "\"type\":\"function\"", "\"finish_reason\":\"tool_calls\"",
          "data: [DONE]"}},
        {DS4_API_ANTHROPIC, DS4_EP_MESSAGES, false,
         {"\"stop_reason\":\"tool_use\"", "{\"type\":\"tool_use\",\"id\":\"toolu_",
          "\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}", "\"cache_read_input_tokens\":2"}},
        {DS4_API_ANTHROPIC, DS4_EP_MESSAGES, true,
         {"\"content_block\":{\"type\":\"tool_use\"", "\"input\":{}",
          "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\\\"Paris\\\"}\"}", "event: message_stop"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ds4_api_request r = {.flavor = cases[i].f, .endpoint = cases[i].ep, .stream = cases[i].stream, .top_logprobs = -1};
        ds4_api_reply *p = ds4_api_reply_new(&r, "m", 1);
        ds4_buf out = {0};
        CHECK(p && ds4_api_reply_start(p, 10, 2, &out) == 0 && ds4_api_reply_event(p, &ev, &out) == 0 &&
              ds4_api_reply_finish(p, &u, &out) == 0);
        ds4_buf_append(&out, "", 1);
        for (int k = 0; k < 4; k++)
            CHECKF(strstr((char *)out.data, cases[i].want[k]), "case %zu: no %s in\n%s", i, cases[i].want[k], (char *)out.data);
        ds4_buf_free(&out);
        ds4_api_reply_free(p);
    }
    json_object_put(call);
}

const test_case api_tests[] = {
    {"tool_call_replies", tool_call_replies},
    {"text_is_always_utf8", text_is_always_utf8},
    {"anthropic_equals_openai", anthropic_equals_openai},
    {"bad_requests_name_the_field", bad_requests_name_the_field},
    {"sampling_and_thinking", sampling_and_thinking},
    {NULL, NULL},
};
