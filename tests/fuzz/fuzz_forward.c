/* Fuzz target: a GGUF all the way through the forward pass. Every file that loads as a
 * model small enough to run quickly (the limits below) evaluates a short prompt in two
 * chunks with logits, then one decode step, on two threads: hash tables, window and
 * compressor sizes, top-k, ratios and expert counts from the file all reach the code
 * they size. A rejection must be one line; nothing may crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "gguf.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error_line(void) {
    const char *e = ds4_error();
    if (!e[0] || strchr(e, '\n')) abort();
}

/* Small-model limits: what a fuzzed file may ask for before it runs. Everything above
 * them is valid for a real model, and so is exercised by the loader target only. */
static int small_enough(const ds4_config *c) {
    if (c->n_embd > 512 || c->n_vocab > 4096 || c->n_head * c->head_dim > 4096 || c->q_lora_rank > 512 ||
        c->o_lora_rank > 512 || c->sliding_window > 256 || c->n_expert > 64 || c->expert_ff > 512 ||
        c->n_expert_shared > 4 || c->hc_mult > 8 || c->hc_sinkhorn_iters > 64 || c->indexer_heads > 16 ||
        c->indexer_dim > 256 || c->indexer_topk > 256 || c->n_layer > 8)
        return 0;
    for (uint32_t i = 0; i < c->n_layer; i++)
        if (c->compress_ratio[i] > 64) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = ds4_gguf_parse(data, size, "fuzz");
    if (!f) {
        check_error_line();
        return 0;
    }
    ds4_model *m = ds4_model_from_gguf(f);
    if (!m) {
        check_error_line();
        return 0;
    }
    if (small_enough(&m->cfg)) {
        ds4_ctx *ctx = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
        const uint32_t V = m->cfg.n_vocab;
        float *logits = malloc((size_t)V * 7 * sizeof *logits);
        if (ctx && logits) {
            int32_t ids[7];
            for (int i = 0; i < 7; i++) ids[i] = (int32_t)((i * 977u + 3u) % V);
            /* a prompt in two chunks with every position's logits, then a decode step */
            if (ds4_eval(ctx, ids, 4, logits, true) == 0 && ds4_eval(ctx, ids + 4, 2, logits, true) == 0)
                ds4_eval(ctx, ids + 6, 1, logits, false);
            else
                check_error_line();
            /* an id past the vocabulary is refused, in one line */
            const int32_t bad = (int32_t)V;
            if (ds4_eval(ctx, &bad, 1, logits, false) == 0) abort();
            check_error_line();
        }
        free(logits);
        ds4_ctx_free(ctx);
    }
    ds4_model_free(m);
    return 0;
}
