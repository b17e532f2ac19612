/* st_image.h - builds safetensors files for tests: tensors are added with their raw
 * bytes, then written with a header computed from them. */
#ifndef DS4_TEST_ST_IMAGE_H
#define DS4_TEST_ST_IMAGE_H

#include <stdint.h>
#include "util.h"

typedef struct {
    ds4_buf header, data;
    int count;
} st_image;

void st_image_add(st_image *im, const char *name, const char *dtype, int n_dims, const uint64_t *shape,
                  const void *bytes, size_t nbytes);
/* Full file bytes (u64 length + header + data) into out; frees the image. */
void st_image_finish(st_image *im, ds4_buf *out);
int st_image_write(st_image *im, const char *path);

#endif
