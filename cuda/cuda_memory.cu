/* cuda_memory.cu - see cuda_stages.h: device memory, copies between the host and the
 * device, the launch check, and the profile's timing marks; each first ends a graph
 * capture where what it does cannot be captured (cuda_graph.cu). */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_device.h"
#include "cuda_stages.h"

void ds4_cuda_end_capture(ds4_cuda *c) {
    if (c->capturing && ds4_cuda_graph_end(c, c->graph_err, sizeof c->graph_err) < 0) c->graph_failed = true;
}

/* The kept failure of a graph, into err (once). */
static int graph_failure(ds4_cuda *c, char *err, size_t cap) {
    if (!c->graph_failed) return 0;
    c->graph_failed = false;
    snprintf(err, cap, "%s", c->graph_err);
    return -1;
}

int ds4_cuda_grow(ds4_cuda *c, void **buf, size_t *cap, size_t bytes, char *err, size_t errcap) {
    if (bytes <= *cap) return 0;
    ds4_cuda_end_capture(c);
    cudaFree(*buf);
    *buf = NULL;
    *cap = 0;
    const cudaError_t e = cudaMalloc(buf, bytes);
    if (e != cudaSuccess) return fail(err, errcap, "work buffers", e);
    *cap = bytes;
    return 0;
}

void *ds4_cuda_grow_kept(ds4_cuda *c, void **buf, size_t *cap, size_t bytes) {
    if (ds4_cuda_grow(c, buf, cap, bytes, c->graph_err, sizeof c->graph_err) == 0) return *buf;
    c->graph_failed = true;
    return NULL;
}

extern "C" int ds4_cuda_mark(ds4_cuda *c, int i, char *err, size_t cap) {
    cudaError_t e = cudaSuccess;
    if (!c->marks) {
        if (!(c->marks = (cudaEvent_t *)calloc(DS4_CUDA_MARKS, sizeof *c->marks))) {
            snprintf(err, cap, "cuda: out of host memory");
            return -1;
        }
        for (int k = 0; k < DS4_CUDA_MARKS && e == cudaSuccess; k++) e = cudaEventCreate(&c->marks[k]);
    }
    if (e == cudaSuccess) e = cudaEventRecord(c->marks[i], c->stream);
    return e == cudaSuccess ? 0 : fail(err, cap, "a timing mark", e);
}

extern "C" double ds4_cuda_mark_seconds(ds4_cuda *c, int from, int to) {
    float ms = 0;
    if (cudaEventSynchronize(c->marks[to]) != cudaSuccess ||
        cudaEventElapsedTime(&ms, c->marks[from], c->marks[to]) != cudaSuccess)
        return 0;
    return ms / 1e3;
}

extern "C" void *ds4_cuda_malloc(ds4_cuda *c, uint64_t bytes, char *err, size_t cap) {
    ds4_cuda_end_capture(c);
    void *p = NULL;
    const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        size_t f = 0, t = 0;
        cudaGetLastError();
        cudaMemGetInfo(&f, &t);
        snprintf(err, cap, "cuda: %.2f GiB more device memory (%.2f GiB free): %s", (double)bytes / (1 << 30),
                 (double)f / (1 << 30), cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void ds4_cuda_free(ds4_cuda *c, void *p) {
    if (!p) return;
    ds4_cuda_end_capture(c);
    cudaFree(p);
}

extern "C" void ds4_cuda_to_device(ds4_cuda *c, void *dst, const void *host, uint64_t bytes) {
    if (!bytes) return;
    if (c->capturing) { /* the graph copies when it runs: from bytes that stay put */
        const void *staged = ds4_cuda_graph_stage(c, host, bytes);
        if (staged) {
            cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyHostToDevice, c->stream);
            return;
        }
        ds4_cuda_end_capture(c);
    }
    cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, c->stream);
}

extern "C" void ds4_cuda_copy(ds4_cuda *c, void *dst, const void *src, uint64_t bytes) {
    if (bytes) cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream);
}

extern "C" void ds4_cuda_set(ds4_cuda *c, void *dst, int ones, uint64_t bytes) {
    if (bytes) cudaMemsetAsync(dst, ones ? 0xff : 0, bytes, c->stream);
}

extern "C" int ds4_cuda_to_host(ds4_cuda *c, void *host, const void *src, uint64_t bytes, const char *what, char *err,
                                size_t cap) {
    if (ds4_cuda_graph_end(c, err, cap) < 0 || graph_failure(c, err, cap) < 0) return -1;
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && bytes) e = cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess) c->staging_used = 0; /* the device has read every staged upload */
    return e == cudaSuccess ? 0 : fail(err, cap, what, e);
}

extern "C" int ds4_cuda_check(ds4_cuda *c, const char *what, char *err, size_t cap) {
    if (graph_failure(c, err, cap) < 0) return -1;
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : fail(err, cap, what, e);
}
