/* ds4 - run DeepSeek V4 on a prompt. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "util.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4 run --model M.gguf --prompt-ids ID,ID,... [-n N] [--temp T] [--top-p P]\n"
            "               [--seed S] [--threads N]\n"
            "\n"
            "  run   feed the prompt and generate N tokens (default 16): greedy when --temp is 0\n"
            "        (the default), else temperature + top-p sampling, reproducible with --seed.\n"
            "        Prints the generated ids and the prefill / decode speed.\n"
            "        (Text prompts, --prompt TEXT, arrive with the tokenizer.)\n");
}

static int parse_ids(const char *s, int32_t **out, int *n) {
    int cap = 64;
    *out = malloc((size_t)cap * sizeof **out);
    *n = 0;
    while (*out && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) return -1;
        if (*n == cap) {
            int32_t *p = realloc(*out, (size_t)(cap *= 2) * sizeof **out);
            if (!p) return -1;
            *out = p;
        }
        (*out)[(*n)++] = (int32_t)v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    return *out && *n > 0 ? 0 : -1;
}

static double number(const char *flag, const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (*end || x < 0) {
        fprintf(stderr, "ds4: %s wants a non-negative number, not '%s'\n", flag, v);
        exit(2);
    }
    return x;
}

static int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *ids_text = NULL;
    int n_gen = 16, threads = 0;
    float temp = 0, top_p = 1;
    uint64_t seed = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "ds4: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--prompt-ids")) ids_text = v;
        else if (!strcmp(a, "--prompt")) { fprintf(stderr, "ds4: text prompts need the tokenizer, which this build does not have yet; use --prompt-ids\n"); return 2; }
        else if (!strcmp(a, "-n")) n_gen = (int)number(a, v);
        else if (!strcmp(a, "--temp")) temp = (float)number(a, v);
        else if (!strcmp(a, "--top-p")) top_p = (float)number(a, v);
        else if (!strcmp(a, "--seed")) seed = (uint64_t)number(a, v);
        else if (!strcmp(a, "--threads")) threads = (int)number(a, v);
        else { fprintf(stderr, "ds4: unknown option '%s'\n", a); return 2; }
    }
    if (!model_path || !ids_text) {
        fprintf(stderr, "ds4: run needs --model and --prompt-ids\n");
        return 2;
    }
    int32_t *ids;
    int n;
    if (parse_ids(ids_text, &ids, &n) < 0) {
        fprintf(stderr, "ds4: --prompt-ids wants comma-separated token ids\n");
        return 2;
    }
    ds4_model *m = ds4_model_load(model_path);
    if (!m) {
        fprintf(stderr, "ds4: %s\n", ds4_error());
        return 1;
    }
    ds4_ctx *ctx = ds4_ctx_new(m, threads > 0 ? threads : ds4_cpu_count());
    const uint32_t V = m->cfg.n_vocab;
    float *logits = malloc(V * sizeof *logits), *probs = malloc(V * sizeof *probs);
    int32_t *idx = malloc(V * sizeof *idx);
    int rc = ctx && logits && probs && idx ? 0 : -1;
    ds4_sampler s;
    ds4_sampler_init(&s, temp, top_p, seed);
    double t0 = ds4_time_now(), t1 = t0;
    if (rc == 0) rc = ds4_eval(ctx, ids, n, logits, false);
    t1 = ds4_time_now();
    for (int i = 0; i < n_gen && rc == 0; i++) {
        int32_t tok = ds4_sample(&s, logits, V, probs, idx);
        printf("%s%d", i ? "," : "", tok);
        fflush(stdout);
        if (i + 1 < n_gen) rc = ds4_eval(ctx, &tok, 1, logits, false);
    }
    double t2 = ds4_time_now();
    if (rc < 0) fprintf(stderr, "\nds4: %s\n", ds4_error());
    else
        fprintf(stderr, "\nprefill %d tokens %.1f tok/s, decode %d tokens %.1f tok/s, KV state %.1f KiB\n", n,
                n / (t1 - t0), n_gen, n_gen > 0 ? n_gen / (t2 - t1) : 0.0, ds4_ctx_kv_bytes(ctx) / 1024.0);
    printf("\n");
    free(ids); free(logits); free(probs); free(idx);
    ds4_ctx_free(ctx);
    ds4_model_free(m);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    fprintf(stderr, "ds4: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
