/* registry.c - the backends compiled into this build (backend.h: ds4_backend_find). The
 * one file outside a backend's folder that names it. */
#include "backend.h"

#include <string.h>

#include "cpu_backend.h"
#include "util.h"

/* Compiled in, first the default. */
static const ds4_backend_ops *const compiled[] = {&ds4_cpu_backend};
/* Every backend the project has or plans, so a build without one says so. */
static const char *const known[] = {"cpu", "cuda", "metal"};

const ds4_backend_ops *ds4_backend_find(const char *name, bool *not_built) {
    if (not_built) *not_built = false;
    if (!name) return compiled[0];
    for (size_t i = 0; i < sizeof compiled / sizeof compiled[0]; i++)
        if (!strcmp(compiled[i]->name, name)) return compiled[i];
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
        for (size_t i = 0; i < sizeof compiled / sizeof compiled[0]; i++) {
            if (i) strcat(names, ", ");
            strcat(names, compiled[i]->name);
        }
    return names;
}

