/* cpu_backend.h - the CPU backend (x86-64 scalar, AVX2, AVX-512; threads): the reference
 * every other backend is held to, stage by stage. Only the registry names it, and the
 * CUDA backend, which runs its stages around matrix products on the GPU. */
#ifndef DS4_CPU_BACKEND_H
#define DS4_CPU_BACKEND_H

#include "backend.h"
#include "matmul.h"

extern const ds4_backend_ops ds4_cpu_backend;

/* The CPU backend with its matrix products run by `offload` (kept by the caller, alive
 * until close); `name` leads its description ("cuda-H200" gives "cuda-H200+cpu-avx512"). */
int ds4_cpu_backend_open_offload(const ds4_model *m, const ds4_ctx_opts *o, const ds4_matmul_offload *offload,
                                 const char *name, ds4_backend **out);
/* The offload a backend was opened with (NULL: none). */
const ds4_matmul_offload *ds4_cpu_backend_offload(const ds4_backend *b);

#endif
