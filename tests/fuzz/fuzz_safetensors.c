/* Fuzz target: the safetensors header parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_model *m = ds4_st_parse(data, size, "fuzz");
    if (!m) {
        const char *e = ds4_error();
        if (strncmp(e, "fuzz: ", 6) || !e[6] || strchr(e, '\n')) abort();
        return 0;
    }
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < m->n_tensors; i++) {
        const st_tensor *t = &m->tensors[i];
        if (t->nbytes) sink ^= t->data[0] ^ t->data[t->nbytes - 1];
        if (ds4_st_find(m, t->name) != t) abort();
    }
    (void)sink;
    ds4_st_close(m);
    return 0;
}
