/* Fuzz target: model output parsing (reasoning, DSML tool calls) and chat rendering of
 * arbitrary JSON messages. Model output is untrusted text; neither may crash. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    for (int thinking = 0; thinking < 2; thinking++) {
        ds4_chat_reply r;
        if (ds4_chat_parse(text, thinking, &r) == 0) ds4_chat_reply_free(&r);
    }
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
