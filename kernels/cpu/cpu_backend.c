/* eyrie — the CPU instance of the backend interface.
 *
 * Buffers are host memory (64-byte aligned) or borrowed host ranges (mapped
 * weights). Kernels run synchronously with OpenMP over rows/heads; every
 * output element is computed by one thread in a fixed order, so results do
 * not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EY_CPU_X86 1
#else
#define EY_CPU_X86 0
#endif

#include "../ey_backend.h"
#include "cpu_matmul.h"

struct ey_buf {
    void *data;
    size_t size;
    bool borrowed;
};

typedef struct cpu_ctx {
    int n_threads;
    bool ref_matmul; /* EYRIE_MATMUL=ref: plain-C reference products (f32 activations) */
    void *scratch; /* matmul activation quantization, attention scores */
    size_t scratch_size;
} cpu_ctx;

#define CPU(be) ((cpu_ctx *)(be)->ctx)
#define P(ptr) ((void *)((char *)(ptr).buf->data + (ptr).off))

static const char *cpu_name(const ey_backend *be)
{
    (void)be;
    return "cpu";
}

static void cpu_destroy(ey_backend *be)
{
    free(CPU(be)->scratch);
    free(be->ctx);
    free(be);
}

static ey_err cpu_buf_alloc(ey_backend *be, size_t bytes, ey_buf **out)
{
    (void)be;
    ey_buf *b = calloc(1, sizeof *b);
    size_t sz = (bytes + 63) & ~(size_t)63;
    if (!b || !(b->data = aligned_alloc(64, sz ? sz : 64))) {
        free(b);
        return ey_err_set(EY_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
    }
    memset(b->data, 0, sz ? sz : 64);
    b->size = bytes;
    *out = b;
    return EY_OK;
}

static ey_err cpu_buf_from_host(ey_backend *be, const void *host, size_t bytes, ey_buf **out)
{
    (void)be;
    ey_buf *b = calloc(1, sizeof *b);
    if (!b) return ey_err_set(EY_ERR_NOMEM, "cpu: no memory");
    b->data = (void *)host;
    b->size = bytes;
    b->borrowed = true;
    *out = b;
    return EY_OK;
}

static void cpu_buf_free(ey_backend *be, ey_buf *b)
{
    (void)be;
    if (!b) return;
    if (!b->borrowed) free(b->data);
    free(b);
}

static ey_err cpu_buf_set(ey_backend *be, ey_ptr dst, const void *src, size_t n)
{
    (void)be;
    if (dst.off > dst.buf->size || n > dst.buf->size - dst.off)
        return ey_err_set(EY_ERR_ARG, "cpu: buf_set out of range");
    memcpy(P(dst), src, n);
    return EY_OK;
}

static ey_err cpu_buf_get(ey_backend *be, void *dst, ey_ptr src, size_t n)
{
    (void)be;
    if (src.off > src.buf->size || n > src.buf->size - src.off)
        return ey_err_set(EY_ERR_ARG, "cpu: buf_get out of range");
    memcpy(dst, P(src), n);
    return EY_OK;
}

static ey_err cpu_sync(ey_backend *be)
{
    (void)be;
    return EY_OK;
}

static void *scratch(ey_backend *be, size_t bytes)
{
    cpu_ctx *c = CPU(be);
    if (bytes > c->scratch_size) {
        /* grows to the largest shape seen, then stays: not per token */
        void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        EY_ASSERT(p && "cpu scratch");
        free(c->scratch);
        c->scratch = p;
        c->scratch_size = (bytes + 63) & ~(size_t)63;
    }
    return c->scratch;
}

static void cpu_get_rows(ey_backend *be, ey_ptr out, ey_dtype wt, ey_ptr W, int64_t K, ey_ptr ids,
                         int T)
{
    float *o = P(out);
    const int32_t *id = P(ids);
    size_t rb = ey_dtype_row_bytes(wt, K);
    if (ey_dtype_is_r8(wt)) { /* a repacked matrix (a tied embedding/head) */
        void *row = scratch(be, rb);
        for (int t = 0; t < T; t++) {
            ey_r8_row(wt, P(W), id[t], K, row);
            ey_dequant_row(ey_dtype_r8_base(wt), row, o + (size_t)t * K, K);
        }
        return;
    }
    for (int t = 0; t < T; t++)
        ey_dequant_row(wt, (const char *)P(W) + (size_t)id[t] * rb, o + (size_t)t * K, K);
}

/* quantized matmul weights are repacked by 8 rows (cpu_matmul.h, R8);
 * EYRIE_REPACK=0 keeps them as read */
static ey_dtype cpu_weight_type(ey_backend *be, ey_dtype wt, int64_t N, int64_t K)
{
    (void)be;
    return ey_cpu_repack_type(wt, N, K);
}

static void cpu_weight_repack(ey_backend *be, ey_dtype to, void *dst, const void *src, int64_t N,
                              int64_t K)
{
    (void)be;
    ey_r8_pack(to, dst, src, N, K);
}

static void cpu_matmul(ey_backend *be, ey_ptr y, ey_dtype wt, ey_ptr W, ey_ptr bias, ey_ptr x,
                       int64_t N, int64_t K, int T)
{
    if (CPU(be)->ref_matmul) {
        ey_cpu_matmul_ref(P(y), wt, P(W), bias.buf ? P(bias) : NULL, P(x), N, K, T);
        return;
    }
    void *s = scratch(be, ey_cpu_matmul_scratch_bytes(wt, K, T));
    ey_cpu_matmul(P(y), wt, P(W), bias.buf ? P(bias) : NULL, P(x), N, K, T, s,
                  CPU(be)->n_threads);
}

static void cpu_rmsnorm(ey_backend *be, ey_ptr y, ey_ptr x, ey_ptr w, int64_t R, int64_t D,
                        float eps)
{
    float *yo = P(y);
    const float *xi = P(x), *wi = P(w);
#pragma omp parallel for num_threads(CPU(be)->n_threads) schedule(static) if (R > 4)
    for (int64_t r = 0; r < R; r++) {
        const float *a = xi + r * D;
        float *o = yo + r * D;
        float ss = 0;
        for (int64_t i = 0; i < D; i++) ss += a[i] * a[i];
        float inv = 1.0f / sqrtf(ss / (float)D + eps);
        for (int64_t i = 0; i < D; i++) o[i] = wi[i] * (a[i] * inv);
    }
}

static void cpu_rope(ey_backend *be, ey_ptr x, ey_ptr pos, ey_ptr inv_freq, int T, int n_head,
                     int head_dim, int rot_dim, int mode)
{
    float *xs = P(x);
    const int32_t *ps = P(pos);
    const float *fr = P(inv_freq);
    int half = rot_dim / 2;
#pragma omp parallel for num_threads(CPU(be)->n_threads) schedule(static) if (T > 4)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)ps[t] * fr[i];
            float c = cosf(ang), s = sinf(ang);
            for (int h = 0; h < n_head; h++) {
                float *v = xs + ((size_t)t * n_head + h) * head_dim;
                int i0 = mode == EY_ROPE_NEOX ? i : 2 * i;
                int i1 = mode == EY_ROPE_NEOX ? i + half : 2 * i + 1;
                float a = v[i0], b = v[i1];
                v[i0] = a * c - b * s;
                v[i1] = b * c + a * s;
            }
        }
    }
}

static void cpu_kv_store(ey_backend *be, ey_ptr kc, ey_ptr vc, ey_ptr k, ey_ptr v, int kv_dim,
                         int start, int T, const int32_t *blocks, int block_size)
{
    (void)be;
    float *K = P(kc), *V = P(vc);
    const float *ks = P(k), *vs = P(v);
    for (int t = 0; t < T; t++) {
        int row = start + t;
        size_t dst = ((size_t)blocks[row / block_size] * block_size + row % block_size) * kv_dim;
        memcpy(K + dst, ks + (size_t)t * kv_dim, (size_t)kv_dim * sizeof(float));
        memcpy(V + dst, vs + (size_t)t * kv_dim, (size_t)kv_dim * sizeof(float));
    }
}

/* Dot product with 8 independent partial sums (a fixed order, so results
 * do not depend on threads; the compiler vectorizes the inner block). */
static inline float dotf(const float *a, const float *b, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* sc[0..last] = exp(sc - mx) (0 for masked rows, -inf), in key order;
 * returns 1 / their sum */
static inline float attn_softmax(float *sc, int last, float mx)
{
    float sum = 0;
    for (int j = 0; j <= last; j++) {
        float e = sc[j] == -INFINITY ? 0.0f : expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    return 1.0f / sum;
}

/* One (query row, head): scores over the visible rows, softmax, weighted sum
 * of V. Built for AVX2+FMA and for baseline x86-64; the loader picks one. */
__attribute__((target_clones("avx2", "default"))) static void
attn_one(float *o, const float *qv, const float *K, const float *V, float *sc,
         const ey_attn_args *a, int t, int kvh, int kvd)
{
    const int hd = a->head_dim, T = a->T, past = a->n_kv - T, last = past + t;
    float mx = -INFINITY;
    for (int j = 0; j <= last; j++) {
        bool vis = j < past || !a->mask || a->mask[(size_t)t * T + (j - past)];
        if (!vis) {
            sc[j] = -INFINITY;
            continue;
        }
        size_t r = (size_t)a->blocks[j / a->block_size] * a->block_size + j % a->block_size;
        sc[j] = dotf(qv, K + r * kvd + (size_t)kvh * hd, hd) * a->scale;
        if (sc[j] > mx) mx = sc[j];
    }
    const float inv = attn_softmax(sc, last, mx);
    memset(o, 0, (size_t)hd * sizeof(float));
    for (int j = 0; j <= last; j++) {
        if (sc[j] == 0.0f) continue;
        size_t r = (size_t)a->blocks[j / a->block_size] * a->block_size + j % a->block_size;
        const float *vv = V + r * kvd + (size_t)kvh * hd;
        float w = sc[j] * inv;
        for (int d = 0; d < hd; d++) o[d] += w * vv[d];
    }
}

#if EY_CPU_X86
/* One (query row, head) with AVX2 + FMA, head_dim a multiple of 8 up to
 * 256: q and the output stay in registers; scores are computed 4 keys at a
 * time (one accumulator each, reduced by a fixed hadd tree), softmax in
 * key order as attn_one does, then o = sum_j w_j V_j with one FMA per
 * 8 dims per key in key order. Each (row, head) is computed alone in a
 * fixed order: the result does not depend on T, the other rows or the
 * thread count. */
#define EY_ATT_MAXV 32 /* 256 / 8 */
__attribute__((target("avx2,fma"))) static void
attn_one_avx2(float *o, const float *qv, const float *K, const float *V, float *sc,
              const ey_attn_args *a, int t, int kvh, int kvd)
{
    const int hd = a->head_dim, nv = hd / 8, T = a->T, past = a->n_kv - T, last = past + t;
    const int bs = a->block_size;
    __m256 q[EY_ATT_MAXV];
    for (int c = 0; c < nv; c++) q[c] = _mm256_loadu_ps(qv + 8 * c);
#define EY_ATT_ROW(j)                                                          \
    ((size_t)a->blocks[(j) / bs] * bs + (size_t)((j) % bs)) * (size_t)kvd + (size_t)kvh * hd
    float mx = -INFINITY;
    for (int j0 = 0; j0 <= last; j0 += 4) {
        const float *kr[4];
        for (int i = 0; i < 4; i++) kr[i] = K + EY_ATT_ROW(j0 + i <= last ? j0 + i : last);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < nv; c++) {
            a0 = _mm256_fmadd_ps(q[c], _mm256_loadu_ps(kr[0] + 8 * c), a0);
            a1 = _mm256_fmadd_ps(q[c], _mm256_loadu_ps(kr[1] + 8 * c), a1);
            a2 = _mm256_fmadd_ps(q[c], _mm256_loadu_ps(kr[2] + 8 * c), a2);
            a3 = _mm256_fmadd_ps(q[c], _mm256_loadu_ps(kr[3] + 8 * c), a3);
        }
        /* lanes: [a, b, c, d] partial sums of the two 128-bit halves */
        __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        __m128 d4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        float dv[4];
        _mm_storeu_ps(dv, _mm_mul_ps(d4, _mm_set1_ps(a->scale)));
        for (int i = 0; i < 4 && j0 + i <= last; i++) {
            const int j = j0 + i;
            const bool vis = j < past || !a->mask || a->mask[(size_t)t * T + (j - past)];
            sc[j] = vis ? dv[i] : -INFINITY;
            if (sc[j] > mx) mx = sc[j];
        }
    }
    const float inv = attn_softmax(sc, last, mx);
    __m256 acc[EY_ATT_MAXV];
    for (int c = 0; c < nv; c++) acc[c] = _mm256_setzero_ps();
    for (int j = 0; j <= last; j++) {
        if (sc[j] == 0.0f) continue;
        const float *vv = V + EY_ATT_ROW(j);
        const __m256 w = _mm256_set1_ps(sc[j] * inv);
        for (int c = 0; c < nv; c++) acc[c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vv + 8 * c), acc[c]);
    }
#undef EY_ATT_ROW
    for (int c = 0; c < nv; c++) _mm256_storeu_ps(o + 8 * c, acc[c]);
}
#endif

/* the AVX2 attention when the CPU has it (and EYRIE_CPU_ISA does not cap
 * the kernels at scalar) and the head fits */
static bool attn_fast(int head_dim)
{
#if EY_CPU_X86
    return head_dim % 8 == 0 && head_dim <= 8 * EY_ATT_MAXV && strcmp(ey_cpu_matmul_isa(), "scalar");
#else
    (void)head_dim;
    return false;
#endif
}

static void cpu_attention(ey_backend *be, ey_ptr out, ey_ptr q, ey_ptr kc, ey_ptr vc,
                          const ey_attn_args *a)
{
    const int nh = a->n_head, hd = a->head_dim, kvd = a->n_kv_head * hd;
    const int grp = nh / a->n_kv_head, T = a->T, n_kv = a->n_kv;
    const float *Q = P(q), *K = P(kc), *V = P(vc);
    float *O = P(out);
    const int nt = CPU(be)->n_threads;
    float *sc_all = scratch(be, (size_t)nt * (size_t)n_kv * sizeof(float));
    const bool fast = attn_fast(hd);
    (void)fast;
#pragma omp parallel for num_threads(nt) schedule(static) collapse(2) if (T * nh > 1)
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < nh; h++) {
            float *o = O + ((size_t)t * nh + h) * hd, *sc = sc_all + (size_t)omp_get_thread_num() * n_kv;
            const float *qv = Q + ((size_t)t * nh + h) * hd;
#if EY_CPU_X86
            if (fast) {
                attn_one_avx2(o, qv, K, V, sc, a, t, h / grp, kvd);
                continue;
            }
#endif
            attn_one(o, qv, K, V, sc, a, t, h / grp, kvd);
        }
    }
}

static void cpu_silu_mul(ey_backend *be, ey_ptr g, ey_ptr u, int64_t n)
{
    float *gs = P(g);
    const float *us = P(u);
#pragma omp parallel for num_threads(CPU(be)->n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float x = gs[i];
        gs[i] = x / (1.0f + expf(-x)) * us[i];
    }
}

static void cpu_add(ey_backend *be, ey_ptr a, ey_ptr b, int64_t n)
{
    (void)be;
    float *as = P(a);
    const float *bs = P(b);
    for (int64_t i = 0; i < n; i++) as[i] += bs[i];
}

static void cpu_copy(ey_backend *be, ey_ptr dst, ey_ptr src, int64_t n)
{
    (void)be;
    memmove(P(dst), P(src), (size_t)n * sizeof(float));
}

static void cpu_set_threads(ey_backend *be, int n)
{
    CPU(be)->n_threads = n > 0 ? n : 1;
}

ey_err ey_backend_cpu_create(int n_threads, ey_backend **out)
{
    ey_backend *be = calloc(1, sizeof *be);
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return ey_err_set(EY_ERR_NOMEM, "cpu: no memory");
    }
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    c->n_threads = n_threads;
    const char *mm = getenv("EYRIE_MATMUL");
    c->ref_matmul = mm && !strcmp(mm, "ref");
    be->ctx = c;
    be->iface = (struct ey_backend_i){
        .name = cpu_name,
        .destroy = cpu_destroy,
        .buf_alloc = cpu_buf_alloc,
        .buf_from_host = cpu_buf_from_host,
        .weight_type = cpu_weight_type,
        .weight_repack = cpu_weight_repack,
        .buf_free = cpu_buf_free,
        .buf_set = cpu_buf_set,
        .buf_get = cpu_buf_get,
        .sync = cpu_sync,
        .get_rows = cpu_get_rows,
        .matmul = cpu_matmul,
        .rmsnorm = cpu_rmsnorm,
        .rope = cpu_rope,
        .kv_store = cpu_kv_store,
        .attention = cpu_attention,
        .silu_mul = cpu_silu_mul,
        .add = cpu_add,
        .copy = cpu_copy,
        .set_threads = cpu_set_threads,
    };
    *out = be;
    return EY_OK;
}
