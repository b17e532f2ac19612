/* registry.c - the backends compiled into this build (backend.h: ds4_backend_find). The
 * one file outside a backend's folder that names it. */
#include "backend.h"

#include <string.h>

#include "cpu_backend.h"
#ifdef DS4_CUDA
#include "cuda_backend.h"
#endif
#include "util.h"

/* The i-th backend compiled in, the default first; NULL past the last. */
static const ds4_backend_ops *compiled(size_t i) {
    if (i == 0) return &ds4_cpu_backend;
#ifdef DS4_CUDA
    if (i == 1) return ds4_cuda_backend();
#endif
    return NULL;
}
/* Every backend the project has or plans, so a build without one says so. */
static const char *const known[] = {"cpu", "cuda", "metal"};

const ds4_backend_ops *ds4_backend_find(const char *name, bool *not_built) {
    if (not_built) *not_built = false;
    if (!name) return compiled(0);
    for (size_t i = 0; compiled(i); i++)
        if (!strcmp(compiled(i)->name, name)) return compiled(i);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(known[i], name)) {
            if (not_built) *not_built = true;
            ds4_fail("%s: not in this build (built: %s)", name, ds4_backend_names());
            return NULL;
        }
    ds4_fail("unknown backend '%s' (built: %s)", name, ds4_backend_names());
    return NULL;
}

const char *ds4_backend_names(void) {
    static char names[64];
    if (!names[0])
        for (size_t i = 0; compiled(i); i++) {
            if (i) strcat(names, ", ");
            strcat(names, compiled(i)->name);
        }
    return names;
}

