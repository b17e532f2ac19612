/* ds4-logitcheck - run reference vectors through the engine and judge the logits. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "logitcheck.h"
#include "model.h"
#include "util.h"
#include "../flags.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ds4-logitcheck --model M.gguf --vectors DIR|FILE [--vectors ...] [--threads N]\n"
            "                      [--csv out.csv] [--json out.json] [--max-dlogit X] [--max-kl X]\n"
            "                      [--max-kl-mean X] [--min-top1 F] [--require-greedy]\n"
            "                      [--backend NAME] [--act auto|f32|q8] [--quiet]\n"
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

int main(int argc, char **argv) {
    const char *model_path = NULL, *csv = NULL, *json = NULL, *vectors[64];
    int n_vectors = 0;
    ds4_ctx_opts opts = {0};
    double max_dlogit = -1, max_kl = 1e-3, max_kl_mean = -1, min_top1 = 0.99;
    bool require_greedy = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--version")) return tool_version("ds4-logitcheck");
        if (!strcmp(a, "--require-greedy")) { require_greedy = true; continue; }
        if (!strcmp(a, "--quiet")) { quiet = true; continue; }
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
        else if (!strcmp(a, "--min-top1")) min_top1 = flag_number("ds4-logitcheck", a, v, 0, 1);
        else if (flag_ctx("ds4-logitcheck", a, v, &opts)) continue;
        else return tool_unknown_option("ds4-logitcheck", a);
    }
    if (!model_path || !n_vectors) {
        fprintf(stderr, "ds4-logitcheck: --model and --vectors are required\n");
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
    ds4_ctx *ctx = ds4_ctx_new(m, &opts);
    /* Text prompts and API captures need the model's tokenizer; id vectors do not. */
    ds4_tokenizer *tok = ds4_tokenizer_if_any(m->gguf);
    ds4_lc_report r = {0};
    int rc = ctx ? 0 : -1;
    for (int i = 0; i < n_vectors && rc == 0; i++) rc = ds4_logitcheck_path(ctx, tok, vectors[i], &r);
    if (rc < 0) {
        fprintf(stderr, "ds4-logitcheck: %s\n", ds4_error());
        if (csv_out.path) ds4_outfile_abort(&csv_out);
        if (json_out.path) ds4_outfile_abort(&json_out);
        ds4_lc_report_free(&r);
        ds4_tokenizer_free(tok);
        ds4_ctx_free(ctx);
        ds4_model_free(m);
        return 2;
    }
    ds4_lc_case all = ds4_lc_overall(&r);
    bool pass = all.kl_max <= max_kl && all.top1 >= min_top1 && (max_dlogit < 0 || all.max_dlogit <= max_dlogit) &&
                (max_kl_mean < 0 || all.kl_mean <= max_kl_mean) &&
                (!require_greedy || all.greedy_match == all.greedy_len);
    if (!quiet) {
        printf("model %s on %s, %d cases\n", model_path, ds4_ctx_backend(ctx), r.n_cases);
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
    ds4_ctx_free(ctx);
    ds4_model_free(m);
    return pass && rc == 0 ? 0 : 1;
}
