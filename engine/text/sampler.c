/* sampler.c - see sampler.h. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

void ds4_sampler_init(ds4_sampler *s, float temperature, float top_p, uint64_t seed) {
    s->temperature = temperature;
    s->top_p = top_p > 0 && top_p <= 1 ? top_p : 1.0f;
    s->state = seed ^ 0x9e3779b97f4a7c15ull;
}

static double next_uniform(ds4_sampler *s) { /* splitmix64 -> [0, 1) */
    uint64_t z = (s->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

/* qsort_r's comparison: ids by probability, most likely first, then by id. */
static int by_prob_desc(const void *a, const void *b, void *probs) {
    const float *p = probs;
    float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
    return x < y ? 1 : x > y ? -1 : (*(const int32_t *)a - *(const int32_t *)b);
}

int32_t ds4_sample(ds4_sampler *s, const float *logits, uint32_t n, float *p, int32_t *idx) {
    int32_t best = 0;
    for (uint32_t v = 1; v < n; v++)
        if (logits[v] > logits[best]) best = (int32_t)v;
    if (s->temperature <= 0) return best;
    const float inv_t = 1.0f / s->temperature;
    double sum = 0;
    for (uint32_t v = 0; v < n; v++) sum += (p[v] = expf((logits[v] - logits[best]) * inv_t));
    if (s->top_p >= 1.0f) {
        /* the whole vocabulary: draw against the unnormalised weights, in id order */
        double r = next_uniform(s) * sum;
        for (uint32_t v = 0; v < n; v++)
            if ((r -= p[v]) <= 0) return (int32_t)v;
        return best;
    }
    /* Nucleus: the smallest set of most likely tokens whose mass reaches top_p. */
    for (uint32_t v = 0; v < n; v++) {
        p[v] = (float)(p[v] / sum);
        idx[v] = (int32_t)v;
    }
    qsort_r(idx, n, sizeof *idx, by_prob_desc, p);
    uint32_t keep = 0;
    double mass = 0;
    for (; keep < n && mass < s->top_p; keep++) mass += p[idx[keep]];
    double r = next_uniform(s) * mass;
    for (uint32_t k = 0; k < keep; k++) {
        r -= p[idx[k]];
        if (r <= 0) return idx[k];
    }
    return idx[keep - 1];
}
