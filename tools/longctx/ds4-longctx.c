/* ds4-longctx - long-context tests. `needle`: retrieval of values hidden at exact token
 * depths in long generated prompts, for real weights. `consistency`: at each length, the
 * same tokens computed as one prefill, in chunks of varied sizes, token by token, and restored from a
 * saved state in a fresh process must give the same logits, and the KV state must have
 * the size the architecture implies. Works on any weights, the synthetic ones included.
 * `reference`: long reference vectors (transformers on a GPU) through the statistics of
 * ds4-logitcheck. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appendfile.h"
#include "bench.h"
#include "cpufeatures.h"
#include "forward.h"
#include "logitcheck.h"
#include "longctx.h"
#include "model.h"
#include "needle.h"
#include "plot.h"
#include "util.h"
#include "../flags.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4-longctx consistency --model M.gguf [--lengths N,N,...] [--tol X] [--seed S]\n"
            "                   [--threads N] [--csv out.csv] [--plot out.png] [--tmp DIR]\n"
            "                   [--backend NAME [--device N]] [--act MODE]\n"
            "\n"
            "consistency: for each length (default 1024,4096,16384) a seeded random prompt; logits\n"
            "at 6 sampled positions and over the last 16 tokens from a prefill that stops only\n"
            "at those positions, compared with a prefill in chunks of 1, 7, 64, 509 and 4096\n"
            "tokens, with token-by-token decode of the last 16, and with a fresh process (a\n"
            "second context on a GPU) that restores the state saved before them (a KV state\n"
            "file in --tmp, default /tmp) and decodes them. Pass: every max |dlogit| <= --tol\n"
            "(default 1e-4) and kv_bytes equal to what the architecture implies (raw windows,\n"
            "compressor buffers, one compressed entry and indexer key per ratio tokens). The\n"
            "indexer's share of the prefill's wall time is reported (metric indexer_share). CSV\n"
            "columns: mode, model, length, depth, chunk, pass, metric, value, prefill_tps,\n"
            "decode_tps, kv_bytes, peak_rss_bytes, seconds. Exit 0 only if every length passes.\n"
            "\n"
            "       ds4-longctx reference --model M.gguf --vectors FILE|DIR [--max-dlogit X]\n"
            "                   [--max-kl X] [--min-top1 F] [--threads N] [--csv out.csv] [--plot out.png]\n"
            "reference: long reference vectors (scripts/ref_vectors.py --lengths 16384 ...) checked\n"
            "with ds4-logitcheck's statistics; pass: max |dlogit| <= 1e-3, KL max <= 1e-3, top-1\n"
            "and greedy agreement 100%% unless given otherwise.\n"
            "\n"
            "       ds4-longctx needle --model M.gguf [--lengths N,N,...] [--depths P,P,...] [--needles N]\n"
            "                   [--distractors] [--seed S] [--max-tokens N] [--threads N] [--csv out.csv]\n"
            "                   [--plot out.png] [--allow-untrained]\n"
            "needle (for real weights): for each length (default 4096,16384,65536) and depth in\n"
            "percent (default 0,25,50,75,100), a prompt of exactly that many tokens: one user\n"
            "message (thinking off) with generated filler text, --needles N sentences 'The special\n"
            "magic number for <key> is <value>.' (default 1; the first at the depth, the others\n"
            "spread evenly), with --distractors two more per needle for other keys, then the\n"
            "question. Pass: the greedy answer (up to --max-tokens, default 48) holds every value\n"
            "and no distractor's. The model must have a tokenizer and must predict plain English\n"
            "far better than chance (random weights cannot find a needle); --allow-untrained runs\n"
            "the test anyway. CSV metric: recall (and distracted). Exit 0 only if every case passes.\n"
            "\n"
            "The CSV takes each case's rows as soon as the case is done; --plot (needs --csv) draws it\n"
            "at the end. Every mode takes --backend NAME (what runs the model: cpu, the default;\n"
            "built here: %s) and --act auto|f32|q8 (how matrix products treat activations).\n"
            "--version prints the commit and the compiled backends.\n"
            EXIT_STATUS_HELP, ds4_backend_names());
}

/* One CSV schema for every mode. */
static const char csv_header[] =
    "mode,model,length,depth,chunk,pass,metric,value,prefill_tps,decode_tps,kv_bytes,peak_rss_bytes,seconds\n";

/* The five rows of one consistency length. */
static int consistency_rows(ds4_buf *b, const char *model, const ds4_longctx_result *r) {
    const uint64_t rss = ds4_peak_rss_bytes();
    const struct { const char *metric; double value; bool ok; } m[] = {
        {"chunked_max_dlogit", r->max_dlogit_chunked, r->pass},
        {"decode_max_dlogit", r->max_dlogit_decode, r->pass},
        {"restored_max_dlogit", r->max_dlogit_restored, r->pass},
        {"kv_bytes_expected", (double)r->kv_bytes_expected, r->kv_bytes == r->kv_bytes_expected},
        {"indexer_share", r->indexer_share, r->pass}, /* reported, not judged */
    };
    int rc = 0;
    for (size_t k = 0; k < sizeof m / sizeof m[0] && rc == 0; k++) {
        char line[512];
        rc = ds4_buf_append(b, "consistency,", 12) < 0 || ds4_csv_field(b, model) < 0;
        const int len = snprintf(line, sizeof line, ",%llu,,,%s,%s,%.6g,%.2f,%.2f,%llu,%llu,%.2f\n",
                                 (unsigned long long)r->length, m[k].ok ? "pass" : "fail", m[k].metric, m[k].value,
                                 r->prefill_tps, r->decode_tps, (unsigned long long)r->kv_bytes,
                                 (unsigned long long)rss, r->seconds);
        if (!rc) rc = ds4_buf_append(b, line, (size_t)len);
    }
    return rc;
}

/* --csv and --plot, opened before any work so that a bad path fails at once; the CSV
 * takes each case's rows as soon as they are known. */
typedef struct {
    ds4_appendfile csv;
    ds4_plot plot;
    const char *csv_path;
    bool want_plot;
} outputs;

static int open_outputs(outputs *o, const char *csv, const char *png) {
    memset(o, 0, sizeof *o);
    o->plot.png.fd = -1;
    o->csv_path = csv;
    if (png && !csv) return ds4_fail("--plot draws from the --csv file: give --csv too");
    if (csv && ds4_appendfile_open(&o->csv, csv, false, csv_header) < 0) return -1;
    if (png && ds4_plot_open(&o->plot, png) < 0) {
        ds4_appendfile_close(&o->csv);
        return -1;
    }
    o->want_plot = png != NULL;
    return 0;
}

static int log_rows(outputs *o, ds4_buf *rows) {
    const int rc = o->csv_path && rows->len ? ds4_appendfile_write(&o->csv, (const char *)rows->data, rows->len) : 0;
    rows->len = 0;
    return rc;
}

/* Draws `body` (gnuplot plot commands; %s in it is the CSV) under a title naming the
 * mode, the model and its weight types, the backend, the threads and the commit; closes
 * the outputs. m may be NULL when nothing ran. */
static int close_outputs(outputs *o, int rc, const char *model, const ds4_model *m, const char *backend, int threads,
                         const char *what, const char *body) {
    if (rc == 0 && o->want_plot) {
        char qcsv[4200], title[1024], qtitle[2200], commands[8192], plot[4096];
        snprintf(title, sizeof title, "%s: %s (%s), %s, %d threads, commit %s", what, model,
                 m ? ds4_model_weight_type(m) : "?", backend, threads ? threads : ds4_cpu_count(), ds4_git_sha());
        if (!ds4_plot_quote(o->csv_path, qcsv, sizeof qcsv) || !ds4_plot_quote(title, qtitle, sizeof qtitle)) {
            rc = ds4_fail("%s: cannot be quoted for gnuplot", o->csv_path);
        } else {
            snprintf(plot, sizeof plot, body, qcsv);
            snprintf(commands, sizeof commands, "set title %s noenhanced\n%s\n", qtitle, plot);
            rc = ds4_plot_draw(&o->plot, commands);
        }
    }
    ds4_plot_abort(&o->plot);
    ds4_appendfile_close(&o->csv);
    return rc;
}

static int cmd_reference(int argc, char **argv) {
    const char *model_path = NULL, *vectors = NULL, *csv = NULL, *png = NULL;
    double max_dlogit = 1e-3, max_kl = 1e-3, min_top1 = 1;
    ds4_ctx_opts opts = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return tool_missing_value("ds4-longctx", a);
        i++;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--vectors")) vectors = v;
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--plot")) png = v;
        else if (!strcmp(a, "--max-dlogit")) max_dlogit = flag_number("ds4-longctx", a, v, 0, 1e9);
        else if (!strcmp(a, "--max-kl")) max_kl = flag_number("ds4-longctx", a, v, 0, 1e9);
        else if (!strcmp(a, "--min-top1")) min_top1 = flag_number("ds4-longctx", a, v, 0, 1);
        else if (!strcmp(a, "--threads")) opts.n_threads = (int)flag_integer("ds4-longctx", a, v, 1, 512);
        else if (flag_ctx("ds4-longctx", a, v, &opts)) continue;
        else return tool_unknown_option("ds4-longctx", a);
    }
    if (!model_path || !vectors) {
        fprintf(stderr, "ds4-longctx: reference needs --model and --vectors\n");
        return 2;
    }
    outputs out;
    if (open_outputs(&out, csv, png) < 0) {
        fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
        return 2;
    }
    ds4_model *m = ds4_model_load(model_path);
    ds4_ctx *ctx = m ? ds4_ctx_new(m, &opts) : NULL;
    ds4_lc_report r = {0};
    const double t0 = ds4_time_now();
    if (!ctx || ds4_logitcheck_path(ctx, NULL, vectors, &r) < 0) {
        fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
        close_outputs(&out, -1, model_path, NULL, "", 0, "", "");
        ds4_lc_report_free(&r);
        ds4_ctx_free(ctx);
        ds4_model_free(m);
        return 2;
    }
    const double seconds = ds4_time_now() - t0;
    int failed = 0, rc = 0;
    ds4_buf b = {0};
    printf("%-26s %8s %11s %10s %10s %8s %9s  %s\n", "case", "length", "max|dlogit|", "KL mean", "KL max", "top1",
           "greedy", "result");
    for (int i = 0; i < r.n_cases && rc == 0; i++) {
        const ds4_lc_case *c = &r.cases[i];
        const bool pass = c->max_dlogit <= max_dlogit && c->kl_max <= max_kl && c->top1 >= min_top1 &&
                          c->greedy_match == c->greedy_len;
        failed += !pass;
        printf("%-26s %8d %11.3g %10.3g %10.3g %7.2f%% %4d/%-4d  %s\n", c->id, c->n_prompt, c->max_dlogit, c->kl_mean,
               c->kl_max, 100 * c->top1, c->greedy_match, c->greedy_len, pass ? "pass" : "FAIL");
        const struct { const char *metric; double value; } row[] = {
            {"max_dlogit", c->max_dlogit}, {"kl_mean", c->kl_mean}, {"kl_max", c->kl_max}, {"top1", c->top1},
            {"greedy_match", (double)c->greedy_match / (c->greedy_len ? c->greedy_len : 1)}};
        for (size_t k = 0; k < sizeof row / sizeof row[0]; k++) {
            char line[512];
            ds4_buf_append(&b, "reference,", 10);
            ds4_csv_field(&b, model_path);
            const int len = snprintf(line, sizeof line, ",%d,,,%s,%s,%.6g,%.2f,%.2f,,%llu,%.2f\n", c->n_prompt,
                                     pass ? "pass" : "fail", row[k].metric, row[k].value,
                                     c->prefill_seconds > 0 ? c->n_prompt / c->prefill_seconds : 0,
                                     c->decode_seconds > 0 ? c->greedy_len / c->decode_seconds : 0,
                                     (unsigned long long)ds4_peak_rss_bytes(), seconds);
            ds4_buf_append(&b, line, (size_t)len);
        }
        rc = log_rows(&out, &b);
    }
    char body[1024];
    /* the worst logit difference and KL of each case against its length, with the gates */
    snprintf(body, sizeof body,
             "set xlabel 'prompt (tokens)'\nset logscale xy\nset format y '%%%%g'\nset grid\nset key left noenhanced\n"
             "plot %%s using 3:(strcol(7) eq 'max_dlogit' ? column(8) : 1/0) with points pointtype 7 "
             "title 'max |dlogit|', '' using 3:(strcol(7) eq 'kl_max' ? column(8) : 1/0) with points "
             "pointtype 5 title 'KL max', %g with lines dashtype 2 title 'max |dlogit| gate', %g with lines "
             "dashtype 3 title 'KL max gate'", max_dlogit, max_kl);
    rc = close_outputs(&out, rc, model_path, m, ds4_ctx_backend(ctx), opts.n_threads, "reference", body);
    if (rc < 0) fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
    printf("%d cases: %d pass, %d fail\n", r.n_cases, r.n_cases - failed, failed);
    ds4_buf_free(&b);
    ds4_lc_report_free(&r);
    ds4_ctx_free(ctx);
    ds4_model_free(m);
    return rc < 0 || failed ? 1 : 0;
}

/* A comma-separated list of whole numbers in [lo, hi]; exits 2 naming the flag. */
static int32_t *number_list(const char *flag, const char *v, int32_t lo, int32_t hi, size_t *n) {
    int32_t *list = NULL;
    if (ds4_parse_token_ids(v, &list, n) < 0 || *n == 0 || *n > 64) {
        fprintf(stderr, "ds4-longctx: %s wants 1 to 64 comma-separated numbers\n", flag);
        exit(2);
    }
    for (size_t i = 0; i < *n; i++)
        if (list[i] < lo || list[i] > hi) {
            fprintf(stderr, "ds4-longctx: %s: %d is outside %d..%d\n", flag, list[i], lo, hi);
            exit(2);
        }
    return list;
}

static int cmd_needle(int argc, char **argv) {
    const char *model_path = NULL, *lengths = "4096,16384,65536", *depths = "0,25,50,75,100", *csv = NULL;
    const char *png = NULL;
    long needles = 1, seed = 1, max_tokens = 48;
    ds4_ctx_opts opts = {0};
    bool distractors = false, allow_untrained = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--distractors")) { distractors = true; continue; }
        if (!strcmp(a, "--allow-untrained")) { allow_untrained = true; continue; }
        if (!v) return tool_missing_value("ds4-longctx", a);
        i++;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--lengths")) lengths = v;
        else if (!strcmp(a, "--depths")) depths = v;
        else if (!strcmp(a, "--needles")) needles = flag_integer("ds4-longctx", a, v, 1, DS4_NEEDLE_MAX);
        else if (!strcmp(a, "--seed")) seed = flag_integer("ds4-longctx", a, v, 0, LONG_MAX);
        else if (!strcmp(a, "--max-tokens")) max_tokens = flag_integer("ds4-longctx", a, v, 1, 4096);
        else if (!strcmp(a, "--threads")) opts.n_threads = (int)flag_integer("ds4-longctx", a, v, 1, 512);
        else if (flag_ctx("ds4-longctx", a, v, &opts)) continue;
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--plot")) png = v;
        else return tool_unknown_option("ds4-longctx", a);
    }
    if (!model_path) {
        fprintf(stderr, "ds4-longctx: needle needs --model\n");
        return 2;
    }
    size_t n_lens, n_depths;
    int32_t *lens = number_list("--lengths", lengths, 1, 1 << 24, &n_lens); /* 16x V4's context is plenty */
    int32_t *deps = number_list("--depths", depths, 0, 100, &n_depths);
    outputs out;
    if (open_outputs(&out, csv, png) < 0) {
        fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
        free(lens);
        free(deps);
        return 2;
    }
    ds4_model *m = ds4_model_load(model_path);
    ds4_tokenizer *tok = m ? ds4_tokenizer_if_any(m->gguf) : NULL;
    ds4_ctx *ctx = tok ? ds4_ctx_new(m, &opts) : NULL;
    int rc = ctx ? 0 : 1;
    if (!m || (tok && !ctx)) fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
    else if (!tok)
        fprintf(stderr, "ds4-longctx: %s has no tokenizer: the needle test asks its question in text "
                        "(convert the model with its tokenizer.json)\n", model_path);
    double nll = 0, chance = 0;
    if (rc == 0 && ds4_needle_english_nll(ctx, tok, &nll, &chance) < 0) {
        fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
        rc = 1;
    }
    /* A trained model spends a few nats per token of plain English; chance is ln(vocab). */
    if (rc == 0 && nll > 0.5 * chance && !allow_untrained) {
        fprintf(stderr, "ds4-longctx: %s predicts plain English no better than chance (%.2f nats/token, chance "
                        "%.2f): random weights? The needle test needs a trained model (--allow-untrained runs it "
                        "anyway; its results then mean nothing)\n", model_path, nll, chance);
        rc = 1;
    }
    ds4_buf b = {0};
    int cases = 0, failed = 0;
    if (rc == 0)
        printf("english: %.2f nats/token (chance %.2f)\n%9s %6s %7s %11s %9s %9s  %-30s %s\n", nll, chance, "length",
               "depth", "found", "distracted", "prefill/s", "decode/s", "answer", "result");
    for (size_t li = 0; rc == 0 && li < n_lens; li++)
        for (size_t di = 0; rc == 0 && di < n_depths; di++) {
            ds4_needle_spec spec = {.length = (uint64_t)lens[li], .depth = deps[di] / 100.0, .needles = (int)needles,
                                    .distractors = distractors, .seed = (uint64_t)seed};
            ds4_needle_prompt p;
            ds4_needle_result r;
            char label[64];
            snprintf(label, sizeof label, "needle %d @ %d%%", lens[li], deps[di]);
            ds4_progress prog;
            if (ds4_needle_build(tok, &spec, &p) < 0) {
                fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
                rc = 1;
                break;
            }
            ds4_progress_begin_count(&prog, label, p.n, "tok");
            rc = ds4_needle_run(ctx, tok, &p, (int)max_tokens, &prog, &r) < 0 ? 1 : 0;
            ds4_progress_end(&prog);
            if (rc) {
                fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
                ds4_needle_prompt_free(&p);
                break;
            }
            cases++;
            failed += !r.pass;
            char shown[31];
            const size_t cut = ds4_utf8_complete(r.answer, strlen(r.answer) < sizeof shown - 1 ? strlen(r.answer)
                                                                                              : sizeof shown - 1);
            memcpy(shown, r.answer, cut);
            shown[cut] = 0;
            for (char *c = shown; *c; c++)
                if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
            printf("%9llu %5d%% %3d/%-3d %11d %9.1f %9.1f  %-30s %s\n", (unsigned long long)p.n, deps[di], r.found,
                   p.n_needles, r.distracted, r.prefill_tps, r.decode_tps, shown, r.pass ? "pass" : "FAIL");
            fflush(stdout);
            const struct { const char *metric; double value; } row[] = {
                {"recall", (double)r.found / p.n_needles}, {"distracted", r.distracted}};
            for (int k = 0; k < (distractors ? 2 : 1); k++) {
                char line[512];
                ds4_buf_append(&b, "needle,", 7);
                ds4_csv_field(&b, model_path);
                const int len = snprintf(line, sizeof line, ",%llu,%d,,%s,%s,%.6g,%.2f,%.2f,%llu,%llu,%.2f\n",
                                         (unsigned long long)p.n, deps[di], r.pass ? "pass" : "fail", row[k].metric,
                                         row[k].value, r.prefill_tps, r.decode_tps, (unsigned long long)r.kv_bytes,
                                         (unsigned long long)ds4_peak_rss_bytes(), r.seconds);
                ds4_buf_append(&b, line, (size_t)len);
            }
            ds4_needle_prompt_free(&p);
            if (log_rows(&out, &b) < 0) {
                fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
                rc = 1;
            }
        }
    /* recall by length and depth, one square per case */
    if (close_outputs(&out, rc ? -1 : 0, model_path, m, ctx ? ds4_ctx_backend(ctx) : "?", opts.n_threads, "needle recall",
                      "set xlabel 'context (tokens)'\nset ylabel 'needle depth (%%)'\nset logscale x\n"
                      "set yrange [-10:110]\nset cbrange [0:1]\nset cblabel 'recall'\n"
                      "set palette defined (0 'red', 1 'forest-green')\nset key off\n"
                      "plot %s using 3:(strcol(7) eq 'recall' ? column(4) : 1/0):8 with points pointtype 5 "
                      "pointsize 3 palette") < 0 && !rc) {
        fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
        rc = 1;
    }
    if (cases) printf("%d cases: %d pass, %d fail\n", cases, cases - failed, failed);
    ds4_buf_free(&b);
    ds4_ctx_free(ctx);
    ds4_tokenizer_free(tok);
    ds4_model_free(m);
    free(lens);
    free(deps);
    return rc ? 1 : failed ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--version")) return tool_version("ds4-longctx");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "reference")) return cmd_reference(argc - 2, argv + 2);
    if (!strcmp(argv[1], "needle")) return cmd_needle(argc - 2, argv + 2);
    if (strcmp(argv[1], "consistency")) {
        fprintf(stderr, "ds4-longctx: unknown mode '%s' (consistency, reference or needle)\n", argv[1]);
        return 2;
    }
    const char *model_path = NULL, *lengths = "1024,4096,16384", *csv = NULL, *png = NULL, *tmp = "/tmp";
    double tol = 1e-4;
    long seed = 1;
    ds4_ctx_opts opts = {0};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!v) return tool_missing_value("ds4-longctx", a);
        i++;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--lengths")) lengths = v;
        else if (!strcmp(a, "--tol")) tol = flag_number("ds4-longctx", a, v, 0, 1e9);
        else if (!strcmp(a, "--seed")) seed = flag_integer("ds4-longctx", a, v, 0, LONG_MAX);
        else if (!strcmp(a, "--threads")) opts.n_threads = (int)flag_integer("ds4-longctx", a, v, 1, 512);
        else if (flag_ctx("ds4-longctx", a, v, &opts)) continue;
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--plot")) png = v;
        else if (!strcmp(a, "--tmp")) tmp = v;
        else return tool_unknown_option("ds4-longctx", a);
    }
    if (!model_path) {
        fprintf(stderr, "ds4-longctx: consistency needs --model\n");
        return 2;
    }
    size_t n_lens = 0;
    int32_t *lens = number_list("--lengths", lengths, 1, INT32_MAX, &n_lens);
    outputs out;
    if (open_outputs(&out, csv, png) < 0) {
        fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
        free(lens);
        return 2;
    }
    ds4_model *m = ds4_model_load(model_path);
    if (!m) {
        fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
        close_outputs(&out, -1, model_path, NULL, "", 0, "", "");
        free(lens);
        return 2;
    }
    ds4_longctx_result r[64];
    int rc = 0, failed = 0, done = 0;
    printf("%9s %12s %12s %12s %14s %14s %9s %9s %8s  %s\n", "length", "chunked", "decode", "restored", "kv_bytes",
           "expected", "prefill/s", "decode/s", "indexer", "result");
    for (size_t i = 0; i < n_lens && rc == 0; i++) {
        rc = ds4_longctx_consistency(m, &opts, (uint64_t)lens[i],
                                     (uint64_t)seed, tol, tmp, &r[i]);
        if (rc < 0) break;
        done++;
        failed += !r[i].pass;
        printf("%9llu %12.3g %12.3g %12.3g %14llu %14llu %9.1f %9.1f %7.1f%%  %s\n", (unsigned long long)r[i].length,
               r[i].max_dlogit_chunked, r[i].max_dlogit_decode, r[i].max_dlogit_restored,
               (unsigned long long)r[i].kv_bytes, (unsigned long long)r[i].kv_bytes_expected, r[i].prefill_tps,
               r[i].decode_tps, 100 * r[i].indexer_share, r[i].pass ? "pass" : "FAIL");
        fflush(stdout);
        ds4_buf rows = {0};
        rc = consistency_rows(&rows, model_path, &r[i]);
        if (rc == 0) rc = log_rows(&out, &rows);
        ds4_buf_free(&rows);
    }
    /* Each way's max |dlogit| against the tolerance (exact agreement, 0, drawn at 1e-9 so
     * that the log scale shows it), and the KV state's size against the architecture's. */
    char body[2048];
    snprintf(body, sizeof body,
             "set xlabel 'context (tokens)'\nset ylabel 'max |dlogit| (0 drawn at 1e-9)'\nset y2label 'KV state (bytes)'\n"
             "set logscale x\nset logscale y\nset logscale y2\nset format y '%%%%g'\nset format y2 '%%%%g'\n"
             "set ytics nomirror\nset y2tics\nset grid\nset key left top noenhanced\nshown(v) = v > 1e-9 ? v : 1e-9\n"
             "plot %%s using 3:(strcol(7) eq 'chunked_max_dlogit' ? shown(column(8)) : 1/0) with points pointtype 7 "
             "title 'chunked', '' using 3:(strcol(7) eq 'decode_max_dlogit' ? shown(column(8)) : 1/0) with points "
             "pointtype 5 title 'decode', '' using 3:(strcol(7) eq 'restored_max_dlogit' ? shown(column(8)) : 1/0) "
             "with points pointtype 9 title 'restored', %g with lines dashtype 2 lw 2 title 'tolerance', "
             "'' every 5::4 using 3:11 axes x1y2 with linespoints pointtype 4 title 'kv_bytes measured', "
             "'' every 5::4 using 3:8 axes x1y2 with lines dashtype 3 title 'kv_bytes implied'", tol);
    /* (rows come in fives per length after the header line, the fourth being kv_bytes_expected) */
    rc = close_outputs(&out, rc, model_path, m, done ? r[0].backend : "?", opts.n_threads, "consistency", body);
    if (rc < 0) fprintf(stderr, "ds4-longctx: %s\n", ds4_error());
    printf("%d lengths: %d pass, %d fail (tolerance %g)\n", done, done - failed, failed, tol);
    ds4_model_free(m);
    free(lens);
    return rc < 0 ? 1 : failed ? 1 : 0;
}
