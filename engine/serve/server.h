/* server.h - ds4-server: OpenAI's and Anthropic's HTTP APIs (api.h) over one context of
 * `parallel` sequences, served by continuous batching (scheduler.h): every request in
 * flight advances one token (or a piece of its prompt) per step of one worker thread.
 * Connections get a thread each (libmicrohttpd); a request waits in a bounded queue for
 * a free sequence, a client that goes away cancels its sequence, and streams carry
 * keep-alive comments while a long prompt is prefilled. KV states go to a disk cache
 * (kvcache_disk.h) after a prompt, at the end of a reply and when a request is
 * cancelled, so the next turn of a conversation, even after a restart, prefills only
 * what is new. SIGTERM or SIGINT: stop accepting, let what runs finish (cancelling, with
 * its state saved, what has not after a few seconds) and return 0. */
#ifndef DS4_SERVER_H
#define DS4_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"
#include "tokenizer.h"

typedef struct {
    const char *host;          /* NULL: 127.0.0.1 */
    int port;                  /* 0: 8000 */
    uint64_t n_ctx;            /* tokens a request may hold, prompt and reply (0: 32768, at most
                                  the model's context) */
    int parallel;              /* sequences decoded together (0: 4) */
    int queue;                 /* requests waiting for a sequence (0: 64) */
    const char *kv_dir;        /* disk KV cache (NULL: in memory only) */
    uint64_t kv_space_bytes;   /* its limit (0: 4 GiB) */
    const char *api_key;       /* NULL: any key or none */
    const char *alias;         /* the model's name; NULL: any name is accepted, the file's is shown */
    const char *metrics_csv;   /* a CSV row per request (NULL: none) */
    int read_timeout;          /* seconds a client may take to send a request (0: 30) */
    uint64_t max_body_bytes;   /* 0: 16 MiB */
    ds4_ctx_opts ctx;          /* backend, threads (n_seq and kv_capacity are set here) */
    volatile int *stop;        /* the caller's signal flag: the server ends when it is set */
} ds4_server_opts;

/* Serve until *o->stop is set. 0 after a clean stop; -1 with the error set when the
 * server cannot start (the port is taken, the model does not fit the context asked). */
int ds4_server_run(const ds4_model *m, const ds4_tokenizer *tok, const char *model_name, const ds4_server_opts *o);

#endif
