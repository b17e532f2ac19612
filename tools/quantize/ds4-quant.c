/* ds4-quant - produce ds4 GGUF files. `convert` turns a DeepSeek-V4 checkpoint
 * (Hugging Face or DeepSeek release layout) into a GGUF; `quantize` writes a GGUF (from
 * a GGUF or a checkpoint) under a recipe; `plan` prints a recipe's sizes from shapes
 * alone; `check-golden` holds our block formats to ggml's. */
#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "hf_config.h"
#include "imatrix.h"
#include "cpufeatures.h"
#include "model.h"
#include "quant_golden.h"
#include "quants.h"
#include "recipe.h"
#include "requant.h"
#include "synth.h"
#include "../flags.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4-quant convert --in DIR --out FILE.gguf [--type f32|f16|bf16|q8_0]\n"
            "                         [--threads N] [--add-tokens FILE.json] [--quiet]\n"
            "       ds4-quant quantize --in MODEL.gguf|DIR --out FILE.gguf --recipe RECIPE\n"
            "                         [--imatrix FILE] [--type-for REGEX=TYPE]... [--threads N]\n"
            "                         [--loss-csv FILE] [--allow-requantize] [--quiet]\n"
            "       ds4-quant plan --recipe RECIPE [--config flash|MODEL.gguf|config.json]\n"
            "                         [--layers N] [--experts N]\n"
            "       ds4-quant synth --out FILE.gguf --recipe RECIPE [--config flash|MODEL.gguf|config.json]\n"
            "                         [--layers N] [--experts N] [--seed S] [--threads N] [--csv FILE]\n"
            "                         [--fast] [--quiet]\n"
            "       ds4-quant check-golden FILE [--csv FILE]\n"
            "\n"
            "  convert   DeepSeek-V4 checkpoint directory (config.json + safetensors, single\n"
            "            or sharded; transformers or DeepSeek release names; F32/F16/BF16,\n"
            "            FP8 with block scales, MXFP4 experts) to a deepseek4 GGUF.\n"
            "            --type sets the weight matrices (default f16); norms stay f32,\n"
            "            the routing table i32, and under q8_0 the small sensitive\n"
            "            matrices (hyper-connections, compressors, router) f16.\n"
            "            --add-tokens applies a JSON list of added tokens ({id, content,\n"
            "            special}) on top of tokenizer.json (V4's markers on V3's vocabulary).\n"
            "  quantize  a GGUF (any types we read) or a checkpoint directory (read as convert\n"
            "            does, FP8/FP4 dequantized on the fly) to a GGUF under RECIPE:\n"
            "              q2     routed experts gate/up iq2_xxs, down q2_K; rest q8_0,\n"
            "                     small matrices and embedding f16 (ds4's 2-bit files)\n"
            "              q4     routed experts q4_K, rest as q2\n"
            "              mxfp4  routed experts mxfp4, rest as q2\n"
            "              q8, f16, bf16, f32   every weight matrix in that type\n"
            "            --imatrix FILE (GGUF, from `ds4 imatrix` or llama.cpp) weights the\n"
            "            quantization error per input column; without one, iq2_xxs uses\n"
            "            uniform importance. --type-for REGEX=TYPE overrides the type of\n"
            "            tensors whose GGUF name matches (PCRE2; last match wins), e.g.\n"
            "            'blk\\.[0-2]\\.ffn_down_exps=q4_K'; a pattern that matches no tensor\n"
            "            is an error. A GGUF input already below 8 bits per weight is\n"
            "            requantized only with --allow-requantize. --loss-csv writes each tensor's\n"
            "            relative RMSE (plain and importance-weighted). Streams tensor by\n"
            "            tensor on all cores with a progress line; an interrupted run leaves\n"
            "            no partial file.\n"
            "  plan      sizes under RECIPE from shapes alone: bytes per weight class, total,\n"
            "            and weight bytes read per decoded token. --config flash (default)\n"
            "            is DeepSeek V4 Flash; --layers/--experts shrink it.\n"
            "  synth     a model of the config's shapes (default Flash; --layers/--experts\n"
            "            shrink it) with seeded random weights, written under RECIPE (no\n"
            "            tokenizer: feed it token ids). Reports each quantizer's speed on\n"
            "            those shapes (MB/s of F32 input per thread; --csv writes them).\n"
            "            --fast draws every block from a pool of quantized random blocks per\n"
            "            tensor: a model for speed runs at disk speed (its quantizer speeds\n"
            "            then measure the pool only).\n"
            "  check-golden  dequantize ggml's bytes (must match exactly) and quantize its\n"
            "            inputs (our row error must be <= 1.02x ggml's) for every set of a\n"
            "            golden file (shared/golden/README.md); --csv writes the table.\n"
            "  --threads defaults to the CPUs this process may use. --out may not name the\n"
            "  input. --version prints the commit and the compiled backends.\n"
            EXIT_STATUS_HELP);
}

/* An --in that does not open is unreadable input (status 2), not a failed run. */
static bool readable_input(const char *path) {
    if (access(path, R_OK) == 0) return true;
    fprintf(stderr, "ds4-quant: %s: cannot open: %s\n", path, strerror(errno));
    return false;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *recipe_name = NULL, *imatrix_path = NULL, *loss_csv = NULL;
    int n_threads = 0;
    bool quiet = false;
    ds4_recipe *recipe = NULL;
    const char *overrides[64];
    int n_overrides = 0;
    bool allow_requantize = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--quiet")) { quiet = true; continue; }
        if (!strcmp(a, "--allow-requantize")) { allow_requantize = true; continue; }
        if (a[0] != '-') return tool_unknown_option("ds4-quant", a);
        if (!v) return tool_missing_value("ds4-quant", a);
        i++;
        if (!strcmp(a, "--in")) in = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--recipe")) recipe_name = v;
        else if (!strcmp(a, "--imatrix")) imatrix_path = v;
        else if (!strcmp(a, "--loss-csv")) loss_csv = v;
        else if (!strcmp(a, "--threads")) n_threads = (int)flag_integer("ds4-quant", a, v, 1, 512);
        else if (!strcmp(a, "--type-for") && n_overrides < 64) overrides[n_overrides++] = v;
        else return tool_unknown_option("ds4-quant", a);
    }
    if (!in || !out || !recipe_name) {
        fprintf(stderr, "ds4-quant: quantize needs --in, --out and --recipe\n");
        return 2;
    }
    if (!readable_input(in)) return 2;
    if (ds4_same_file(in, out)) {
        fprintf(stderr, "ds4-quant: --out %s is the input file itself (through a link or not): give another path\n",
                out);
        return 2;
    }
    if (!(recipe = ds4_recipe_new(recipe_name))) {
        fprintf(stderr, "ds4-quant: %s\n", ds4_error());
        return 2;
    }
    for (int i = 0; i < n_overrides; i++)
        if (ds4_recipe_add_override(recipe, overrides[i]) < 0) {
            fprintf(stderr, "ds4-quant: %s\n", ds4_error());
            ds4_recipe_free(recipe);
            return 2;
        }
    int rc = 1;
    ds4_imatrix *im = NULL;
    if (imatrix_path && !(im = ds4_imatrix_load(imatrix_path))) {
        fprintf(stderr, "ds4-quant: %s\n", ds4_error());
        ds4_recipe_free(recipe);
        return 1;
    }
    ds4_install_cleanup_handlers();
    const int threads = n_threads > 0 ? n_threads : ds4_cpu_count();
    if (is_dir(in)) {
        ds4_convert_opts o = {.in_dir = in, .out_path = out, .recipe = recipe, .imatrix = im,
                              .n_threads = threads, .progress = !quiet, .want_loss = loss_csv != NULL};
        ds4_convert_stats s;
        if (ds4_convert(&o, &s) < 0) {
            fprintf(stderr, "ds4-quant: %s\n", ds4_error());
            goto done;
        }
        if (!quiet)
            printf("quantized %s -> %s (recipe %s%s): %llu tensors, %.2f MiB read, %.2f MiB written, %.2f s\n", in,
                   out, recipe_name, im ? ", imatrix" : "", (unsigned long long)s.n_tensors,
                   (double)s.bytes_in / (1 << 20), (double)s.bytes_out / (1 << 20), s.seconds);
        const int csv_rc = loss_csv ? ds4_tensor_loss_write_csv(s.loss, s.n_tensors, loss_csv) : 0;
        free(s.loss);
        if (csv_rc < 0) {
            fprintf(stderr, "ds4-quant: %s\n", ds4_error());
            goto done;
        }
    } else {
        ds4_requant_opts o = {.in_path = in, .out_path = out, .recipe = recipe, .imatrix = im,
                              .n_threads = threads, .progress = !quiet, .allow_requantize = allow_requantize};
        ds4_requant_stats s;
        if (ds4_requant(&o, &s) < 0) {
            fprintf(stderr, "ds4-quant: %s\n", ds4_error());
            goto done;
        }
        uint64_t with_imatrix = 0;
        for (uint64_t i = 0; i < s.n_tensors; i++) with_imatrix += s.loss[i].imatrix;
        if (!quiet) {
            printf("quantized %s -> %s (recipe %s): %llu tensors (%llu kept as they were, %llu with importance "
                   "rows), %.2f MiB -> %.2f MiB, %.2f s, %.1f MB/s of F32 input per thread (%d threads)\n",
                   in, out, recipe_name, (unsigned long long)s.n_tensors, (unsigned long long)s.n_copied,
                   (unsigned long long)with_imatrix, (double)s.bytes_in / (1 << 20), (double)s.bytes_out / (1 << 20),
                   s.seconds, s.seconds > 0 ? (double)s.f32_bytes / 1e6 / s.seconds / threads : 0.0, threads);
            if (s.n_fallback) printf("  %llu tensors fell back to q8_0/f16 (row length)\n", (unsigned long long)s.n_fallback);
        }
        if (loss_csv && ds4_tensor_loss_write_csv(s.loss, s.n_tensors, loss_csv) < 0) {
            fprintf(stderr, "ds4-quant: %s\n", ds4_error());
            free(s.loss);
            goto done;
        }
        free(s.loss);
    }
    ds4_model *m = ds4_model_load(out);
    if (!m) {
        fprintf(stderr, "ds4-quant: wrote a file that does not load: %s\n", ds4_error());
        goto done;
    }
    if (!quiet) ds4_model_print_summary(m, stdout);
    ds4_model_free(m);
    rc = 0;
done:
    ds4_imatrix_free(im);
    ds4_recipe_free(recipe);
    return rc;
}

/* The shape options plan and synth share. */
typedef struct {
    const char *recipe, *config, *out, *csv;
    long layers, experts, seed, threads;
    bool quiet, fast;
} shape_args;

static int parse_shape_args(const char *cmd, int argc, char **argv, shape_args *a) {
    *a = (shape_args){.config = "flash", .seed = 1};
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--quiet")) { a->quiet = true; continue; }
        if (!strcmp(k, "--fast")) { a->fast = true; continue; }
        if (!v) return tool_missing_value("ds4-quant", k);
        i++;
        if (!strcmp(k, "--recipe")) a->recipe = v;
        else if (!strcmp(k, "--config")) a->config = v;
        else if (!strcmp(k, "--out")) a->out = v;
        else if (!strcmp(k, "--csv")) a->csv = v;
        else if (!strcmp(k, "--layers")) a->layers = flag_integer("ds4-quant", k, v, 1, DS4_MAX_LAYERS);
        else if (!strcmp(k, "--experts")) a->experts = flag_integer("ds4-quant", k, v, 1, 65536);
        else if (!strcmp(k, "--seed")) a->seed = flag_integer("ds4-quant", k, v, 0, LONG_MAX);
        else if (!strcmp(k, "--threads")) a->threads = flag_integer("ds4-quant", k, v, 1, 512);
        else return tool_unknown_option("ds4-quant", k);
    }
    if (!a->recipe) {
        fprintf(stderr, "ds4-quant: %s needs --recipe\n", cmd);
        return 2;
    }
    return 0;
}

/* Flash's shape (optionally shrunk), or the config of a GGUF or config.json. */
static int load_config(const shape_args *a, ds4_config *c) {
    const size_t len = strlen(a->config);
    if (!strcmp(a->config, "flash")) {
        ds4_config_flash(c, (uint32_t)a->layers, (uint32_t)a->experts);
        return 0;
    }
    int rc;
    if (len > 5 && !strcmp(a->config + len - 5, ".gguf")) {
        gguf_file *f = ds4_gguf_open(a->config);
        rc = f && ds4_config_from_gguf(f, c) == 0 ? 0 : -1;
        ds4_gguf_close(f);
    } else {
        ds4_hf_config hf;
        rc = ds4_hf_config_load(a->config, &hf);
        *c = hf.cfg;
    }
    if (rc == 0 && a->layers && (uint32_t)a->layers < c->n_layer) c->n_layer = (uint32_t)a->layers;
    if (rc == 0 && a->experts) {
        c->n_expert = (uint32_t)a->experts;
        if (c->n_expert_used > c->n_expert) c->n_expert_used = c->n_expert;
    }
    return rc;
}

static int cmd_synth(int argc, char **argv) {
    shape_args a;
    int rc = parse_shape_args("synth", argc, argv, &a);
    if (rc) return rc;
    if (!a.out) {
        fprintf(stderr, "ds4-quant: synth needs --out\n");
        return 2;
    }
    ds4_recipe *r = ds4_recipe_new(a.recipe);
    ds4_config c;
    if (!r || load_config(&a, &c) < 0) {
        fprintf(stderr, "ds4-quant: %s\n", ds4_error());
        ds4_recipe_free(r);
        return 2;
    }
    ds4_install_cleanup_handlers();
    ds4_synth_opts o = {.cfg = &c, .recipe = r, .out_path = a.out, .seed = (uint64_t)a.seed,
                        .n_threads = (int)a.threads, .progress = !a.quiet, .fast = a.fast};
    ds4_synth_stats s;
    rc = ds4_synth(&o, &s) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "ds4-quant: %s\n", ds4_error());
    else if (!a.quiet) {
        printf("synth %s (%s): %u layers, %u routed experts, recipe %s, %llu tensors, %.2f GiB, %.1f s\n", a.out,
               a.config, c.n_layer, c.n_expert, a.recipe, (unsigned long long)s.n_tensors,
               (double)s.bytes_out / (1u << 30), s.seconds);
        printf("%-8s %14s %12s %16s\n", "type", "f32_input_MB", "thread_s", "MB/s_per_thread");
        for (int t = 0; t < GGML_TYPE_COUNT; t++)
            if (s.type_bytes[t])
                printf("%-8s %14.1f %12.2f %16.1f\n", ds4_type_name((uint32_t)t), (double)s.type_bytes[t] / 1e6,
                       s.type_seconds[t], s.type_seconds[t] > 0 ? (double)s.type_bytes[t] / 1e6 / s.type_seconds[t] : 0);
    }
    if (rc == 0 && a.csv) {
        ds4_buf b = {0};
        char line[256];
        int len = snprintf(line, sizeof line, "type,f32_input_bytes,thread_seconds,mb_per_s_per_thread,config,layers,"
                                              "experts,recipe,threads,cpu\n");
        rc = ds4_buf_append(&b, line, (size_t)len) < 0;
        for (int t = 0; t < GGML_TYPE_COUNT && !rc; t++) {
            if (!s.type_bytes[t]) continue;
            len = snprintf(line, sizeof line, "%s,%llu,%.3f,%.1f,%s,%u,%u,%s,%d,%s\n", ds4_type_name((uint32_t)t),
                           (unsigned long long)s.type_bytes[t], s.type_seconds[t],
                           s.type_seconds[t] > 0 ? (double)s.type_bytes[t] / 1e6 / s.type_seconds[t] : 0, a.config,
                           c.n_layer, c.n_expert, a.recipe, a.threads ? (int)a.threads : ds4_cpu_count(),
                           ds4_cpu_level_name(ds4_cpu_detect()));
            rc = ds4_buf_append(&b, line, (size_t)len) < 0;
        }
        if (!rc) rc = ds4_write_file_atomic(a.csv, b.data, b.len) < 0;
        if (rc) fprintf(stderr, "ds4-quant: %s\n", ds4_error());
        ds4_buf_free(&b);
    }
    ds4_recipe_free(r);
    return rc;
}

static int cmd_plan(int argc, char **argv) {
    shape_args a;
    int rc = parse_shape_args("plan", argc, argv, &a);
    if (rc) return rc;
    ds4_recipe *r = ds4_recipe_new(a.recipe);
    if (!r) {
        fprintf(stderr, "ds4-quant: %s\n", ds4_error());
        return 2;
    }
    ds4_config c;
    const char *config = a.config;
    rc = load_config(&a, &c);
    if (rc == 0) {
        ds4_size_plan p;
        rc = ds4_recipe_plan(r, &c, &p);
        if (rc == 0) {
            printf("config %s: %u layers, %u routed experts (%u used), hidden %u, vocab %u\n", config, c.n_layer,
                   c.n_expert, c.n_expert_used, c.n_embd, c.n_vocab);
            ds4_size_plan_print(&p, r, &c, stdout);
        }
    }
    if (rc < 0) fprintf(stderr, "ds4-quant: %s\n", ds4_error());
    ds4_recipe_free(r);
    return rc < 0 ? 1 : 0;
}

/* Both golden checks on a file in the golden format; a table, optionally CSV. */
static int cmd_check_golden(int argc, char **argv) {
    const char *path = NULL, *csv = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            fprintf(stderr, "ds4-quant: check-golden: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "ds4-quant: check-golden needs a FILE\n");
        return 2;
    }
    ds4_golden_set *sets;
    size_t n;
    if (ds4_golden_check(path, &sets, &n) < 0) {
        fprintf(stderr, "ds4-quant: %s\n", ds4_error());
        return 1;
    }
    ds4_golden_print(sets, n, stdout);
    int failed = 0, unchecked = 0;
    for (size_t i = 0; i < n; i++) {
        failed += !sets[i].pass;
        unchecked += !sets[i].dequant_checked || !sets[i].quant_checked;
    }
    printf("%zu sets: %zu pass, %d fail (bound: our row error <= %.2fx ggml's)", n, n - (size_t)failed, failed,
           DS4_GOLDEN_MAX_RATIO);
    if (unchecked) printf("; %d sets have a type this build cannot dequantize or quantize", unchecked);
    printf("\n");
    int rc = failed ? 1 : 0;
    if (csv && ds4_golden_write_csv(sets, n, csv) < 0) {
        fprintf(stderr, "ds4-quant: %s\n", ds4_error());
        rc = 1;
    }
    free(sets);
    return rc;
}

static int cmd_convert(int argc, char **argv) {
    ds4_convert_opts o = {.type = GGML_TYPE_F16, .progress = true};
    bool quiet = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quiet")) { quiet = true; o.progress = false; continue; }
        if (!v) return tool_missing_value("ds4-quant", a);
        i++;
        if (!strcmp(a, "--in")) o.in_dir = v;
        else if (!strcmp(a, "--out")) o.out_path = v;
        else if (!strcmp(a, "--add-tokens")) o.added_tokens = v;
        else if (!strcmp(a, "--threads")) o.n_threads = (int)flag_integer("ds4-quant", a, v, 1, 512);
        else if (!strcmp(a, "--type")) {
            int t = ds4_type_from_name(v);
            if (t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16 && t != GGML_TYPE_Q8_0) {
                fprintf(stderr, "ds4-quant: --type must be f32, f16, bf16 or q8_0, not '%s'\n", v);
                return 2;
            }
            o.type = (uint32_t)t;
        } else {
            return tool_unknown_option("ds4-quant", a);
        }
    }
    if (!o.in_dir || !o.out_path) {
        fprintf(stderr, "ds4-quant: convert needs --in and --out\n");
        return 2;
    }
    if (!readable_input(o.in_dir)) return 2;
    ds4_install_cleanup_handlers();
    ds4_convert_stats s;
    if (ds4_convert(&o, &s) < 0) {
        fprintf(stderr, "ds4-quant: %s\n", ds4_error());
        return 1;
    }
    ds4_model *m = ds4_model_load(o.out_path);
    if (!m) {
        fprintf(stderr, "ds4-quant: wrote a file that does not load: %s\n", ds4_error());
        return 1;
    }
    if (!quiet) {
        printf("converted %s -> %s (%s weights): %llu tensors, %.2f MiB read, %.2f MiB written, %.2f s, %s\n",
               o.in_dir, o.out_path, ds4_type_name(o.type), (unsigned long long)s.n_tensors,
               (double)s.bytes_in / (1 << 20), (double)s.bytes_out / (1 << 20), s.seconds,
               ds4_cpu_level_name(ds4_cpu_detect()));
        printf("  tokenizer: %s", s.tokenizer ? "written from tokenizer.json" : "none (no tokenizer.json)");
        if (s.n_type_fallback) printf("; %llu matrices kept f16 (rows not a multiple of the block)",
                                      (unsigned long long)s.n_type_fallback);
        if (s.n_ignored) printf("; %llu checkpoint tensors not used (first: %s)", (unsigned long long)s.n_ignored,
                                s.first_ignored);
        printf("\n");
        ds4_model_print_summary(m, stdout);
    }
    ds4_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--version")) return tool_version("ds4-quant");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "check-golden")) return cmd_check_golden(argc - 2, argv + 2);
    if (!strcmp(argv[1], "quantize")) return cmd_quantize(argc - 2, argv + 2);
    if (!strcmp(argv[1], "plan")) return cmd_plan(argc - 2, argv + 2);
    if (!strcmp(argv[1], "synth")) return cmd_synth(argc - 2, argv + 2);
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc - 2, argv + 2);
    fprintf(stderr, "ds4-quant: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
