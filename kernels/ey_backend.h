/* eyrie — the backend interface.
 *
 * Everything numeric goes through this vtable. core/ never dereferences a
 * buffer: it allocates ey_buf objects through the backend, addresses them as
 * (buffer, byte offset) pairs (ey_ptr) and asks the backend to run kernels on
 * them. The CPU instance keeps buffers in host memory (weights borrowed from
 * the mmap'ed file); a CUDA instance keeps them in device memory.
 *
 * Conventions for kernel entries:
 *  - activations are f32, row-major, rows = tokens;
 *  - weights W[N,K] are row-major with K contiguous, of any ey_dtype;
 *  - outputs come first in the argument list, then inputs, then dimensions;
 *  - kernels are enqueued; results are visible to buf_get after sync
 *    (the CPU instance runs them synchronously).
 *
 * Optional entries may be NULL; the comment says so. Bump EY_BACKEND_API when
 * the table changes shape. */
#ifndef EY_BACKEND_H
#define EY_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/ey_err.h"
#include "ey_dtype.h"

#define EY_BACKEND_API 2

typedef struct ey_buf ey_buf; /* backend-defined */
typedef struct ey_backend ey_backend;

typedef struct ey_ptr {
    ey_buf *buf;
    size_t off; /* bytes */
} ey_ptr;

static inline ey_ptr ey_ptr_at(ey_ptr p, size_t off) { return (ey_ptr){p.buf, p.off + off}; }

enum ey_rope_mode {
    EY_ROPE_NEOX = 0,   /* rotate halves: pairs (i, i + d/2) — HF rotate_half */
    EY_ROPE_NORMAL = 1, /* interleaved pairs (2i, 2i+1) — GGUF llama layout */
};

/* One attention call: T query rows of one sequence attend to the sequence's
 * KV rows [0, n_kv) held in a block table. Row t sits at KV index
 * n_kv - T + t (its own K/V already stored). mask: NULL means causal; else a
 * T x T byte matrix over the new rows (1 = may attend), used by tree
 * verification; rows before n_kv - T are always visible. */
typedef struct ey_attn_args {
    int n_head, n_kv_head, head_dim;
    int n_kv;                 /* KV rows visible, including the T new ones */
    int T;                    /* query rows */
    const int32_t *blocks;    /* block table (host array), ceil(n_kv/block) entries */
    int block_size;           /* rows per KV block */
    const uint8_t *mask;      /* optional T x T tree mask (host), NULL = causal */
    float scale;
} ey_attn_args;

struct ey_backend_i {
    const char *(*name)(const ey_backend *be);
    void (*destroy)(ey_backend *be);

    /* ---- memory ---- */
    ey_err (*buf_alloc)(ey_backend *be, size_t bytes, ey_buf **out);
    /* Make a read-only weight buffer from host bytes. The CPU instance
     * borrows `host` (it must outlive the buffer, e.g. an mmap); a device
     * instance copies it. */
    ey_err (*buf_from_host)(ey_backend *be, const void *host, size_t bytes, ey_buf **out);
    /* Optional (NULL: none). A matmul weight W[N,K] of type wt may be kept
     * in a layout of the backend's own that its matmul runs faster on:
     * weight_type says which (wt itself when none; the model then stores the
     * weight as read), weight_repack writes host bytes src (N rows of wt)
     * into dst, the same size, in that layout. Such a weight is only ever
     * passed back to this backend: to matmul, and to get_rows for a tied
     * embedding (a backend that sets weight_type reads rows of its layout). */
    ey_dtype (*weight_type)(ey_backend *be, ey_dtype wt, int64_t N, int64_t K);
    void (*weight_repack)(ey_backend *be, ey_dtype to, void *dst, const void *src, int64_t N,
                          int64_t K);
    void (*buf_free)(ey_backend *be, ey_buf *buf);
    ey_err (*buf_set)(ey_backend *be, ey_ptr dst, const void *src, size_t bytes);
    ey_err (*buf_get)(ey_backend *be, void *dst, ey_ptr src, size_t bytes);
    ey_err (*sync)(ey_backend *be);

    /* ---- kernels ---- */
    /* out[t,:] = dequant(W[ids[t],:]) for t < T; W is [V,K] of type wt. */
    void (*get_rows)(ey_backend *be, ey_ptr out, ey_dtype wt, ey_ptr W, int64_t K,
                     ey_ptr ids, int T);
    /* y[T,N] = x[T,K] . W[N,K]^T (+ bias[N] when bias.buf != NULL). */
    void (*matmul)(ey_backend *be, ey_ptr y, ey_dtype wt, ey_ptr W, ey_ptr bias,
                   ey_ptr x, int64_t N, int64_t K, int T);
    /* y[r,:] = x[r,:] / rms(x[r,:]) * w   for r < R rows of D (in place ok) */
    void (*rmsnorm)(ey_backend *be, ey_ptr y, ey_ptr x, ey_ptr w, int64_t R, int64_t D,
                    float eps);
    /* in-place rotary embedding on x[T, n_head, head_dim]; the first
     * rot_dim dims of each head rotate with angle pos[t] * inv_freq[i] */
    void (*rope)(ey_backend *be, ey_ptr x, ey_ptr pos, ey_ptr inv_freq, int T, int n_head,
                 int head_dim, int rot_dim, int mode);
    /* write k,v [T, n_kv_head*head_dim] into cache rows start..start+T-1 of a
     * block-tabled layer cache (kc, vc: [n_blocks, block_size, kv_dim]) */
    void (*kv_store)(ey_backend *be, ey_ptr kc, ey_ptr vc, ey_ptr k, ey_ptr v, int kv_dim,
                     int start, int T, const int32_t *blocks, int block_size);
    /* out[T, n_head*head_dim] = softmax(q k^T * scale + mask) v */
    void (*attention)(ey_backend *be, ey_ptr out, ey_ptr q, ey_ptr kc, ey_ptr vc,
                      const ey_attn_args *a);
    /* g[i] = silu(g[i]) * u[i] for i < n (in place into g) */
    void (*silu_mul)(ey_backend *be, ey_ptr g, ey_ptr u, int64_t n);
    /* a[i] += b[i] */
    void (*add)(ey_backend *be, ey_ptr a, ey_ptr b, int64_t n);
    /* copy n floats */
    void (*copy)(ey_backend *be, ey_ptr dst, ey_ptr src, int64_t n);
    /* set the number of worker threads (CPU); optional */
    void (*set_threads)(ey_backend *be, int n);
};

struct ey_backend {
    struct ey_backend_i iface;
    void *ctx;
};

/* Instances. */
ey_err ey_backend_cpu_create(int n_threads, ey_backend **out);
/* Available only in builds with CUDA; returns EY_ERR_UNSUPPORTED otherwise. */
ey_err ey_backend_cuda_create(int device, ey_backend **out);

static inline void ey_backend_destroy(ey_backend *be)
{
    if (be) be->iface.destroy(be);
}

#endif
