/* state.c - see state.h. */
#include "state.h"

#include <stdlib.h>

#include "kvfile.h"

int ds4_kv_encode(ds4_ctx *ctx, const int32_t *tokens, uint64_t n, ds4_buf *out) {
    const ds4_model *m = ds4_ctx_model(ctx);
    ds4_kv_snapshot s;
    if (ds4_model_kv_snapshot(m, &s) < 0) return -1;
    int rc = ds4_ctx_state_get(ctx, &s);
    if (rc == 0) rc = ds4_kvfile_encode(&s, ds4_model_fingerprint(m), tokens, n, out);
    ds4_kv_snapshot_free(&s);
    return rc;
}

int ds4_kv_save(ds4_ctx *ctx, const int32_t *tokens, uint64_t n, const char *path) {
    ds4_buf file = {0};
    int rc = ds4_kv_encode(ctx, tokens, n, &file);
    if (rc == 0) rc = ds4_write_file_atomic(path, file.data, file.len);
    ds4_buf_free(&file);
    return rc;
}

int ds4_kv_decode(ds4_ctx *ctx, const void *data, size_t len, const char *path, int32_t **tokens, uint64_t *n) {
    const ds4_model *m = ds4_ctx_model(ctx);
    ds4_kv_snapshot s;
    *tokens = NULL;
    ds4_ctx_reset(ctx);
    if (ds4_model_kv_snapshot(m, &s) < 0) return -1;
    int rc = ds4_kvfile_decode(data, len, path, ds4_model_fingerprint(m), m->cfg.n_vocab, &s, tokens, n);
    if (rc == 0 && (rc = ds4_ctx_state_set(ctx, &s)) < 0) {
        free(*tokens);
        *tokens = NULL;
    }
    ds4_kv_snapshot_free(&s);
    return rc;
}

int ds4_kv_load(ds4_ctx *ctx, const char *path, int32_t **tokens, uint64_t *n) {
    size_t len;
    char *data = ds4_read_file(path, &len);
    *tokens = NULL;
    if (!data) {
        ds4_ctx_reset(ctx);
        return -1;
    }
    const int rc = ds4_kv_decode(ctx, data, len, path, tokens, n);
    free(data);
    return rc;
}

int ds4_kv_peek(const char *path, const ds4_model *m, uint64_t *n_tokens) {
    return ds4_kvfile_peek(path, ds4_model_fingerprint(m), n_tokens);
}
