/* eyrie — GGUF v2/v3 reader (memory-mapped, bounds-checked).
 *
 * Every length, count and offset in the file is checked against the mapped
 * size before use; a malformed file gives EY_ERR_FORMAT with a detail
 * message, never a crash. Tensor data stays in the mapping. */
#ifndef EY_GGUF_H
#define EY_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/ey_err.h"
#include "../kernels/ey_dtype.h"

enum ey_gguf_type {
    EY_GGUF_U8 = 0, EY_GGUF_I8, EY_GGUF_U16, EY_GGUF_I16, EY_GGUF_U32, EY_GGUF_I32,
    EY_GGUF_F32, EY_GGUF_BOOL, EY_GGUF_STRING, EY_GGUF_ARRAY, EY_GGUF_U64, EY_GGUF_I64,
    EY_GGUF_F64, EY_GGUF__COUNT
};

/* Limits enforced while parsing (before any allocation they size). */
#define EY_GGUF_MAX_TENSORS 65536
#define EY_GGUF_MAX_KV 65536
#define EY_GGUF_MAX_NAME 256
#define EY_GGUF_MAX_DIMS 4

typedef struct ey_gguf_tensor {
    char name[EY_GGUF_MAX_NAME];
    ey_dtype type;
    int n_dims;
    int64_t ne[EY_GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension */
    const void *data;
    size_t bytes;
} ey_gguf_tensor;

typedef struct ey_gguf_kv {
    const char *key; /* not NUL-terminated */
    size_t key_len;
    uint32_t type;
    uint32_t arr_type; /* for arrays */
    uint64_t arr_n;
    const uint8_t *val; /* points at the value bytes (array: first element) */
} ey_gguf_kv;

typedef struct ey_gguf {
    uint32_t version;
    void *map;
    size_t size;
    bool owns_map; /* true when ey_gguf_open mapped it */
    int64_t n_kv;
    ey_gguf_kv *kv;
    int64_t n_tensors;
    ey_gguf_tensor *tensors;
    size_t alignment;
    size_t data_off;
} ey_gguf;

/* Parse a GGUF from memory (not owned) — used by tests and fuzzers. */
ey_err ey_gguf_parse(const void *data, size_t size, ey_gguf **out);
ey_err ey_gguf_open(const char *path, ey_gguf **out);
void ey_gguf_close(ey_gguf *g);

const ey_gguf_kv *ey_gguf_find(const ey_gguf *g, const char *key);
/* Integer of any integer type (or bool); false if absent or not an integer. */
bool ey_gguf_get_int(const ey_gguf *g, const char *key, int64_t *v);
bool ey_gguf_get_float(const ey_gguf *g, const char *key, double *v);
/* malloc'ed NUL-terminated copy; NULL if absent / not a string. */
char *ey_gguf_get_str(const ey_gguf *g, const char *key);
/* Array of strings as malloc'ed copies (*out[i] and *out freed by the caller
 * with ey_gguf_free_strs). */
ey_err ey_gguf_get_str_array(const ey_gguf *g, const char *key, char ***out, int64_t *n);
void ey_gguf_free_strs(char **s, int64_t n);
/* Array of integers converted to int32 (malloc'ed). */
ey_err ey_gguf_get_i32_array(const ey_gguf *g, const char *key, int32_t **out, int64_t *n);
const ey_gguf_tensor *ey_gguf_tensor_find(const ey_gguf *g, const char *name);

#endif
