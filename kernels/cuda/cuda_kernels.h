/* eyrie — CUDA kernels of the CUDA backend (cuda_kernels.cu), callable from C.
 *
 * Plain types only, so this header is both C11 (cuda_backend.c, built by the C
 * compiler) and C++ (cuda_kernels.cu, built by nvcc). Every launcher enqueues
 * on `stream` (a cudaStream_t) and returns the launch status
 * (cudaGetLastError, 0 = cudaSuccess). Pointers are device pointers; the
 * semantics are those of the matching entry of kernels/ey_backend.h. */
#ifndef EY_CUDA_KERNELS_H
#define EY_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ggml type ids (the values of ey_dtype; cuda_backend.c checks they agree) */
enum {
    EYC_F32 = 0,
    EYC_F16 = 1,
    EYC_Q4_0 = 2,
    EYC_Q4_1 = 3,
    EYC_Q8_0 = 8,
    EYC_BF16 = 30,
};

#define EYC_GEMV_MAX_T 8   /* matmul with T <= this runs the GEMV kernel */
#define EYC_ATT_MAX_HD 512 /* largest head_dim the attention kernel takes */

/* out[t, k] = dequant(W[ids[t], k]) */
int eyc_get_rows(void *stream, float *out, int dt, const void *W, size_t row_bytes, int64_t K,
                 const int32_t *ids, int T);
/* y[t, n] = sum_k dequant(W[n, k]) x[t, k] (+ bias[n]); T <= EYC_GEMV_MAX_T */
int eyc_gemv(void *stream, float *y, int dt, const void *W, size_t row_bytes, const float *bias,
             const float *x, int64_t N, int64_t K, int T);
/* out[r, k] = dequant(W[r, k]) as f32, r < rows (a tile for cuBLAS) */
int eyc_dequant_f32(void *stream, float *out, int dt, const void *W, size_t row_bytes, int64_t K,
                    int64_t rows);
/* o[i] = x[i] rounded to f16 (to_bf16 = 0) or bf16 (to_bf16 = 1), nearest even */
int eyc_f32_to_half(void *stream, void *o, const float *x, int64_t n, int to_bf16);
/* y[t, n] += bias[n] */
int eyc_add_bias(void *stream, float *y, const float *bias, int64_t N, int T);
int eyc_rmsnorm(void *stream, float *y, const float *x, const float *w, int64_t R, int64_t D,
                float eps);
int eyc_rope(void *stream, float *x, const int32_t *pos, const float *inv_freq, int T, int n_head,
             int head_dim, int rot_dim, int mode);
/* blocks: device copy of the block table */
int eyc_kv_store(void *stream, float *kc, float *vc, const float *k, const float *v, int kv_dim,
                 int start, int T, const int32_t *blocks, int block_size);
/* blocks, mask: device copies (mask NULL = causal) */
int eyc_attention(void *stream, float *out, const float *q, const float *kc, const float *vc,
                  int n_head, int n_kv_head, int head_dim, int n_kv, int T,
                  const int32_t *blocks, int block_size, const uint8_t *mask, float scale);
int eyc_silu_mul(void *stream, float *g, const float *u, int64_t n);
int eyc_add(void *stream, float *a, const float *b, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
