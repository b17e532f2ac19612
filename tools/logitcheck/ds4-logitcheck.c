/* ds4-logitcheck - run reference vectors through the engine and judge the logits. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "logitcheck.h"
#include "model.h"
#include "perplexity.h"
#include "plot.h"
#include "util.h"
#include "../flags.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4-logitcheck --model M.gguf --vectors DIR|FILE [--vectors ...] [--threads N]\n"
            "                      [--csv out.csv] [--json out.json] [--max-dlogit X] [--max-kl X]\n"
            "                      [--max-kl-mean X] [--min-top1 F] [--require-greedy]\n"
            "                      [--backend NAME [--device N]] [--act auto|f32|q8] [--quiet]\n"
            "       ds4-logitcheck --model M.gguf --ref-backend NAME [--backend NAME]\n"
            "                      (--vectors DIR|FILE | --prompt-ids ID,ID,... | --text FILE) [--gen N]\n"
            "                      [the thresholds and outputs above]\n"
            "       ds4-logitcheck --ppl --model M.gguf (--text FILE | --ids FILE) [--ctx N,N,...]\n"
            "       ds4-logitcheck --save-base BASE.bin --model M.gguf (--text FILE | --ids FILE) [--ctx N]\n"
            "                      [--top-k K] [--top-mass P]\n"
            "       ds4-logitcheck --base BASE.bin --model M.gguf (--text FILE | --ids FILE) [--ctx N]\n"
            "                      [--max-kl-mean X] [--min-top1 F] [--max-ppl-ratio R] [--hist H.csv]\n"
            "                      [--plot H.png]\n"
            "\n"
            "Teacher-forces every case's prompt, then continues greedily, and compares each\n"
            "distribution with the reference (JSONL vectors of FORMATS.md, or DeepSeek API\n"
            "captures made by scripts/capture_api_vectors.sh). Reports per case and\n"
            "overall: max and mean |dlogit| (where full logits are stored), KL(ref||ours) mean\n"
            "and max over the reference top-k, top-1 agreement, top-k overlap, Spearman rank\n"
            "correlation and the greedy prefix that agrees. Exit 0 only if every threshold\n"
            "holds (defaults: --max-kl 1e-3 --min-top1 0.99; --max-dlogit, --max-kl-mean\n"
            "and --require-greedy are off unless given; --max-kl bounds the worst position,\n"
            "--max-kl-mean the mean over all positions). --backend picks what runs the\n"
            "model (cpu, the default; --version lists those built). --act picks how matrix\n"
            "products treat activations (auto = int8 for sub-8-bit weights, f32 = always F32,\n"
            "q8 = int8 wherever a kernel exists). In a directory of vectors, a case made for\n"
            "another vocabulary is skipped, with the reason in the table and in the CSV's case\n"
            "field (its numbers empty). --csv and --json are opened before the first case and\n"
            "written at the end.\n"
            "\n"
            "--ref-backend NAME: the reference is the same model on that backend (cpu, say,\n"
            "for --backend cuda) with the same --act, over the vectors' prompts (their stored\n"
            "logits unread), a list of token ids, or a text file (BOS + its text): its logits\n"
            "at every prompt position (|dlogit| over the whole vocabulary; the rest over its\n"
            "64 likeliest tokens), then its greedy continuation, as long as the case's own or\n"
            "--gen tokens (default 16), both backends teacher-forced along it.\n"
            "\n"
            "Corpus modes (no reference vectors needed): a text file through the model's\n"
            "tokenizer (--text) or token ids (--ids), cut into windows of --ctx tokens (default\n"
            "512; what does not fill a last window is left out); each window starts from an\n"
            "empty state with BOS first, and its second half is scored, as llama-perplexity\n"
            "does. --ppl: perplexity, per window and overall, for each --ctx given (perplexity\n"
            "by context length). --save-base: the model's predictions (the logprobs of its most\n"
            "likely tokens, at least --top-k (default 32) and more until they hold --top-mass\n"
            "of the probability (default 0.99999, at most 4096 tokens), the mass of the rest,\n"
            "the true token's logprob: 8 bytes per kept token + 12 per scored token) into a\n"
            "checksummed file with the corpus hash, tokenizer hash and --ctx.\n"
            "--base: another model over the same corpus and settings (a mismatch is refused)\n"
            "against that file: KL(base||model) mean, median, p99 and max, top-1 agreement,\n"
            "p_base(token) - p(token), and both perplexities; no gate unless --max-kl-mean,\n"
            "--min-top1 or --max-ppl-ratio is given. --csv: a row per window, then 'overall';\n"
            "--hist: the KL and probability-change histograms (--plot draws them).\n"
            "\n"
            "--version prints the commit and the compiled backends.\n"
            EXIT_STATUS_HELP);
}

static int write_csv(ds4_outfile *out, const char *model, const ds4_lc_report *r) {
    ds4_buf b = {0};
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "model,case,prompt_tokens,positions,max_dlogit,mean_dlogit,max_dlogprob,kl_mean,kl_max,top1,"
                     "topk_overlap,spearman,greedy_len,greedy_match,prefill_tps,decode_tps\n");
    ds4_buf_append(&b, line, (size_t)n);
    ds4_lc_case all = ds4_lc_overall(r);
    for (int i = 0; i <= r->n_cases; i++) {
        const ds4_lc_case *c = i < r->n_cases ? &r->cases[i] : &all;
        ds4_csv_field(&b, model);
        ds4_buf_append(&b, ",", 1);
        if (c->skipped[0]) { /* no numbers: the case field says why */
            char why[sizeof c->id + sizeof c->skipped + 16];
            snprintf(why, sizeof why, "%s [skipped: %s]", c->id, c->skipped);
            ds4_csv_field(&b, why);
            ds4_buf_append(&b, ",,,,,,,,,,,,,,\n", 15);
            continue;
        }
        ds4_csv_field(&b, c->id);
        n = snprintf(line, sizeof line, ",%d,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6f,%.6f,%.6f,%d,%d,%.2f,%.2f\n", c->n_prompt,
                     c->n_positions, c->max_dlogit, c->mean_dlogit, c->max_dlogprob, c->kl_mean, c->kl_max, c->top1,
                     c->overlap, c->spearman, c->greedy_len, c->greedy_match,
                     c->prefill_seconds > 0 ? c->n_prompt / c->prefill_seconds : 0,
                     c->decode_seconds > 0 ? c->greedy_match / c->decode_seconds : 0);
        ds4_buf_append(&b, line, (size_t)n);
    }
    int rc = ds4_outfile_write(out, b.data, b.len);
    if (rc == 0) rc = ds4_outfile_commit(out);
    ds4_buf_free(&b);
    return rc;
}

static json_object *case_json(const ds4_lc_case *c) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(c->id));
    json_object_object_add(o, "prompt_tokens", json_object_new_int(c->n_prompt));
    json_object_object_add(o, "positions", json_object_new_int(c->n_positions));
    json_object_object_add(o, "max_dlogit", json_object_new_double(c->max_dlogit));
    json_object_object_add(o, "mean_dlogit", json_object_new_double(c->mean_dlogit));
    json_object_object_add(o, "max_dlogprob", json_object_new_double(c->max_dlogprob));
    json_object_object_add(o, "kl_mean", json_object_new_double(c->kl_mean));
    json_object_object_add(o, "kl_max", json_object_new_double(c->kl_max));
    json_object_object_add(o, "top1", json_object_new_double(c->top1));
    json_object_object_add(o, "topk_overlap", json_object_new_double(c->overlap));
    json_object_object_add(o, "spearman", json_object_new_double(c->spearman));
    json_object_object_add(o, "greedy_len", json_object_new_int(c->greedy_len));
    json_object_object_add(o, "greedy_match", json_object_new_int(c->greedy_match));
    if (c->skipped[0]) json_object_object_add(o, "skipped", json_object_new_string(c->skipped));
    return o;
}

static int write_json(ds4_outfile *out, const char *model, const ds4_lc_report *r, bool pass) {
    json_object *root = json_object_new_object(), *cases = json_object_new_array();
    json_object_object_add(root, "model", json_object_new_string(model));
    json_object_object_add(root, "pass", json_object_new_boolean(pass));
    for (int i = 0; i < r->n_cases; i++) json_object_array_add(cases, case_json(&r->cases[i]));
    json_object_object_add(root, "cases", cases);
    ds4_lc_case all = ds4_lc_overall(r);
    json_object_object_add(root, "overall", case_json(&all));
    const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY);
    int rc = ds4_outfile_write(out, text, strlen(text));
    if (rc == 0) rc = ds4_outfile_write(out, "\n", 1);
    if (rc == 0) rc = ds4_outfile_commit(out);
    json_object_put(root);
    return rc;
}

static void print_row(const ds4_lc_case *c) {
    if (c->skipped[0]) {
        printf("%-26s skipped: %s\n", c->id, c->skipped);
        return;
    }
    char dl[32] = "-";
    if (c->full_positions) snprintf(dl, sizeof dl, "%.2e", c->max_dlogit);
    printf("%-26s %6d %11s %10.2e %10.2e %10.2e %7.2f%% %7.2f%% %8.5f %4d/%-4d\n", c->id, c->n_prompt, dl,
           c->max_dlogprob, c->kl_mean, c->kl_max, 100 * c->top1, 100 * c->overlap, c->spearman, c->greedy_match,
           c->greedy_len);
}

/* ---- corpus modes: perplexity, saving a base, KL against a base ---- */

typedef struct {
    const char *text, *ids, *save_base, *base, *hist, *plot, *ctx_list;
    bool ppl;
    uint32_t top_k;  /* kept per position at least */
    double top_mass; /* and until they hold this share */
    double max_kl_mean, min_top1, max_ppl_ratio; /* < 0: no gate */
} corpus_args;

static const char corpus_csv_header[] =
    "mode,model,ctx,window,tokens,ppl,ppl_base,kl_mean,kl_median,kl_p99,kl_max,top1,dp_mean,dp_p01,dp_p99\n";

typedef struct {
    ds4_buf rows;
    const char *mode, *model;
    uint32_t ctx;
    bool base;
} corpus_log;

static void corpus_row(corpus_log *l, const char *window, const ds4_ppl_stats *st) {
    char line[512];
    ds4_buf_append(&l->rows, l->mode, strlen(l->mode));
    ds4_buf_append(&l->rows, ",", 1);
    ds4_csv_field(&l->rows, l->model);
    int n = snprintf(line, sizeof line, ",%u,%s,%llu,%.6f,", l->ctx, window, (unsigned long long)st->tokens, st->ppl);
    ds4_buf_append(&l->rows, line, (size_t)n);
    if (l->base)
        n = snprintf(line, sizeof line, "%.6f,%.6g,%.6g,%.6g,%.6g,%.6f,%.6g,%.6g,%.6g\n", st->ppl_base, st->kl_mean,
                     st->kl_median, st->kl_p99, st->kl_max, st->top1, st->dp_mean, st->dp_p01, st->dp_p99);
    else
        n = snprintf(line, sizeof line, ",,,,,,,,\n");
    ds4_buf_append(&l->rows, line, (size_t)n);
}

static int corpus_window(void *arg, const ds4_ppl_stats *st) {
    char w[32];
    snprintf(w, sizeof w, "%llu", (unsigned long long)st->first_window);
    corpus_row(arg, w, st);
    return 0;
}

static json_object *stats_json(uint32_t ctx, const ds4_ppl_stats *st, bool base) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ctx", json_object_new_int64(ctx));
    json_object_object_add(o, "windows", json_object_new_int64((int64_t)st->windows));
    json_object_object_add(o, "tokens", json_object_new_int64((int64_t)st->tokens));
    json_object_object_add(o, "ppl", json_object_new_double(st->ppl));
    if (base) {
        const struct { const char *k; double v; } f[] = {
            {"ppl_base", st->ppl_base}, {"kl_mean", st->kl_mean}, {"kl_median", st->kl_median}, {"kl_p99", st->kl_p99},
            {"kl_max", st->kl_max}, {"top1", st->top1}, {"dp_mean", st->dp_mean}, {"dp_p01", st->dp_p01},
            {"dp_p99", st->dp_p99}};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) json_object_object_add(o, f[i].k, json_object_new_double(f[i].v));
    }
    return o;
}

static int write_hist(ds4_outfile *out, const ds4_ppl_hist *h) {
    ds4_buf b = {0};
    char line[128];
    ds4_buf_append(&b, "quantity,lo,hi,count\n", 21);
    for (int i = 0; i < DS4_KL_BINS; i++) {
        const double lo = i == 0 ? 0 : pow(10, i - 10), hi = i == DS4_KL_BINS - 1 ? HUGE_VAL : pow(10, i - 9);
        const int n = snprintf(line, sizeof line, "kl,%g,%g,%llu\n", lo, hi, (unsigned long long)h->kl[i]);
        ds4_buf_append(&b, line, (size_t)n);
    }
    for (int i = 0; i < DS4_DP_BINS; i++) {
        const int n = snprintf(line, sizeof line, "dp,%.2f,%.2f,%llu\n", -1 + 0.05 * i, -1 + 0.05 * (i + 1),
                               (unsigned long long)h->dp[i]);
        ds4_buf_append(&b, line, (size_t)n);
    }
    int rc = ds4_outfile_write(out, b.data, b.len);
    if (rc == 0) rc = ds4_outfile_commit(out);
    ds4_buf_free(&b);
    return rc;
}

static int draw_hist(ds4_plot *p, const char *hist, const char *model) {
    char qcsv[4200], title[1200], qtitle[2500], cmd[16384];
    snprintf(title, sizeof title, "KL(base || %s) and p_base(token) - p(token) per scored token", model);
    if (!ds4_plot_quote(hist, qcsv, sizeof qcsv) || !ds4_plot_quote(title, qtitle, sizeof qtitle))
        return ds4_fail("%s: cannot be quoted for gnuplot", hist);
    snprintf(cmd, sizeof cmd,
             "set multiplot layout 1,2 title %s noenhanced\nset style fill solid 0.6\nset key noenhanced\n"
             "set boxwidth 0.8\nset xlabel 'log10 KL (decades; below 1e-9 at -9.5)' noenhanced\n"
             "set ylabel 'tokens'\nset xrange [-10:2]\n"
             "plot %s using (strcol(1) eq 'kl' ? (column(2) > 0 ? log10(column(2)) + 0.5 : -9.5) : 1/0):4 "
             "with boxes title 'KL'\n"
             "set xlabel 'p_base(token) - p(token)' noenhanced\nset boxwidth 0.04\nset xrange [-1:1]\n"
             "plot %s using (strcol(1) eq 'dp' ? ($2 + $3) / 2 : 1/0):4 with boxes title 'dp'\nunset multiplot\n",
             qtitle, qcsv, qcsv);
    return ds4_plot_draw(p, cmd);
}

/* --ppl, --save-base, --base. */
static int corpus_main(const char *model_path, const ds4_ctx_opts *opts, const corpus_args *a, const char *csv,
                       const char *json, bool quiet) {
    const bool base = a->base != NULL;
    if (!!a->text + !!a->ids != 1) {
        fprintf(stderr, "ds4-logitcheck: give the corpus: --text FILE or --ids FILE\n");
        return 2;
    }
    int32_t *ctxs = NULL;
    size_t n_ctx = 0;
    if (ds4_parse_token_ids(a->ctx_list, &ctxs, &n_ctx) < 0 || n_ctx == 0 || (n_ctx > 1 && !a->ppl)) {
        fprintf(stderr, "ds4-logitcheck: --ctx wants a window length (a comma-separated list with --ppl)\n");
        free(ctxs);
        return 2;
    }
    for (size_t i = 0; i < n_ctx; i++)
        if (ctxs[i] < 4 || ctxs[i] > (1 << 24)) {
            fprintf(stderr, "ds4-logitcheck: --ctx %d: 4 to 16777216 tokens\n", ctxs[i]);
            free(ctxs);
            return 2;
        }
    if (a->plot && !a->hist) {
        fprintf(stderr, "ds4-logitcheck: --plot draws the --hist file: give --hist too\n");
        free(ctxs);
        return 2;
    }
    /* Every output opens before the work, the base file is checked whole. */
    ds4_outfile csv_out = {.fd = -1}, json_out = {.fd = -1}, hist_out = {.fd = -1};
    ds4_plot plot = {.png = {.fd = -1}};
    ds4_base_file bf = {0};
    int rc = 0;
    if ((csv && ds4_outfile_open(&csv_out, csv) < 0) || (json && ds4_outfile_open(&json_out, json) < 0) ||
        (a->hist && ds4_outfile_open(&hist_out, a->hist) < 0) || (a->plot && ds4_plot_open(&plot, a->plot) < 0) ||
        (base && ds4_base_open(&bf, a->base) < 0))
        rc = -1;
    ds4_install_cleanup_handlers();
    ds4_model *m = rc == 0 ? ds4_model_load(model_path) : NULL;
    ds4_tokenizer *tok = m ? ds4_tokenizer_if_any(m->gguf) : NULL;
    int32_t *ids = NULL;
    uint64_t n = 0;
    if (rc == 0 && (!m || ds4_corpus_read(a->text ? a->text : a->ids, a->ids != NULL, tok, &ids, &n) < 0)) rc = -1;
    const uint64_t tok_hash = tok ? ds4_tokenizer_hash(tok) : 0;
    if (rc == 0 && base && ds4_ppl_check_base(&bf.info, ids, n, (uint32_t)ctxs[0], m->cfg.n_vocab, tok_hash) < 0) {
        ds4_error_prefix(a->base);
        rc = -1;
    }
    ds4_ctx *ctx = rc == 0 ? ds4_ctx_new(m, opts) : NULL;
    if (rc == 0 && !ctx) rc = -1;
    if (rc < 0) {
        fprintf(stderr, "ds4-logitcheck: %s\n", ds4_error());
        rc = 2;
    }
    corpus_log log = {.mode = a->ppl ? "ppl" : base ? "base" : "save-base", .model = model_path, .base = base};
    json_object *root = json_object_new_object(), *runs = json_object_new_array();
    ds4_ppl_stats all = {0};
    ds4_ppl_hist hist = {0};
    const uint32_t V = m ? m->cfg.n_vocab : 0, min_k = a->top_k < V ? a->top_k : V;
    const uint32_t max_k = DS4_PPL_KEEP_MAX < V ? (min_k > DS4_PPL_KEEP_MAX ? min_k : DS4_PPL_KEEP_MAX) : V;
    for (size_t i = 0; i < n_ctx && rc == 0; i++) {
        const uint32_t C = (uint32_t)ctxs[i];
        ds4_base_writer *w = NULL;
        if (a->save_base) {
            const ds4_base_info info = {min_k, max_k, (float)a->top_mass, V, C, ds4_ppl_positions(n, C),
                                        ds4_model_fingerprint(m), tok_hash, ds4_ppl_corpus_hash(ids, n, C)};
            if (!(w = ds4_base_create(a->save_base, &info))) rc = -1;
        }
        ds4_progress prog;
        char label[48];
        snprintf(label, sizeof label, "%s ctx %u", log.mode, C);
        ds4_progress_begin_count(&prog, label, ds4_ppl_windows(n, C) * C, "tok");
        const ds4_ppl_opts po = {.ctx = C, .bos = tok ? ds4_tokenizer_bos(tok) : -1, .save = w, .min_k = min_k,
                                 .max_k = max_k, .mass = a->top_mass, .base = base ? &bf : NULL, .progress = &prog};
        log.ctx = C;
        if (rc == 0) rc = ds4_perplexity(ctx, ids, n, &po, corpus_window, &log, &all, &hist);
        ds4_progress_end(&prog);
        if (w && rc == 0) rc = ds4_base_finish(w);
        else if (w) ds4_base_abort(w);
        if (rc < 0) break;
        corpus_row(&log, "overall", &all);
        json_object_array_add(runs, stats_json(C, &all, base));
        if (!quiet || i + 1 == n_ctx) {
            printf("%s: ctx %u, %llu windows, %llu scored tokens: perplexity %.4f", model_path, C,
                   (unsigned long long)all.windows, (unsigned long long)all.tokens, all.ppl);
            if (base)
                printf(" (base %.4f); KL mean %.4g, median %.4g, p99 %.4g, max %.4g; top-1 %.2f%%; "
                       "p_base - p mean %.4g [p1 %.4g, p99 %.4g]", all.ppl_base, all.kl_mean, all.kl_median,
                       all.kl_p99, all.kl_max, 100 * all.top1, all.dp_mean, all.dp_p01, all.dp_p99);
            if (a->save_base)
                printf("; base saved to %s (%.0f bytes per scored token)", a->save_base,
                       all.tokens ? (double)ds4_file_size(a->save_base) / (double)all.tokens : 0.0);
            printf("\n");
        }
    }
    bool pass = true;
    if (rc == 0 && base) {
        const double ratio = all.ppl_base > 0 ? all.ppl / all.ppl_base : HUGE_VAL;
        if (a->max_kl_mean >= 0 && !(all.kl_mean <= a->max_kl_mean)) pass = false;
        if (a->min_top1 >= 0 && !(all.top1 >= a->min_top1)) pass = false;
        if (a->max_ppl_ratio >= 0 && !(ratio <= a->max_ppl_ratio)) pass = false;
        if (a->max_kl_mean >= 0 || a->min_top1 >= 0 || a->max_ppl_ratio >= 0)
            printf("%s: KL mean %.4g, top-1 %.2f%%, perplexity ratio %.4f\n", pass ? "PASS" : "FAIL", all.kl_mean,
                   100 * all.top1, ratio);
    }
    if (rc == 0 && csv) {
        rc = ds4_outfile_write(&csv_out, corpus_csv_header, strlen(corpus_csv_header));
        if (rc == 0) rc = ds4_outfile_write(&csv_out, log.rows.data, log.rows.len);
        if (rc == 0) rc = ds4_outfile_commit(&csv_out);
    }
    if (rc == 0 && json) {
        json_object_object_add(root, "mode", json_object_new_string(log.mode));
        json_object_object_add(root, "model", json_object_new_string(model_path));
        json_object_object_add(root, "pass", json_object_new_boolean(pass));
        json_object_object_add(root, "runs", json_object_get(runs));
        const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY);
        rc = ds4_outfile_write(&json_out, text, strlen(text));
        if (rc == 0) rc = ds4_outfile_write(&json_out, "\n", 1);
        if (rc == 0) rc = ds4_outfile_commit(&json_out);
    }
    if (rc == 0 && a->hist) rc = write_hist(&hist_out, &hist);
    if (rc == 0 && a->plot) rc = draw_hist(&plot, a->hist, model_path);
    if (rc == -1) {
        fprintf(stderr, "ds4-logitcheck: %s\n", ds4_error());
        rc = 1;
    }
    json_object_put(runs);
    json_object_put(root);
    ds4_buf_free(&log.rows);
    if (csv_out.path) ds4_outfile_abort(&csv_out);
    if (json_out.path) ds4_outfile_abort(&json_out);
    if (hist_out.path) ds4_outfile_abort(&hist_out);
    ds4_plot_abort(&plot);
    if (base) ds4_base_close(&bf);
    ds4_ctx_free(ctx);
    ds4_tokenizer_free(tok);
    ds4_model_free(m);
    free(ids);
    free(ctxs);
    return rc ? rc : pass ? 0 : 1;
}

/* --text FILE with --ref-backend: BOS and the file's text as one case. */
static int text_case(ds4_ctx *ctx, ds4_ctx *ref, int gen, const ds4_tokenizer *tok, const char *path,
                     ds4_lc_report *r) {
    if (!tok) return ds4_fail("%s: a text prompt needs a model with a tokenizer", path);
    size_t len;
    char *text = ds4_read_file(path, &len);
    if (!text) return -1;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (ds4_tokenizer_bos(tok) >= 0) {
        ids = malloc(sizeof *ids);
        if (!ids) rc = ds4_fail("out of memory");
        else ids[n++] = ds4_tokenizer_bos(tok);
    }
    if (rc == 0) rc = ds4_tokenize(tok, text, len, false, &ids, &n);
    if (rc == 0) rc = ds4_logitcheck_ids_ref(ctx, ref, gen, path, ids, n, r);
    free(ids);
    free(text);
    return rc;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *csv = NULL, *json = NULL, *vectors[64], *ref_backend = NULL, *prompt_ids = NULL;
    int n_vectors = 0, gen = 16;
    ds4_ctx_opts opts = {0};
    double max_dlogit = -1, max_kl = 1e-3, max_kl_mean = -1, min_top1 = 0.99;
    bool require_greedy = false, quiet = false, min_top1_given = false;
    corpus_args ca = {.ctx_list = "512", .top_k = 32, .top_mass = 0.99999, .max_kl_mean = -1, .min_top1 = -1,
                      .max_ppl_ratio = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--version")) return tool_version("ds4-logitcheck");
        if (!strcmp(a, "--require-greedy")) { require_greedy = true; continue; }
        if (!strcmp(a, "--quiet")) { quiet = true; continue; }
        if (!strcmp(a, "--ppl")) { ca.ppl = true; continue; }
        if (a[0] != '-') return tool_unknown_option("ds4-logitcheck", a);
        if (!v) return tool_missing_value("ds4-logitcheck", a);
        i++;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--vectors") && n_vectors < 64) vectors[n_vectors++] = v;
        else if (!strcmp(a, "--threads")) opts.n_threads = (int)flag_integer("ds4-logitcheck", a, v, 0, 512);
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--max-dlogit")) max_dlogit = flag_number("ds4-logitcheck", a, v, 0, HUGE_VAL);
        else if (!strcmp(a, "--max-kl")) max_kl = flag_number("ds4-logitcheck", a, v, 0, HUGE_VAL);
        else if (!strcmp(a, "--max-kl-mean")) max_kl_mean = flag_number("ds4-logitcheck", a, v, 0, HUGE_VAL);
        else if (!strcmp(a, "--min-top1")) {
            min_top1 = flag_number("ds4-logitcheck", a, v, 0, 1);
            min_top1_given = true;
        }
        else if (!strcmp(a, "--ref-backend")) ref_backend = v;
        else if (!strcmp(a, "--prompt-ids")) prompt_ids = v;
        else if (!strcmp(a, "--gen")) gen = (int)flag_integer("ds4-logitcheck", a, v, 1, 1 << 20);
        else if (!strcmp(a, "--text")) ca.text = v;
        else if (!strcmp(a, "--ids")) ca.ids = v;
        else if (!strcmp(a, "--ctx")) ca.ctx_list = v;
        else if (!strcmp(a, "--save-base")) ca.save_base = v;
        else if (!strcmp(a, "--base")) ca.base = v;
        else if (!strcmp(a, "--hist")) ca.hist = v;
        else if (!strcmp(a, "--plot")) ca.plot = v;
        else if (!strcmp(a, "--top-k")) ca.top_k = (uint32_t)flag_integer("ds4-logitcheck", a, v, 1, DS4_PPL_KEEP_MAX);
        else if (!strcmp(a, "--top-mass")) ca.top_mass = flag_number("ds4-logitcheck", a, v, 0, 1);
        else if (!strcmp(a, "--max-ppl-ratio")) ca.max_ppl_ratio = flag_number("ds4-logitcheck", a, v, 0, HUGE_VAL);
        else if (flag_ctx("ds4-logitcheck", a, v, &opts)) continue;
        else return tool_unknown_option("ds4-logitcheck", a);
    }
    const int corpus_modes = ca.ppl + !!ca.save_base + !!ca.base;
    if (corpus_modes > 1 || (corpus_modes && n_vectors)) {
        fprintf(stderr, "ds4-logitcheck: one mode at a time: --vectors, --ppl, --save-base or --base\n");
        return 2;
    }
    if ((prompt_ids || ca.text) && !corpus_modes && !ref_backend) {
        fprintf(stderr, "ds4-logitcheck: --prompt-ids and --text (without a corpus mode) go with --ref-backend\n");
        return 2;
    }
    if (ref_backend && corpus_modes) {
        fprintf(stderr, "ds4-logitcheck: --ref-backend compares prompts, not a corpus mode\n");
        return 2;
    }
    if (corpus_modes && model_path) {
        ca.max_kl_mean = max_kl_mean;
        ca.min_top1 = min_top1_given ? min_top1 : -1;
        return corpus_main(model_path, &opts, &ca, csv, json, quiet);
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (prompt_ids && (ds4_parse_token_ids(prompt_ids, &ids, &n_ids) < 0 || n_ids == 0)) {
        fprintf(stderr, "ds4-logitcheck: --prompt-ids wants comma-separated token ids\n");
        free(ids);
        return 2;
    }
    if (!model_path || (!n_vectors && !ids && !ca.text)) {
        free(ids);
        fprintf(stderr, "ds4-logitcheck: --model and --vectors are required (or --prompt-ids or --text with "
                        "--ref-backend, or a corpus mode: --ppl, --save-base, --base)\n");
        return 2;
    }
    /* The outputs open before the first case: a bad path fails now, not after the run. */
    ds4_outfile csv_out = {.fd = -1}, json_out = {.fd = -1};
    if ((csv && ds4_outfile_open(&csv_out, csv) < 0) || (json && ds4_outfile_open(&json_out, json) < 0)) {
        fprintf(stderr, "ds4-logitcheck: %s\n", ds4_error());
        if (csv_out.path) ds4_outfile_abort(&csv_out);
        return 2;
    }
    ds4_install_cleanup_handlers();
    ds4_model *m = ds4_model_load(model_path);
    if (!m) {
        fprintf(stderr, "ds4-logitcheck: %s\n", ds4_error());
        if (csv_out.path) ds4_outfile_abort(&csv_out);
        if (json_out.path) ds4_outfile_abort(&json_out);
        return 2;
    }
    ds4_ctx *ctx = ds4_ctx_new(m, &opts), *ref = NULL;
    if (ctx && ref_backend) {
        ds4_ctx_opts ro = opts;
        ro.backend = ref_backend;
        ref = ds4_ctx_new(m, &ro);
    }
    /* Text prompts and API captures need the model's tokenizer; id vectors do not. */
    ds4_tokenizer *tok = ds4_tokenizer_if_any(m->gguf);
    ds4_lc_report r = {0};
    int rc = ctx && (ref || !ref_backend) ? 0 : -1;
    for (int i = 0; i < n_vectors && rc == 0; i++)
        rc = ref ? ds4_logitcheck_path_ref(ctx, ref, gen, tok, vectors[i], &r)
                 : ds4_logitcheck_path(ctx, tok, vectors[i], &r);
    if (rc == 0 && ids) rc = ds4_logitcheck_ids_ref(ctx, ref, gen, "prompt-ids", ids, n_ids, &r);
    if (rc == 0 && ca.text) rc = text_case(ctx, ref, gen, tok, ca.text, &r);
    free(ids);
    if (rc < 0) {
        fprintf(stderr, "ds4-logitcheck: %s\n", ds4_error());
        if (csv_out.path) ds4_outfile_abort(&csv_out);
        if (json_out.path) ds4_outfile_abort(&json_out);
        ds4_lc_report_free(&r);
        ds4_tokenizer_free(tok);
        ds4_ctx_free(ref);
        ds4_ctx_free(ctx);
        ds4_model_free(m);
        return 2;
    }
    ds4_lc_case all = ds4_lc_overall(&r);
    bool pass = all.kl_max <= max_kl && all.top1 >= min_top1 && (max_dlogit < 0 || all.max_dlogit <= max_dlogit) &&
                (max_kl_mean < 0 || all.kl_mean <= max_kl_mean) &&
                (!require_greedy || all.greedy_match == all.greedy_len);
    if (!quiet) {
        printf("model %s on %s, %d cases", model_path, ds4_ctx_backend(ctx), r.n_cases);
        if (ref) printf(", the reference on %s", ds4_ctx_backend(ref));
        printf("\n");
        printf("%-26s %6s %11s %10s %10s %10s %8s %8s %8s %9s\n", "case", "prompt", "max|dlogit|", "max|dlogp|",
               "KL mean", "KL max", "top1", "top20", "spearman", "greedy");
        for (int i = 0; i < r.n_cases; i++) print_row(&r.cases[i]);
        print_row(&all);
    }
    printf("%s: KL max %.3g (<= %g), top-1 %.2f%% (>= %.2f%%)", pass ? "PASS" : "FAIL", all.kl_max, max_kl,
           100 * all.top1, 100 * min_top1);
    if (max_kl_mean >= 0) printf(", KL mean %.3g (<= %g)", all.kl_mean, max_kl_mean);
    if (max_dlogit >= 0) printf(", max|dlogit| %.3g (<= %g)", all.max_dlogit, max_dlogit);
    if (require_greedy) printf(", greedy %d/%d", all.greedy_match, all.greedy_len);
    printf("\n");
    if ((csv && write_csv(&csv_out, model_path, &r) < 0) || (json && write_json(&json_out, model_path, &r, pass) < 0)) {
        fprintf(stderr, "ds4-logitcheck: %s\n", ds4_error());
        rc = -1;
    }
    if (csv_out.path) ds4_outfile_abort(&csv_out);
    if (json_out.path) ds4_outfile_abort(&json_out);
    ds4_lc_report_free(&r);
    ds4_tokenizer_free(tok);
    ds4_ctx_free(ref);
    ds4_ctx_free(ctx);
    ds4_model_free(m);
    return pass && rc == 0 ? 0 : 1;
}
