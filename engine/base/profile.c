/* profile.c - see profile.h. */
#include "profile.h"

#include <string.h>

#include "types.h"

bool ds4_profile_on;

static double stage_seconds[DS4_PROF_COUNT];
static uint64_t stage_calls[DS4_PROF_COUNT];
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
    memset(type_seconds, 0, sizeof type_seconds);
    memset(type_bytes, 0, sizeof type_bytes);
    memset(type_calls, 0, sizeof type_calls);
    loops = 0;
}

void ds4_prof_end(ds4_prof_stage stage, double t0) {
    if (!ds4_profile_on) return;
    stage_seconds[stage] += ds4_time_now() - t0;
    stage_calls[stage]++;
}

void ds4_prof_matmul(uint32_t type, uint64_t bytes, double seconds) {
    if (!ds4_profile_on || type >= GGML_TYPE_COUNT) return;
    type_seconds[type] += seconds;
    type_bytes[type] += bytes;
    type_calls[type]++;
}

void ds4_prof_loop(void) {
    if (ds4_profile_on) loops++;
}

void ds4_profile_report(FILE *out, uint64_t tokens) {
    double total = 0;
    for (int s = 0; s < DS4_PROF_COUNT; s++) total += stage_seconds[s];
    const double per = tokens ? (double)tokens : 1;
    fprintf(out, "%-34s %12s %7s %10s\n", "stage", tokens ? "ms/token" : "ms", "share", "calls");
    for (int s = 0; s < DS4_PROF_COUNT; s++)
        if (stage_calls[s])
            fprintf(out, "%-34s %12.3f %6.1f%% %10llu\n", stage_names[s], 1e3 * stage_seconds[s] / per,
                    total > 0 ? 100 * stage_seconds[s] / total : 0, (unsigned long long)stage_calls[s]);
    fprintf(out, "%-34s %12.3f %6.1f%% %10llu parallel loops\n", "all stages", 1e3 * total / per, 100.0,
            (unsigned long long)loops);
    fprintf(out, "%-34s %12s %12s %10s %10s\n", "matrix products by weight type", "ms/token", "MB/token", "GB/s",
            "calls");
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++)
        if (type_calls[t])
            fprintf(out, "%-34s %12.3f %12.2f %10.2f %10llu\n", ds4_type_name(t), 1e3 * type_seconds[t] / per,
                    type_bytes[t] / per / 1e6, type_seconds[t] > 0 ? type_bytes[t] / type_seconds[t] / 1e9 : 0,
                    (unsigned long long)type_calls[t]);
}
