/* ds4-quant - produce ds4 GGUF files. `convert` turns a DeepSeek-V4 checkpoint
 * (Hugging Face or DeepSeek release layout) into a GGUF. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "cpu.h"
#include "model.h"
#include "quants.h"
#include "../flags.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4-quant convert --in DIR --out FILE.gguf [--type f32|f16|bf16|q8_0]\n"
            "                         [--threads N] [--add-tokens FILE.json] [--quiet]\n"
            "\n"
            "  convert   DeepSeek-V4 checkpoint directory (config.json + safetensors, single\n"
            "            or sharded; transformers or DeepSeek release names; F32/F16/BF16,\n"
            "            FP8 with block scales, MXFP4 experts) to a deepseek4 GGUF.\n"
            "            --type sets the weight matrices (default f16); norms stay f32,\n"
            "            the routing table i32, and under q8_0 the small sensitive\n"
            "            matrices (hyper-connections, compressors, router) f16.\n"
            "            --threads defaults to all cores. The output appears only when\n"
            "            complete; an interrupted run leaves nothing behind.\n"
            "            --add-tokens applies a JSON list of added tokens ({id, content,\n"
            "            special}) on top of tokenizer.json (V4's markers on V3's vocabulary).\n");
}

static int cmd_convert(int argc, char **argv) {
    ds4_convert_opts o = {.type = GGML_TYPE_F16, .progress = true};
    bool quiet = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quiet")) { quiet = true; o.progress = false; continue; }
        if (!v) { fprintf(stderr, "ds4-quant: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--in")) o.in_dir = v;
        else if (!strcmp(a, "--out")) o.out_path = v;
        else if (!strcmp(a, "--add-tokens")) o.added_tokens = v;
        else if (!strcmp(a, "--threads")) o.n_threads = (int)flag_integer("ds4-quant", a, v, 1, 512);
        else if (!strcmp(a, "--type")) {
            int t = ggml_type_from_name(v);
            if (t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16 && t != GGML_TYPE_Q8_0) {
                fprintf(stderr, "ds4-quant: --type must be f32, f16, bf16 or q8_0, not '%s'\n", v);
                return 2;
            }
            o.type = (uint32_t)t;
        } else {
            fprintf(stderr, "ds4-quant: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.in_dir || !o.out_path) {
        fprintf(stderr, "ds4-quant: convert needs --in and --out\n");
        return 2;
    }
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
               o.in_dir, o.out_path, ggml_type_name(o.type), (unsigned long long)s.n_tensors,
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
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "convert")) {
        if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
            usage(stdout);
            return 0;
        }
        return cmd_convert(argc - 2, argv + 2);
    }
    fprintf(stderr, "ds4-quant: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
