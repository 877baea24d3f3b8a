/* eyrie — Hugging Face safetensors reader (single file or sharded index).
 *
 * The 8-byte header length and the JSON header are checked against the file
 * size and EY_ST_MAX_HEADER before anything is allocated; every tensor's
 * byte range must lie inside the data section and match dtype x shape. */
#ifndef EY_SAFETENSORS_H
#define EY_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/ey_err.h"
#include "../kernels/ey_dtype.h"

#define EY_ST_MAX_HEADER (64u << 20) /* 64 MiB of JSON header at most */
#define EY_ST_MAX_SHARDS 1024
#define EY_ST_MAX_DIMS 4

typedef struct ey_st_tensor {
    char *name;
    ey_dtype type;
    int n_dims;
    int64_t shape[EY_ST_MAX_DIMS]; /* row-major: shape[n_dims-1] contiguous */
    const void *data;
    size_t bytes;
} ey_st_tensor;

typedef struct ey_st_file {
    void *map;
    size_t size;
} ey_st_file;

typedef struct ey_safetensors {
    int n_files;
    ey_st_file *files;
    int64_t n_tensors;
    ey_st_tensor *tensors;
} ey_safetensors;

/* Parse one safetensors image from memory (not owned; for tests/fuzzing)
 * and append its tensors to st. */
ey_err ey_st_parse_into(ey_safetensors *st, const void *data, size_t size, const char *label);
/* Open `dir/model.safetensors`, or every shard named by
 * `dir/model.safetensors.index.json`. */
ey_err ey_safetensors_open_dir(const char *dir, ey_safetensors **out);
void ey_safetensors_close(ey_safetensors *st);
const ey_st_tensor *ey_st_find(const ey_safetensors *st, const char *name);

/* Read a whole small file (config.json, index) into a malloc'ed NUL-terminated
 * buffer, refusing files over max_bytes. */
ey_err ey_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

#endif
