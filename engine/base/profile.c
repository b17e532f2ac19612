/* profile.c - see profile.h. */
#include "profile.h"

#include <string.h>

#include "types.h"

bool ds4_profile_on;

static double stage_seconds[DS4_PROF_COUNT];
static uint64_t stage_calls[DS4_PROF_COUNT], stage_bytes[DS4_PROF_COUNT];
static ds4_prof_stage current;
static double type_seconds[GGML_TYPE_COUNT];
static uint64_t type_bytes[GGML_TYPE_COUNT], type_calls[GGML_TYPE_COUNT];
static uint64_t loops;

static const char *const stage_names[DS4_PROF_COUNT] = {
    "embed", "hc pre (mix, Sinkhorn, collapse)", "attention projections", "kv append (window, compressors)",
    "indexer (score, top-k)", "attend (softmax, sinks, output)", "hc post (streams update)", "ffn (router, experts)",
    "head",
};

void ds4_profile_enable(bool on) { ds4_profile_on = on; }

void ds4_profile_reset(void) {
    memset(stage_seconds, 0, sizeof stage_seconds);
    memset(stage_calls, 0, sizeof stage_calls);
    memset(stage_bytes, 0, sizeof stage_bytes);
    memset(type_seconds, 0, sizeof type_seconds);
    memset(type_bytes, 0, sizeof type_bytes);
    memset(type_calls, 0, sizeof type_calls);
    loops = 0;
}

double ds4_prof_begin_stage(ds4_prof_stage stage) {
    if (!ds4_profile_on) return 0;
    current = stage;
    return ds4_time_now();
}

void ds4_prof_end(ds4_prof_stage stage, double t0) {
    if (!ds4_profile_on) return;
    if (t0 >= 0) stage_seconds[stage] += ds4_time_now() - t0;
    stage_calls[stage]++;
}

void ds4_prof_stage_time(ds4_prof_stage stage, double seconds) {
    if (ds4_profile_on) stage_seconds[stage] += seconds;
}

void ds4_prof_product(ds4_prof_stage stage, uint32_t type, uint64_t bytes, double seconds) {
    if (!ds4_profile_on || type >= GGML_TYPE_COUNT) return;
    type_seconds[type] += seconds;
    type_bytes[type] += bytes;
    type_calls[type]++;
    stage_bytes[stage] += bytes;
}

void ds4_prof_matmul(uint32_t type, uint64_t bytes, double seconds) { ds4_prof_product(current, type, bytes, seconds); }

void ds4_prof_bytes(uint64_t bytes) {
    if (ds4_profile_on) stage_bytes[current] += bytes;
}

ds4_prof_stage ds4_prof_current(void) { return current; }

void ds4_prof_loop(void) {
    if (ds4_profile_on) loops++;
}

void ds4_profile_report(FILE *out, uint64_t tokens) {
    double total = 0;
    for (int s = 0; s < DS4_PROF_COUNT; s++) total += stage_seconds[s];
    const double per = tokens ? (double)tokens : 1;
    uint64_t all_bytes = 0;
    for (int s = 0; s < DS4_PROF_COUNT; s++) all_bytes += stage_bytes[s];
    fprintf(out, "%-34s %12s %7s %10s %12s %10s\n", "stage", tokens ? "ms/token" : "ms", "share", "calls",
            tokens ? "MB/token" : "MB", "GB/s");
    for (int s = 0; s < DS4_PROF_COUNT; s++)
        if (stage_calls[s])
            fprintf(out, "%-34s %12.3f %6.1f%% %10llu %12.2f %10.2f\n", stage_names[s], 1e3 * stage_seconds[s] / per,
                    total > 0 ? 100 * stage_seconds[s] / total : 0, (unsigned long long)stage_calls[s],
                    stage_bytes[s] / per / 1e6, stage_seconds[s] > 0 ? stage_bytes[s] / stage_seconds[s] / 1e9 : 0);
    fprintf(out, "%-34s %12.3f %6.1f%% %10llu %12.2f %10.2f  (calls: parallel loops)\n", "all stages",
            1e3 * total / per, 100.0, (unsigned long long)loops, all_bytes / per / 1e6,
            total > 0 ? all_bytes / total / 1e9 : 0);
    fprintf(out, "%-34s %12s %12s %10s %10s\n", "matrix products by weight type", "ms/token", "MB/token", "GB/s",
            "calls");
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++)
        if (type_calls[t])
            fprintf(out, "%-34s %12.3f %12.2f %10.2f %10llu\n", ds4_type_name(t), 1e3 * type_seconds[t] / per,
                    type_bytes[t] / per / 1e6, type_seconds[t] > 0 ? type_bytes[t] / type_seconds[t] / 1e9 : 0,
                    (unsigned long long)type_calls[t]);
}
