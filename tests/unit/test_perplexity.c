/* Perplexity and KL against a base file: the compact base (top-k + the rest as one
 * bucket) gives the full-vocabulary KL of two models' complete logits; a model against
 * its own base gives 0; a base file that is truncated, corrupt or made over another
 * corpus is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "basefile.h"
#include "forward.h"
#include "ops.h"
#include "perplexity.h"
#include "test.h"
#include "types.h"

static int32_t *corpus(uint64_t n, uint32_t V) {
    int32_t *ids = malloc(n * sizeof *ids);
    unsigned seed = 5;
    for (uint64_t i = 0; i < n; i++) ids[i] = (int32_t)(rand_r(&seed) % V);
    return ids;
}

/* The mean over the scored positions of the full-vocabulary KL(base || model). */
static double full_kl(ds4_ctx *base, ds4_ctx *model, const int32_t *ids, uint64_t n, uint32_t C) {
    const uint32_t V = ds4_ctx_vocab(base);
    float *lb = malloc((size_t)C * V * sizeof *lb), *lm = malloc((size_t)C * V * sizeof *lm);
    double sum = 0;
    uint64_t count = 0;
    for (uint64_t w = 0; w < ds4_ppl_windows(n, C); w++) {
        ds4_ctx_reset(base);
        ds4_ctx_reset(model);
        if (ds4_eval(base, ids + w * C, (int)C, lb, true) < 0 || ds4_eval(model, ids + w * C, (int)C, lm, true) < 0)
            return NAN;
        for (uint32_t j = C / 2; j + 1 < C; j++) {
            const float *a = lb + (size_t)j * V, *b = lm + (size_t)j * V;
            const double za = ds4_logsumexp(a, V), zb = ds4_logsumexp(b, V);
            double kl = 0;
            for (uint32_t v = 0; v < V; v++) kl += exp(a[v] - za) * ((a[v] - za) - (b[v] - zb));
            sum += kl;
            count++;
        }
    }
    free(lb);
    free(lm);
    return sum / (double)count;
}

static void compact_kl_matches_full_kl(void) {
    enum { C = 48, N = 4 * C + 7 };
    ds4_model *mb = test_model("tiny-b", GGML_TYPE_F32, NULL), *mq = test_model("tiny-b", GGML_TYPE_F32, "q2");
    CHECKF(mb && mq, "%s", ds4_error());
    const uint32_t V = mb->cfg.n_vocab;
    int32_t *ids = corpus(N, V);
    ds4_ctx *cb = ds4_ctx_new(mb, &(ds4_ctx_opts){.n_threads = 2}), *cq = ds4_ctx_new(mq, &(ds4_ctx_opts){.n_threads = 2});
    CHECK(cb && cq);
    char path[600];
    snprintf(path, sizeof path, "%s/tiny-b.base", test_tmpdir());
    const ds4_base_info info = {32, V, 0.99999f, V, C, ds4_ppl_positions(N, C), ds4_model_fingerprint(mb), 0,
                                ds4_ppl_corpus_hash(ids, N, C)};
    ds4_base_writer *w = ds4_base_create(path, &info);
    CHECKF(w, "%s", ds4_error());
    ds4_ppl_stats st;
    ds4_ppl_hist h;
    const ds4_ppl_opts save = {.ctx = C, .bos = -1, .save = w, .min_k = 32, .max_k = V, .mass = 0.99999};
    CHECKF(ds4_perplexity(cb, ids, N, &save, NULL, NULL, &st, &h) == 0 && ds4_base_finish(w) == 0, "%s", ds4_error());
    const double ppl_base = st.ppl;
    ds4_base_file bf;
    CHECKF(ds4_base_open(&bf, path) == 0, "%s", ds4_error());
    CHECK(ds4_ppl_check_base(&bf.info, ids, N, C, V, 0) == 0);
    /* the base model against its own base: nothing moved */
    const ds4_ppl_opts against = {.ctx = C, .bos = -1, .base = &bf};
    CHECKF(ds4_perplexity(cb, ids, N, &against, NULL, NULL, &st, &h) == 0, "%s", ds4_error());
    CHECKF(st.kl_max < 1e-9 && st.top1 == 1.0 && fabs(st.ppl / st.ppl_base - 1) < 1e-6, "self: KL max %g, top-1 %g",
           st.kl_max, st.top1);
    CHECK(st.tokens == 4 * (C / 2 - 1) && fabs(st.ppl - ppl_base) < 1e-9 * ppl_base);
    /* the q2 file against it: the compact KL is the full-vocabulary KL */
    CHECKF(ds4_perplexity(cq, ids, N, &against, NULL, NULL, &st, &h) == 0, "%s", ds4_error());
    const double full = full_kl(cb, cq, ids, N, C);
    CHECKF(st.kl_mean > 1e-6 && fabs(st.kl_mean - full) <= 1e-3 * full, "compact KL %.9g, full %.9g", st.kl_mean,
           full);
    CHECK(st.kl_median <= st.kl_p99 && st.kl_p99 <= st.kl_max && st.top1 < 1.0 + 1e-12);
    uint64_t in_hist = 0;
    for (int i = 0; i < DS4_KL_BINS; i++) in_hist += h.kl[i];
    CHECK(in_hist == st.tokens);
    /* other settings or another corpus are refused */
    CHECK(ds4_ppl_check_base(&bf.info, ids, N, C + 1, V, 0) < 0 && strstr(ds4_error(), "--ctx"));
    ids[3] ^= 1;
    CHECK(ds4_ppl_check_base(&bf.info, ids, N, C, V, 0) < 0 && strstr(ds4_error(), "another corpus"));
    CHECK(ds4_ppl_check_base(&bf.info, ids, N, C, V, 7) < 0 && strstr(ds4_error(), "tokenizer"));
    ds4_base_close(&bf);
    /* a damaged file is refused when opened, in one line */
    size_t len;
    char *bytes = ds4_read_file(path, &len), bad[640];
    snprintf(bad, sizeof bad, "%s/bad.base", test_tmpdir());
    CHECK(bytes && ds4_write_file_atomic(bad, bytes, len - 100) == 0);
    CHECK(ds4_base_open(&bf, bad) < 0 && strstr(ds4_error(), "truncated") && !strchr(ds4_error(), '\n'));
    bytes[len / 2] ^= 0x40;
    CHECK(ds4_write_file_atomic(bad, bytes, len) == 0);
    CHECK(ds4_base_open(&bf, bad) < 0 && strstr(ds4_error(), "corrupt"));
    CHECK(ds4_write_file_atomic(bad, "DS4KVST1", 8) == 0 && ds4_base_open(&bf, bad) < 0);
    free(bytes);
    free(ids);
    ds4_ctx_free(cb);
    ds4_ctx_free(cq);
    ds4_model_free(mb);
    ds4_model_free(mq);
}

const test_case perplexity_tests[] = {
    {"compact_kl_matches_full_kl", compact_kl_matches_full_kl},
    {0, 0},
};
