/* cuda_graph.cu - see ds4_cuda_graph_begin in cuda_stages.h: a stretch of a decode step
 * captured from the stream and launched as one CUDA graph. A kernel launched by the
 * host costs it about 4 us on the H200's host, and a decoded token is ~1,700 kernels
 * of a few microseconds each, so the host, not the device, set the pace; a captured
 * launch costs a fraction of that, and the graph runs its kernels back to back. Each
 * slot (a layer of the step) keeps its executable graph and updates it in place from
 * the next capture, which succeeds when only the kernels' arguments changed. */
#include <stdlib.h>
#include <string.h>

#include "cuda_device.h"
#include "cuda_stages.h"

#define STAGING_BYTES (4u << 20) /* pinned room for a step's uploads */

int ds4_cuda_graphs_init(ds4_cuda *c, char *err, size_t cap) {
    const char *off = getenv("DS4_CUDA_NO_GRAPHS");
    c->graphs = !(off && *off && strcmp(off, "0"));
    if (!c->graphs) return 0;
    const cudaError_t e = cudaHostAlloc((void **)&c->staging, STAGING_BYTES, cudaHostAllocDefault);
    if (e != cudaSuccess) return fail(err, cap, "pinned staging memory", e);
    c->staging_cap = STAGING_BYTES;
    return 0;
}

void ds4_cuda_graphs_free(ds4_cuda *c) {
    for (int s = 0; s < c->n_execs; s++)
        if (c->execs[s].exec) cudaGraphExecDestroy(c->execs[s].exec);
    free(c->execs);
    cudaFreeHost(c->staging);
}

extern "C" void ds4_cuda_graph_begin(ds4_cuda *c, int slot, int key) {
    if (!c->graphs || c->capturing || slot < 0) return;
    if (slot >= c->n_execs) {
        const int n = slot + 64;
        ds4_cuda_slot *grown = (ds4_cuda_slot *)realloc(c->execs, (size_t)n * sizeof *grown);
        if (!grown) return; /* runs uncaptured */
        memset(grown + c->n_execs, 0, (size_t)(n - c->n_execs) * sizeof *grown);
        c->execs = grown;
        c->n_execs = n;
    }
    if (cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    c->capturing = true;
    c->slot = slot;
    c->key = key;
}

extern "C" int ds4_cuda_graph_end(ds4_cuda *c, char *err, size_t cap) {
    if (!c->capturing) return 0;
    c->capturing = false;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    if (e != cudaSuccess) return fail(err, cap, "capturing a graph", e);
    ds4_cuda_slot *s = &c->execs[c->slot];
    size_t nodes = 0;
    e = cudaGraphGetNodes(graph, NULL, &nodes);
    /* an update can change only the kernels' arguments and sizes: tried when the capture
     * has as many nodes for as many rows as the last (a failed one leaves an API error
     * that compute-sanitizer reports) */
    if (e == cudaSuccess && s->exec && (s->nodes != nodes || s->key != c->key)) {
        cudaGraphExecDestroy(s->exec);
        s->exec = NULL;
    }
    if (e == cudaSuccess && s->exec) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(s->exec, graph, &info) != cudaSuccess) { /* another shape: made anew */
            cudaGetLastError();
            cudaGraphExecDestroy(s->exec);
            s->exec = NULL;
        }
    }
    if (e == cudaSuccess && !s->exec) {
        e = cudaGraphInstantiate(&s->exec, graph, 0);
        s->nodes = nodes;
        s->key = c->key;
    }
    if (e == cudaSuccess) e = cudaGraphLaunch(s->exec, c->stream);
    cudaGraphDestroy(graph);
    return e == cudaSuccess ? 0 : fail(err, cap, "launching a graph", e);
}

/* Host bytes a captured copy reads when the graph runs, so they must stay put until the
 * device has passed it: a pinned ring, reused only after the host waited for the device. */
const void *ds4_cuda_graph_stage(ds4_cuda *c, const void *host, uint64_t bytes) {
    const uint64_t at = (c->staging_used + 15) & ~(uint64_t)15;
    if (at + bytes > c->staging_cap) return NULL;
    memcpy(c->staging + at, host, bytes);
    c->staging_used = at + bytes;
    return c->staging + at;
}
