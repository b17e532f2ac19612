/* ds4-gguf - look inside GGUF files: list metadata and tensors, check a deepseek4
 * model against its architecture, compare two files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"
#include "../flags.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4-gguf info [--no-tensors] [--items N] FILE\n"
            "       ds4-gguf check FILE\n"
            "       ds4-gguf diff [--ignore KEY]... A B\n"
            "\n"
            "  info   print the header, every metadata key and the tensor table; for a\n"
            "         deepseek4 file also the model summary or what is wrong with it\n"
            "  check  exit 0 only if FILE is a complete, loadable deepseek4 model\n"
            "  diff   print metadata and tensor differences; exit 0 if none, 1 if any\n"
            "\n"
            "--version prints the commit and the compiled backends.\n"
            EXIT_STATUS_HELP);
}

static int cmd_info(int argc, char **argv) {
    bool tensors = true;
    size_t items = 8;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--no-tensors")) tensors = false;
        else if (!strcmp(argv[i], "--items") && i + 1 < argc) items = (size_t)flag_integer("ds4-gguf", "--items", argv[++i], 0, INT_MAX);
        else if (argv[i][0] == '-') return tool_unknown_option("ds4-gguf", argv[i]);
        else if (path) { fprintf(stderr, "ds4-gguf: info takes one FILE\n"); return 2; }
        else path = argv[i];
    }
    if (!path) { usage(stderr); return 2; }
    gguf_file *f = ds4_gguf_open(path);
    if (!f) {
        fprintf(stderr, "ds4-gguf: %s\n", ds4_error());
        return 2;
    }
    ds4_gguf_print_info(f, stdout, tensors, items);
    gguf_str arch;
    if (ds4_gguf_get_str(f, "general.architecture", &arch) && ds4_gguf_str_eq(arch, DS4_ARCH)) {
        ds4_model *m = ds4_model_from_gguf(f);
        if (m) ds4_model_print_summary(m, stdout);
        else printf("model check failed: %s\n", ds4_error());
        ds4_model_free(m);
    } else {
        ds4_gguf_close(f);
    }
    return 0;
}

static int cmd_check(int argc, char **argv) {
    if (argc != 1) { usage(stderr); return 2; }
    ds4_model *m = ds4_model_load(argv[0]);
    if (!m) {
        fprintf(stderr, "ds4-gguf: %s\n", ds4_error());
        return 1;
    }
    ds4_model_print_summary(m, stdout);
    ds4_model_free(m);
    return 0;
}

static int cmd_diff(int argc, char **argv) {
    const char *ignore[64], *paths[2];
    int n_ignore = 0, n_paths = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--ignore") && i + 1 < argc && n_ignore < 63) ignore[n_ignore++] = argv[++i];
        else if (argv[i][0] == '-') return tool_unknown_option("ds4-gguf", argv[i]);
        else if (n_paths == 2) { fprintf(stderr, "ds4-gguf: diff takes two files\n"); return 2; }
        else paths[n_paths++] = argv[i];
    }
    ignore[n_ignore] = NULL;
    if (n_paths != 2) { usage(stderr); return 2; }
    gguf_file *a = ds4_gguf_open(paths[0]);
    if (!a) {
        fprintf(stderr, "ds4-gguf: %s\n", ds4_error());
        return 2;
    }
    gguf_file *b = ds4_gguf_open(paths[1]);
    if (!b) {
        fprintf(stderr, "ds4-gguf: %s\n", ds4_error());
        ds4_gguf_close(a);
        return 2;
    }
    uint64_t n = ds4_gguf_print_diff(a, b, ignore, stdout);
    printf("%llu difference%s\n", (unsigned long long)n, n == 1 ? "" : "s");
    ds4_gguf_close(a);
    ds4_gguf_close(b);
    return n ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--version")) return tool_version("ds4-gguf");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(argv[1], "check")) return cmd_check(argc - 2, argv + 2);
    if (!strcmp(argv[1], "diff")) return cmd_diff(argc - 2, argv + 2);
    fprintf(stderr, "ds4-gguf: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
