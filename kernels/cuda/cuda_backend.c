/* eyrie — the CUDA instance of the backend interface.
 *
 * Buffers are device memory (cudaMalloc); weights are copied once by
 * buf_from_host in their stored bytes, quantized types included, so a weight
 * pointer (buffer, byte offset) means the same bytes as on the CPU. Every
 * operation is enqueued on one stream owned by the backend, in call order.
 *
 * Matrix products: T <= EYC_GEMV_MAX_T runs a GEMV kernel that reads the
 * weights in their stored type (native dequantization); larger T goes to
 * cuBLAS (cublasGemmEx, FP32 accumulation): F32 weights as they are, F16/BF16
 * weights with x rounded to the weight type, quantized weights dequantized to
 * f32 tiles of rows in a scratch buffer. The scratch, the cuBLAS workspace
 * and the staging areas for host arrays (block tables, tree masks) are
 * allocated at create and grow only when a larger shape shows up (after a
 * stream synchronization), never per token.
 *
 * Kernel entries return void, so a failure (a launch error, a bad argument,
 * no memory for staging) is recorded as a sticky error: later kernel entries
 * do nothing and sync() (and buf_set/buf_get) return it until the backend is
 * destroyed. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ey_backend.h"
#include "cuda_kernels.h"

_Static_assert((int)EYC_F32 == (int)EY_F32 && (int)EYC_F16 == (int)EY_F16 &&
                   (int)EYC_BF16 == (int)EY_BF16 && (int)EYC_Q4_0 == (int)EY_Q4_0 &&
                   (int)EYC_Q4_1 == (int)EY_Q4_1 && (int)EYC_Q8_0 == (int)EY_Q8_0,
               "cuda_kernels.h type ids");
_Static_assert(EY_ROPE_NEOX == 0, "eyc_rope takes mode 0 as NEOX");

#define CU_SCRATCH_BYTES ((size_t)64 << 20)    /* x in f16/bf16, f32 weight tiles, copies */
#define CU_WORKSPACE_BYTES ((size_t)32 << 20)  /* cuBLAS workspace (Hopper recommends 32 MiB) */
#define CU_STAGE_BYTES ((size_t)1 << 20)       /* each staging area (block table, mask) */
#define CU_ALIGN 256

struct ey_buf {
    void *data; /* device */
    size_t size;
};

/* A host array copied to the device: pinned host copy -> device copy on the
 * stream. `done` marks the end of the last copy out of `host`. The device
 * copy holds `host[0, len)`; an unchanged array (the same block table for
 * every layer) is not copied again. */
typedef struct stage {
    void *host, *dev;
    size_t cap, len;
    cudaEvent_t done;
} stage;

typedef struct cuda_ctx {
    int device;
    char name[300];
    cudaStream_t stream;
    cublasHandle_t blas;
    void *workspace;
    void *scratch;
    size_t scratch_size;
    stage blocks, mask;
    ey_err err; /* sticky */
    char msg[256];
} cuda_ctx;

#define CU(be) ((cuda_ctx *)(be)->ctx)
#define P(ptr) ((void *)((char *)(ptr).buf->data + (ptr).off))

__attribute__((format(printf, 3, 4))) static void fail(cuda_ctx *c, ey_err e, const char *fmt, ...)
{
    if (c->err) return; /* keep the first */
    c->err = e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
}

/* true if r is success; else records "cuda: what: reason" */
static bool ck(cuda_ctx *c, cudaError_t r, const char *what)
{
    if (r == cudaSuccess) return true;
    fail(c, EY_ERR_DEVICE, "cuda: %s: %s", what, cudaGetErrorString(r));
    return false;
}

static bool ck_blas(cuda_ctx *c, cublasStatus_t r, const char *what)
{
    if (r == CUBLAS_STATUS_SUCCESS) return true;
    fail(c, EY_ERR_DEVICE, "cublas: %s: %s", what, cublasGetStatusString(r));
    return false;
}

static ey_err sticky(cuda_ctx *c) { return c->err ? ey_err_set(c->err, "%s", c->msg) : EY_OK; }

/* Start of a kernel entry: false (do nothing) after an error. */
static bool ready(cuda_ctx *c)
{
    if (c->err) return false;
    return ck(c, cudaSetDevice(c->device), "set device");
}

static const char *cu_name(const ey_backend *be)
{
    return CU(be)->name;
}

static void stage_free(stage *s)
{
    if (s->host) cudaFreeHost(s->host);
    if (s->dev) cudaFree(s->dev);
    if (s->done) cudaEventDestroy(s->done);
    memset(s, 0, sizeof *s);
}

static void cu_destroy(ey_backend *be)
{
    cuda_ctx *c = CU(be);
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    stage_free(&c->blocks);
    stage_free(&c->mask);
    if (c->blas) cublasDestroy(c->blas);
    if (c->workspace) cudaFree(c->workspace);
    if (c->scratch) cudaFree(c->scratch);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
    free(be);
}

/* ---------------------------------------------------------------- memory */

static ey_err cu_buf_alloc(ey_backend *be, size_t bytes, ey_buf **out)
{
    cuda_ctx *c = CU(be);
    if (c->err) return sticky(c);
    cudaSetDevice(c->device);
    ey_buf *b = calloc(1, sizeof *b);
    if (!b) return ey_err_set(EY_ERR_NOMEM, "cuda: no memory");
    size_t sz = (bytes + CU_ALIGN - 1) & ~(size_t)(CU_ALIGN - 1);
    if (!sz) sz = CU_ALIGN;
    cudaError_t r = cudaMalloc(&b->data, sz);
    if (r != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not sticky */
        free(b);
        return ey_err_set(EY_ERR_NOMEM, "cuda: cannot allocate %zu bytes on device %d: %s", bytes,
                          c->device, cudaGetErrorString(r));
    }
    /* zeroed, as the CPU instance's buffers */
    if ((r = cudaMemsetAsync(b->data, 0, sz, c->stream)) != cudaSuccess ||
        (r = cudaStreamSynchronize(c->stream)) != cudaSuccess) {
        cudaFree(b->data);
        free(b);
        ck(c, r, "clearing a new buffer");
        return sticky(c);
    }
    b->size = bytes;
    *out = b;
    return EY_OK;
}

static ey_err cu_buf_from_host(ey_backend *be, const void *host, size_t bytes, ey_buf **out)
{
    ey_err e = cu_buf_alloc(be, bytes, out);
    if (e) return e;
    cuda_ctx *c = CU(be);
    cudaError_t r;
    if (bytes && ((r = cudaMemcpyAsync((*out)->data, host, bytes, cudaMemcpyHostToDevice,
                                       c->stream)) != cudaSuccess ||
                  (r = cudaStreamSynchronize(c->stream)) != cudaSuccess)) {
        ck(c, r, "uploading weights");
        cudaFree((*out)->data);
        free(*out);
        *out = NULL;
        return sticky(c);
    }
    return EY_OK;
}

static void cu_buf_free(ey_backend *be, ey_buf *b)
{
    if (!b) return;
    cuda_ctx *c = CU(be);
    cudaSetDevice(c->device);
    cudaStreamSynchronize(c->stream); /* no queued kernel may still use it */
    cudaFree(b->data);
    free(b);
}

/* The copy and a stream synchronization: `src` may be reused on return and
 * every earlier kernel has run. */
static ey_err cu_buf_set(ey_backend *be, ey_ptr dst, const void *src, size_t n)
{
    cuda_ctx *c = CU(be);
    if (dst.off > dst.buf->size || n > dst.buf->size - dst.off)
        return ey_err_set(EY_ERR_ARG, "cuda: buf_set out of range");
    if (c->err) return sticky(c);
    cudaSetDevice(c->device);
    if (n) ck(c, cudaMemcpyAsync(P(dst), src, n, cudaMemcpyHostToDevice, c->stream), "buf_set");
    ck(c, cudaStreamSynchronize(c->stream), "buf_set");
    return sticky(c);
}

static ey_err cu_buf_get(ey_backend *be, void *dst, ey_ptr src, size_t n)
{
    cuda_ctx *c = CU(be);
    if (src.off > src.buf->size || n > src.buf->size - src.off)
        return ey_err_set(EY_ERR_ARG, "cuda: buf_get out of range");
    if (c->err) return sticky(c);
    cudaSetDevice(c->device);
    if (n) ck(c, cudaMemcpyAsync(dst, P(src), n, cudaMemcpyDeviceToHost, c->stream), "buf_get");
    ck(c, cudaStreamSynchronize(c->stream), "buf_get");
    return sticky(c);
}

static ey_err cu_sync(ey_backend *be)
{
    cuda_ctx *c = CU(be);
    if (c->err) return sticky(c);
    cudaSetDevice(c->device);
    ck(c, cudaStreamSynchronize(c->stream), "kernel execution");
    return sticky(c);
}

/* The scratch buffer, at least `bytes` long (NULL after an error). Growing
 * waits for the stream: queued work may still read the old one. */
static void *scratch(cuda_ctx *c, size_t bytes)
{
    if (bytes <= c->scratch_size) return c->scratch;
    size_t sz = (bytes + CU_ALIGN - 1) & ~(size_t)(CU_ALIGN - 1);
    if (!ck(c, cudaStreamSynchronize(c->stream), "scratch")) return NULL;
    cudaFree(c->scratch);
    c->scratch = NULL;
    c->scratch_size = 0;
    if (!ck(c, cudaMalloc(&c->scratch, sz), "growing the scratch buffer")) return NULL;
    c->scratch_size = sz;
    return c->scratch;
}

static bool stage_init(cuda_ctx *c, stage *s, size_t cap)
{
    if (!ck(c, cudaMallocHost(&s->host, cap), "staging (host)") ||
        !ck(c, cudaMalloc(&s->dev, cap), "staging (device)") ||
        !ck(c, cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming), "staging event"))
        return false;
    s->cap = cap;
    return true;
}

/* Device copy of the host array src[0, n) (NULL after an error). */
static const void *stage_put(cuda_ctx *c, stage *s, const void *src, size_t n)
{
    if (n == 0 || (n == s->len && !memcmp(s->host, src, n))) return s->dev;
    if (n > s->cap) {
        /* rare: queued kernels may read the old device copy, a queued copy the host one */
        size_t cap = n > 2 * s->cap ? n : 2 * s->cap;
        if (!ck(c, cudaStreamSynchronize(c->stream), "staging")) return NULL;
        cudaFreeHost(s->host);
        cudaFree(s->dev);
        s->host = s->dev = NULL;
        s->cap = s->len = 0;
        if (!ck(c, cudaMallocHost(&s->host, cap), "growing staging (host)") ||
            !ck(c, cudaMalloc(&s->dev, cap), "growing staging (device)"))
            return NULL;
        s->cap = cap;
    } else if (!ck(c, cudaEventSynchronize(s->done), "staging")) {
        return NULL; /* the previous copy out of s->host must be over before rewriting it */
    }
    s->len = 0;
    memcpy(s->host, src, n);
    if (!ck(c, cudaMemcpyAsync(s->dev, s->host, n, cudaMemcpyHostToDevice, c->stream),
            "staging copy") ||
        !ck(c, cudaEventRecord(s->done, c->stream), "staging event"))
        return NULL;
    s->len = n;
    return s->dev;
}

/* ---------------------------------------------------------------- kernels */

static void launch(cuda_ctx *c, int r, const char *what)
{
    if (r) ck(c, (cudaError_t)r, what);
}

/* A weight pointer the kernels can read as type wt (element alignment). */
static bool weight_ok(cuda_ctx *c, const char *op, ey_dtype wt, const void *W, int64_t K,
                      size_t *rb)
{
    if (!ey_dtype_valid((uint32_t)wt)) {
        fail(c, EY_ERR_UNSUPPORTED, "cuda %s: weight type %s", op, ey_dtype_name(wt));
        return false;
    }
    *rb = ey_dtype_row_bytes(wt, K);
    if (K <= 0 || !*rb) {
        fail(c, EY_ERR_ARG, "cuda %s: row of %lld elements of %s", op, (long long)K,
             ey_dtype_name(wt));
        return false;
    }
    size_t align = wt == EY_F32 ? 4 : (wt == EY_F16 || wt == EY_BF16) ? 2 : 1;
    if ((uintptr_t)W % align) {
        fail(c, EY_ERR_ARG, "cuda %s: %s weights at a misaligned offset", op, ey_dtype_name(wt));
        return false;
    }
    return true;
}

static void cu_get_rows(ey_backend *be, ey_ptr out, ey_dtype wt, ey_ptr W, int64_t K, ey_ptr ids,
                        int T)
{
    cuda_ctx *c = CU(be);
    size_t rb;
    if (T <= 0 || !ready(c) || !weight_ok(c, "get_rows", wt, P(W), K, &rb)) return;
    launch(c, eyc_get_rows(c->stream, P(out), (int)wt, P(W), rb, K, P(ids), T), "get_rows");
}

static cudaDataType_t blas_type(ey_dtype wt)
{
    return wt == EY_F16 ? CUDA_R_16F : wt == EY_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Row-major y[T,N] = x[T,K] . A[N,K]^T is, column-major, y^T = A^T x^T:
 * m = rows of A (n), n = T, k = K, A transposed, lda = ldb = K, ldc = ldy. */
static bool gemm(cuda_ctx *c, float *y, int64_t ldy, const void *A, cudaDataType_t at,
                 const void *x, int64_t n, int64_t K, int T)
{
    const float one = 1.0f, zero = 0.0f;
    return ck_blas(c,
                   cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, T, (int)K, &one, A, at,
                                (int)K, x, at, (int)K, &zero, y, CUDA_R_32F, (int)ldy,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "matmul");
}

static void cu_matmul(ey_backend *be, ey_ptr y, ey_dtype wt, ey_ptr W, ey_ptr bias, ey_ptr x,
                      int64_t N, int64_t K, int T)
{
    cuda_ctx *c = CU(be);
    size_t rb;
    if (N <= 0 || T <= 0 || !ready(c) || !weight_ok(c, "matmul", wt, P(W), K, &rb)) return;
    const float *b = bias.buf ? P(bias) : NULL;
    if (T <= EYC_GEMV_MAX_T) {
        launch(c, eyc_gemv(c->stream, P(y), (int)wt, P(W), rb, b, P(x), N, K, T), "matmul");
        return;
    }
    if (N > 0x7fffffff || K > 0x7fffffff) {
        fail(c, EY_ERR_LIMIT, "cuda matmul: %lld x %lld is too large for cuBLAS", (long long)N,
             (long long)K);
        return;
    }
    if (wt == EY_F32) {
        if (!gemm(c, P(y), N, P(W), CUDA_R_32F, P(x), N, K, T)) return;
    } else if (wt == EY_F16 || wt == EY_BF16) {
        void *xh = scratch(c, (size_t)T * (size_t)K * 2);
        if (!xh) return;
        launch(c, eyc_f32_to_half(c->stream, xh, P(x), (int64_t)T * K, wt == EY_BF16), "matmul");
        if (c->err || !gemm(c, P(y), N, P(W), blas_type(wt), xh, N, K, T)) return;
    } else {
        /* quantized: f32 tiles of rows, each used by one GEMM (stream order
         * keeps a tile alive until its GEMM has run) */
        size_t row = (size_t)K * sizeof(float);
        int64_t rows = (int64_t)(c->scratch_size / row);
        if (rows < 1) rows = 1;
        if (rows > N) rows = N;
        float *tile = scratch(c, (size_t)rows * row);
        if (!tile) return;
        for (int64_t n0 = 0; n0 < N; n0 += rows) {
            int64_t nr = N - n0 < rows ? N - n0 : rows;
            launch(c, eyc_dequant_f32(c->stream, tile, (int)wt, (const char *)P(W) + n0 * rb, rb,
                                      K, nr),
                   "matmul");
            if (c->err || !gemm(c, (float *)P(y) + n0, N, tile, CUDA_R_32F, P(x), nr, K, T))
                return;
        }
    }
    if (b) launch(c, eyc_add_bias(c->stream, P(y), b, N, T), "matmul bias");
}

static void cu_rmsnorm(ey_backend *be, ey_ptr y, ey_ptr x, ey_ptr w, int64_t R, int64_t D,
                       float eps)
{
    cuda_ctx *c = CU(be);
    if (!ready(c)) return;
    launch(c, eyc_rmsnorm(c->stream, P(y), P(x), P(w), R, D, eps), "rmsnorm");
}

static void cu_rope(ey_backend *be, ey_ptr x, ey_ptr pos, ey_ptr inv_freq, int T, int n_head,
                    int head_dim, int rot_dim, int mode)
{
    cuda_ctx *c = CU(be);
    if (!ready(c)) return;
    if (rot_dim < 0 || rot_dim > head_dim || (mode != EY_ROPE_NEOX && mode != EY_ROPE_NORMAL)) {
        fail(c, EY_ERR_ARG, "cuda rope: rot_dim %d of head_dim %d, mode %d", rot_dim, head_dim,
             mode);
        return;
    }
    launch(c, eyc_rope(c->stream, P(x), P(pos), P(inv_freq), T, n_head, head_dim, rot_dim, mode),
           "rope");
}

static void cu_kv_store(ey_backend *be, ey_ptr kc, ey_ptr vc, ey_ptr k, ey_ptr v, int kv_dim,
                        int start, int T, const int32_t *blocks, int block_size)
{
    cuda_ctx *c = CU(be);
    if (T <= 0 || !ready(c)) return;
    if (block_size < 1 || start < 0) {
        fail(c, EY_ERR_ARG, "cuda kv_store: block size %d, start %d", block_size, start);
        return;
    }
    size_t nb = (size_t)(((int64_t)start + T + block_size - 1) / block_size);
    const int32_t *db = stage_put(c, &c->blocks, blocks, nb * sizeof(int32_t));
    if (!db) return;
    launch(c, eyc_kv_store(c->stream, P(kc), P(vc), P(k), P(v), kv_dim, start, T, db, block_size),
           "kv_store");
}

static void cu_attention(ey_backend *be, ey_ptr out, ey_ptr q, ey_ptr kc, ey_ptr vc,
                         const ey_attn_args *a)
{
    cuda_ctx *c = CU(be);
    if (a->T <= 0 || !ready(c)) return;
    if (a->head_dim <= 0 || a->head_dim > EYC_ATT_MAX_HD || a->n_kv_head <= 0 ||
        a->n_head % a->n_kv_head || a->n_kv < a->T || a->block_size < 1 || a->T > 65535) {
        fail(c, EY_ERR_UNSUPPORTED,
             "cuda attention: %d heads, %d kv heads, head_dim %d (max %d), n_kv %d, T %d, "
             "block %d",
             a->n_head, a->n_kv_head, a->head_dim, EYC_ATT_MAX_HD, a->n_kv, a->T, a->block_size);
        return;
    }
    size_t nb = (size_t)((a->n_kv + (int64_t)a->block_size - 1) / a->block_size);
    const int32_t *db = stage_put(c, &c->blocks, a->blocks, nb * sizeof(int32_t));
    if (!db) return;
    const uint8_t *dm = NULL;
    if (a->mask && !(dm = stage_put(c, &c->mask, a->mask, (size_t)a->T * (size_t)a->T))) return;
    launch(c,
           eyc_attention(c->stream, P(out), P(q), P(kc), P(vc), a->n_head, a->n_kv_head,
                         a->head_dim, a->n_kv, a->T, db, a->block_size, dm, a->scale),
           "attention");
}

static void cu_silu_mul(ey_backend *be, ey_ptr g, ey_ptr u, int64_t n)
{
    cuda_ctx *c = CU(be);
    if (!ready(c)) return;
    launch(c, eyc_silu_mul(c->stream, P(g), P(u), n), "silu_mul");
}

static void cu_add(ey_backend *be, ey_ptr a, ey_ptr b, int64_t n)
{
    cuda_ctx *c = CU(be);
    if (!ready(c)) return;
    launch(c, eyc_add(c->stream, P(a), P(b), n), "add");
}

/* memmove semantics: overlapping ranges go through the scratch buffer */
static void cu_copy(ey_backend *be, ey_ptr dst, ey_ptr src, int64_t n)
{
    cuda_ctx *c = CU(be);
    if (n <= 0 || !ready(c)) return;
    char *d = P(dst), *s = P(src);
    size_t bytes = (size_t)n * sizeof(float);
    if (d == s) return;
    if (d + bytes <= s || s + bytes <= d) {
        ck(c, cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice, c->stream), "copy");
        return;
    }
    void *tmp = scratch(c, bytes);
    if (!tmp || !ck(c, cudaMemcpyAsync(tmp, s, bytes, cudaMemcpyDeviceToDevice, c->stream), "copy"))
        return;
    ck(c, cudaMemcpyAsync(d, tmp, bytes, cudaMemcpyDeviceToDevice, c->stream), "copy");
}

static void cu_set_threads(ey_backend *be, int n)
{
    (void)be;
    (void)n;
}

/* ---------------------------------------------------------------- create */

/* EYRIE_CUDA_SCRATCH / EYRIE_CUDA_STAGE: initial sizes in bytes (tests use
 * small ones to exercise tiling and growth). */
static size_t env_size(const char *name, size_t def)
{
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    return (*end || v == 0) ? def : (size_t)v;
}

ey_err ey_backend_cuda_create(int device, ey_backend **out)
{
    *out = NULL;
    int n = 0;
    cudaError_t r = cudaGetDeviceCount(&n);
    if (r != cudaSuccess || n == 0) {
        cudaGetLastError();
        return ey_err_set(EY_ERR_UNSUPPORTED, "no CUDA device: %s",
                          r != cudaSuccess ? cudaGetErrorString(r) : "none found");
    }
    if (device < 0 || device >= n)
        return ey_err_set(EY_ERR_UNSUPPORTED, "no CUDA device %d (%d present)", device, n);
    struct cudaDeviceProp prop;
    if ((r = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
        return ey_err_set(EY_ERR_DEVICE, "CUDA device %d: %s", device, cudaGetErrorString(r));
    /* sm_90 code plus compute_80 PTX: anything from 8.0 runs it */
    if (prop.major < 8)
        return ey_err_set(EY_ERR_UNSUPPORTED,
                          "CUDA device %d (%s) has compute capability %d.%d; eyrie needs 8.0+",
                          device, prop.name, prop.major, prop.minor);
    if ((r = cudaSetDevice(device)) != cudaSuccess)
        return ey_err_set(EY_ERR_DEVICE, "CUDA device %d: %s", device, cudaGetErrorString(r));

    ey_backend *be = calloc(1, sizeof *be);
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return ey_err_set(EY_ERR_NOMEM, "cuda: no memory");
    }
    c->device = device;
    snprintf(c->name, sizeof c->name, "cuda:%d (%s)", device, prop.name);
    be->ctx = c;
    be->iface = (struct ey_backend_i){
        .name = cu_name,
        .destroy = cu_destroy,
        .buf_alloc = cu_buf_alloc,
        .buf_from_host = cu_buf_from_host,
        .buf_free = cu_buf_free,
        .buf_set = cu_buf_set,
        .buf_get = cu_buf_get,
        .sync = cu_sync,
        .get_rows = cu_get_rows,
        .matmul = cu_matmul,
        .rmsnorm = cu_rmsnorm,
        .rope = cu_rope,
        .kv_store = cu_kv_store,
        .attention = cu_attention,
        .silu_mul = cu_silu_mul,
        .add = cu_add,
        .copy = cu_copy,
        .set_threads = cu_set_threads,
    };
    bool ok = ck(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream") &&
              ck_blas(c, cublasCreate(&c->blas), "create") &&
              ck_blas(c, cublasSetStream(c->blas, c->stream), "set stream") &&
              ck(c, cudaMalloc(&c->workspace, CU_WORKSPACE_BYTES), "cuBLAS workspace") &&
              ck_blas(c, cublasSetWorkspace(c->blas, c->workspace, CU_WORKSPACE_BYTES),
                      "set workspace") &&
              /* FP32 products stay FP32 (no TF32); F16/BF16 use tensor cores */
              ck_blas(c, cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH), "math mode") &&
              scratch(c, env_size("EYRIE_CUDA_SCRATCH", CU_SCRATCH_BYTES)) &&
              stage_init(c, &c->blocks, env_size("EYRIE_CUDA_STAGE", CU_STAGE_BYTES)) &&
              stage_init(c, &c->mask, env_size("EYRIE_CUDA_STAGE", CU_STAGE_BYTES));
    if (!ok) {
        ey_err e = ey_err_set(c->err, "%s", c->msg);
        cu_destroy(be);
        cudaGetLastError();
        return e;
    }
    *out = be;
    return EY_OK;
}
