/* ds4 - run DeepSeek V4 on a prompt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "chat.h"
#include "forward.h"
#include "generate.h"
#include "imatrix.h"
#include "kvcache_disk.h"
#include "model.h"
#include "state.h"
#include "tokenizer.h"
#include "util.h"
#include "../flags.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4 run -m M.gguf (-p TEXT | -f FILE | --prompt-ids ID,ID,...) [--chat] [--think]\n"
            "               [-n N] [-c N] [--temp T] [--top-p P] [--seed S] [-t N] [--state FILE]\n"
            "               [--kv-disk-dir DIR [--kv-disk-space-mb N]] [--backend NAME [--device N]] [--act MODE]\n"
            "       ds4 tokenize (-m M.gguf | --tokenizer tokenizer.json [--add-tokens F.json])\n"
            "               [--chat] [--think] [--count] [--no-special] (-p TEXT | FILE | -)\n"
            "       ds4 detokenize (-m M.gguf | --tokenizer ...) [--show-special] FILE|-\n"
            "       ds4 batch -m M.gguf --in IN.jsonl --out OUT.jsonl [--csv FILE] [--max-tokens N]\n"
            "               [--kv-disk-dir DIR [--kv-disk-space-mb N]] [--kv-mem-mb N] [-t N]\n"
            "               [--parallel N] [--kv-max-mb N] [--redo-stale] [--strict] [--quiet]\n"
            "               [--backend NAME [--device N]] [--act MODE]\n"
            "       ds4 imatrix -m M.gguf --data CALIB.jsonl --out IMATRIX.gguf [--chunk N]\n"
            "               [-t N] [--quiet] [--backend NAME [--device N]] [--act MODE]\n"
            "       ds4 --version\n"
            "\n"
            "  run         feed the prompt and generate -n tokens (default 16): greedy when --temp\n"
            "              is 0 (the default), else temperature + top-p sampling, reproducible\n"
            "              with --seed. -p TEXT, or the text of -f FILE; --chat wraps it as one user\n"
            "              message of the V4 chat format (--think: thinking mode). Text is printed\n"
            "              as it is generated; ids for --prompt-ids. Speeds go to stderr. -c N caps\n"
            "              the context (default the model's context length): a longer prompt is\n"
            "              refused and generation stops at the end of it. -t N threads (default:\n"
            "              the CPUs this process may use). --state FILE resumes from a saved KV\n"
            "              state whose tokens begin the prompt (the cached tokens are not computed\n"
            "              again) and saves the state after the prompt. --kv-disk-dir keeps a\n"
            "              directory of states named by the SHA-1 of their tokens: the longest\n"
            "              cached prefix of the prompt is restored, and the state is saved every\n"
            "              8192 prompt tokens and at the prompt; least recently used states go\n"
            "              beyond --kv-disk-space-mb (default 4096).\n"
            "  tokenize    print the token ids of the text (-p TEXT, a FILE, or - for stdin; with\n"
            "              --count only their number). Special tokens written in the text are parsed\n"
            "              unless --no-special.\n"
            "  detokenize  read ids (comma or space separated) and print their text.\n"
            "  batch       one JSON result per JSONL request ({\"id\", \"prompt\"|\"messages\"|\n"
            "              \"prompt_ids\", \"max_tokens\", \"temperature\", \"top_p\", \"seed\", \"think\",\n"
            "              \"stop\"}), in input order; a bad line gets an \"error\" result and the\n"
            "              job goes on. Rerun with the same --out to resume: finished ids are\n"
            "              skipped and a torn last line (a kill) is cut off. Each result records\n"
            "              the model's fingerprint and a hash of its request: a result made by\n"
            "              another model or for an edited request is refused on resume, unless\n"
            "              --redo-stale, which computes those requests again. One job at a time\n"
            "              per --out (a lock; a killed job releases it). Prompt prefixes (system\n"
            "              messages, leading ids shared with the request before) are kept in\n"
            "              memory (--kv-mem-mb, default 1024) and with --kv-disk-dir on disk for\n"
            "              later runs. --csv: prefill/decode tok/s per request, appended like the\n"
            "              output. --max-tokens: the default for requests without one (128).\n"
            "              Failed lines are error results: the exit status is 0 unless --strict.\n"
            "              --parallel N: up to N requests at once (continuous batching: each step\n"
            "              decodes a token of every running request and prefills new prompts in\n"
            "              pieces between them; results stay in input order and are what each\n"
            "              request would get alone); --kv-max-mb caps the KV memory the running\n"
            "              requests may reach together (fewer run at once, never a failure). The\n"
            "              CSV ends each job with a (job) row: its tok/s over its wall time.\n"
            "  imatrix     run the model over calibration text (JSONL lines with \"text\" or\n"
            "              \"prompt_ids\", cut into chunks of N tokens, default 512) and save each\n"
            "              weight matrix's per-column mean squared input (every routed expert on\n"
            "              its own) as an importance matrix for `ds4-quant quantize --imatrix`\n"
            "              (GGUF in llama.cpp's imatrix layout).\n"
            "       ds4 tokenize (-m M.gguf | --tokenizer ...) --bench CORPUS.jsonl [--csv OUT]\n"
            "              single-thread throughput (MB/s, best of 5) over the \"text\" of each line.\n"
            "  --backend   what runs the model: cpu (the default); built here: %s.\n"
            "  --act       how matrix products treat activations: auto (the default: int8 for\n"
            "              sub-8-bit weights, F32 otherwise), f32, or q8 (int8 wherever a kernel\n"
            "              exists).\n"
            "  --version   the commit and the compiled backends.\n"
            EXIT_STATUS_HELP, ds4_backend_names());
}

/* The V4 chat format needs <think> and </think> as single tokens; DeepSeek V3's
 * vocabulary alone spells them out in pieces, which the model was not trained on. */
static void warn_if_no_think_tokens(const ds4_tokenizer *t) {
    if (ds4_token_id(t, "<think>") < 0 || ds4_token_id(t, "</think>") < 0)
        fprintf(stderr, "ds4: warning: this vocabulary has no <think>/</think> tokens, so the chat format is "
                        "tokenized as plain text; convert with --add-tokens vectors/tokenizer/v4-added-tokens.json\n");
}

static void warn_line(const char *msg) { fprintf(stderr, "ds4: %s\n", msg); }

/* Tokenizer from --model's GGUF or from a tokenizer.json (+ overlay). */
static ds4_tokenizer *open_tokenizer(const char *model, const char *json, const char *overlay, ds4_model **m) {
    if (json) return ds4_tokenizer_from_json(json, overlay);
    if (!model) {
        ds4_fail("give --model or --tokenizer");
        return NULL;
    }
    gguf_file *f = ds4_gguf_open(model);
    if (!f) return NULL;
    ds4_tokenizer *t = ds4_tokenizer_from_gguf(f);
    if (m && t) *m = ds4_model_from_gguf(f);
    else ds4_gguf_close(f);
    return t;
}

/* Text to ids: plain text gets BOS and literal content; chat prompts parse their markers. */
static int encode_prompt(const ds4_tokenizer *t, const char *text, bool chat, bool think, bool bos, int32_t **ids,
                         size_t *n) {
    if (chat) {
        ds4_buf b = {0};
        int rc = ds4_chat_render_user(text, think, &b);
        if (rc == 0) rc = ds4_tokenize(t, (const char *)b.data, b.len, true, ids, n);
        ds4_buf_free(&b);
        return rc;
    }
    if (bos && ds4_tokenizer_bos(t) >= 0) {
        int32_t first = ds4_tokenizer_bos(t);
        *ids = malloc(sizeof **ids);
        if (!*ids) return ds4_fail("out of memory");
        (*ids)[0] = first;
        *n = 1;
    }
    return ds4_tokenize(t, text, strlen(text), false, ids, n);
}

static char *read_input(const char *path) {
    if (strcmp(path, "-")) return ds4_read_file(path, NULL);
    ds4_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, stdin)) > 0) ds4_buf_append(&b, chunk, got);
    ds4_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Tokenize every "text" of a JSONL corpus 5 times; report the best MB/s (and to CSV). */
static int bench(const ds4_tokenizer *t, const char *corpus, const char *csv) {
    char *all = ds4_read_file(corpus, NULL);
    if (!all) return -1;
    json_object **texts = NULL;
    size_t n = 0, bytes = 0;
    char *save = NULL;
    for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *o = json_tokener_parse(line), *tx;
        if (o && json_object_object_get_ex(o, "text", &tx) && json_object_is_type(tx, json_type_string)) {
            json_object **p = realloc(texts, (n + 1) * sizeof *texts);
            if (!p) break;
            texts = p;
            texts[n++] = o;
            bytes += (size_t)json_object_get_string_len(tx);
        } else if (o) {
            json_object_put(o);
        }
    }
    free(all);
    double best = 1e30;
    size_t tokens = 0;
    int rc = 0;
    for (int r = 0; r < 5 && rc == 0; r++) {
        double t0 = ds4_time_now();
        tokens = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            json_object *tx;
            json_object_object_get_ex(texts[i], "text", &tx);
            int32_t *ids = NULL;
            size_t k = 0;
            rc = ds4_tokenize(t, json_object_get_string(tx), (size_t)json_object_get_string_len(tx), true, &ids, &k);
            tokens += k;
            free(ids);
        }
        double dt = ds4_time_now() - t0;
        if (dt < best) best = dt;
    }
    for (size_t i = 0; i < n; i++) json_object_put(texts[i]);
    free(texts);
    if (rc < 0) return -1;
    printf("ds4 tokenizer: %zu lines, %zu bytes, %zu tokens, %.3f ms, %.2f MB/s (single thread, best of 5)\n", n, bytes,
           tokens, best * 1e3, bytes / best / 1e6);
    if (csv) {
        FILE *f = fopen(csv, "a");
        if (!f) return ds4_fail("%s: cannot open for appending", csv);
        fprintf(f, "ds4,%zu,%zu,%zu,%.6f,%.3f\n", n, bytes, tokens, best, bytes / best / 1e6);
        fclose(f);
    }
    return 0;
}

static int cmd_tokenize(int argc, char **argv, bool decode) {
    const char *model = NULL, *json = NULL, *overlay = NULL, *input = NULL, *bench_corpus = NULL, *csv = NULL;
    const char *inline_text = NULL;
    bool chat = false, think = false, count = false, no_special = false, show_special = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--chat")) chat = true;
        else if (!strcmp(a, "--think")) think = true;
        else if (!strcmp(a, "--count")) count = true;
        else if (!strcmp(a, "--no-special")) no_special = true;
        else if (!strcmp(a, "--show-special")) show_special = true;
        else if ((!strcmp(a, "--model") || !strcmp(a, "-m") || !strcmp(a, "--tokenizer") ||
                  !strcmp(a, "--add-tokens") || !strcmp(a, "--bench") || !strcmp(a, "--csv") ||
                  !strcmp(a, "-p") || !strcmp(a, "--prompt")) && v) {
            if (!strcmp(a, "--model") || !strcmp(a, "-m")) model = v;
            else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) inline_text = v;
            else if (!strcmp(a, "--tokenizer")) json = v;
            else if (!strcmp(a, "--bench")) bench_corpus = v;
            else if (!strcmp(a, "--csv")) csv = v;
            else overlay = v;
            i++;
        } else if (a[0] != '-' || !strcmp(a, "-")) input = a;
        else return tool_unknown_option("ds4", a);
    }
    if (!input && !bench_corpus && !inline_text) {
        fprintf(stderr, "ds4: give -p TEXT, a FILE, or - for stdin\n");
        return 2;
    }
    ds4_tokenizer *t = open_tokenizer(model, json, overlay, NULL);
    if (bench_corpus) {
        int brc = t ? bench(t, bench_corpus, csv) : -1;
        if (brc < 0) fprintf(stderr, "ds4: %s\n", ds4_error());
        ds4_tokenizer_free(t);
        return brc < 0 ? 1 : 0;
    }
    char *text = !t ? NULL : inline_text ? ds4_strndup(inline_text, strlen(inline_text)) : read_input(input);
    int rc = t && text ? 0 : -1;
    if (rc == 0 && decode) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = ds4_parse_token_ids(text, &ids, &n);
        ds4_buf out = {0};
        if (rc == 0) rc = ds4_detokenize(t, ids, n, show_special, &out);
        if (rc == 0) fwrite(out.data, 1, out.len, stdout);
        ds4_buf_free(&out);
        free(ids);
    } else if (rc == 0) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (chat) warn_if_no_think_tokens(t);
        if (chat) rc = encode_prompt(t, text, true, think, false, &ids, &n);
        else rc = ds4_tokenize(t, text, strlen(text), !no_special, &ids, &n);
        if (rc == 0 && count) printf("%zu\n", n);
        else if (rc == 0) {
            for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
            printf("\n");
        }
        free(ids);
    }
    if (rc < 0) fprintf(stderr, "ds4: %s\n", ds4_error());
    free(text);
    ds4_tokenizer_free(t);
    return rc < 0 ? 1 : 0;
}

static int cmd_batch(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *out = NULL, *csv = NULL, *kv_dir = NULL;
    double kv_space_mb = 4096, kv_mem_mb = 1024;
    long max_tokens = 128, parallel = 1;
    double kv_max_mb = 0;
    ds4_ctx_opts ctx = {0};
    bool quiet = false, strict = false, redo_stale = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--quiet")) { quiet = true; continue; }
        if (!strcmp(a, "--strict")) { strict = true; continue; }
        if (!strcmp(a, "--redo-stale")) { redo_stale = true; continue; }
        if (a[0] != '-') return tool_unknown_option("ds4", a);
        if (!v) return tool_missing_value("ds4", a);
        i++;
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "--in")) in = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--kv-disk-dir")) kv_dir = v;
        else if (!strcmp(a, "--kv-disk-space-mb")) kv_space_mb = flag_number("ds4", a, v, 1, 1e9);
        else if (!strcmp(a, "--kv-mem-mb")) kv_mem_mb = flag_number("ds4", a, v, 0, 1e9);
        else if (!strcmp(a, "--max-tokens")) max_tokens = flag_integer("ds4", a, v, 0, 10000000);
        else if (!strcmp(a, "--parallel")) parallel = flag_integer("ds4", a, v, 1, DS4_MAX_SEQ);
        else if (!strcmp(a, "--kv-max-mb")) kv_max_mb = flag_number("ds4", a, v, 1, 1e9);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) ctx.n_threads = (int)flag_integer("ds4", a, v, 1, 512);
        else if (flag_ctx("ds4", a, v, &ctx)) continue;
        else return tool_unknown_option("ds4", a);
    }
    if (!model || !in || !out) {
        fprintf(stderr, "ds4: batch needs -m, --in and --out\n");
        return 2;
    }
    ds4_model *m = ds4_model_load(model);
    if (!m) {
        fprintf(stderr, "ds4: %s\n", ds4_error());
        return 2;
    }
    ds4_install_cleanup_handlers(); /* an interrupted cache save leaves no temporary file */
    ds4_tokenizer *tok = ds4_tokenizer_if_any(m->gguf);
    ds4_kvcache *kvc = ds4_kvcache_open(kv_dir, (uint64_t)(kv_space_mb * 1048576.0),
                                        (uint64_t)(kv_mem_mb * 1048576.0), m, warn_line);
    int rc = 2;
    if (!kvc) {
        fprintf(stderr, "ds4: %s\n", ds4_error());
    } else {
        ds4_batch_opts o = {.in_path = in, .out_path = out, .csv_path = csv, .kvcache = kvc,
                            .ctx = ctx, .parallel = (int)parallel, .kv_max_bytes = (uint64_t)(kv_max_mb * 1048576.0),
                            .quiet = quiet,
                            .default_max_tokens = (int)max_tokens, .redo_stale = redo_stale};
        ds4_batch_stats s;
        const int brc = ds4_batch_run(m, tok, &o, &s);
        rc = brc == -2 ? 2 : brc < 0 ? 1 : 0;
        if (brc < 0) fprintf(stderr, "ds4: %s\n", ds4_error());
        if (brc != -2 && !quiet)
            printf("batch: %llu requests: %llu done, %llu errors, %llu already in %s%s; %llu prompt tokens (%llu "
                   "cached), %llu generated, %.1f s (%.1f tok/s generated, %ld in parallel)\n",
                   (unsigned long long)s.requests, (unsigned long long)s.done, (unsigned long long)s.errors,
                   (unsigned long long)s.skipped, out, s.duplicates ? ", repeated ids skipped" : "",
                   (unsigned long long)s.prompt_tokens, (unsigned long long)s.cached_tokens,
                   (unsigned long long)s.completion_tokens, s.seconds,
                   s.seconds > 0 ? (double)s.completion_tokens / s.seconds : 0.0, parallel);
        if (brc != -2 && s.errors) {
            fprintf(stderr, "ds4: %llu request%s failed (error results in %s); the first:\n",
                    (unsigned long long)s.errors, s.errors == 1 ? "" : "s", out);
            for (uint64_t i = 0; i < s.errors && i < DS4_BATCH_ERRORS_SHOWN; i++)
                fprintf(stderr, "  %s\n", s.first_errors[i]);
            if (strict && rc == 0) rc = 1;
        }
        if (brc != -2 && s.duplicates && strict && rc == 0) rc = 1;
    }
    ds4_kvcache_close(kvc);
    ds4_tokenizer_free(tok);
    ds4_model_free(m);
    return rc;
}

static int cmd_imatrix(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *out = NULL;
    long chunk = 512;
    ds4_ctx_opts ctx = {0};
    bool quiet = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--quiet")) { quiet = true; continue; }
        if (!v) return tool_missing_value("ds4", a);
        i++;
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--chunk")) chunk = flag_integer("ds4", a, v, 1, 1 << 20);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) ctx.n_threads = (int)flag_integer("ds4", a, v, 1, 512);
        else if (flag_ctx("ds4", a, v, &ctx)) continue;
        else return tool_unknown_option("ds4", a);
    }
    if (!model || !data || !out) {
        fprintf(stderr, "ds4: imatrix needs --model, --data and --out\n");
        return 2;
    }
    ds4_model *m = ds4_model_load(model);
    if (!m) {
        fprintf(stderr, "ds4: %s\n", ds4_error());
        return 1;
    }
    ds4_tokenizer *tok = ds4_tokenizer_if_any(m->gguf);
    uint32_t chunks;
    uint64_t tokens;
    const double t0 = ds4_time_now();
    ds4_install_cleanup_handlers();
    ds4_imatrix *im = ds4_imatrix_calibrate(m, tok, data, &ctx, (uint32_t)chunk,
                                            !quiet, &chunks, &tokens);
    int rc = im && ds4_imatrix_save(im, out, data, chunks, (uint32_t)chunk) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "ds4: %s\n", ds4_error());
    else if (!quiet)
        printf("imatrix: %llu tokens in %u chunks, %llu matrices observed, %.1f s -> %s\n",
               (unsigned long long)tokens, chunks, (unsigned long long)ds4_imatrix_n_entries(im),
               ds4_time_now() - t0, out);
    ds4_imatrix_free(im);
    ds4_tokenizer_free(tok);
    ds4_model_free(m);
    return rc;
}

#define KV_DISK_PERIOD 8192 /* prompt tokens between saves of a long prefill */

/* What ds4 run prints and saves while it generates. */
typedef struct {
    ds4_outfile *state; /* --state, or NULL */
    const int32_t *ids;
    size_t n;
    int printed;        /* tokens printed */
} run_output;

/* After the prompt: --state gets the state. */
static int save_state(void *arg, ds4_ctx *ctx) {
    run_output *o = arg;
    if (!o->state) return 0;
    ds4_buf file = {0};
    int rc = ds4_kv_encode(ctx, o->ids, (uint64_t)o->n, &file);
    if (rc == 0) rc = ds4_outfile_write(o->state, file.data, file.len);
    if (rc == 0) rc = ds4_outfile_commit(o->state);
    ds4_buf_free(&file);
    return rc;
}

/* Text as it completes, or the ids of a model without a tokenizer. */
static int print_token(void *arg, int32_t token, const char *text, size_t len) {
    run_output *o = arg;
    if (text) fwrite(text, 1, len, stdout);
    else if (token >= 0) printf("%s%d", o->printed ? "," : "", token);
    o->printed += token >= 0;
    fflush(stdout);
    return 0;
}

static int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *ids_text = NULL, *prompt = NULL, *prompt_file = NULL, *state = NULL;
    const char *kv_dir = NULL;
    double kv_space_mb = 4096;
    bool chat = false, think = false;
    long n_gen = 16, n_ctx = 0;
    ds4_ctx_opts ctx_opts = {0};
    float temp = 0, top_p = 1;
    uint64_t seed = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--chat")) { chat = true; continue; }
        if (!strcmp(a, "--think")) { think = true; continue; }
        if (a[0] != '-') return tool_unknown_option("ds4", a);
        if (!v) return tool_missing_value("ds4", a);
        i++;
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "--prompt-ids")) ids_text = v;
        else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) prompt = v;
        else if (!strcmp(a, "--file") || !strcmp(a, "-f")) prompt_file = v;
        else if (!strcmp(a, "--state")) state = v;
        else if (!strcmp(a, "--kv-disk-dir")) kv_dir = v;
        else if (!strcmp(a, "--kv-disk-space-mb")) kv_space_mb = flag_number("ds4", a, v, 1, 1e9);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) n_gen = flag_integer("ds4", a, v, 0, INT_MAX);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) n_ctx = flag_integer("ds4", a, v, 1, INT_MAX);
        else if (!strcmp(a, "--temp")) temp = (float)flag_number("ds4", a, v, 0, HUGE_VAL);
        else if (!strcmp(a, "--top-p")) top_p = (float)flag_number("ds4", a, v, 0, 1);
        else if (!strcmp(a, "--seed")) seed = (uint64_t)flag_number("ds4", a, v, 0, 0x1p53);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) ctx_opts.n_threads = (int)flag_integer("ds4", a, v, 1, 512);
        else if (flag_ctx("ds4", a, v, &ctx_opts)) continue;
        else return tool_unknown_option("ds4", a);
    }
    if (!model_path || !!ids_text + !!prompt + !!prompt_file != 1) {
        fprintf(stderr, "ds4: run needs -m MODEL and one of -p TEXT, -f FILE or --prompt-ids IDS\n");
        return 2;
    }
    char *file_text = NULL;
    if (prompt_file && !(prompt = file_text = read_input(prompt_file))) {
        fprintf(stderr, "ds4: %s\n", ds4_error());
        return 2;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (ids_text && (ds4_parse_token_ids(ids_text, &ids, &n) < 0 || n == 0 || n > INT_MAX)) {
        fprintf(stderr, "ds4: --prompt-ids wants comma-separated token ids\n");
        free(ids);
        return 2;
    }
    /* The state file opens before any work: a bad path fails now, not after the prefill. */
    ds4_outfile state_out = {.fd = -1};
    if (state && ds4_outfile_open(&state_out, state) < 0) {
        fprintf(stderr, "ds4: %s\n", ds4_error());
        free(ids);
        free(file_text);
        return 2;
    }
    ds4_install_cleanup_handlers();
    ds4_model *m = ds4_model_load(model_path);
    if (!m) {
        fprintf(stderr, "ds4: %s\n", ds4_error());
        if (state) ds4_outfile_abort(&state_out);
        free(ids);
        free(file_text);
        return 2;
    }
    ds4_tokenizer *tok = NULL;
    int rc = 0;
    if (prompt) {
        tok = ds4_tokenizer_from_gguf(m->gguf);
        if (tok && chat) warn_if_no_think_tokens(tok);
        if (!tok || encode_prompt(tok, prompt, chat, think, true, &ids, &n) < 0) rc = -1;
    }
    /* The context: -c, else the model's; generation stops where it ends. */
    const uint64_t ctx_len = n_ctx ? (uint64_t)n_ctx : m->cfg.context_length;
    if (rc == 0 && n == 0) rc = ds4_fail("the prompt has no tokens");
    if (rc == 0 && ctx_len && n > ctx_len)
        rc = ds4_fail("the prompt has %zu tokens, more than the context of %llu", n, (unsigned long long)ctx_len);
    if (rc == 0 && ctx_len && n + (uint64_t)n_gen > ctx_len) {
        fprintf(stderr, "ds4: warning: -n %ld runs past the context of %llu tokens: generating %llu\n", n_gen,
                (unsigned long long)ctx_len, (unsigned long long)(ctx_len - n));
        n_gen = (long)(ctx_len - n);
    }
    ds4_ctx *ctx = rc == 0 ? ds4_ctx_new(m, &ctx_opts) : NULL;
    if (rc == 0 && !ctx) rc = -1;
    /* A saved state whose tokens begin this prompt replaces their prefill. */
    uint64_t cached = 0;
    if (rc == 0 && state && access(state, R_OK) == 0) {
        int32_t *saved = NULL;
        uint64_t n_saved = 0;
        if (ds4_kv_load(ctx, state, &saved, &n_saved) < 0) {
            fprintf(stderr, "ds4: ignoring the saved state: %s\n", ds4_error());
        } else if (n_saved < n && !memcmp(saved, ids, n_saved * sizeof *ids)) {
            cached = n_saved;
        } else {
            ds4_ctx_reset(ctx); /* not a prefix of this prompt */
        }
        free(saved);
    }
    ds4_kvcache *kvc = NULL;
    if (rc == 0 && kv_dir && !(kvc = ds4_kvcache_open(kv_dir, (uint64_t)(kv_space_mb * 1048576.0), 0, m, warn_line)))
        rc = -1;
    run_output out = {.state = state ? &state_out : NULL, .ids = ids, .n = n};
    const ds4_gen_opts go = {.cache = kvc, .cache_period = KV_DISK_PERIOD, .resume = cached,
                             .prefilled = save_state, .prefilled_arg = &out, .max_tokens = (int)n_gen,
                             .temperature = temp, .top_p = top_p, .seed = seed, .tok = tok, .emit = print_token,
                             .emit_arg = &out};
    ds4_gen_result g = {0};
    if (rc == 0) rc = ds4_generate(ctx, ids, (uint64_t)n, &go, &g);
    ds4_kvcache_close(kvc);
    printf("\n");
    if (rc < 0) fprintf(stderr, "%sds4: %s\n", out.printed ? "\n" : "", ds4_error());
    else
        fprintf(stderr, "\nprefill %zu tokens (%llu cached) %.1f tok/s, decode %d tokens %.1f tok/s, KV state %.1f KiB\n",
                n, (unsigned long long)(cached + g.cached), (double)(n - cached - g.cached) / g.prefill_seconds,
                g.n_tokens, g.n_tokens > 0 ? g.n_tokens / g.decode_seconds : 0.0, ds4_ctx_kv_bytes(ctx) / 1024.0);
    ds4_gen_result_free(&g);
    if (state_out.path) ds4_outfile_abort(&state_out);
    free(ids);
    free(file_text);
    ds4_ctx_free(ctx);
    ds4_tokenizer_free(tok);
    ds4_model_free(m);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--version")) return tool_version("ds4");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "imatrix")) return cmd_imatrix(argc - 2, argv + 2);
    if (!strcmp(argv[1], "batch")) return cmd_batch(argc - 2, argv + 2);
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc - 2, argv + 2, false);
    if (!strcmp(argv[1], "detokenize")) return cmd_tokenize(argc - 2, argv + 2, true);
    fprintf(stderr, "ds4: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
