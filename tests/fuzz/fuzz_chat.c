/* Fuzz target: model output parsing (reasoning, DSML tool calls), whole and as the
 * server streams it (in pieces of a length the input picks), and chat rendering of
 * arbitrary JSON messages. Model output is untrusted text; none of them may crash. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "chat_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int drop_event(void *arg, const ds4_chat_event *ev) {
    size_t *seen = arg;
    *seen += ev->len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    for (int thinking = 0; thinking < 2; thinking++) {
        ds4_chat_reply r;
        if (ds4_chat_parse(text, thinking, &r) == 0) ds4_chat_reply_free(&r);
    }
    const size_t step = size ? 1 + data[0] % 16 : 1;
    size_t seen = 0;
    ds4_chat_stream *s = ds4_chat_stream_new(size % 3 == 0, drop_event, &seen);
    for (size_t i = 0; s && i < size; i += step) ds4_chat_stream_feed(s, text + i, i + step < size ? step : size - i);
    if (s) ds4_chat_stream_end(s);
    ds4_chat_stream_free(s);
    json_object *msgs = json_tokener_parse(text);
    if (msgs) {
        ds4_chat_opts o = {.thinking = size % 2, .add_generation_prompt = true, .tools = msgs};
        ds4_buf out = {0};
        ds4_chat_render(msgs, &o, &out);
        ds4_buf_free(&out);
        json_object_put(msgs);
    }
    free(text);
    return 0;
}
