/* backend.c - what backend.h defines beside the table: the activation-mode names and
 * the sizes of the chunk buffers. */
#include "backend.h"

#include <string.h>


uint64_t ds4_chunk_floats(const ds4_config *c, ds4_chunk_buf buf) {
    switch (buf) {
    case DS4_CHUNK_STREAMS: return (uint64_t)c->hc_mult * c->n_embd;
    case DS4_CHUNK_X:
    case DS4_CHUNK_Y: return c->n_embd;
    case DS4_CHUNK_Q: return (uint64_t)c->n_head * c->head_dim;
    case DS4_CHUNK_KV: return c->head_dim;
    }
    return 0;
}

int ds4_act_mode_from_name(const char *name) {
    return !strcmp(name, "auto") ? DS4_ACT_AUTO : !strcmp(name, "f32") ? DS4_ACT_F32 : !strcmp(name, "q8") ? DS4_ACT_Q8 : -1;
}
