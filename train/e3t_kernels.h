/* eyrie — fp32 forward and backward kernels of the EAGLE-3 drafter trainer.
 *
 * Host memory, row-major, threads from OpenMP. Every kernel has a plain-C
 * reference (the `_ref` functions, single-threaded, straight loops) that the
 * tests compare the fast version against, and every backward kernel is
 * checked against finite differences of its forward (tests/train).
 *
 * Conventions: a "linear" is y[T,N] = x[T,K] . W[N,K]^T (the layout of the
 * checkpoint tensors and of the inference backend's matmul). Backward
 * functions ACCUMULATE into their gradient outputs (dx, dW, dw...), so a
 * caller zeroes them once and sums contributions from several uses. */
#ifndef EY_E3T_KERNELS_H
#define EY_E3T_KERNELS_H

#include <stdint.h>

/* ---- linear (OpenBLAS sgemm; _ref: loops) */
void e3t_linear_fwd(float *y, const float *x, const float *W, int T, int N, int K);
/* dx[T,K] += dy[T,N] . W[N,K] (dx may be NULL); dW[N,K] += dy^T . x (dW may be NULL) */
void e3t_linear_bwd(float *dx, float *dW, const float *dy, const float *x, const float *W, int T,
                    int N, int K);
void e3t_linear_fwd_ref(float *y, const float *x, const float *W, int T, int N, int K);
void e3t_linear_bwd_ref(float *dx, float *dW, const float *dy, const float *x, const float *W,
                        int T, int N, int K);

/* ---- RMSNorm: y[r,:] = x[r,:] * w / sqrt(mean(x[r,:]^2) + eps) over R rows of D.
 * Backward: dx += ..., dw += ... (dw may be NULL: a frozen weight). */
void e3t_rmsnorm_fwd(float *y, const float *x, const float *w, int R, int D, float eps);
void e3t_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int R,
                     int D, float eps);
void e3t_rmsnorm_bwd_ref(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         int R, int D, float eps);

/* ---- NeoX (rotate-half) RoPE in place on x[T][n_head][hd]: pair (i, i+hd/2)
 * rotated by pos[t] * inv_freq[i]. The backward is the inverse rotation,
 * applied in place to the gradient (inverse = 1: rotate by -angle). */
void e3t_rope(float *x, const int32_t *pos, const float *inv_freq, int T, int n_head, int hd,
              int inverse);

/* ---- SwiGLU: h = silu(g) * u (n elements); backward dg += ..., du += ... */
void e3t_swiglu_fwd(float *h, const float *g, const float *u, int64_t n);
void e3t_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                    int64_t n);

/* ---- training-time-test attention (docs/eagle3.md §3.4) for one step j.
 * q: [T][nh*hd] (after RoPE); k0, v0: step-0 keys/values [T][nkv*hd];
 * kd[i], vd[i] for i = 0..n_diag-1: the keys/values of steps 1..n_diag
 * (n_diag = j). Query row t attends to k0 rows 0..t and to row t of every
 * kd[i]. out: [T][nh*hd]; lse: [T][nh] log-sum-exp of each row's scores
 * (saved for the backward, which recomputes the probabilities). */
typedef struct e3t_attn {
    int T, nh, nkv, hd, n_diag;
    float scale;
    const float *q, *k0, *v0;
    const float *const *kd, *const *vd;
} e3t_attn;

void e3t_attn_fwd(const e3t_attn *a, float *out, float *lse);
void e3t_attn_fwd_ref(const e3t_attn *a, float *out, float *lse);
/* dq += ..., dk0/dv0 += ..., dkd[i]/dvd[i] += ... given dout and the
 * forward's out and lse. */
void e3t_attn_bwd(const e3t_attn *a, const float *out, const float *lse, const float *dout,
                  float *dq, float *dk0, float *dv0, float *const *dkd, float *const *dvd);
void e3t_attn_bwd_ref(const e3t_attn *a, const float *out, const float *lse, const float *dout,
                      float *dq, float *dk0, float *dv0, float *const *dkd, float *const *dvd);

/* ---- soft cross-entropy over the draft vocabulary, row by row.
 * z: [T][Vd] logits, replaced by dL/dz (scaled by weight[t]; rows with
 * weight 0 get 0). Teacher row t: n_teach[t] entries (draft ids tid[t*kmax+i],
 * logits tlog[t*kmax+i]) renormalised by softmax among themselves.
 * Returns sum_t weight[t] * CE_t; *argmax_z[t] is the draft's top-1 (ties:
 * lowest id). */
double e3t_softce(float *z, int T, int Vd, const int32_t *tid, const float *tlog,
                  const int *n_teach, int kmax, const float *weight, int32_t *argmax_z);

#endif
