/* ds4-bench - prefill and decode speed across context sizes, as CSV (and a plot). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "cpu.h"
#include "forward.h"
#include "model.h"
#include "tokenizer.h"
#include "util.h"
#include "../flags.h"
#include "../plot.h"

#ifndef DS4_GIT_SHA
#define DS4_GIT_SHA "unknown"
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4-bench --model M.gguf --csv out.csv [--ctx-start N] [--ctx-max N] [--step-incr N]\n"
            "                 [--prompt-lens N,N,...] [--gen-tokens N] [-r N] [--threads N] [--probe]\n"
            "                 [--plot out.png] [--act auto|f32|q8]\n"
            "\n"
            "For each context size (default 2048 to 65536 in steps of 2048, or --prompt-lens): fill\n"
            "the context with deterministic text (token ids for models without a tokenizer),\n"
            "prefill, then decode --gen-tokens tokens (default 128) greedily. A warm-up pass is\n"
            "excluded; each size runs -r times (default 3), reporting the median and the range.\n"
            "prefill tok/s = prompt tokens / prefill time; decode tok/s = generated tokens /\n"
            "decode time. --probe measures this machine's read bandwidth right after each size's\n"
            "runs (it drifts with the machine's other load), so decode is also given as a fraction\n"
            "of what the machine could stream then. --act picks how matrix products treat activations\n"
            "(auto: int8 for sub-8-bit weights; f32; q8: int8 wherever a kernel exists).\n"
            "The CSV columns are documented in the README.\n");
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

static int plot(const char *csv, const char *png) {
    char commands[1024];
    snprintf(commands, sizeof commands,
             "set key autotitle columnhead; set xlabel 'context (tokens)'; set ylabel 'tokens/s'; set logscale y; "
             "set grid; plot '%s' using 5:8 with linespoints title 'prefill', '' using 5:11 with linespoints title 'decode'",
             csv);
    return tool_plot(png, commands);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *csv = NULL, *png = NULL, *lens = NULL;
    long ctx_start = 2048, ctx_max = 65536, step = 2048, gen = 128, repeats = 3, threads = 0;
    bool probe = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--probe")) { probe = true; continue; }
        if (!v) { fprintf(stderr, "ds4-bench: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--plot")) png = v;
        else if (!strcmp(a, "--prompt-lens")) lens = v;
        else if (!strcmp(a, "--ctx-start")) ctx_start = flag_integer("ds4-bench", a, v, 1, INT_MAX);
        else if (!strcmp(a, "--ctx-max")) ctx_max = flag_integer("ds4-bench", a, v, 1, INT_MAX);
        else if (!strcmp(a, "--step-incr")) step = flag_integer("ds4-bench", a, v, 1, INT_MAX);
        else if (!strcmp(a, "--gen-tokens")) gen = flag_integer("ds4-bench", a, v, 0, INT_MAX);
        else if (!strcmp(a, "-r")) repeats = flag_integer("ds4-bench", a, v, 1, INT_MAX);
        else if (!strcmp(a, "--threads")) threads = flag_integer("ds4-bench", a, v, 1, INT_MAX);
        else if (!strcmp(a, "--act")) flag_act("ds4-bench", v);
        else { fprintf(stderr, "ds4-bench: unknown option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!model_path || !csv) {
        fprintf(stderr, "ds4-bench: --model and --csv are required\n");
        return 2;
    }
    long sizes[4096];
    int n_sizes = 0;
    if (lens) {
        for (const char *p = lens; *p && n_sizes < 4096;) {
            char *end;
            long x = strtol(p, &end, 10);
            if (end == p || x < 1) { fprintf(stderr, "ds4-bench: --prompt-lens wants positive integers\n"); return 2; }
            sizes[n_sizes++] = x;
            p = *end == ',' ? end + 1 : end;
        }
    } else {
        for (long c = ctx_start; c <= ctx_max && n_sizes < 4096; c += step) sizes[n_sizes++] = c;
    }
    if (!n_sizes) { fprintf(stderr, "ds4-bench: no context sizes to run\n"); return 2; }
    if (threads == 0) threads = ds4_cpu_count();

    ds4_model *m = ds4_model_load(model_path);
    if (!m) { fprintf(stderr, "ds4-bench: %s\n", ds4_error()); return 1; }
    ds4_tokenizer *tok = ds4_tokenizer_if_any(m->gguf);
    ds4_ctx *ctx = ds4_ctx_new(m, (int)threads);
    if (!ctx) { fprintf(stderr, "ds4-bench: %s\n", ds4_error()); return 1; }

    char backend[32], date[32];
    snprintf(backend, sizeof backend, "cpu-%s", ds4_cpu_level_name(ds4_cpu_detect()));
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    const uint64_t bpt = ds4_model_bytes_per_token(m);
    ds4_buf out = {0};
    const char *header = "model,quant,backend,threads,ctx,prompt_tokens,gen_tokens,prefill_tps,prefill_tps_min,"
                         "prefill_tps_max,decode_tps,decode_tps_min,decode_tps_max,kv_bytes,peak_rss_bytes,"
                         "weights_bytes_per_token,effective_gbps,probe_gbps,bandwidth_fraction,git_sha,date\n";
    ds4_buf_append(&out, header, strlen(header));
    int rc = 0;
    printf("%8s %12s %12s %12s %10s%s\n", "ctx", "prefill t/s", "decode t/s", "KV MiB", "eff GB/s",
           probe ? "  probe GB/s" : "");
    for (int s = 0; s < n_sizes && rc == 0; s++) {
        int32_t *prompt = make_prompt(tok, ds4_ctx_vocab(ctx), (int)sizes[s]);
        ds4_bench_result r;
        rc = prompt ? ds4_bench_run(ctx, prompt, (int)sizes[s], (int)gen, (int)repeats, &r) : -1;
        free(prompt);
        if (rc < 0) break;
        const double eff = (double)bpt * r.decode_tps / 1e9;
        const double probe_gbps = probe ? ds4_probe_read_gbps((int)threads) : 0;
        char line[1024];
        ds4_csv_field(&out, model_path);
        int n = snprintf(line, sizeof line,
                         ",%s,%s,%ld,%ld,%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%llu,%llu,%llu,%.3f,%.2f,%.4f,%s,%s\n",
                         ds4_model_weight_type(m), backend, threads, sizes[s], r.prompt_tokens, r.gen_tokens,
                         r.prefill_tps, r.prefill_tps_min, r.prefill_tps_max, r.decode_tps, r.decode_tps_min,
                         r.decode_tps_max, (unsigned long long)r.kv_bytes, (unsigned long long)ds4_peak_rss_bytes(),
                         (unsigned long long)bpt, eff, probe_gbps, probe_gbps > 0 ? eff / probe_gbps : 0.0,
                         DS4_GIT_SHA, date);
        ds4_buf_append(&out, line, (size_t)n);
        printf("%8ld %12.1f %12.1f %12.2f %10.3f", sizes[s], r.prefill_tps, r.decode_tps, r.kv_bytes / 1048576.0,
               eff);
        if (probe) printf(" %12.1f", probe_gbps);
        printf("\n");
        fflush(stdout);
    }
    if (rc == 0) rc = ds4_write_file_atomic(csv, out.data, out.len);
    if (rc == 0 && png) rc = plot(csv, png);
    if (rc < 0) fprintf(stderr, "ds4-bench: %s\n", ds4_error());
    else printf("wrote %s%s%s (peak RSS %.1f MiB)\n", csv, png ? " and " : "", png ? png : "",
                ds4_peak_rss_bytes() / 1048576.0);
    ds4_buf_free(&out);
    ds4_ctx_free(ctx);
    ds4_tokenizer_free(tok);
    ds4_model_free(m);
    return rc < 0 ? 1 : 0;
}
