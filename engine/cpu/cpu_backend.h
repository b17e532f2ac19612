/* cpu_backend.h - the CPU backend (x86-64 scalar, AVX2, AVX-512; threads): the reference
 * every other backend is held to, stage by stage. Only backend.c names it. */
#ifndef DS4_CPU_BACKEND_H
#define DS4_CPU_BACKEND_H

#include "backend.h"

extern const ds4_backend_ops ds4_cpu_backend;

#endif
