/* eyrie — CUDA kernels (see cuda_kernels.h; semantics in kernels/ey_backend.h).
 *
 * Written for obvious correctness first: element-wise kernels use grid-stride
 * loops, reductions are a warp shuffle tree plus a fixed-order sum of the
 * per-warp partials. Weights are read in their stored type (F32/F16/BF16,
 * or ggml Q4_0/Q4_1/Q8_0 blocks, byte loads); dequantization matches
 * ey_dequant_row bit for bit (products and sums rounded as in the C code,
 * no FMA contraction). No fast-math intrinsics: expf/cosf/sinf/sqrtf and
 * division are the IEEE-accurate versions. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"

#define EW_THREADS 256        /* element-wise kernels */
#define MAX_GRID (1 << 20)    /* grid-stride loops cover the rest */
#define GEMV_WARPS 8          /* output rows per GEMV block (one warp each) */
#define ATT_THREADS 128       /* attention: threads per (query row, head) */
#define ATT_TILE 64           /* KV rows scored per pass */
#define ATT_ACC (EYC_ATT_MAX_HD / ATT_THREADS) /* output dims per thread */

static_assert(ATT_ACC * ATT_THREADS == EYC_ATT_MAX_HD, "attention accumulators");

static unsigned grid_for(int64_t n, int threads)
{
    int64_t g = (n + threads - 1) / threads;
    if (g < 1) g = 1;
    if (g > MAX_GRID) g = MAX_GRID;
    return (unsigned)g;
}

static int launched(void) { return (int)cudaGetLastError(); }

/* ------------------------------------------------------------- weights */

__device__ __forceinline__ float f16_at(const uint8_t *p) /* 2 bytes, any alignment */
{
    unsigned short u = (unsigned short)(p[0] | (p[1] << 8));
    return __half2float(__ushort_as_half(u));
}

/* Element k of a weight row of type DT starting at `row`. F32 rows must be
 * 4-byte aligned and F16/BF16 rows 2-byte aligned (checked by the caller);
 * quantized blocks are read byte by byte. */
template <int DT> __device__ __forceinline__ float wload(const uint8_t *row, int64_t k)
{
    if (DT == EYC_F32) return ((const float *)row)[k];
    if (DT == EYC_F16) return __half2float(__ushort_as_half(((const unsigned short *)row)[k]));
    if (DT == EYC_BF16) return __uint_as_float((unsigned)((const unsigned short *)row)[k] << 16);
    const int j = (int)(k % 32);
    if (DT == EYC_Q4_0) { /* { f16 d; u8 qs[16]; } 18 bytes: (q - 8) * d */
        const uint8_t *b = row + (k / 32) * 18;
        int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        return __fmul_rn((float)(q - 8), f16_at(b));
    }
    if (DT == EYC_Q4_1) { /* { f16 d; f16 m; u8 qs[16]; } 20 bytes: q * d + m */
        const uint8_t *b = row + (k / 32) * 20;
        int q = j < 16 ? (b[4 + j] & 15) : (b[4 + j - 16] >> 4);
        return __fadd_rn(__fmul_rn((float)q, f16_at(b)), f16_at(b + 2));
    }
    /* EYC_Q8_0: { f16 d; i8 qs[32]; } 34 bytes: q * d */
    const uint8_t *b = row + (k / 32) * 34;
    return __fmul_rn((float)(int8_t)b[2 + j], f16_at(b));
}

template <int DT>
__global__ void k_get_rows(float *out, const uint8_t *W, size_t rb, int64_t K, const int32_t *ids,
                           int T)
{
    for (int t = blockIdx.y; t < T; t += gridDim.y) {
        const uint8_t *row = W + (size_t)ids[t] * rb;
        for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < K;
             k += (int64_t)gridDim.x * blockDim.x)
            out[(size_t)t * K + k] = wload<DT>(row, k);
    }
}

/* One warp per output row n; lane l takes k = l, l + 32, ...; each weight is
 * read once and used for all T (<= EYC_GEMV_MAX_T) activation rows. */
template <int DT>
__global__ void k_gemv(float *y, const uint8_t *W, size_t rb, const float *bias, const float *x,
                       int64_t N, int64_t K, int T)
{
    const int lane = threadIdx.x & 31;
    const int64_t n = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (n >= N) return; /* the whole warp leaves together */
    const uint8_t *row = W + (size_t)n * rb;
    float acc[EYC_GEMV_MAX_T];
#pragma unroll
    for (int t = 0; t < EYC_GEMV_MAX_T; t++) acc[t] = 0.0f;
    for (int64_t k = lane; k < K; k += 32) {
        float w = wload<DT>(row, k);
#pragma unroll
        for (int t = 0; t < EYC_GEMV_MAX_T; t++)
            if (t < T) acc[t] += w * x[(size_t)t * K + k];
    }
#pragma unroll
    for (int t = 0; t < EYC_GEMV_MAX_T; t++) {
        float s = acc[t];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0 && t < T) y[(size_t)t * N + n] = bias ? s + bias[n] : s;
    }
}

template <int DT>
__global__ void k_dequant(float *out, const uint8_t *W, size_t rb, int64_t K, int64_t rows)
{
    const int64_t total = rows * K;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = wload<DT>(W + (size_t)(i / K) * rb, i % K);
}

/* Launch kernel template KERN on the weight type dt (unknown types: error). */
#define DISPATCH_DT(dt, KERN, grid, block, ...)                                 \
    do {                                                                         \
        switch (dt) {                                                            \
        case EYC_F32: KERN<EYC_F32><<<grid, block, 0, st>>>(__VA_ARGS__); break;  \
        case EYC_F16: KERN<EYC_F16><<<grid, block, 0, st>>>(__VA_ARGS__); break;  \
        case EYC_BF16: KERN<EYC_BF16><<<grid, block, 0, st>>>(__VA_ARGS__); break; \
        case EYC_Q4_0: KERN<EYC_Q4_0><<<grid, block, 0, st>>>(__VA_ARGS__); break; \
        case EYC_Q4_1: KERN<EYC_Q4_1><<<grid, block, 0, st>>>(__VA_ARGS__); break; \
        case EYC_Q8_0: KERN<EYC_Q8_0><<<grid, block, 0, st>>>(__VA_ARGS__); break; \
        default: return (int)cudaErrorInvalidValue;                              \
        }                                                                        \
    } while (0)

extern "C" int eyc_get_rows(void *stream, float *out, int dt, const void *W, size_t row_bytes,
                            int64_t K, const int32_t *ids, int T)
{
    if (T <= 0 || K <= 0) return 0;
    cudaStream_t st = (cudaStream_t)stream;
    dim3 grid(grid_for(K, EW_THREADS), T < 65535 ? T : 65535);
    DISPATCH_DT(dt, k_get_rows, grid, EW_THREADS, out, (const uint8_t *)W, row_bytes, K, ids, T);
    return launched();
}

extern "C" int eyc_gemv(void *stream, float *y, int dt, const void *W, size_t row_bytes,
                        const float *bias, const float *x, int64_t N, int64_t K, int T)
{
    if (T <= 0 || N <= 0) return 0;
    if (T > EYC_GEMV_MAX_T) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    int64_t g = (N + GEMV_WARPS - 1) / GEMV_WARPS;
    if (g > 0x7fffffff) return (int)cudaErrorInvalidValue;
    DISPATCH_DT(dt, k_gemv, (unsigned)g, GEMV_WARPS * 32, y, (const uint8_t *)W, row_bytes, bias,
                x, N, K, T);
    return launched();
}

extern "C" int eyc_dequant_f32(void *stream, float *out, int dt, const void *W, size_t row_bytes,
                               int64_t K, int64_t rows)
{
    if (rows <= 0 || K <= 0) return 0;
    cudaStream_t st = (cudaStream_t)stream;
    DISPATCH_DT(dt, k_dequant, grid_for(rows * K, EW_THREADS), EW_THREADS, out,
                (const uint8_t *)W, row_bytes, K, rows);
    return launched();
}

/* ------------------------------------------------------ element-wise */

__global__ void k_to_f16(__half *o, const float *x, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        o[i] = __float2half_rn(x[i]);
}

__global__ void k_to_bf16(__nv_bfloat16 *o, const float *x, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        o[i] = __float2bfloat16_rn(x[i]);
}

extern "C" int eyc_f32_to_half(void *stream, void *o, const float *x, int64_t n, int to_bf16)
{
    if (n <= 0) return 0;
    cudaStream_t st = (cudaStream_t)stream;
    if (to_bf16)
        k_to_bf16<<<grid_for(n, EW_THREADS), EW_THREADS, 0, st>>>((__nv_bfloat16 *)o, x, n);
    else
        k_to_f16<<<grid_for(n, EW_THREADS), EW_THREADS, 0, st>>>((__half *)o, x, n);
    return launched();
}

__global__ void k_add_bias(float *y, const float *bias, int64_t N, int64_t total)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += bias[i % N];
}

extern "C" int eyc_add_bias(void *stream, float *y, const float *bias, int64_t N, int T)
{
    int64_t total = N * (int64_t)T;
    if (total <= 0) return 0;
    k_add_bias<<<grid_for(total, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(y, bias, N,
                                                                                     total);
    return launched();
}

__global__ void k_silu_mul(float *g, const float *u, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = g[i];
        g[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

extern "C" int eyc_silu_mul(void *stream, float *g, const float *u, int64_t n)
{
    if (n <= 0) return 0;
    k_silu_mul<<<grid_for(n, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(g, u, n);
    return launched();
}

__global__ void k_add(float *a, const float *b, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        a[i] += b[i];
}

extern "C" int eyc_add(void *stream, float *a, const float *b, int64_t n)
{
    if (n <= 0) return 0;
    k_add<<<grid_for(n, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(a, b, n);
    return launched();
}

/* ------------------------------------------------------------ rmsnorm */

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024);
 * every thread gets the same value. red: 32 floats of shared memory. */
__device__ float block_sum(float v, float *red)
{
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* red is free (an earlier call's readers are done) */
    if (lane == 0) red[wid] = v;
    __syncthreads();
    float s = 0.0f;
    for (int i = 0; i < nw; i++) s += red[i]; /* same order in every thread */
    return s;
}

/* One block per row; in place is fine (each element is read, then written,
 * by the same thread, after the reduction). */
__global__ void k_rmsnorm(float *y, const float *x, const float *w, int64_t R, int64_t D,
                          float eps)
{
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const float *a = x + r * D;
        float *o = y + r * D;
        float ss = 0.0f;
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += a[i] * a[i];
        ss = block_sum(ss, red);
        float inv = 1.0f / sqrtf(ss / (float)D + eps);
        for (int64_t i = threadIdx.x; i < D; i += blockDim.x) o[i] = w[i] * (a[i] * inv);
    }
}

extern "C" int eyc_rmsnorm(void *stream, float *y, const float *x, const float *w, int64_t R,
                           int64_t D, float eps)
{
    if (R <= 0 || D <= 0) return 0;
    unsigned g = R < MAX_GRID ? (unsigned)R : MAX_GRID;
    k_rmsnorm<<<g, 256, 0, (cudaStream_t)stream>>>(y, x, w, R, D, eps);
    return launched();
}

/* --------------------------------------------------------------- rope */

/* One thread per rotated pair (t, h, i); pairs are disjoint, so in place is
 * safe. The products are rounded separately as in the C code (no FMA). */
__global__ void k_rope(float *x, const int32_t *pos, const float *inv_freq, int T, int n_head,
                       int head_dim, int half, int neox)
{
    const int64_t total = (int64_t)T * n_head * half;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(idx % half);
        const int64_t th = idx / half; /* t * n_head + h */
        const int t = (int)(th / n_head);
        float ang = (float)pos[t] * inv_freq[i];
        float c = cosf(ang), s = sinf(ang);
        float *v = x + th * head_dim;
        int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        float a = v[i0], b = v[i1];
        v[i0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        v[i1] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

extern "C" int eyc_rope(void *stream, float *x, const int32_t *pos, const float *inv_freq, int T,
                        int n_head, int head_dim, int rot_dim, int mode)
{
    int half = rot_dim / 2;
    int64_t total = (int64_t)T * n_head * half;
    if (total <= 0) return 0;
    k_rope<<<grid_for(total, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(
        x, pos, inv_freq, T, n_head, head_dim, half, mode == 0 /* EY_ROPE_NEOX */);
    return launched();
}

/* ----------------------------------------------------------- kv_store */

__global__ void k_kv_store(float *kc, float *vc, const float *k, const float *v, int kv_dim,
                           int start, int T, const int32_t *blocks, int bs)
{
    const int64_t total = (int64_t)T * kv_dim;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int t = (int)(i / kv_dim), d = (int)(i % kv_dim), row = start + t;
        size_t dst = ((size_t)blocks[row / bs] * bs + row % bs) * kv_dim + d;
        kc[dst] = k[i];
        vc[dst] = v[i];
    }
}

extern "C" int eyc_kv_store(void *stream, float *kc, float *vc, const float *k, const float *v,
                            int kv_dim, int start, int T, const int32_t *blocks, int block_size)
{
    int64_t total = (int64_t)T * kv_dim;
    if (total <= 0) return 0;
    k_kv_store<<<grid_for(total, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(
        kc, vc, k, v, kv_dim, start, T, blocks, block_size);
    return launched();
}

/* ---------------------------------------------------------- attention */

/* One block per (head h = blockIdx.x, query row t = blockIdx.y): the same
 * kernel serves prefill (T rows, causal), decode (T = 1) and tree verify
 * (T x T mask over the new rows). Query row t sits at KV index
 * past + t (past = n_kv - T) and sees rows j <= past + t with j < past or
 * mask[t][j - past] (mask NULL: all of them).
 *
 * The visible rows are taken ATT_TILE at a time with an online softmax: one
 * warp per row computes the score (q . k) * scale, then every thread rescales
 * its output accumulators (dims d = tid + r * ATT_THREADS) by
 * exp(m_old - m_new) and adds p_j * v_j[d]. Every thread keeps the same copy
 * of the running max m and sum l (computed from shared memory in one order).
 * A row that sees nothing gets zeros (as the CPU instance). */
__global__ void __launch_bounds__(ATT_THREADS)
k_attention(float *out, const float *q, const float *kc, const float *vc, int n_head,
            int n_kv_head, int hd, int n_kv, int T, const int32_t *blocks, int bs,
            const uint8_t *mask, float scale)
{
    __shared__ float qs[EYC_ATT_MAX_HD];
    __shared__ float sc[ATT_TILE];
    __shared__ int64_t roff[ATT_TILE]; /* element offset of row j's head slice in kc/vc */
    const int h = blockIdx.x, t = blockIdx.y;
    const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5, nw = ATT_THREADS / 32;
    const int kvh = h / (n_head / n_kv_head), kvd = n_kv_head * hd;
    const int past = n_kv - T, last = past + t;

    const float *qv = q + ((size_t)t * n_head + h) * hd;
    for (int d = tid; d < hd; d += ATT_THREADS) qs[d] = qv[d];

    float acc[ATT_ACC];
#pragma unroll
    for (int r = 0; r < ATT_ACC; r++) acc[r] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    for (int j0 = 0; j0 <= last; j0 += ATT_TILE) {
        const int n = last + 1 - j0 < ATT_TILE ? last + 1 - j0 : ATT_TILE;
        __syncthreads(); /* qs written (first pass); sc, roff no longer read */
        for (int i = tid; i < n; i += ATT_THREADS) {
            const int j = j0 + i;
            roff[i] = ((int64_t)blocks[j / bs] * bs + j % bs) * kvd + (int64_t)kvh * hd;
        }
        __syncthreads();
        for (int i = wid; i < n; i += nw) { /* warp-uniform: one row per warp */
            const int j = j0 + i;
            const bool vis = j < past || !mask || mask[(size_t)t * T + (j - past)];
            float s = 0.0f;
            if (vis) {
                const float *kr = kc + roff[i];
                for (int d = lane; d < hd; d += 32) s += qs[d] * kr[d];
                for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            }
            if (lane == 0) sc[i] = vis ? s * scale : -INFINITY;
        }
        __syncthreads();
        float mt = -INFINITY;
        for (int i = 0; i < n; i++) mt = fmaxf(mt, sc[i]);
        const float mn = fmaxf(m, mt);
        if (mn == -INFINITY) continue; /* nothing visible yet (same in every thread) */
        __syncthreads(); /* everyone has read the scores */
        for (int i = tid; i < n; i += ATT_THREADS)
            sc[i] = sc[i] == -INFINITY ? 0.0f : expf(sc[i] - mn);
        __syncthreads();
        const float corr = expf(m - mn); /* m = -inf on the first visible pass: 0 */
        float lt = 0.0f;
        for (int i = 0; i < n; i++) lt += sc[i];
        l = l * corr + lt;
#pragma unroll
        for (int r = 0; r < ATT_ACC; r++) {
            const int d = tid + r * ATT_THREADS;
            if (d < hd) {
                float a = acc[r] * corr;
                for (int i = 0; i < n; i++)
                    if (sc[i] != 0.0f) a += sc[i] * vc[roff[i] + d];
                acc[r] = a;
            }
        }
        m = mn;
    }
    float *o = out + ((size_t)t * n_head + h) * hd;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int r = 0; r < ATT_ACC; r++) {
        const int d = tid + r * ATT_THREADS;
        if (d < hd) o[d] = acc[r] * inv;
    }
}

extern "C" int eyc_attention(void *stream, float *out, const float *q, const float *kc,
                             const float *vc, int n_head, int n_kv_head, int head_dim, int n_kv,
                             int T, const int32_t *blocks, int block_size, const uint8_t *mask,
                             float scale)
{
    if (T <= 0 || n_head <= 0) return 0;
    if (head_dim <= 0 || head_dim > EYC_ATT_MAX_HD || n_kv_head <= 0 || n_head % n_kv_head ||
        n_kv < T || block_size <= 0 || T > 65535 || n_head > 0x7fffffff)
        return (int)cudaErrorInvalidValue;
    dim3 grid((unsigned)n_head, (unsigned)T);
    k_attention<<<grid, ATT_THREADS, 0, (cudaStream_t)stream>>>(
        out, q, kc, vc, n_head, n_kv_head, head_dim, n_kv, T, blocks, block_size, mask, scale);
    return launched();
}
