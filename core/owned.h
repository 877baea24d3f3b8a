/* eyrie — what a loaded model or drafter owns: backend buffers made from
 * host bytes (weights, tables) and host allocations they borrow (tensors
 * converted on load). Freed together. */
#ifndef EY_OWNED_H
#define EY_OWNED_H

#include "../kernels/ey_backend.h"

typedef struct ey_owned {
    ey_buf **bufs;
    int n_bufs, cap_bufs;
    void **host;
    int n_host, cap_host;
} ey_owned;

/* Keep host allocation h until ey_owned_free (on an error h is not taken:
 * the caller still owns it). */
ey_err ey_owned_host(ey_owned *o, void *h);
/* A backend buffer from host bytes (which must outlive it: the CPU backend
 * borrows them), owned by o; *out points at its start. */
ey_err ey_owned_upload(ey_owned *o, ey_backend *be, const void *host, size_t bytes, ey_ptr *out);
/* A matmul weight W[N][K] of *type from host bytes: uploaded as is, or
 * first rewritten (into a host copy owned by o) in the backend's own layout
 * when it has one (ey_backend_i.weight_type; *type is updated). */
ey_err ey_owned_upload_mm(ey_owned *o, ey_backend *be, ey_dtype *type, const void *host,
                          size_t bytes, int64_t N, int64_t K, ey_ptr *out);
/* The same after quantizing a float matrix (F32/F16/BF16, K % 32 == 0) to
 * q (EY_Q8_0, EY_Q4_0 or EY_Q4_1) on the host; EY_ERR_FORMAT (naming the
 * tensor `name`) when a value is not finite or beyond the f16 range the
 * block scales are stored in. */
ey_err ey_owned_upload_quant(ey_owned *o, ey_backend *be, const char *name, ey_dtype *type,
                             ey_dtype q, const void *host, int64_t N, int64_t K, ey_ptr *out);
void ey_owned_free(ey_owned *o, ey_backend *be);

#endif
