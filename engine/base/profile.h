/* profile.h - where the time of a forward pass goes, when asked (ds4-bench --profile):
 * seconds per stage of the schedule with the weight bytes it read (so its GB/s), and per
 * weight type the bytes the matrix products read and the seconds they took, and how many
 * parallel loops ran. Off, it costs a branch per stage. Counted on the thread that runs the forward
 * pass: one context at a time. */
#ifndef DS4_PROFILE_H
#define DS4_PROFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

typedef enum { /* the stages of the schedule (backend.h) */
    DS4_PROF_EMBED,       /* token embedding rows */
    DS4_PROF_HC_PRE,      /* hyper-connection mixing, Sinkhorn, collapse, norm */
    DS4_PROF_ATTN_PROJ,   /* attention projections: Q (low rank), KV, compressor and indexer inputs */
    DS4_PROF_KV_APPEND,   /* window and compressor state updates */
    DS4_PROF_INDEXER,     /* lightning indexer scoring and top-k */
    DS4_PROF_ATTEND,      /* softmax over the keys with sinks, inverse RoPE, output projection */
    DS4_PROF_HC_POST,     /* the sublayer's output back into the streams */
    DS4_PROF_FFN,         /* router, shared and routed experts */
    DS4_PROF_HEAD,        /* hyper-head, final norm, LM head */
    DS4_PROF_COUNT
} ds4_prof_stage;

extern bool ds4_profile_on;

void ds4_profile_enable(bool on);
void ds4_profile_reset(void);
/* The schedule around each stage: begin makes it the stage that products and bytes are
 * counted to; end counts the call and, unless t0 < 0 (a backend that times its stages
 * itself), adds the wall time since t0. */
double ds4_prof_begin_stage(ds4_prof_stage stage);
void ds4_prof_end(ds4_prof_stage stage, double t0);
/* A backend that runs its stages asynchronously (CUDA) times them on the device and adds
 * each stage's seconds here. */
void ds4_prof_stage_time(ds4_prof_stage stage, double seconds);
/* A matrix product over a weight of `type` that read `bytes` of it in `seconds`, in the
 * current stage (ds4_prof_product: in `stage`, for times known later). */
void ds4_prof_matmul(uint32_t type, uint64_t bytes, double seconds);
void ds4_prof_product(ds4_prof_stage stage, uint32_t type, uint64_t bytes, double seconds);
/* Weight bytes the current stage read outside the products (a device's MoE). */
void ds4_prof_bytes(uint64_t bytes);
/* The stage the schedule is in. */
ds4_prof_stage ds4_prof_current(void);
void ds4_prof_loop(void); /* one parallel loop started */
/* The table since the last reset, per decoded token when tokens > 0. */
void ds4_profile_report(FILE *out, uint64_t tokens);

static inline double ds4_prof_begin(void) { return ds4_profile_on ? ds4_time_now() : 0; }

#endif
