/* KV state files: restoring a saved state then decoding gives exactly the logits of never
 * having saved; corrupt, truncated and foreign files are refused and leave nothing loaded. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "kvfile.h"
#include "quants.h"
#include "test.h"

static ds4_model *model(const char *name) {
    char in[256], out[600];
    snprintf(in, sizeof in, "vectors/models/%s", name);
    snprintf(out, sizeof out, "%s/kv-%s.gguf", test_tmpdir(), name);
    ds4_convert_opts o = {.in_dir = in, .out_path = out, .type = GGML_TYPE_F32, .n_threads = 2};
    ds4_convert_stats s;
    if (access(out, F_OK) != 0 && ds4_convert(&o, &s) < 0) return NULL;
    return ds4_model_load(out);
}

static void restore_then_decode_is_identical(void) {
    ds4_model *m = model("tiny-a");
    CHECKF(m, "%s", ds4_error());
    const uint32_t V = m->cfg.n_vocab;
    ds4_ctx *a = ds4_ctx_new(m, 2), *b = ds4_ctx_new(m, 2);
    enum { N = 301, STEPS = 12 };
    int32_t ids[N + STEPS];
    srand(3);
    for (int i = 0; i < N + STEPS; i++) ids[i] = 2 + rand() % (int)(V - 2);
    float *la = malloc(V * sizeof *la), *lb = malloc(V * sizeof *lb);
    CHECK(ds4_eval(a, ids, N, la, false) == 0);
    char path[600];
    snprintf(path, sizeof path, "%s/state.kv", test_tmpdir());
    CHECKF(ds4_kv_save(a, ids, N, path) == 0, "%s", ds4_error());
    int32_t *saved = NULL;
    uint64_t n = 0;
    CHECKF(ds4_kv_load(b, path, &saved, &n) == 0, "%s", ds4_error());
    CHECK(n == N && !memcmp(saved, ids, sizeof(int32_t) * N) && ds4_ctx_pos(b) == N);
    CHECK(ds4_ctx_kv_bytes(a) == ds4_ctx_kv_bytes(b));
    free(saved);
    for (int s = 0; s < STEPS; s++) {
        CHECK(ds4_eval(a, &ids[N + s], 1, la, false) == 0 && ds4_eval(b, &ids[N + s], 1, lb, false) == 0);
        CHECKF(!memcmp(la, lb, V * sizeof *la), "step %d differs after restoring", s);
    }

    /* a corrupt byte, a truncated file and another model's state are all refused */
    size_t len;
    char *bytes = ds4_read_file(path, &len);
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad.kv", test_tmpdir());
    bytes[len / 2] ^= 0x40;
    FILE *f = fopen(bad, "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);
    CHECK(ds4_kv_load(b, bad, &saved, &n) < 0 && strstr(ds4_error(), "bad.kv") && ds4_ctx_pos(b) == 0);
    bytes[len / 2] ^= 0x40;
    f = fopen(bad, "wb");
    fwrite(bytes, 1, len - 7, f);
    fclose(f);
    CHECK(ds4_kv_load(b, bad, &saved, &n) < 0 && strstr(ds4_error(), "truncated"));
    free(bytes);
    ds4_model *other = model("tiny-q");
    CHECK(other);
    ds4_ctx *c = ds4_ctx_new(other, 1);
    CHECK(ds4_kv_load(c, path, &saved, &n) < 0 && strstr(ds4_error(), "different model"));
    CHECK(ds4_kv_save(a, ids, 5, path) < 0); /* token count must match the state */
    ds4_ctx_free(c);
    ds4_model_free(other);
    free(la);
    free(lb);
    ds4_ctx_free(a);
    ds4_ctx_free(b);
    ds4_model_free(m);
}

const test_case kvfile_tests[] = {
    {"restore_then_decode_is_identical", restore_then_decode_is_identical},
    {0, 0},
};
