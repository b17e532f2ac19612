/* main.c - runs the unit test suites. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "model.h"
#include "recipe.h"
#include "requant.h"
#include "test.h"
#include "types.h"

static int failed_now, skipped_now;
static char tmp_root[256];

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failed_now = 1;
}

void test_skip(const char *why) {
    fprintf(stderr, "    skipped: %s\n", why);
    skipped_now = 1;
}

const char *test_tmpdir(void) {
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "%s/ds4-unit-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(tmp_root)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tmp_root;
}

ds4_model *test_model(const char *name, uint32_t type, const char *recipe) {
    char in[300], base[600], out[700];
    snprintf(in, sizeof in, "vectors/models/%s", name);
    snprintf(base, sizeof base, "%s/%s-%s.gguf", test_tmpdir(), name, ds4_type_name(type));
    ds4_convert_opts o = {.in_dir = in, .out_path = base, .type = type, .n_threads = 2};
    ds4_convert_stats cs;
    if (access(base, F_OK) != 0 && ds4_convert(&o, &cs) < 0) return NULL;
    if (!recipe) return ds4_model_load(base);
    snprintf(out, sizeof out, "%s/%s-%s-%s.gguf", test_tmpdir(), name, ds4_type_name(type), recipe);
    ds4_recipe *r = ds4_recipe_new(recipe);
    ds4_requant_opts ro = {.in_path = base, .out_path = out, .recipe = r, .n_threads = 2};
    ds4_requant_stats rs = {0};
    const int rc = r && access(out, F_OK) != 0 ? ds4_requant(&ro, &rs) : 0;
    free(rs.loss);
    ds4_recipe_free(r);
    return rc == 0 ? ds4_model_load(out) : NULL;
}

const char *test_shared_dir(void) {
    static char path[512];
    const char *env = getenv("DS4_SHARED");
    snprintf(path, sizeof path, "%s", env ? env : "../shared");
    struct stat st;
    return stat(path, &st) == 0 ? path : NULL;
}

static const struct { const char *name; const test_case *cases; } suites[] = {
    {"numeric", numeric_tests}, {"quant", quant_tests}, {"gguf", gguf_tests},
    {"safetensors", safetensors_tests}, {"convert", convert_tests}, {"forward", forward_tests}, {"tokenizer", tokenizer_tests}, {"chat", chat_tests}, {"logitcheck", logitcheck_tests}, {"kvfile", kvfile_tests}, {"needle", needle_tests}, {"threads", threads_tests}, {"hostile", hostile_tests}, {"backend", backend_tests}, {"perplexity", perplexity_tests}, {"batch_step", batch_step_tests}, {"chat_stream", chat_stream_tests}, {"api", api_tests},
};

int main(int argc, char **argv) {
    int passed = 0, failed = 0, skipped = 0;
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        bool wanted = argc < 2;
        for (int i = 1; i < argc; i++) wanted |= !strcmp(argv[i], suites[s].name);
        if (!wanted) continue;
        for (const test_case *t = suites[s].cases; t->name; t++) {
            failed_now = skipped_now = 0;
            t->fn();
            const char *verdict = failed_now ? "FAIL" : skipped_now ? "skip" : "ok";
            printf("%-4s %s/%s\n", verdict, suites[s].name, t->name);
            fflush(stdout);
            if (failed_now) failed++;
            else if (skipped_now) skipped++;
            else passed++;
        }
    }
    if (tmp_root[0] && !getenv("DS4_KEEP_TMP")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
