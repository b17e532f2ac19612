/* cpufeatures.c - see cpufeatures.h. */
#include "cpufeatures.h"

#include <stdbool.h>

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#if defined(__x86_64__)
/* F16C through CPUID (leaf 1, ECX bit 29): not every compiler's builtin knows it. */
static bool has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

static ds4_cpu_level hardware_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && has_f16c() &&
        __builtin_cpu_supports("fma"))
        return DS4_CPU_AVX512;
    if (__builtin_cpu_supports("avx2") && has_f16c() &&
        __builtin_cpu_supports("fma"))
        return DS4_CPU_AVX2;
#endif
    return DS4_CPU_SCALAR;
}

ds4_cpu_level ds4_cpu_detect(void) {
    static int cached = -1;
    if (cached >= 0) return (ds4_cpu_level)cached;
    ds4_cpu_level level = hardware_level();
    const char *cap = getenv("DS4_CPU");
    if (cap) {
        ds4_cpu_level want = !strcmp(cap, "scalar") ? DS4_CPU_SCALAR
                             : !strcmp(cap, "avx2") ? DS4_CPU_AVX2
                                                    : DS4_CPU_AVX512;
        if (want < level) level = want;
    }
    cached = (int)level;
    return level;
}

const char *ds4_cpu_level_name(ds4_cpu_level level) {
    switch (level) {
    case DS4_CPU_AVX512: return "avx512";
    case DS4_CPU_AVX2: return "avx2";
    default: return "scalar";
    }
}
