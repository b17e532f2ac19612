/* needle.c - see needle.h. */
#include "needle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "generate.h"
#include "ops.h"
#include "util.h"

#define LIST(a) (sizeof(a) / sizeof((a)[0]))

static const char *const subjects[] = {
    "The harbor master", "A young painter", "The old librarian", "Our neighbor", "The night train",
    "A quiet engineer", "The village baker", "The ferry captain", "A tall lighthouse keeper", "The museum guard",
    "A traveling musician", "The gardener", "A patient teacher", "The postman", "My grandmother",
    "The school choir"};
static const char *const verbs[] = {"walked past", "painted", "counted", "remembered", "carried", "watched",
                                    "repaired", "described", "followed", "collected", "sold", "measured"};
static const char *const objects[] = {"the copper kettles", "a bundle of letters", "the empty market stalls",
                                      "the blue fishing boats", "a map of the coast", "the winter apples",
                                      "the broken clock", "a basket of pears", "the stone bridge",
                                      "the last ferry", "a pile of old newspapers", "the wooden benches"};
static const char *const endings[] = {"before sunrise.", "in the rain.", "near the old mill.", "without a word.",
                                      "for the third time that week.", "while the bells rang.",
                                      "under a grey sky.", "as the tide came in.", "after the festival.",
                                      "on the way home."};
static const char *const adjectives[] = {"amber", "bold", "calm", "silver", "crimson", "quiet", "rapid", "gentle",
                                         "hollow", "bright", "frozen", "golden", "hidden", "lucky", "misty",
                                         "northern", "velvet", "wild", "ancient", "electric"};
static const char *const nouns[] = {"falcon", "harbor", "lantern", "meadow", "orchid", "canyon", "glacier",
                                    "compass", "violin", "pebble", "comet", "willow", "anchor", "beacon",
                                    "thistle", "quarry"};

_Static_assert(LIST(nouns) >= DS4_NEEDLE_MAX, "each needle takes its own noun");

static uint64_t next_random(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int append_ids(int32_t **ids, uint64_t *n, uint64_t *cap, const int32_t *add, uint64_t m) {
    if (*n + m > *cap) {
        uint64_t c = *cap ? *cap : 1024;
        while (c < *n + m) c *= 2;
        int32_t *grown = realloc(*ids, c * sizeof *grown);
        if (!grown) return ds4_fail("out of memory building the haystack");
        *ids = grown, *cap = c;
    }
    memcpy(*ids + *n, add, m * sizeof *add);
    *n += m;
    return 0;
}

static int tokenize_text(const ds4_tokenizer *t, const char *text, bool special, int32_t **ids, size_t *n) {
    *ids = NULL, *n = 0;
    return ds4_tokenize(t, text, strlen(text), special, ids, n);
}

/* The i-th sentence: needles first, then distractors. */
static ds4_needle *sentence(ds4_needle_prompt *p, int i) {
    return i < p->n_needles ? &p->needle[i] : &p->distractor[i - p->n_needles];
}

static bool taken(ds4_needle_prompt *p, const char *text, bool as_value) {
    for (int i = 0; i < p->n_needles + p->n_distractors; i++)
        if (!strcmp(as_value ? sentence(p, i)->value : sentence(p, i)->key, text)) return true;
    return false;
}

static bool noun_taken(const ds4_needle_prompt *p, const char *noun) {
    for (int i = 0; i < p->n_needles; i++)
        if (!strcmp(strchr(p->needle[i].key, ' ') + 1, noun)) return true;
    return false;
}

/* A fresh key and value. Needles take distinct nouns (so each noun's adjectives are
 * enough for its distractors); a distractor keeps its needle's noun, to be confusable. */
static void pick_key_value(ds4_needle_prompt *p, ds4_needle *nd, const char *noun, uint64_t *rng) {
    if (!noun)
        do noun = nouns[next_random(rng) % LIST(nouns)];
        while (noun_taken(p, noun));
    do snprintf(nd->key, sizeof nd->key, "%s %s", adjectives[next_random(rng) % LIST(adjectives)], noun);
    while (taken(p, nd->key, false));
    do snprintf(nd->value, sizeof nd->value, "%llu", 1000000 + (unsigned long long)(next_random(rng) % 9000000));
    while (taken(p, nd->value, true));
}

typedef struct {
    ds4_needle *needle;
    int32_t *ids;
    size_t n;
    uint64_t at; /* filler tokens before it */
    int order;
} insertion;

static int by_place(const void *a, const void *b) {
    const insertion *x = a, *y = b;
    if (x->at != y->at) return x->at < y->at ? -1 : 1;
    return x->order - y->order;
}

int ds4_needle_build(const ds4_tokenizer *t, const ds4_needle_spec *s, ds4_needle_prompt *p) {
    memset(p, 0, sizeof *p);
    if (s->needles < 1 || s->needles > DS4_NEEDLE_MAX)
        return ds4_fail("needles: %d is outside 1..%d", s->needles, DS4_NEEDLE_MAX);
    if (!(s->depth >= 0 && s->depth <= 1)) return ds4_fail("depth %g is outside 0..1", s->depth);
    uint64_t rng = s->seed * 0x2545F4914F6CDD1Dull + 7;
    for (int i = 0; i < s->needles; i++, p->n_needles++) pick_key_value(p, &p->needle[i], NULL, &rng);
    if (s->distractors)
        for (int i = 0; i < s->needles; i++)
            for (int k = 0; k < 2; k++, p->n_distractors++)
                pick_key_value(p, &p->distractor[p->n_distractors], strchr(p->needle[i].key, ' ') + 1, &rng);

    /* The question, and the template around the user message. */
    int len = 0;
    if (p->n_needles == 1) {
        len = snprintf(p->question, sizeof p->question,
                       "What is the special magic number for %s? Answer with the number only.", p->needle[0].key);
    } else {
        len = snprintf(p->question, sizeof p->question, "What are the special magic numbers for ");
        for (int i = 0; i < p->n_needles; i++)
            len += snprintf(p->question + len, sizeof p->question - (size_t)len, "%s%s", p->needle[i].key,
                            i + 2 < p->n_needles ? ", " : i + 2 == p->n_needles ? " and " : "");
        snprintf(p->question + len, sizeof p->question - (size_t)len,
                 "? Answer with the numbers only, in that order.");
    }
    ds4_buf chat = {0};
    int32_t *head = NULL, *tail = NULL;
    size_t n_head = 0, n_tail = 0;
    int rc = ds4_chat_render_user("\x01", false, &chat);
    if (rc == 0 && ds4_buf_append(&chat, "", 1) < 0) rc = -1;
    char *mark = rc == 0 ? strchr((char *)chat.data, '\x01') : NULL;
    if (rc == 0 && !mark) rc = ds4_fail("the chat template lost the user message");
    if (rc == 0) {
        *mark = 0;
        char *after = malloc(strlen(p->question) + strlen(mark + 1) + 3);
        if (!after) rc = ds4_fail("out of memory");
        if (rc == 0) {
            sprintf(after, "\n\n%s%s", p->question, mark + 1);
            rc = tokenize_text(t, (char *)chat.data, true, &head, &n_head);
            if (rc == 0) rc = tokenize_text(t, after, true, &tail, &n_tail);
            free(after);
        }
    }
    ds4_buf_free(&chat);

    /* The needle and distractor sentences, placed in filler coordinates. */
    const int n_ins = p->n_needles + p->n_distractors;
    insertion ins[3 * DS4_NEEDLE_MAX];
    uint64_t inserted = 0;
    for (int i = 0; i < n_ins && rc == 0; i++) {
        ds4_needle *nd = sentence(p, i);
        char text[160];
        snprintf(text, sizeof text, " The special magic number for %s is %s.", nd->key, nd->value);
        ins[i] = (insertion){.needle = nd, .order = i};
        rc = tokenize_text(t, text, false, &ins[i].ids, &ins[i].n);
        nd->len = ins[i].n;
        inserted += ins[i].n;
    }
    const uint64_t fixed = n_head + n_tail + inserted, min_filler = 16;
    if (rc == 0 && s->length < fixed + min_filler)
        rc = ds4_fail("length %llu cannot hold the template, the question and %d sentences (needs at least %llu)",
                      (unsigned long long)s->length, n_ins, (unsigned long long)(fixed + min_filler));
    if (rc == 0) {
        p->haystack_start = n_head;
        p->haystack_len = s->length - n_head - n_tail;
        p->filler_len = p->haystack_len - inserted;
        for (int i = 0; i < n_ins; i++) {
            double d = i < p->n_needles ? s->depth + (double)i / p->n_needles : (double)(next_random(&rng) >> 11) / 9007199254740992.0;
            if (d > 1) d -= 1;
            ins[i].at = (uint64_t)llround(d * (double)p->filler_len);
            ins[i].needle->filler_before = ins[i].at;
        }
        qsort(ins, (size_t)n_ins, sizeof ins[0], by_place);
    }

    /* Assemble: head, filler with the sentences spliced in, tail. */
    uint64_t cap = 0, filler = 0;
    int next = 0;
    if (rc == 0) rc = append_ids(&p->ids, &p->n, &cap, head, n_head);
    uint64_t frng = s->seed * 0x9E3779B97F4A7C15ull + 3;
    while (rc == 0 && (filler < p->filler_len || next < n_ins)) {
        while (rc == 0 && next < n_ins && ins[next].at == filler) {
            ins[next].needle->pos = p->n;
            rc = append_ids(&p->ids, &p->n, &cap, ins[next].ids, ins[next].n);
            next++;
        }
        if (rc < 0 || filler == p->filler_len) break;
        char text[256];
        snprintf(text, sizeof text, " %s %s %s %s", subjects[next_random(&frng) % LIST(subjects)],
                 verbs[next_random(&frng) % LIST(verbs)], objects[next_random(&frng) % LIST(objects)],
                 endings[next_random(&frng) % LIST(endings)]);
        int32_t *ids = NULL;
        size_t n = 0;
        rc = tokenize_text(t, text, false, &ids, &n);
        /* up to the next insertion or the end of the filler, cutting the sentence there */
        const uint64_t stop = next < n_ins ? ins[next].at : p->filler_len;
        uint64_t take = n < stop - filler ? n : stop - filler;
        if (rc == 0) rc = append_ids(&p->ids, &p->n, &cap, ids, take);
        filler += take;
        free(ids);
    }
    if (rc == 0) rc = append_ids(&p->ids, &p->n, &cap, tail, n_tail);
    if (rc == 0 && p->n != s->length) rc = ds4_fail("internal: built %llu tokens for %llu", (unsigned long long)p->n,
                                                    (unsigned long long)s->length);
    for (int i = 0; i < n_ins; i++) free(ins[i].ids);
    free(head);
    free(tail);
    if (rc < 0) ds4_needle_prompt_free(p);
    return rc;
}

void ds4_needle_prompt_free(ds4_needle_prompt *p) {
    free(p->ids);
    p->ids = NULL;
    p->n = 0;
}

/* Length of a digit-group separator at s: ',', '_', ' ', or U+00A0, U+2009, U+202F. */
static int separator(const char *s) {
    if (*s == ',' || *s == '_' || *s == ' ') return 1;
    if (!strncmp(s, "\xc2\xa0", 2)) return 2;
    if (!strncmp(s, "\xe2\x80\x89", 3) || !strncmp(s, "\xe2\x80\xaf", 3)) return 3;
    return 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool ds4_needle_answer_has(const char *answer, const char *value) {
    const size_t want = strlen(value);
    char number[64];
    for (const char *s = answer; *s;) {
        if (!is_digit(*s)) {
            s++;
            continue;
        }
        size_t n = 0;
        bool too_long = false;
        while (is_digit(*s)) {
            if (n < sizeof number) number[n++] = *s;
            else too_long = true;
            s++;
        }
        /* a separator joins a following group of exactly three digits ("1,234,567") */
        for (int k; (k = separator(s)) && is_digit(s[k]) && is_digit(s[k + 1]) && is_digit(s[k + 2]) &&
                    !is_digit(s[k + 3]);) {
            for (int i = 0; i < 3; i++) {
                if (n < sizeof number) number[n++] = s[k + i];
                else too_long = true;
            }
            s += k + 3;
        }
        if (!too_long && n == want && !memcmp(number, value, want)) return true;
    }
    return false;
}

static const char english[] =
    "The museum opens at nine in the morning and closes at five in the evening. Visitors can buy tickets at the "
    "front desk or online, and children under twelve enter for free. On the first floor there is a small cafe "
    "that serves coffee, tea and fresh sandwiches. The most popular room is on the second floor, where old maps "
    "of the city hang next to photographs of the harbor from a hundred years ago.";

int ds4_needle_english_nll(ds4_ctx *ctx, const ds4_tokenizer *t, double *nll, double *chance) {
    int32_t *ids = NULL;
    size_t n = 0;
    const uint32_t V = ds4_ctx_vocab(ctx);
    int rc = 0;
    const int32_t bos = ds4_tokenizer_bos(t);
    if (bos >= 0) {
        if (!(ids = malloc(sizeof *ids))) return ds4_fail("out of memory");
        ids[n++] = bos;
    }
    rc = ds4_tokenize(t, english, strlen(english), false, &ids, &n);
    float *logits = rc == 0 ? malloc(n * (size_t)V * sizeof *logits) : NULL;
    if (rc == 0 && !logits) rc = ds4_fail("out of memory");
    ds4_ctx_reset(ctx);
    if (rc == 0) rc = ds4_eval(ctx, ids, (int)n, logits, true);
    double total = 0;
    for (size_t i = 0; rc == 0 && i + 1 < n; i++) {
        const float *l = logits + i * V;
        total += ds4_logsumexp(l, V) - l[ids[i + 1]];
    }
    ds4_ctx_reset(ctx);
    if (rc == 0) {
        *nll = total / (double)(n - 1);
        *chance = log((double)V);
    }
    free(logits);
    free(ids);
    return rc;
}

int ds4_needle_run(ds4_ctx *ctx, const ds4_tokenizer *t, const ds4_needle_prompt *p, int max_tokens,
                   ds4_progress *progress, ds4_needle_result *r) {
    memset(r, 0, sizeof *r);
    const double t0 = ds4_time_now();
    const ds4_gen_opts go = {.progress = progress, .max_tokens = max_tokens, .tok = t};
    ds4_gen_result g;
    int rc = ds4_generate(ctx, p->ids, (uint64_t)p->n, &go, &g);
    r->prefill_tps = rc == 0 ? (double)p->n / g.prefill_seconds : 0;
    r->decode_tps = rc == 0 && g.decode_seconds > 0 ? g.n_tokens / g.decode_seconds : 0;
    r->kv_bytes = ds4_ctx_kv_bytes(ctx);
    if (rc == 0) {
        const size_t m = g.text.len < sizeof r->answer - 1 ? g.text.len : sizeof r->answer - 1;
        memcpy(r->answer, g.text.data, m);
        r->answer[m] = 0;
        for (int i = 0; i < p->n_needles; i++)
            r->found += r->found_each[i] = ds4_needle_answer_has(r->answer, p->needle[i].value);
        for (int i = 0; i < p->n_distractors; i++) r->distracted += ds4_needle_answer_has(r->answer, p->distractor[i].value);
        r->pass = r->found == p->n_needles && r->distracted == 0;
    }
    r->seconds = ds4_time_now() - t0;
    ds4_gen_result_free(&g);
    return rc;
}
