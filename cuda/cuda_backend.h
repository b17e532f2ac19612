/* cuda_backend.h - the CUDA backend, as far as it goes today: every weight uploaded once
 * into device memory, every matrix product (all weight types) run there, and the MoE
 * feed-forward of decode-sized chunks (up to 16 tokens) run there whole; the CPU backend
 * computes the other stages around them (so activations cross PCIe per product). The
 * stages move onto the device one by one next (issue 16); the table stays the same.
 * Only the registry names it. */
#ifndef DS4_CUDA_BACKEND_H
#define DS4_CUDA_BACKEND_H

#include "backend.h"

/* The table (built once from the CPU's, with open, close and the probe its own). */
const ds4_backend_ops *ds4_cuda_backend(void);

#endif
