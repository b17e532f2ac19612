/* gguf.h - GGUF files: a zero-copy reader (v2 and v3) and a streaming writer (v3).
 *
 * The reader maps the file and validates all of it before returning: every count,
 * length and offset is checked against the file size, so a hostile or truncated file
 * yields one clear error line ("FILE: problem") and never an out-of-bounds read.
 * Tensor data is never copied; gguf_tensor.data points into the mapping.
 *
 * The writer streams: metadata and tensor infos are declared first, the header is
 * written, then tensor data is appended in declaration order. The file is built under
 * a temporary name and renamed into place by ds4_gguf_writer_finish(). */
#ifndef DS4_GGUF_H
#define DS4_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

enum gguf_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12, GGUF_TYPE_COUNT = 13
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 64 /* ggml's limit, including the terminating NUL */

typedef struct { const char *ptr; uint64_t len; } gguf_str;

typedef struct gguf_value {
    uint32_t type;
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        float f32; bool b; uint64_t u64; int64_t i64; double f64;
        gguf_str str;
        struct {
            uint32_t type;                  /* element type */
            uint64_t n;
            const void *data;               /* scalar elements: packed little-endian */
            const struct gguf_value *items; /* string or array elements */
        } arr;
    };
} gguf_value;

typedef struct {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct {
    const char *name; /* NUL-terminated */
    uint32_t type;    /* ggml type */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint64_t offset;            /* relative to the data section */
    uint64_t size;              /* bytes */
    const void *data;
} gguf_tensor;

typedef struct gguf_file {
    char *path;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint64_t data_offset; /* start of the tensor data section in the file */
    const uint8_t *base;
    size_t size;
    ds4_mmap map;
    ds4_arena arena;
    ds4_strmap key_index, tensor_index;
} gguf_file;

gguf_file *ds4_gguf_open(const char *path);
/* Parse a GGUF image already in memory (not copied; must outlive the result).
 * `label` names it in error messages. */
gguf_file *ds4_gguf_parse(const void *data, size_t size, const char *label);
void ds4_gguf_close(gguf_file *f);

const gguf_value *ds4_gguf_get(const gguf_file *f, const char *key);
const gguf_tensor *ds4_gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed lookups. They return false if the key is absent or of an incompatible type
 * (integers convert between widths when the value fits). */
bool ds4_gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
bool ds4_gguf_get_f64(const gguf_file *f, const char *key, double *out);
bool ds4_gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool ds4_gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
bool ds4_gguf_value_to_f64(const gguf_value *v, double *out);
/* Element i of an array of numbers, converted; false if out of range or not numeric. */
bool ds4_gguf_arr_f64(const gguf_value *arr, uint64_t i, double *out);
bool ds4_gguf_arr_u64(const gguf_value *arr, uint64_t i, uint64_t *out);

const char *ds4_gguf_type_name(uint32_t type);
size_t ds4_gguf_type_size(uint32_t type); /* 0 for string/array/unknown */
bool ds4_gguf_str_eq(gguf_str s, const char *cstr);
uint64_t ds4_gguf_tensor_nelements(const gguf_tensor *t);

/* ---- writer ---- */

typedef struct gguf_writer gguf_writer;

gguf_writer *ds4_gguf_writer_open(const char *path);
int ds4_gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment);
/* Metadata. Keys must be unique; the value is copied. */
int ds4_gguf_writer_kv(gguf_writer *w, const char *key, const gguf_value *v);
int ds4_gguf_writer_kv_u32(gguf_writer *w, const char *key, uint32_t v);
int ds4_gguf_writer_kv_i32(gguf_writer *w, const char *key, int32_t v);
int ds4_gguf_writer_kv_u64(gguf_writer *w, const char *key, uint64_t v);
int ds4_gguf_writer_kv_f32(gguf_writer *w, const char *key, float v);
int ds4_gguf_writer_kv_bool(gguf_writer *w, const char *key, bool v);
int ds4_gguf_writer_kv_str(gguf_writer *w, const char *key, const char *v);
/* Array of scalars given as a packed little-endian buffer of n elements of elem_type. */
int ds4_gguf_writer_kv_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
int ds4_gguf_writer_kv_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Tensor declarations, in the order their data will follow. */
int ds4_gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne);
/* Append bytes of the current tensor; a tensor may arrive in several pieces. */
int ds4_gguf_writer_write(gguf_writer *w, const void *data, size_t n);
/* n bytes of tensor data left as a hole (ds4_outfile_skip): data made elsewhere. */
int ds4_gguf_writer_skip(gguf_writer *w, uint64_t n);
/* Check every tensor got exactly its size, fsync and rename into place; frees w. */
int ds4_gguf_writer_finish(gguf_writer *w);
/* Discard the temporary file; frees w. */
void ds4_gguf_writer_abort(gguf_writer *w);

#endif

/* ---- inspection (gguf_inspect.c) ---- */

/* Render a value for humans: strings quoted and escaped, arrays abbreviated after
 * max_items elements. Always NUL-terminates buf. */
void ds4_gguf_value_format(const gguf_value *v, char *buf, size_t size, size_t max_items);
bool ds4_gguf_value_equal(const gguf_value *a, const gguf_value *b);
/* Print the header, metadata and tensor table (like gguf-dump). */
void ds4_gguf_print_info(const gguf_file *f, FILE *out, bool show_tensors, size_t max_items);
/* Print the differences between two files; returns how many were found. Keys listed
 * in ignore_keys (NULL-terminated) are not compared. */
uint64_t ds4_gguf_print_diff(const gguf_file *a, const gguf_file *b, const char *const *ignore_keys, FILE *out);
