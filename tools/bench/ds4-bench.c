/* ds4-bench - prefill and decode speed across context sizes: a table on stdout, and a
 * CSV log, JSON and a plot on request. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "appendfile.h"
#include "bench.h"
#include "forward.h"
#include "model.h"
#include "plot.h"
#include "recipe.h"
#include "synth.h"
#include "tokenizer.h"
#include "util.h"
#include "../flags.h"

#define MAX_SIZES 4096

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4-bench (-m M.gguf | --synthetic flash [--recipe R] [--layers N] [--experts N])\n"
            "                 [-p N,N,...] [-n N] [-r N] [-t N] [-o md|csv|json]\n"
            "                 [--csv FILE] [--json FILE] [--plot FILE.png] [--probe] [--profile]\n"
            "       ds4-bench --plot-from CSV --plot FILE.png\n"
            "                 [--backend NAME [--device N]] [--act auto|f32|q8]\n"
            "                 [--ctx-start N --ctx-max N --step-incr N]\n"
            "\n"
            "For each context size: fill it with deterministic text (token ids for models without\n"
            "a tokenizer), prefill, then decode greedily. A warm-up pass is excluded; each size\n"
            "runs -r times (default 3), reporting the median and the min-max range, with a warning\n"
            "when a row's runs differ by more than 2x (a noisy host). prefill tok/s = prompt\n"
            "tokens / prefill time; decode tok/s = generated tokens / decode time.\n"
            "\n"
            "  -m, --model M       the GGUF\n"
            "  --synthetic flash   instead: DeepSeek V4 Flash's shape with random valid weights\n"
            "                      (ds4-quant synth --fast's, seed 1) under --recipe (default q2),\n"
            "                      made in the backend's memory: on a GPU by a kernel, so only the\n"
            "                      metadata, the embedding and the small tensors touch the host;\n"
            "                      on the CPU a file it maps (/dev/shm where it fits). --layers and\n"
            "                      --experts shrink it; the CSV's model is synthetic-flash-RECIPE\n"
            "  -p, --prompt-lens   prompt sizes (default 512); or a sweep: --ctx-start N\n"
            "                      --ctx-max N --step-incr N. Sizes past the model's context\n"
            "                      length (less the generated tokens) are dropped with a warning.\n"
            "  -n, --gen-tokens N  tokens to decode per run (default 128)\n"
            "  -r N                runs per size (default 3)\n"
            "  -t, --threads N     threads (default: the CPUs this process may use)\n"
            "  -o md|csv|json      what stdout gets (default md, a table)\n"
            "  --csv FILE          the rows as CSV, each written and synced as it is measured\n"
            "                      (columns in the README); --json FILE: all rows, at the end\n"
            "  --plot FILE.png     prefill and decode tok/s by context, with min-max bars\n"
            "  --plot-from CSV     draw --plot from a CSV an earlier run wrote (no model, no run)\n"
            "  --probe             measure this machine's read bandwidth after each size's runs\n"
            "                      (it drifts with the machine's other load) and give decode as a\n"
            "                      fraction of it\n"
            "  --profile           after each size's runs, one more decode with timers on, and a\n"
            "                      table on stderr of where a token's time goes: per stage, and per\n"
            "                      weight type the bytes read and GB/s of the matrix products\n"
            "                      (with --parallel: per step of each N's decode)\n"
            "  --backend NAME      what runs the model: cpu (the default); built here: %s\n"
            "  --device N          which GPU, for a GPU backend (default 0)\n"
            "  --parallel N,N,...  batched decode instead: for each N, N sequences (the first size's\n"
            "                      prompt, its state copied to each, then sampled at temperature 1\n"
            "                      with a seed each) decode -n tokens together; rows with\n"
            "                      aggregate_decode_tps (N x tokens / decode wall time) and\n"
            "                      per_sequence_decode_tps to stdout, --csv and --plot\n"
            "  --act MODE          how matrix products treat activations (auto: int8 for sub-8-bit\n"
            "                      weights; f32; q8: int8 wherever a kernel exists)\n"
            "  --version           the commit and the compiled backends\n"
            EXIT_STATUS_HELP, ds4_backend_names());
}

/* Deterministic prompt of n tokens: filler text through the tokenizer, else ids. */
static int32_t *make_prompt(const ds4_tokenizer *tok, uint32_t vocab, int n) {
    int32_t *ids = NULL;
    size_t have = 0;
    if (tok) {
        static const char para[] =
            "The river leaves the mountains in early spring, carrying snow water through the valley towns. "
            "Farmers count the days until the fields dry, and the old bridge hums under the carts. ";
        ds4_buf text = {0};
        while (text.len < (size_t)n * 8) ds4_buf_append(&text, para, sizeof para - 1);
        if (ds4_tokenizer_bos(tok) >= 0) {
            ids = malloc(sizeof *ids);
            if (ids) ids[have++] = ds4_tokenizer_bos(tok);
        }
        int rc = ds4_tokenize(tok, (const char *)text.data, text.len, false, &ids, &have);
        ds4_buf_free(&text);
        if (rc == 0 && have >= (size_t)n) return ids;
        free(ids);
        ids = NULL;
    }
    ids = malloc((size_t)n * sizeof *ids);
    uint64_t x = 12345;
    for (int i = 0; ids && i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = i == 0 ? 0 : (int32_t)(2 + (x >> 33) % (vocab - 2));
    }
    return ids;
}

typedef struct {
    long ctx;
    ds4_bench_result r;
    uint64_t peak_rss, device_bytes;
    double eff_gbps, probe_gbps;
} row;

static const char csv_header[] =
    "model,quant,backend,threads,ctx,prompt_tokens,gen_tokens,prefill_tps,prefill_tps_min,prefill_tps_max,"
    "decode_tps,decode_tps_min,decode_tps_max,kv_bytes,peak_rss_bytes,device_bytes,weights_bytes_per_token,"
    "effective_gbps,probe_gbps,bandwidth_fraction,git_sha,date\n";

typedef struct {
    const char *model, *quant, *date;
    char backend[32];
    long threads;
    uint64_t bytes_per_token;
} run_info;

static int csv_line(ds4_buf *b, const run_info *ri, const row *w) {
    char line[1024];
    const ds4_bench_result *r = &w->r;
    const int n = snprintf(line, sizeof line,
                           ",%s,%s,%ld,%ld,%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%llu,%llu,%llu,%llu,%.3f,%.2f,%.4f,%s,%s\n",
                           ri->quant, ri->backend, ri->threads, w->ctx, r->prompt_tokens, r->gen_tokens,
                           r->prefill_tps, r->prefill_tps_min, r->prefill_tps_max, r->decode_tps, r->decode_tps_min,
                           r->decode_tps_max, (unsigned long long)r->kv_bytes, (unsigned long long)w->peak_rss,
                           (unsigned long long)w->device_bytes, (unsigned long long)ri->bytes_per_token, w->eff_gbps, w->probe_gbps,
                           w->probe_gbps > 0 ? w->eff_gbps / w->probe_gbps : 0.0, ds4_git_sha(), ri->date);
    return ds4_csv_field(b, ri->model) < 0 || ds4_buf_append(b, line, (size_t)n) < 0 ? -1 : 0;
}

static json_object *json_rows(const run_info *ri, const row *rows, int n) {
    json_object *arr = json_object_new_array();
    for (int i = 0; i < n; i++) {
        const ds4_bench_result *r = &rows[i].r;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "model", json_object_new_string(ri->model));
        json_object_object_add(o, "quant", json_object_new_string(ri->quant));
        json_object_object_add(o, "backend", json_object_new_string(ri->backend));
        json_object_object_add(o, "threads", json_object_new_int64(ri->threads));
        json_object_object_add(o, "ctx", json_object_new_int64(rows[i].ctx));
        json_object_object_add(o, "prompt_tokens", json_object_new_int(r->prompt_tokens));
        json_object_object_add(o, "gen_tokens", json_object_new_int(r->gen_tokens));
        json_object_object_add(o, "prefill_tps", json_object_new_double(r->prefill_tps));
        json_object_object_add(o, "prefill_tps_min", json_object_new_double(r->prefill_tps_min));
        json_object_object_add(o, "prefill_tps_max", json_object_new_double(r->prefill_tps_max));
        json_object_object_add(o, "decode_tps", json_object_new_double(r->decode_tps));
        json_object_object_add(o, "decode_tps_min", json_object_new_double(r->decode_tps_min));
        json_object_object_add(o, "decode_tps_max", json_object_new_double(r->decode_tps_max));
        json_object_object_add(o, "kv_bytes", json_object_new_int64((int64_t)r->kv_bytes));
        json_object_object_add(o, "peak_rss_bytes", json_object_new_int64((int64_t)rows[i].peak_rss));
        json_object_object_add(o, "device_bytes", json_object_new_int64((int64_t)rows[i].device_bytes));
        json_object_object_add(o, "weights_bytes_per_token", json_object_new_int64((int64_t)ri->bytes_per_token));
        json_object_object_add(o, "effective_gbps", json_object_new_double(rows[i].eff_gbps));
        json_object_object_add(o, "probe_gbps", json_object_new_double(rows[i].probe_gbps));
        json_object_object_add(o, "bandwidth_fraction", json_object_new_double(
                                                            rows[i].probe_gbps > 0 ? rows[i].eff_gbps / rows[i].probe_gbps : 0));
        json_object_object_add(o, "git_sha", json_object_new_string(ds4_git_sha()));
        json_object_object_add(o, "date", json_object_new_string(ri->date));
        json_object_array_add(arr, o);
    }
    return arr;
}

static void md_header(bool probe) {
    printf("| %8s | %-24s | %-24s | %9s | %8s |%s\n", "ctx", "prefill tok/s (min-max)", "decode tok/s (min-max)",
           "KV MiB", "eff GB/s", probe ? " probe GB/s |" : "");
    printf("|---------:|:-------------------------|:-------------------------|----------:|---------:|%s\n",
           probe ? "-----------:|" : "");
}

static void md_row(const row *w, bool probe) {
    char pre[64], dec[64];
    snprintf(pre, sizeof pre, "%.1f (%.1f-%.1f)", w->r.prefill_tps, w->r.prefill_tps_min, w->r.prefill_tps_max);
    snprintf(dec, sizeof dec, "%.1f (%.1f-%.1f)", w->r.decode_tps, w->r.decode_tps_min, w->r.decode_tps_max);
    printf("| %8ld | %-24s | %-24s | %9.2f | %8.3f |", w->ctx, pre, dec, w->r.kv_bytes / 1048576.0, w->eff_gbps);
    if (probe) printf(" %10.1f |", w->probe_gbps);
    printf("\n");
}

static void warn_spread(const row *w) {
    const ds4_bench_result *r = &w->r;
    if (r->repeats < 2) return;
    const char *what[2] = {"prefill", "decode"};
    const double lo[2] = {r->prefill_tps_min, r->decode_tps_min}, hi[2] = {r->prefill_tps_max, r->decode_tps_max};
    for (int k = 0; k < 2; k++)
        if (lo[k] > 0 && hi[k] > 2 * lo[k])
            fprintf(stderr, "ds4-bench: warning: ctx %ld: %s speed varied %.1fx across %d runs (%.1f-%.1f tok/s): "
                            "the host is noisy\n", w->ctx, what[k], hi[k] / lo[k], r->repeats, lo[k], hi[k]);
}

static int draw(ds4_plot *p, const char *csv, const run_info *ri, const char *sha) {
    char qcsv[4200], title[1024], qtitle[2200], commands[8192];
    snprintf(title, sizeof title, "%s (%s), %s, %ld threads, commit %s", ri->model, ri->quant, ri->backend,
             ri->threads, sha);
    if (!ds4_plot_quote(csv, qcsv, sizeof qcsv) || !ds4_plot_quote(title, qtitle, sizeof qtitle)) {
        ds4_plot_abort(p);
        return ds4_fail("%s: cannot be quoted for gnuplot", csv);
    }
    snprintf(commands, sizeof commands,
             "set title %s noenhanced\nset xlabel 'context (tokens)'\nset ylabel 'tokens/s (median, min-max)'\n"
             "set logscale y\nset format y '%%g'\nset grid xtics ytics mytics\nset key top right\n"
             "plot %s using 5:8:9:10 with yerrorlines pointtype 7 title 'prefill', "
             "'' using 5:11:12:13 with yerrorlines pointtype 5 title 'decode'\n",
             qtitle, qcsv);
    return ds4_plot_draw(p, commands);
}

/* --parallel: batched decode at each N. */
static const char parallel_header[] =
    "model,quant,backend,threads,parallel,prompt_tokens,gen_tokens,aggregate_decode_tps,per_sequence_decode_tps,"
    "peak_rss_bytes,device_bytes,git_sha,date\n";

static int draw_parallel(ds4_plot *p, const char *csv, const run_info *ri, int prompt, long gen, const char *sha) {
    char qcsv[4200], title[1024], setup[1024], qtitle[2200], qsetup[2200], commands[12288];
    /* two lines: a GPU's name makes one too wide for the chart */
    snprintf(title, sizeof title, "batched decode: %s (%s)", ri->model, ri->quant);
    snprintf(setup, sizeof setup, "%s, %ld threads, prompt %d, %ld generated, commit %s", ri->backend, ri->threads,
             prompt, gen, sha);
    if (!ds4_plot_quote(csv, qcsv, sizeof qcsv) || !ds4_plot_quote(title, qtitle, sizeof qtitle) ||
        !ds4_plot_quote(setup, qsetup, sizeof qsetup))
        return ds4_fail("%s: cannot be quoted for gnuplot", csv);
    snprintf(commands, sizeof commands,
             "set title %s.\"\\n\".%s noenhanced\nset xlabel 'sequences decoding together'\nset ylabel 'tokens/s'\n"
             "set logscale x 2\nset logscale y\nset format y '%%g'\nset grid\nset key top left\n"
             "plot %s using 5:8 with linespoints pointtype 7 title 'aggregate', "
             "'' using 5:9 with linespoints pointtype 5 title 'per sequence'\n",
             qtitle, qsetup, qcsv);
    return ds4_plot_draw(p, commands);
}

/* --plot-from: the chart of a CSV an earlier run wrote (on a GPU machine without
 * gnuplot, say), titled from its first row (the commit too: the run's). */
static int plot_csv(const char *csv, const char *png) {
    if (!png) {
        fprintf(stderr, "ds4-bench: --plot-from CSV draws into --plot FILE.png\n");
        return 2;
    }
    static char head[32][DS4_CSV_FIELD], first[32][DS4_CSV_FIELD];
    const int n = ds4_csv_row(csv, 0, head, 32);
    if (n < 8 || ds4_csv_row(csv, 1, first, 32) != n) {
        fprintf(stderr, "ds4-bench: %s: %s\n", csv, ds4_error()[0] ? ds4_error() : "not a ds4-bench CSV");
        return 2;
    }
    run_info ri = {.model = first[0], .quant = first[1], .threads = atol(first[3])};
    snprintf(ri.backend, sizeof ri.backend, "%.31s", first[2]);
    const char *sha = "?";
    for (int i = 0; i < n; i++)
        if (!strcmp(head[i], "git_sha")) sha = first[i];
    ds4_plot plot;
    int rc = ds4_plot_open(&plot, png);
    if (rc == 0)
        rc = !strcmp(head[4], "parallel") ? draw_parallel(&plot, csv, &ri, atoi(first[5]), atol(first[6]), sha)
                                          : draw(&plot, csv, &ri, sha);
    if (rc < 0) fprintf(stderr, "ds4-bench: %s\n", ds4_error());
    return rc < 0 ? 1 : 0;
}

/* --parallel's list: counts of 1 to DS4_MAX_SEQ sequences; NULL with the error set. */
static int32_t *parallel_counts(const char *list, size_t *n) {
    int32_t *ns = NULL;
    *n = 0;
    if (ds4_parse_token_ids(list, &ns, n) < 0 || !*n) {
        free(ns);
        ds4_fail("--parallel wants counts like 1,2,4,8");
        return NULL;
    }
    for (size_t i = 0; i < *n; i++)
        if (ns[i] < 1 || ns[i] > DS4_MAX_SEQ) {
            ds4_fail("--parallel %d: counts go from 1 to %d", ns[i], DS4_MAX_SEQ);
            free(ns);
            return NULL;
        }
    return ns;
}

static int run_parallel(ds4_model *m, const ds4_ctx_opts *base, const int32_t *ns, size_t n_ns, int prompt_len,
                        long gen, run_info *ri, const char *csv, const char *png, bool profile) {
    int max_n = 0;
    for (size_t i = 0; i < n_ns; i++) max_n = ns[i] > max_n ? ns[i] : max_n;
    ds4_appendfile log = {0};
    ds4_plot plot = {.png = {.fd = -1}};
    int rc = 0;
    if (csv && ds4_appendfile_open(&log, csv, false, parallel_header) < 0) rc = -1;
    if (rc == 0 && png && !csv) rc = ds4_fail("--plot draws from the --csv file: give --csv too");
    if (rc == 0 && png && ds4_plot_open(&plot, png) < 0) rc = -1;
    ds4_ctx_opts o = *base;
    o.n_seq = max_n;
    ds4_ctx *ctx = rc == 0 ? ds4_ctx_new(m, &o) : NULL;
    ds4_tokenizer *tok = ds4_tokenizer_if_any(m->gguf);
    int32_t *prompt = ctx ? make_prompt(tok, ds4_ctx_vocab(ctx), prompt_len) : NULL;
    if (rc == 0 && (!ctx || !prompt)) rc = -1;
    if (ctx) snprintf(ri->backend, sizeof ri->backend, "%s", ds4_ctx_backend(ctx));
    if (rc == 0) printf("| %8s | %16s | %16s |\n|---------:|-----------------:|-----------------:|\n", "parallel",
                        "aggregate tok/s", "per sequence");
    for (size_t i = 0; i < n_ns && rc == 0; i++) {
        ds4_bench_parallel_result r;
        rc = ds4_bench_parallel(ctx, prompt, prompt_len, (int)gen, ns[i], &r);
        if (rc < 0) break;
        printf("| %8d | %16.2f | %16.2f |\n", ns[i], r.aggregate_tps, r.per_sequence_tps);
        fflush(stdout);
        char line[512];
        const int n = snprintf(line, sizeof line, ",%s,%s,%ld,%d,%d,%ld,%.2f,%.2f,%llu,%llu,%s,%s\n", ri->quant,
                               ri->backend, ri->threads, ns[i], prompt_len, gen, r.aggregate_tps, r.per_sequence_tps,
                               (unsigned long long)ds4_peak_rss_bytes(), (unsigned long long)ds4_ctx_device_bytes(ctx),
                               ds4_git_sha(), ri->date);
        ds4_buf b = {0};
        rc = ds4_csv_field(&b, ri->model) < 0 || ds4_buf_append(&b, line, (size_t)n) < 0 ? -1 : 0;
        if (rc == 0 && csv) rc = ds4_appendfile_write(&log, (const char *)b.data, b.len);
        ds4_buf_free(&b);
        if (rc == 0 && profile) rc = ds4_bench_parallel_profile(ctx, prompt, prompt_len, (int)gen, ns[i], stderr);
    }
    if (rc == 0 && png) rc = draw_parallel(&plot, csv, ri, prompt_len, gen, ds4_git_sha());
    ds4_plot_abort(&plot);
    ds4_appendfile_close(&log);
    free(prompt);
    ds4_tokenizer_free(tok);
    ds4_ctx_free(ctx);
    return rc;
}

/* --synthetic flash: Flash's shape (--layers, --experts shrink it) under a recipe, made
 * in the backend's memory (the CPU's: a file on a RAM disk it maps), named for the CSV. */
static ds4_model *synthetic_model(const char *recipe, long layers, long experts, const ds4_ctx_opts *o, char *name,
                                  size_t cap) {
    ds4_recipe *r = ds4_recipe_new(recipe);
    if (!r) return NULL;
    ds4_config c;
    ds4_config_flash(&c, (uint32_t)layers, (uint32_t)experts);
    if (layers || experts) snprintf(name, cap, "synthetic-flash-l%u-e%u-%s", c.n_layer, c.n_expert, recipe);
    else snprintf(name, cap, "synthetic-flash-%s", recipe);
    const bool cpu = !o->backend || !strcmp(o->backend, "cpu");
    ds4_model *m = ds4_synth_model(&c, r, 1, !cpu, true);
    ds4_recipe_free(r);
    return m;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *csv = NULL, *json = NULL, *png = NULL, *lens = "512", *format = "md";
    const char *parallel = NULL, *synthetic = NULL, *recipe = "q2", *plot_from = NULL;
    long layers = 0, experts = 0;
    long ctx_start = 0, ctx_max = 0, step = 0, gen = 128, repeats = 3, threads = 0;
    bool probe = false, sweep = false, profile = false;
    ds4_ctx_opts opts = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--version")) return tool_version("ds4-bench");
        if (!strcmp(a, "--probe")) { probe = true; continue; }
        if (!strcmp(a, "--profile")) { profile = true; continue; }
        if (a[0] != '-') return tool_unknown_option("ds4-bench", a);
        if (!v) return tool_missing_value("ds4-bench", a);
        i++;
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--plot")) png = v;
        else if (!strcmp(a, "--plot-from")) plot_from = v;
        else if (!strcmp(a, "-o")) format = v;
        else if (!strcmp(a, "--prompt-lens") || !strcmp(a, "-p")) lens = v;
        else if (!strcmp(a, "--parallel")) parallel = v;
        else if (!strcmp(a, "--synthetic")) synthetic = v;
        else if (!strcmp(a, "--recipe")) recipe = v;
        else if (!strcmp(a, "--layers")) layers = flag_integer("ds4-bench", a, v, 1, DS4_MAX_LAYERS);
        else if (!strcmp(a, "--experts")) experts = flag_integer("ds4-bench", a, v, 1, 65536);
        else if (!strcmp(a, "--ctx-start")) ctx_start = flag_integer("ds4-bench", a, v, 1, INT_MAX), sweep = true;
        else if (!strcmp(a, "--ctx-max")) ctx_max = flag_integer("ds4-bench", a, v, 1, INT_MAX), sweep = true;
        else if (!strcmp(a, "--step-incr")) step = flag_integer("ds4-bench", a, v, 1, INT_MAX), sweep = true;
        else if (!strcmp(a, "--gen-tokens") || !strcmp(a, "-n")) gen = flag_integer("ds4-bench", a, v, 0, INT_MAX);
        else if (!strcmp(a, "-r")) repeats = flag_integer("ds4-bench", a, v, 1, INT_MAX);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) threads = flag_integer("ds4-bench", a, v, 1, 512);
        else if (flag_ctx("ds4-bench", a, v, &opts)) continue;
        else return tool_unknown_option("ds4-bench", a);
    }
    if (plot_from) return plot_csv(plot_from, png);
    if (!model_path == !synthetic) {
        fprintf(stderr, "ds4-bench: give the model with -m or --synthetic flash (ds4-bench --help lists the options)\n");
        return 2;
    }
    if (synthetic && strcmp(synthetic, "flash")) {
        fprintf(stderr, "ds4-bench: --synthetic makes 'flash' (Flash's shape; --layers and --experts shrink it)\n");
        return 2;
    }
    if (strcmp(format, "md") && strcmp(format, "csv") && strcmp(format, "json")) {
        fprintf(stderr, "ds4-bench: -o must be md, csv or json, not '%s'\n", format);
        return 2;
    }
    static long sizes[MAX_SIZES];
    int n_sizes = 0;
    if (sweep) {
        if (!ctx_start || !ctx_max || !step) {
            fprintf(stderr, "ds4-bench: a sweep needs --ctx-start, --ctx-max and --step-incr\n");
            return 2;
        }
        for (long c = ctx_start; c <= ctx_max && n_sizes < MAX_SIZES; c += step) sizes[n_sizes++] = c;
    } else {
        for (const char *p = lens; *p && n_sizes < MAX_SIZES;) {
            char *end;
            const long x = strtol(p, &end, 10);
            if (end == p || x < 1 || x > INT_MAX || (*end && *end != ',')) {
                fprintf(stderr, "ds4-bench: --prompt-lens wants positive integers separated by commas\n");
                return 2;
            }
            sizes[n_sizes++] = x;
            p = *end == ',' ? end + 1 : end;
        }
    }
    if (!n_sizes) {
        fprintf(stderr, "ds4-bench: no context sizes to run\n");
        return 2;
    }
    if (threads == 0) threads = ds4_cpu_count();
    size_t n_counts = 0;
    int32_t *counts = parallel ? parallel_counts(parallel, &n_counts) : NULL;
    if (parallel && !counts) {
        fprintf(stderr, "ds4-bench: %s\n", ds4_error());
        return 2;
    }

    char synthetic_name[128];
    ds4_model *m = synthetic ? synthetic_model(recipe, layers, experts, &opts, synthetic_name, sizeof synthetic_name)
                             : ds4_model_load(model_path);
    if (!m) {
        fprintf(stderr, "ds4-bench: %s\n", ds4_error());
        free(counts);
        return 2;
    }
    if (synthetic) model_path = synthetic_name;
    /* Sizes the model cannot hold go, with a warning. */
    const uint64_t ctx_len = m->cfg.context_length;
    int kept = 0;
    for (int s = 0; s < n_sizes; s++) {
        if (ctx_len && (uint64_t)sizes[s] + (uint64_t)gen > ctx_len) {
            fprintf(stderr, "ds4-bench: warning: ctx %ld + %ld generated is past the model's context length %llu: "
                            "skipped\n", sizes[s], gen, (unsigned long long)ctx_len);
            continue;
        }
        sizes[kept++] = sizes[s];
    }
    if (!kept && ctx_len > (uint64_t)gen) {
        sizes[kept++] = (long)(ctx_len - (uint64_t)gen);
        fprintf(stderr, "ds4-bench: warning: measuring at ctx %ld, the longest prompt the model holds\n", sizes[0]);
    }
    if (!kept) {
        fprintf(stderr, "ds4-bench: %ld generated tokens do not fit the model's context length %llu\n", gen,
                (unsigned long long)ctx_len);
        ds4_model_free(m);
        free(counts);
        return 2;
    }
    n_sizes = kept;

    run_info ri = {.model = model_path, .quant = ds4_model_weight_type(m), .threads = threads,
                   .bytes_per_token = ds4_model_bytes_per_token(m)};
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    ri.date = date;
    if (parallel) {
        opts.n_threads = (int)threads;
        ds4_install_cleanup_handlers();
        const int prc = run_parallel(m, &opts, counts, n_counts, (int)sizes[0], gen, &ri, csv, png, profile);
        if (prc < 0) fprintf(stderr, "ds4-bench: %s\n", ds4_error());
        free(counts);
        ds4_model_free(m);
        return prc < 0 ? 1 : 0;
    }

    /* Every output opens before the first measurement: a bad path fails now. */
    ds4_appendfile log = {0};
    ds4_outfile json_out = {.fd = -1};
    ds4_plot plot = {.png = {.fd = -1}};
    int rc = 0;
    if (csv && ds4_appendfile_open(&log, csv, false, csv_header) < 0) rc = -1;
    if (rc == 0 && json && ds4_outfile_open(&json_out, json) < 0) rc = -1;
    if (rc == 0 && png && !csv) rc = ds4_fail("--plot draws from the --csv file: give --csv too");
    if (rc == 0 && png && ds4_plot_open(&plot, png) < 0) rc = -1;
    if (rc < 0) {
        fprintf(stderr, "ds4-bench: %s\n", ds4_error());
        ds4_appendfile_close(&log);
        if (json_out.path) ds4_outfile_abort(&json_out);
        ds4_model_free(m);
        return 2;
    }
    ds4_install_cleanup_handlers();
    ds4_tokenizer *tok = ds4_tokenizer_if_any(m->gguf);
    opts.n_threads = (int)threads;
    ds4_ctx *ctx = ds4_ctx_new(m, &opts);
    row *rows = calloc((size_t)n_sizes, sizeof *rows);
    if (!ctx || !rows) rc = -1;
    if (ctx) snprintf(ri.backend, sizeof ri.backend, "%s", ds4_ctx_backend(ctx));
    if (rc == 0 && !strcmp(format, "md")) md_header(probe);
    if (rc == 0 && !strcmp(format, "csv")) fputs(csv_header, stdout);
    fflush(stdout);
    uint64_t peak = 0;
    int done = 0;
    for (int s = 0; s < n_sizes && rc == 0; s++) {
        int32_t *prompt = make_prompt(tok, ds4_ctx_vocab(ctx), (int)sizes[s]);
        row *w = &rows[s];
        w->ctx = sizes[s];
        rc = prompt ? ds4_bench_run(ctx, prompt, (int)sizes[s], (int)gen, (int)repeats, &w->r) : -1;
        free(prompt);
        if (rc < 0) break;
        if (profile) { /* on stderr, so that stdout stays the table */
            int32_t *again = make_prompt(tok, ds4_ctx_vocab(ctx), (int)sizes[s]);
            rc = again ? ds4_bench_profile(ctx, again, (int)sizes[s], (int)gen, stderr) : -1;
            free(again);
            if (rc < 0) break;
        }
        const uint64_t rss = ds4_peak_rss_bytes(); /* before the probe's buffer */
        peak = rss > peak ? rss : peak;
        w->peak_rss = peak;
        w->device_bytes = ds4_ctx_device_bytes(ctx); /* its buffers only grow: the peak */
        w->eff_gbps = (double)ri.bytes_per_token * w->r.decode_tps / 1e9;
        w->probe_gbps = probe ? ds4_ctx_probe_gbps(ctx) : 0;
        ds4_buf line = {0};
        rc = csv_line(&line, &ri, w);
        if (rc == 0 && csv) rc = ds4_appendfile_write(&log, (const char *)line.data, line.len);
        if (rc == 0 && !strcmp(format, "csv")) fwrite(line.data, 1, line.len, stdout);
        ds4_buf_free(&line);
        if (rc == 0 && !strcmp(format, "md")) md_row(w, probe);
        fflush(stdout);
        warn_spread(w);
        done++;
    }
    if (rc == 0 && (json || !strcmp(format, "json"))) {
        json_object *arr = json_rows(&ri, rows, done);
        const char *text = json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY);
        if (!strcmp(format, "json")) printf("%s\n", text);
        if (json && (ds4_outfile_write(&json_out, text, strlen(text)) < 0 ||
                     ds4_outfile_write(&json_out, "\n", 1) < 0 || ds4_outfile_commit(&json_out) < 0))
            rc = -1;
        json_object_put(arr);
    }
    if (rc == 0 && png) rc = draw(&plot, csv, &ri, ds4_git_sha());
    if (rc < 0) fprintf(stderr, "ds4-bench: %s\n", ds4_error());
    else {
        char device[64] = "";
        const uint64_t on_device = ds4_ctx_device_bytes(ctx);
        if (on_device) snprintf(device, sizeof device, ", device %.1f MiB", on_device / 1048576.0);
        fprintf(stderr, "ds4-bench: %s, %s, %ld threads; peak RSS %.1f MiB%s%s%s%s%s\n", model_path, ri.quant, threads,
                peak / 1048576.0, device, csv ? "; wrote " : "", csv ? csv : "", png ? " and " : "", png ? png : "");
    }
    if (json_out.path) ds4_outfile_abort(&json_out);
    ds4_plot_abort(&plot);
    ds4_appendfile_close(&log);
    free(rows);
    ds4_ctx_free(ctx);
    ds4_tokenizer_free(tok);
    ds4_model_free(m);
    return rc < 0 ? 1 : 0;
}
