/* ds4-server - OpenAI- and Anthropic-compatible HTTP server (engine/serve/server.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../flags.h"
#include "model.h"
#include "server.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ds4-server -m M.gguf [options]\n"
            "  Serves the model over OpenAI's API (GET /v1/models, POST /v1/chat/completions,\n"
            "  POST /v1/completions) and Anthropic's (POST /v1/messages, /v1/messages/count_tokens),\n"
            "  streaming or not, with tool calls; GET /health. Requests run together (continuous\n"
            "  batching over --parallel sequences); the KV cache can live on disk across restarts.\n"
            "  -m, --model M.gguf       the model (with its tokenizer)\n"
            "  --backend NAME           cpu (default), cuda, metal: what this build has\n"
            "  --device N               which GPU (default 0)\n"
            "  -t, --threads N          CPU threads (default: all)\n"
            "  --host ADDR              address to listen on (default 127.0.0.1: this machine only)\n"
            "  --port N                 port (default 8000)\n"
            "  -c, --ctx N              tokens per request, prompt and reply (default 32768, at most\n"
            "                           the model's context); longer prompts get a 400, longer\n"
            "                           max_tokens are cut to what is left\n"
            "  --parallel N             requests decoded together (default 4)\n"
            "  --queue N                requests waiting for a slot before 429 (default 64)\n"
            "  --kv-disk-dir DIR        keep KV states in DIR, so shared prefixes and the next turn of\n"
            "                           a conversation are not prefilled again, even after a restart\n"
            "  --kv-disk-space-mb N     the directory's limit, least recently used out (default 4096)\n"
            "  --api-key KEY            require KEY (Authorization: Bearer KEY, or x-api-key: KEY)\n"
            "  --alias NAME             the model's name; requests must name it (default: any name,\n"
            "                           and the file's name is shown)\n"
            "  --metrics-csv FILE       a row per request (tokens, speeds, queue time)\n"
            "  --timeout S              seconds a client may take to send its request (default 30)\n"
            "  --max-body-mb N          the largest request body (default 16)\n"
            "  SIGTERM / SIGINT: stop accepting, finish or cancel what runs (states saved), exit 0.\n" EXIT_STATUS_HELP);
}

static volatile int stop_requested;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL;
    ds4_server_opts o = {.stop = &stop_requested};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--version")) return tool_version("ds4-server");
        if (a[0] != '-') return tool_unknown_option("ds4-server", a);
        if (!v) return tool_missing_value("ds4-server", a);
        i++;
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port")) o.port = (int)flag_integer("ds4-server", a, v, 1, 65535);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) o.n_ctx = (uint64_t)flag_integer("ds4-server", a, v, 2, INT_MAX);
        else if (!strcmp(a, "--parallel")) o.parallel = (int)flag_integer("ds4-server", a, v, 1, 1024);
        else if (!strcmp(a, "--queue")) o.queue = (int)flag_integer("ds4-server", a, v, 1, 65536);
        else if (!strcmp(a, "--kv-disk-dir")) o.kv_dir = v;
        else if (!strcmp(a, "--kv-disk-space-mb"))
            o.kv_space_bytes = (uint64_t)flag_integer("ds4-server", a, v, 1, 1L << 30) << 20;
        else if (!strcmp(a, "--api-key")) o.api_key = v;
        else if (!strcmp(a, "--alias")) o.alias = v;
        else if (!strcmp(a, "--metrics-csv")) o.metrics_csv = v;
        else if (!strcmp(a, "--timeout")) o.read_timeout = (int)flag_integer("ds4-server", a, v, 1, 3600);
        else if (!strcmp(a, "--max-body-mb"))
            o.max_body_bytes = (uint64_t)flag_integer("ds4-server", a, v, 1, 4096) << 20;
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t"))
            o.ctx.n_threads = (int)flag_integer("ds4-server", a, v, 1, 512);
        else if (flag_ctx("ds4-server", a, v, &o.ctx)) continue;
        else return tool_unknown_option("ds4-server", a);
    }
    if (!model_path) {
        fprintf(stderr, "ds4-server: give the model with -m (ds4-server --help lists the options)\n");
        return 2;
    }
    ds4_model *m = ds4_model_load(model_path);
    if (!m) {
        fprintf(stderr, "ds4-server: %s\n", ds4_error());
        return 2;
    }
    ds4_tokenizer *tok = ds4_tokenizer_from_gguf(m->gguf); /* the server takes text */
    if (!tok) {
        fprintf(stderr, "ds4-server: %s\n", ds4_error());
        ds4_model_free(m);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    const char *base = strrchr(model_path, '/');
    const int rc = ds4_server_run(m, tok, base ? base + 1 : model_path, &o);
    if (rc < 0) fprintf(stderr, "ds4-server: %s\n", ds4_error());
    ds4_tokenizer_free(tok);
    ds4_model_free(m);
    return rc < 0 ? 1 : 0;
}
