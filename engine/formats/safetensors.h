/* safetensors.h - read Hugging Face safetensors checkpoints through mmap: a single
 * file, a directory of shards listed by model.safetensors.index.json, or a directory
 * of *.safetensors files. Headers are validated completely (dtypes, shapes, offsets
 * within the file, no overlaps, sizes consistent with shapes) before any tensor is
 * handed out; tensor data is never copied. */
#ifndef DS4_SAFETENSORS_H
#define DS4_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_F8_E4M3, ST_F8_E5M2, ST_F8_E8M0,
    ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8, ST_BOOL, ST_DTYPE_COUNT
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;
    st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    const uint8_t *data;
    uint32_t file; /* index of the shard that holds it */
} st_tensor;

typedef struct {
    char *path;
    ds4_mmap map;
} st_shard;

typedef struct st_model {
    st_shard *shards;
    uint32_t n_shards;
    st_tensor *tensors;
    uint64_t n_tensors;
    ds4_arena arena;
    ds4_strmap index;
} st_model;

/* Open a .safetensors file or a checkpoint directory. */
st_model *ds4_st_open(const char *path);
/* Parse one safetensors image in memory (for tests and fuzzing); not copied. */
st_model *ds4_st_parse(const void *data, size_t size, const char *label);
void ds4_st_close(st_model *m);

const st_tensor *ds4_st_find(const st_model *m, const char *name);
const char *ds4_st_dtype_name(st_dtype t);
size_t ds4_st_dtype_size(st_dtype t);
uint64_t ds4_st_nelements(const st_tensor *t);

#endif
