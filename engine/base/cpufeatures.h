/* cpufeatures.h - what the processor we run on can do, detected once at run time, so one
 * x86-64-v2 binary can pick AVX2 or AVX-512 kernels where they exist. Setting the
 * environment variable DS4_CPU=scalar|avx2|avx512 caps the level (for tests and for
 * comparing paths). */
#ifndef DS4_CPUFEATURES_H
#define DS4_CPUFEATURES_H

typedef enum { DS4_CPU_SCALAR = 0, DS4_CPU_AVX2 = 1, DS4_CPU_AVX512 = 2 } ds4_cpu_level;

ds4_cpu_level ds4_cpu_detect(void); /* cached after the first call */
const char *ds4_cpu_level_name(ds4_cpu_level level);

#endif
