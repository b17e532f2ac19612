/* cuda_backend.h - the CUDA backend: every weight uploaded once into device memory, every
 * stage of the table run there on the chunk's activations, and each sequence's KV state
 * kept there (copied to and from kvstate.h's layout by state_get/state_set), so only the
 * token ids go in and the logits come out. The kernels are correctness-first (F32
 * arithmetic against the CPU's stage by stage, fixed summation orders); speed is the
 * next step of issue 16. Only the registry names it. */
#ifndef DS4_CUDA_BACKEND_H
#define DS4_CUDA_BACKEND_H

#include "backend.h"

const ds4_backend_ops *ds4_cuda_backend(void);

#endif
