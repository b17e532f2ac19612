/* Fuzz target: the GGUF reader and, when a file parses, the deepseek4 model loader on
 * top of it. libFuzzer entry point; tests/fuzz/driver.c runs it without libFuzzer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A rejection must be one non-empty line naming the input. */
static void check_error_line(void) {
    const char *e = ds4_error();
    if (strncmp(e, "fuzz: ", 6) || !e[6] || strchr(e, '\n')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = ds4_gguf_parse(data, size, "fuzz");
    if (!f) {
        check_error_line();
        return 0;
    }
    char text[512];
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < f->n_kv; i++) ds4_gguf_value_format(&f->kv[i].value, text, sizeof text, 16);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->size) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->size - 1];
    }
    (void)sink;
    /* A tokenizer in the metadata must load or be refused cleanly, then tokenize. */
    if (ds4_gguf_get(f, "tokenizer.ggml.model")) {
        ds4_tokenizer *t = ds4_tokenizer_from_gguf(f);
        if (t) {
            static const char sample[] = "Hello <think>wor\xffld</think> 12345 \xe4\xbd\xa0\xe5\xa5\xbd";
            int32_t *ids = NULL;
            size_t n = 0;
            if (ds4_tokenize(t, sample, sizeof sample - 1, true, &ids, &n) == 0) {
                ds4_buf out = {0};
                ds4_detokenize(t, ids, n, true, &out);
                ds4_buf_free(&out);
            }
            free(ids);
            ds4_tokenizer_free(t);
        } else {
            check_error_line();
        }
    }
    ds4_model *m = ds4_model_from_gguf(f); /* takes f */
    if (!m) check_error_line();
    ds4_model_free(m);
    return 0;
}
