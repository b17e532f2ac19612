/* st_image.c - see st_image.h. */
#include "st_image.h"

#include <stdio.h>
#include <string.h>

void st_image_add(st_image *im, const char *name, const char *dtype, int n_dims, const uint64_t *shape,
                  const void *bytes, size_t nbytes) {
    char entry[1024];
    int o = snprintf(entry, sizeof entry, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", im->count ? "," : "", name, dtype);
    for (int d = 0; d < n_dims; d++) o += snprintf(entry + o, sizeof entry - o, "%s%llu", d ? "," : "", (unsigned long long)shape[d]);
    snprintf(entry + o, sizeof entry - o, "],\"data_offsets\":[%zu,%zu]}", im->data.len, im->data.len + nbytes);
    if (!im->count) ds4_buf_append(&im->header, "{", 1);
    ds4_buf_append(&im->header, entry, strlen(entry));
    ds4_buf_append(&im->data, bytes, nbytes);
    im->count++;
}

void st_image_finish(st_image *im, ds4_buf *out) {
    if (!im->count) ds4_buf_append(&im->header, "{", 1);
    ds4_buf_append(&im->header, "}", 1);
    while (im->header.len % 8) ds4_buf_append(&im->header, " ", 1);
    uint64_t n = im->header.len;
    ds4_buf_append(out, &n, 8);
    ds4_buf_append(out, im->header.data, im->header.len);
    ds4_buf_append(out, im->data.data, im->data.len);
    ds4_buf_free(&im->header);
    ds4_buf_free(&im->data);
    im->count = 0;
}

int st_image_write(st_image *im, const char *path) {
    ds4_buf b = {0};
    st_image_finish(im, &b);
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(b.data, 1, b.len, f) == b.len ? 0 : -1;
    if (f) fclose(f);
    ds4_buf_free(&b);
    return rc;
}
