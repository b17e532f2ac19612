/* Several sequences in one step (ds4_eval_many): every row's full logits equal those of
 * the same sequence run alone, bit for bit, for 2 to 16 sequences mixing prefill pieces
 * and decoded tokens in shuffled order, on F32, F16, Q8_0 and q2 files (every matrix
 * product computes a row the same way whatever else shares it). Also: a step is checked
 * whole before it runs, and reset sequences are reused. */
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "test.h"
#include "types.h"

enum { MAX_SEQ = 16, MAX_TOK = 48 };

typedef struct {
    int32_t tokens[MAX_TOK];
    int n_prompt, n; /* prompt length, all tokens (prompt, then fed one by one) */
    float *alone;    /* n x V logits of the sequence alone */
    int fed;
} sequence;

/* Random prompts and continuations, their logits alone, then a shuffled schedule of
 * steps compared row by row. Returns the number of rows whose logits differ. */
static int run(const ds4_model *m, int n_seq, unsigned seed, int *rows) {
    const uint32_t V = m->cfg.n_vocab;
    sequence s[MAX_SEQ];
    ds4_ctx *alone = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
    ds4_ctx *many = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2, .n_seq = n_seq});
    ds4_ctx *view[MAX_SEQ];
    if (!alone || !many) return -1;
    for (int i = 0; i < n_seq; i++) {
        sequence *q = &s[i];
        q->n_prompt = 1 + rand_r(&seed) % 40;
        q->n = q->n_prompt + rand_r(&seed) % 8;
        for (int t = 0; t < q->n; t++) q->tokens[t] = (int32_t)(rand_r(&seed) % V);
        q->alone = malloc((size_t)q->n * V * sizeof(float));
        q->fed = 0;
        ds4_ctx_reset(alone);
        if (ds4_eval(alone, q->tokens, q->n_prompt, q->alone, true) < 0) return -1;
        for (int t = q->n_prompt; t < q->n; t++)
            if (ds4_eval(alone, &q->tokens[t], 1, q->alone + (size_t)t * V, false) < 0) return -1;
        view[i] = ds4_ctx_sequence(many, i);
    }
    float *got = malloc((size_t)MAX_SEQ * MAX_TOK * V * sizeof(float));
    int bad = 0, left = n_seq;
    while (left > 0) {
        /* some of the unfinished sequences, in a shuffled order, each a piece of its
         * prompt (1 to 17 tokens) or its next token */
        ds4_eval_item items[MAX_SEQ];
        int order[MAX_SEQ], n_items = 0, took[MAX_SEQ];
        for (int i = 0; i < n_seq; i++) order[i] = i;
        for (int i = n_seq - 1; i > 0; i--) {
            const int j = rand_r(&seed) % (i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int k = 0; k < n_seq; k++) {
            sequence *q = &s[order[k]];
            if (q->fed == q->n || rand_r(&seed) % 3 == 0) continue;
            int n = q->fed < q->n_prompt ? 1 + rand_r(&seed) % 17 : 1;
            if (q->fed < q->n_prompt && q->fed + n > q->n_prompt) n = q->n_prompt - q->fed;
            took[n_items] = order[k];
            items[n_items++] = (ds4_eval_item){view[order[k]], q->tokens + q->fed, n,
                                               got + ((size_t)order[k] * MAX_TOK + q->fed) * V, true};
        }
        if (n_items && ds4_eval_many(items, n_items) < 0) return -1;
        for (int k = 0; k < n_items; k++) {
            sequence *q = &s[took[k]];
            const float *want = q->alone + (size_t)q->fed * V, *have = items[k].logits;
            for (int t = 0; t < items[k].n; t++) bad += memcmp(want + (size_t)t * V, have + (size_t)t * V, V * 4) != 0;
            *rows += items[k].n;
            q->fed += items[k].n;
            left -= q->fed == q->n;
        }
    }
    for (int i = 0; i < n_seq; i++) {
        free(s[i].alone);
        ds4_ctx_free(view[i]);
    }
    free(got);
    ds4_ctx_free(many);
    ds4_ctx_free(alone);
    return bad;
}

static void steps_equal_sequences_alone(void) {
    struct { uint32_t type; const char *recipe; } files[] = {
        {GGML_TYPE_F32, NULL}, {GGML_TYPE_F16, NULL}, {GGML_TYPE_Q8_0, NULL}, {GGML_TYPE_F32, "q2"}};
    const int counts[] = {2, 4, 8, 16};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        ds4_model *m = test_model("tiny-a", files[f].type, files[f].recipe);
        CHECKF(m, "%s", ds4_error());
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            int rows = 0;
            const int bad = run(m, counts[c], 11u + (unsigned)c, &rows);
            CHECKF(bad == 0, "%s, %d sequences: %d of %d rows differ from the sequence alone%s",
                   files[f].recipe ? files[f].recipe : ds4_type_name(files[f].type), counts[c], bad, rows,
                   bad < 0 ? ds4_error() : "");
        }
        ds4_model_free(m);
    }
}

static void steps_are_checked_whole(void) {
    ds4_model *m = test_model("tiny-a", GGML_TYPE_F32, NULL);
    CHECKF(m, "%s", ds4_error());
    ds4_ctx *c = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 1, .n_seq = 3});
    ds4_ctx *a = ds4_ctx_sequence(c, 1), *b = ds4_ctx_sequence(c, 2);
    CHECK(c && a && b && !ds4_ctx_sequence(c, 3));
    const int32_t good[3] = {1, 2, 3}, bad[2] = {4, -1};
    ds4_eval_item items[2] = {{a, good, 3, NULL, false}, {b, bad, 2, NULL, false}};
    CHECK(ds4_eval_many(items, 2) < 0 && ds4_ctx_pos(a) == 0 && ds4_ctx_pos(b) == 0);
    items[1] = (ds4_eval_item){a, good, 1, NULL, false};
    CHECK(ds4_eval_many(items, 2) < 0 && strstr(ds4_error(), "twice"));
    items[1] = (ds4_eval_item){b, good, 2, NULL, false};
    CHECK(ds4_eval_many(items, 2) == 0 && ds4_ctx_pos(a) == 3 && ds4_ctx_pos(b) == 2 && ds4_ctx_pos(c) == 0);
    const uint64_t bytes = ds4_ctx_kv_bytes(a);
    ds4_ctx_reset(a);
    CHECK(ds4_ctx_pos(a) == 0 && ds4_ctx_pos(b) == 2 && ds4_ctx_kv_bytes(a) <= bytes);
    ds4_ctx_free(a);
    ds4_ctx_free(b);
    ds4_ctx_free(c);
    ds4_model_free(m);
}

const test_case batch_step_tests[] = {
    {"steps_equal_sequences_alone", steps_equal_sequences_alone},
    {"steps_are_checked_whole", steps_are_checked_whole},
    {0, 0},
};
