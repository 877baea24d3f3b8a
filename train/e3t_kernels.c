/* eyrie — fp32 trainer kernels (see e3t_kernels.h). */
#include "e3t_kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* ================================================================ linear */

void e3t_linear_fwd(float *y, const float *x, const float *W, int T, int N, int K)
{
    if (T <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, x, K, W, K, 0.0f, y, N);
}

void e3t_linear_bwd(float *dx, float *dW, const float *dy, const float *x, const float *W, int T,
                    int N, int K)
{
    if (T <= 0) return;
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, K, N, 1.0f, dy, N, W, K, 1.0f,
                    dx, K);
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, T, 1.0f, dy, N, x, K, 1.0f, dW,
                    K);
}

void e3t_linear_fwd_ref(float *y, const float *x, const float *W, int T, int N, int K)
{
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)x[(size_t)t * K + k] * W[(size_t)n * K + k];
            y[(size_t)t * N + n] = (float)s;
        }
}

void e3t_linear_bwd_ref(float *dx, float *dW, const float *dy, const float *x, const float *W,
                        int T, int N, int K)
{
    if (dx)
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int n = 0; n < N; n++) s += (double)dy[(size_t)t * N + n] * W[(size_t)n * K + k];
                dx[(size_t)t * K + k] += (float)s;
            }
    if (dW)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int t = 0; t < T; t++) s += (double)dy[(size_t)t * N + n] * x[(size_t)t * K + k];
                dW[(size_t)n * K + k] += (float)s;
            }
}

/* ================================================================ RMSNorm */

static inline float inv_rms(const float *x, int D, float eps)
{
    double ss = 0;
    for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
    return (float)(1.0 / sqrt(ss / D + eps));
}

void e3t_rmsnorm_fwd(float *y, const float *x, const float *w, int R, int D, float eps)
{
#pragma omp parallel for schedule(static) if (R > 16)
    for (int r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * D;
        float *yr = y + (size_t)r * D;
        float s = inv_rms(xr, D, eps);
        for (int i = 0; i < D; i++) yr[i] = xr[i] * s * w[i];
    }
}

/* y = x * s * w with s = (mean(x^2) + eps)^-1/2:
 *   dx_i = s * w_i dy_i - x_i * s^3 / D * sum_k w_k dy_k x_k
 *   dw_i = sum_r dy_i x_i s */
static void rmsnorm_bwd_rows(float *dx, float *dwpart, const float *dy, const float *x,
                             const float *w, int r0, int r1, int D, float eps)
{
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * D, *gr = dy + (size_t)r * D;
        float s = inv_rms(xr, D, eps);
        double dot = 0;
        for (int i = 0; i < D; i++) dot += (double)w[i] * gr[i] * xr[i];
        float c = (float)(dot * s * s * s / D);
        if (dx) {
            float *dr = dx + (size_t)r * D;
            for (int i = 0; i < D; i++) dr[i] += s * w[i] * gr[i] - xr[i] * c;
        }
        if (dwpart)
            for (int i = 0; i < D; i++) dwpart[i] += gr[i] * xr[i] * s;
    }
}

void e3t_rmsnorm_bwd_ref(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         int R, int D, float eps)
{
    rmsnorm_bwd_rows(dx, dw, dy, x, w, 0, R, D, eps);
}

#define E3T_MAX_THREADS 256

void e3t_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int R,
                     int D, float eps)
{
    if (R <= 32 || !dw) {
        rmsnorm_bwd_rows(dx, dw, dy, x, w, 0, R, D, eps);
        return;
    }
    /* rows split into fixed chunks (independent of the thread count, so the
     * summation order of dw, and the result, is too) */
    enum { CH = 64 };
    int nch = (R + CH - 1) / CH;
    float part[8][1024];
    if (D > 1024 || nch > 8 * 64) {
        rmsnorm_bwd_rows(dx, dw, dy, x, w, 0, R, D, eps);
        return;
    }
    for (int base = 0; base < nch; base += 8) {
        int nb = nch - base < 8 ? nch - base : 8;
#pragma omp parallel for schedule(static)
        for (int c = 0; c < nb; c++) {
            memset(part[c], 0, (size_t)D * sizeof(float));
            int r0 = (base + c) * CH, r1 = r0 + CH < R ? r0 + CH : R;
            rmsnorm_bwd_rows(dx, part[c], dy, x, w, r0, r1, D, eps);
        }
        for (int c = 0; c < nb; c++)
            for (int i = 0; i < D; i++) dw[i] += part[c][i];
    }
}

/* ================================================================ RoPE */

void e3t_rope(float *x, const int32_t *pos, const float *inv_freq, int T, int n_head, int hd,
              int inverse)
{
    const int half = hd / 2;
#pragma omp parallel for schedule(static) if (T > 16)
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = (double)pos[t] * inv_freq[i];
            float c = (float)cos(ang), s = (float)sin(ang);
            if (inverse) s = -s;
            for (int h = 0; h < n_head; h++) {
                float *p = x + ((size_t)t * n_head + h) * hd;
                float a = p[i], b = p[i + half];
                p[i] = a * c - b * s;
                p[i + half] = b * c + a * s;
            }
        }
}

/* ================================================================ SwiGLU */

static inline float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

void e3t_swiglu_fwd(float *h, const float *g, const float *u, int64_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) h[i] = g[i] * sigm(g[i]) * u[i];
}

void e3t_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                    int64_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float s = sigm(g[i]);
        du[i] += dh[i] * g[i] * s;
        dg[i] += dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

/* ================================================================ attention */

/* scores of query row t, head h: n = t + 1 + n_diag entries into sc */
static int attn_scores(const e3t_attn *a, int t, int h, float *sc)
{
    const int hd = a->hd, kvd = a->nkv * hd, g = h / (a->nh / a->nkv);
    const float *q = a->q + ((size_t)t * a->nh + h) * hd;
    int n = 0;
    for (int s = 0; s <= t; s++) {
        const float *k = a->k0 + (size_t)s * kvd + (size_t)g * hd;
        float d = 0;
        for (int i = 0; i < hd; i++) d += q[i] * k[i];
        sc[n++] = d * a->scale;
    }
    for (int j = 0; j < a->n_diag; j++) {
        const float *k = a->kd[j] + (size_t)t * kvd + (size_t)g * hd;
        float d = 0;
        for (int i = 0; i < hd; i++) d += q[i] * k[i];
        sc[n++] = d * a->scale;
    }
    return n;
}

static inline const float *attn_v(const e3t_attn *a, int t, int g, int idx)
{
    const int kvd = a->nkv * a->hd;
    if (idx <= t) return a->v0 + (size_t)idx * kvd + (size_t)g * a->hd;
    return a->vd[idx - t - 1] + (size_t)t * kvd + (size_t)g * a->hd;
}

static void attn_fwd_row(const e3t_attn *a, int t, int h, float *sc, float *out, float *lse)
{
    const int hd = a->hd, g = h / (a->nh / a->nkv);
    int n = attn_scores(a, t, h, sc);
    float mx = -FLT_MAX;
    for (int i = 0; i < n; i++) mx = sc[i] > mx ? sc[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        sc[i] = expf(sc[i] - mx);
        sum += sc[i];
    }
    float inv = (float)(1.0 / sum);
    float *o = out + ((size_t)t * a->nh + h) * hd;
    for (int i = 0; i < hd; i++) o[i] = 0;
    for (int s = 0; s < n; s++) {
        const float *v = attn_v(a, t, g, s);
        float p = sc[s] * inv;
        for (int i = 0; i < hd; i++) o[i] += p * v[i];
    }
    lse[(size_t)t * a->nh + h] = mx + (float)log(sum);
}

void e3t_attn_fwd(const e3t_attn *a, float *out, float *lse)
{
    const int T = a->T, nh = a->nh;
#pragma omp parallel
    {
        float sc[8192 + 64];
#pragma omp for schedule(dynamic, 8)
        for (int th = 0; th < T * nh; th++) attn_fwd_row(a, th / nh, th % nh, sc, out, lse);
    }
}

void e3t_attn_fwd_ref(const e3t_attn *a, float *out, float *lse)
{
    float sc[8192 + 64];
    for (int t = 0; t < a->T; t++)
        for (int h = 0; h < a->nh; h++) attn_fwd_row(a, t, h, sc, out, lse);
}

/* backward of query row t, head h (see the header) */
static void attn_bwd_row(const e3t_attn *a, const float *out, const float *lse, const float *dout,
                         int t, int h, float *sc, float *dq, float *dk0, float *dv0,
                         float *const *dkd, float *const *dvd)
{
    const int hd = a->hd, kvd = a->nkv * hd, g = h / (a->nh / a->nkv);
    const size_t qo = ((size_t)t * a->nh + h) * hd;
    const float *q = a->q + qo, *o = out + qo, *go = dout + qo;
    int n = attn_scores(a, t, h, sc);
    float L = lse[(size_t)t * a->nh + h];
    float D = 0;
    for (int i = 0; i < hd; i++) D += go[i] * o[i];
    float *gq = dq + qo;
    for (int s = 0; s < n; s++) {
        float p = expf(sc[s] - L);
        const float *v = attn_v(a, t, g, s);
        float dp = 0;
        for (int i = 0; i < hd; i++) dp += go[i] * v[i];
        float ds = p * (dp - D) * a->scale;
        const float *k;
        float *gk, *gv;
        if (s <= t) {
            k = a->k0 + (size_t)s * kvd + (size_t)g * hd;
            gk = dk0 + (size_t)s * kvd + (size_t)g * hd;
            gv = dv0 + (size_t)s * kvd + (size_t)g * hd;
        } else {
            int j = s - t - 1;
            k = a->kd[j] + (size_t)t * kvd + (size_t)g * hd;
            gk = dkd[j] + (size_t)t * kvd + (size_t)g * hd;
            gv = dvd[j] + (size_t)t * kvd + (size_t)g * hd;
        }
        for (int i = 0; i < hd; i++) {
            gq[i] += ds * k[i];
            gk[i] += ds * q[i];
            gv[i] += p * go[i];
        }
    }
}

void e3t_attn_bwd(const e3t_attn *a, const float *out, const float *lse, const float *dout,
                  float *dq, float *dk0, float *dv0, float *const *dkd, float *const *dvd)
{
    /* one task per KV head: each writes only its own slice of the key and
     * value gradients, in a fixed order (deterministic) */
    const int grp = a->nh / a->nkv;
#pragma omp parallel
    {
        float sc[8192 + 64];
#pragma omp for schedule(dynamic, 1)
        for (int g = 0; g < a->nkv; g++)
            for (int t = 0; t < a->T; t++)
                for (int h = g * grp; h < (g + 1) * grp; h++)
                    attn_bwd_row(a, out, lse, dout, t, h, sc, dq, dk0, dv0, dkd, dvd);
    }
}

void e3t_attn_bwd_ref(const e3t_attn *a, const float *out, const float *lse, const float *dout,
                      float *dq, float *dk0, float *dv0, float *const *dkd, float *const *dvd)
{
    float sc[8192 + 64];
    for (int t = 0; t < a->T; t++)
        for (int h = 0; h < a->nh; h++)
            attn_bwd_row(a, out, lse, dout, t, h, sc, dq, dk0, dv0, dkd, dvd);
}

/* ================================================================ soft CE */

double e3t_softce(float *z, int T, int Vd, const int32_t *tid, const float *tlog,
                  const int *n_teach, int kmax, const float *weight, int32_t *argmax_z)
{
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int t = 0; t < T; t++) {
        float *zr = z + (size_t)t * Vd;
        int am = 0;
        float mx = zr[0];
        for (int v = 1; v < Vd; v++)
            if (zr[v] > mx) {
                mx = zr[v];
                am = v;
            }
        if (argmax_z) argmax_z[t] = am;
        float w = weight[t];
        if (w == 0 || n_teach[t] <= 0) {
            memset(zr, 0, (size_t)Vd * sizeof *zr);
            continue;
        }
        double sum = 0;
        for (int v = 0; v < Vd; v++) sum += exp((double)zr[v] - mx);
        double lz = mx + log(sum);
        /* teacher softmax over its own entries */
        const int32_t *ti = tid + (size_t)t * kmax;
        const float *tl = tlog + (size_t)t * kmax;
        int n = n_teach[t];
        float tm = tl[0];
        for (int i = 1; i < n; i++) tm = tl[i] > tm ? tl[i] : tm;
        double ts = 0;
        for (int i = 0; i < n; i++) ts += exp((double)tl[i] - tm);
        double ce = 0;
        for (int i = 0; i < n; i++)
            ce -= exp((double)tl[i] - tm) / ts * ((double)zr[ti[i]] - lz);
        for (int v = 0; v < Vd; v++) zr[v] = (float)(w * exp((double)zr[v] - lz));
        for (int i = 0; i < n; i++) zr[ti[i]] -= (float)(w * exp((double)tl[i] - tm) / ts);
        total += w * ce;
    }
    return total;
}
