/* Tests for the drafter trainer's fp32 kernels (train/e3t_kernels.h).
 *
 *  1. fast kernel vs its `_ref` twin on random inputs of awkward sizes
 *     (T in {1,3,37,130}, N/K not multiples of 8; RMSNorm with R > 64 so
 *     the chunked dw path runs, R > 512 so it runs more than one batch of
 *     chunks, D > 1024 for its fallback; attention with n_diag 0,1,3, GQA
 *     nh/nkv = 4/2, 6/3, 4/1, 4/4, hd 8 and 16). Backward outputs are
 *     pre-filled with random values to check that they accumulate.
 *  2. every forward against an independent double-precision evaluation
 *     written from the spec (header comments, docs/eagle3.md §3.4-3.5);
 *  3. every backward against central finite differences of the scalar loss
 *     L = sum(dy * forward(x)), each input perturbed by +-eps in float and
 *     the quotient taken over the float difference actually stored; run
 *     twice: with the kernel's own fp32 forward (L summed in double; eps
 *     1e-2, tolerance 2e-3) and with the double forward of item 2 (eps 1e-3,
 *     tolerance 1e-4). Error = |analytic - numeric| / (|numeric| + rms of the
 *     analytic gradient). All elements up to 64, else 50 random ones plus the
 *     first and last (plus every teacher entry for softce). Negative controls:
 *     plausibly wrong gradients (missing term, stale lse, swapped steps or
 *     KV heads, forward instead of inverse rotation, weight forgotten,
 *     uniform teacher, 1 % scale) must be rejected by the same checks;
 *  4. soft CE: returned loss, gradient, argmax (ties -> lowest id) and zero
 *     gradient on rows with weight 0 or no teacher entries;
 *  5. the backward kernels that promise determinism (rmsnorm dw, attention)
 *     are memcmp-equal for 1, 2 and 3 OpenMP threads.
 *
 * Seed: EYRIE_TEST_SEED if set, else a fixed one (finite differences are
 * checked against tolerances; a fixed default keeps CI reproducible).
 * EYRIE_TEST_VERBOSE=1 prints the worst error of every check. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "train/e3t_kernels.h"

static uint64_t g_rng, g_seed;
static int g_verbose;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static double rndu(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }
static float rnds(void) { return (float)(2.0 * rndu() - 1.0); }

static float *fnew(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}
static float *frand(size_t n, float amp)
{
    float *p = fnew(n);
    for (size_t i = 0; i < n; i++) p[i] = amp * rnds();
    return p;
}
static float *fzero(size_t n)
{
    float *p = fnew(n);
    memset(p, 0, (n ? n : 1) * sizeof *p);
    return p;
}
static float *fdup(const float *a, size_t n)
{
    float *p = fnew(n);
    memcpy(p, a, n * sizeof *p);
    return p;
}

/* ---------------------------------------------------------------- compare */

/* got vs want, elementwise |got - want| <= rtol * (|want| + max(rms(want),
 * floor)): relative where the value is large, relative to the tensor's scale
 * where it is near zero (accumulation order differences scale with the
 * terms, not the result; `floor` is the typical size of a sum of m terms,
 * ~0.1 * sqrt(m), for tensors so small that their rms can be a cancelled
 * sum, e.g. dw with D = 1). NaN fails. */
static void cmp_arrays_f(const char *what, const float *got, const float *want, size_t n,
                         double rtol, double floor)
{
    double rms = 0;
    for (size_t i = 0; i < n; i++) rms += (double)want[i] * want[i];
    rms = n ? sqrt(rms / n) : 0;
    if (rms < floor) rms = floor;
    size_t bad = 0, wi = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (fabs(want[i]) + rms + 1e-30);
        if (!(e <= rtol)) bad++;
        if (!(e <= worst)) {
            worst = e;
            wi = i;
        }
    }
    if (g_verbose) fprintf(stderr, "  %-58s worst rel %.2e\n", what, worst);
    TEST_CHECK_MSG(bad == 0,
                   "%s: %zu/%zu elements off, worst [%zu] got %.9g want %.9g (rel %.3g > %.3g) "
                   "seed=%llu",
                   what, bad, n, wi, n ? got[wi] : 0.f, n ? want[wi] : 0.f, worst, rtol,
                   (unsigned long long)g_seed);
}

static void cmp_arrays(const char *what, const float *got, const float *want, size_t n,
                       double rtol)
{
    cmp_arrays_f(what, got, want, n, rtol, 0);
}

static void cmp_dbl(const char *what, const float *got, const double *want, size_t n, double rtol)
{
    float *w = fnew(n);
    for (size_t i = 0; i < n; i++) w[i] = (float)want[i];
    cmp_arrays(what, got, w, n, rtol);
    free(w);
}

/* ---------------------------------------------------------------- finite differences */

typedef double (*loss_fn)(void *ctx);

/* Central difference of f with respect to x[i] (x is read by f's forward). */
static double fd_at(loss_fn f, void *ctx, float *x, size_t i, float h)
{
    float x0 = x[i];
    float xp = x0 + h, xm = x0 - h;
    x[i] = xp;
    double lp = f(ctx);
    x[i] = xm;
    double lm = f(ctx);
    x[i] = x0;
    return (lp - lm) / ((double)xp - (double)xm);
}

/* Two FD modes, each check run in both:
 *  - fp32: the loss evaluates the kernel's own fp32 forward (summed in
 *    double). Its noise is the fp32 rounding of the outputs divided by the
 *    step, so the step is larger (FD_EPS_F32) and the tolerance loose
 *    (FD_TOL_F32);
 *  - double: the loss evaluates the double-precision forward written here
 *    from the spec (each checked against the kernel forward above to ~1e-5),
 *    so only the O(eps^2) truncation remains and the tolerance is tight.
 * Error measure: |analytic - numeric| / (|numeric| + scale), scale = rms of
 * the analytic gradient over the tensor (near-zero entries are judged
 * against the tensor's typical size, not against themselves). */
#define FD_EPS_F32 1e-2f
#define FD_TOL_F32 2e-3
#define FD_EPS_DBL 1e-3f
#define FD_TOL_DBL 1e-4
#define FD_SAMPLES 50

static int g_fd_dbl; /* loss functions: 1 = double forward, 0 = kernel fp32 forward */

/* Per-element step multiplier where set (inputs whose natural scale is far
 * from 1, e.g. RMSNorm rows of magnitude 0.01 or 30). */
static const float *g_fd_scale;
/* indices always checked in addition to the samples (e.g. softce teacher ids) */
static const size_t *g_fd_force;
static size_t g_fd_nforce;

typedef struct {
    int checked, bad;
    double worst;
} fdres;

/* Compares analytic[] with FD of f w.r.t. x[] on all elements (n <= 64) or
 * FD_SAMPLES random ones (always the first and last) plus g_fd_force, in the
 * current mode (g_fd_dbl). Reports a test failure only if expect_ok. */
static fdres fd_check(const char *what, loss_fn f, void *ctx, float *x, size_t n,
                      const float *analytic, int expect_ok)
{
    const float eps = g_fd_dbl ? FD_EPS_DBL : FD_EPS_F32;
    const double tol = g_fd_dbl ? FD_TOL_DBL : FD_TOL_F32;
    fdres r = {0, 0, 0};
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale += (double)analytic[i] * analytic[i];
    scale = n ? sqrt(scale / n) : 0;
    size_t ns = n <= 64 ? n : FD_SAMPLES;
    size_t wi = 0;
    double wa = 0, wn = 0;
    for (size_t s = 0; s < ns + g_fd_nforce; s++) {
        size_t i = s >= ns      ? g_fd_force[s - ns]
                   : n <= 64    ? s
                   : s == 0     ? 0
                   : s == 1     ? n - 1
                                : (size_t)(rnd() % n);
        double num = fd_at(f, ctx, x, i, g_fd_scale ? eps * g_fd_scale[i] : eps);
        double e = fabs((double)analytic[i] - num) / (fabs(num) + scale + 1e-30);
        r.checked++;
        if (!(e <= tol)) r.bad++;
        if (!(e <= r.worst)) {
            r.worst = e;
            wi = i;
            wa = analytic[i];
            wn = num;
        }
    }
    if (g_verbose)
        fprintf(stderr, "  FD-%s %-55s worst rel %.2e%s\n", g_fd_dbl ? "dbl" : "f32", what,
                r.worst, expect_ok ? "" : " (negative control)");
    if (expect_ok)
        TEST_CHECK_MSG(r.bad == 0,
                       "FD (%s forward) %s: %d/%d off, worst [%zu] analytic %.9g numeric %.9g "
                       "(rel %.3g > %.3g) seed=%llu",
                       g_fd_dbl ? "double" : "fp32 kernel", what, r.bad, r.checked, wi, wa, wn,
                       r.worst, tol, (unsigned long long)g_seed);
    return r;
}

/* the check in both modes */
/* The FD loops call a forward thousands of times on tiny inputs; they run
 * single-threaded (threading is covered by the fast-vs-ref and determinism
 * checks), as an OpenMP fork per call on a loaded machine costs ~ms. */
static int g_fd_nt0;
static void fd_threads_begin(void)
{
    g_fd_nt0 = omp_get_max_threads();
    omp_set_num_threads(1);
}
static void fd_threads_end(void) { omp_set_num_threads(g_fd_nt0); }

static void fd_both(const char *what, loss_fn f, void *ctx, float *x, size_t n,
                    const float *analytic)
{
    fd_threads_begin();
    for (g_fd_dbl = 0; g_fd_dbl < 2; g_fd_dbl++) fd_check(what, f, ctx, x, n, analytic, 1);
    g_fd_dbl = 0;
    fd_threads_end();
}

/* negative control: a wrong gradient must be rejected in both modes */
static void fd_expect_fail(const char *what, loss_fn f, void *ctx, float *x, size_t n,
                           const float *wrong)
{
    fd_threads_begin();
    for (g_fd_dbl = 0; g_fd_dbl < 2; g_fd_dbl++) {
        fdres r = fd_check(what, f, ctx, x, n, wrong, 0);
        TEST_CHECK_MSG(r.bad > 0,
                       "negative control %s: a wrong gradient passed the FD check (%s forward, "
                       "worst %.3g) seed=%llu",
                       what, g_fd_dbl ? "double" : "fp32 kernel", r.worst,
                       (unsigned long long)g_seed);
    }
    g_fd_dbl = 0;
    fd_threads_end();
}

static double dot_dbl(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ================================================================ linear */

typedef struct {
    float *x, *W, *dy, *y;
    int T, N, K;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    if (g_fd_dbl) {
        double L = 0;
        for (int t = 0; t < c->T; t++)
            for (int n = 0; n < c->N; n++)
                L += c->dy[(size_t)t * c->N + n] *
                     dot_dbl(c->x + (size_t)t * c->K, c->W + (size_t)n * c->K, c->K);
        return L;
    }
    e3t_linear_fwd(c->y, c->x, c->W, c->T, c->N, c->K);
    return dot_dbl(c->dy, c->y, (size_t)c->T * c->N);
}

static void test_linear(void)
{
    static const int Ts[] = {1, 3, 37, 130};
    static const int NK[][2] = {{1, 1}, {5, 3}, {37, 29}, {67, 131}, {13, 300}};
    char nm[160];
    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++)
        for (size_t si = 0; si < sizeof NK / sizeof *NK; si++) {
            int T = Ts[ti], N = NK[si][0], K = NK[si][1];
            size_t nx = (size_t)T * K, nw = (size_t)N * K, ny = (size_t)T * N;
            float *x = frand(nx, 1), *W = frand(nw, 1), *dy = frand(ny, 1);
            float *y = fnew(ny), *yr = fnew(ny);
            double *yd = malloc(ny * sizeof *yd);
            e3t_linear_fwd(y, x, W, T, N, K);
            e3t_linear_fwd_ref(yr, x, W, T, N, K);
            for (int t = 0; t < T; t++)
                for (int n = 0; n < N; n++)
                    yd[(size_t)t * N + n] = dot_dbl(x + (size_t)t * K, W + (size_t)n * K, K);
            snprintf(nm, sizeof nm, "linear_fwd T=%d N=%d K=%d vs ref", T, N, K);
            cmp_arrays_f(nm, y, yr, ny, 1e-4, 0.1 * sqrt(K));
            snprintf(nm, sizeof nm, "linear_fwd_ref T=%d N=%d K=%d vs double", T, N, K);
            cmp_dbl(nm, yr, yd, ny, 1e-6);

            /* backward, accumulating into random pre-filled buffers */
            float *dx0 = frand(nx, 1), *dW0 = frand(nw, 1);
            float *dx = fdup(dx0, nx), *dW = fdup(dW0, nw);
            float *dxr = fdup(dx0, nx), *dWr = fdup(dW0, nw);
            e3t_linear_bwd(dx, dW, dy, x, W, T, N, K);
            e3t_linear_bwd_ref(dxr, dWr, dy, x, W, T, N, K);
            snprintf(nm, sizeof nm, "linear_bwd dx T=%d N=%d K=%d vs ref (accumulating)", T, N, K);
            cmp_arrays_f(nm, dx, dxr, nx, 1e-4, 0.1 * sqrt(N));
            snprintf(nm, sizeof nm, "linear_bwd dW T=%d N=%d K=%d vs ref (accumulating)", T, N, K);
            cmp_arrays_f(nm, dW, dWr, nw, 1e-4, 0.1 * sqrt(T));
            /* NULL outputs: the other one must be unchanged by the skipping */
            float *dx2 = fdup(dx0, nx), *dW2 = fdup(dW0, nw);
            e3t_linear_bwd(dx2, NULL, dy, x, W, T, N, K);
            e3t_linear_bwd(NULL, dW2, dy, x, W, T, N, K);
            snprintf(nm, sizeof nm, "linear_bwd dx-only/dW-only T=%d N=%d K=%d", T, N, K);
            cmp_arrays(nm, dx2, dx, nx, 1e-6);
            cmp_arrays(nm, dW2, dW, nw, 1e-6);

            /* finite differences on a moderate subset of shapes */
            if (T <= 37 && K <= 131) {
                float *gx = fzero(nx), *gW = fzero(nw);
                e3t_linear_bwd(gx, gW, dy, x, W, T, N, K);
                lin_ctx c = {x, W, dy, y, T, N, K};
                snprintf(nm, sizeof nm, "linear dx T=%d N=%d K=%d", T, N, K);
                fd_both(nm, lin_loss, &c, x, nx, gx);
                snprintf(nm, sizeof nm, "linear dW T=%d N=%d K=%d", T, N, K);
                fd_both(nm, lin_loss, &c, W, nw, gW);
                if (T == 37 && N == 37) {
                    /* negative control: dW off by 1 % */
                    for (size_t i = 0; i < nw; i++) gW[i] *= 1.01f;
                    fd_expect_fail("linear dW * 1.01", lin_loss, &c, W, nw, gW);
                }
                free(gx);
                free(gW);
            }
            free(x), free(W), free(dy), free(y), free(yr), free(yd);
            free(dx0), free(dW0), free(dx), free(dW), free(dxr), free(dWr), free(dx2), free(dW2);
        }
}

/* ================================================================ RMSNorm */

typedef struct {
    float *x, *w, *dy, *y;
    int R, D;
    float eps;
} rms_ctx;

static double rms_loss(void *p)
{
    rms_ctx *c = p;
    if (g_fd_dbl) {
        double L = 0;
        for (int r = 0; r < c->R; r++) {
            const float *xr = c->x + (size_t)r * c->D, *gr = c->dy + (size_t)r * c->D;
            double s = 1.0 / sqrt(dot_dbl(xr, xr, c->D) / c->D + c->eps);
            for (int i = 0; i < c->D; i++) L += gr[i] * (xr[i] * s * c->w[i]);
        }
        return L;
    }
    e3t_rmsnorm_fwd(c->y, c->x, c->w, c->R, c->D, c->eps);
    return dot_dbl(c->dy, c->y, (size_t)c->R * c->D);
}

static void test_rmsnorm(void)
{
    static const int Rs[] = {1, 3, 33, 37, 65, 130, 600};
    static const int Ds[] = {1, 37, 200, 1030};
    const float eps = 1e-6f;
    char nm[160];
    for (size_t ri = 0; ri < sizeof Rs / sizeof *Rs; ri++)
        for (size_t di = 0; di < sizeof Ds / sizeof *Ds; di++) {
            int R = Rs[ri], D = Ds[di];
            if (R == 600 && D == 1030) continue;
            size_t n = (size_t)R * D;
            float *x = frand(n, 2), *w = frand(D, 1), *dy = frand(n, 1), *y = fnew(n);
            /* rows of very different magnitude */
            for (int r = 0; r < R; r++) {
                float m = r % 3 == 0 ? 0.01f : r % 3 == 1 ? 1.f : 30.f;
                for (int i = 0; i < D; i++) x[(size_t)r * D + i] *= m;
            }
            double *yd = malloc(n * sizeof *yd);
            for (int r = 0; r < R; r++) {
                const float *xr = x + (size_t)r * D;
                double ss = dot_dbl(xr, xr, D);
                double s = 1.0 / sqrt(ss / D + eps);
                for (int i = 0; i < D; i++) yd[(size_t)r * D + i] = xr[i] * s * w[i];
            }
            e3t_rmsnorm_fwd(y, x, w, R, D, eps);
            snprintf(nm, sizeof nm, "rmsnorm_fwd R=%d D=%d vs double", R, D);
            cmp_dbl(nm, y, yd, n, 1e-5);

            float *dx0 = frand(n, 1), *dw0 = frand(D, 1);
            float *dx = fdup(dx0, n), *dw = fdup(dw0, D), *dxr = fdup(dx0, n), *dwr = fdup(dw0, D);
            e3t_rmsnorm_bwd(dx, dw, dy, x, w, R, D, eps);
            e3t_rmsnorm_bwd_ref(dxr, dwr, dy, x, w, R, D, eps);
            snprintf(nm, sizeof nm, "rmsnorm_bwd dx R=%d D=%d vs ref (accumulating)", R, D);
            cmp_arrays(nm, dx, dxr, n, 1e-4);
            snprintf(nm, sizeof nm, "rmsnorm_bwd dw R=%d D=%d vs ref (accumulating)", R, D);
            cmp_arrays_f(nm, dw, dwr, D, 1e-4, 0.1 * sqrt(R));
            /* frozen weight: dw NULL, dx the same */
            float *dx2 = fdup(dx0, n);
            e3t_rmsnorm_bwd(dx2, NULL, dy, x, w, R, D, eps);
            snprintf(nm, sizeof nm, "rmsnorm_bwd dw=NULL R=%d D=%d dx", R, D);
            cmp_arrays(nm, dx2, dxr, n, 1e-5);
            /* dw's summation order does not depend on the thread count */
            if (R > 32) {
                int nt0 = omp_get_max_threads();
                float *dwt[3];
                float *dxt = fnew(n);
                for (int k = 0; k < 3; k++) {
                    omp_set_num_threads(k + 1);
                    dwt[k] = fdup(dw0, D);
                    memcpy(dxt, dx0, n * sizeof *dxt);
                    e3t_rmsnorm_bwd(dxt, dwt[k], dy, x, w, R, D, eps);
                }
                omp_set_num_threads(nt0);
                TEST_CHECK_MSG(!memcmp(dwt[0], dwt[1], D * sizeof(float)) &&
                                   !memcmp(dwt[0], dwt[2], D * sizeof(float)),
                               "rmsnorm_bwd R=%d D=%d: dw differs between 1/2/3 threads", R, D);
                for (int k = 0; k < 3; k++) free(dwt[k]);
                free(dxt);
            }

            if (D == 37 && (R == 3 || R == 65)) {
                float *gx = fzero(n), *gw = fzero(D);
                e3t_rmsnorm_bwd(gx, gw, dy, x, w, R, D, eps);
                rms_ctx c = {x, w, dy, y, R, D, eps};
                float *xs = fnew(n); /* FD step relative to the row's rms */
                for (int r = 0; r < R; r++) {
                    const float *xr = x + (size_t)r * D;
                    float rr = (float)sqrt(dot_dbl(xr, xr, D) / D);
                    for (int i = 0; i < D; i++) xs[(size_t)r * D + i] = rr;
                }
                /* dx row by row: rows differ in magnitude by 3000x, so each
                 * is judged against its own gradient scale (every element;
                 * R = 65: rows 0-2 and 64, the second chunk of the fast path) */
                static const int rows[] = {0, 1, 2, 64};
                for (int k = 0; k < 4 && rows[k] < R; k++) {
                    size_t o = (size_t)rows[k] * D;
                    snprintf(nm, sizeof nm, "rmsnorm dx row %d R=%d D=%d", rows[k], R, D);
                    g_fd_scale = xs + o;
                    fd_both(nm, rms_loss, &c, x + o, D, gx + o);
                }
                g_fd_scale = NULL;
                snprintf(nm, sizeof nm, "rmsnorm dw R=%d D=%d", R, D);
                fd_both(nm, rms_loss, &c, w, D, gw);
                /* negative control: dx without the normalisation term
                 * (s * w * dy only) */
                float *bad = fnew(n);
                for (int r = 0; r < R; r++) {
                    const float *xr = x + (size_t)r * D;
                    float s = (float)(1.0 / sqrt(dot_dbl(xr, xr, D) / D + eps));
                    for (int i = 0; i < D; i++)
                        bad[(size_t)r * D + i] = s * w[i] * dy[(size_t)r * D + i];
                }
                /* (the term is proportional to sum_k w_k dy_k x_k, which can be
                 * ~0 in one row by chance: rejected in at least one of rows
                 * 0-2 is required) */
                fd_threads_begin();
                for (g_fd_dbl = 0; g_fd_dbl < 2; g_fd_dbl++) {
                    int nbad = 0;
                    for (int k = 0; k < 3; k++) {
                        size_t o = (size_t)rows[k] * D;
                        snprintf(nm, sizeof nm, "rmsnorm dx missing the mean term row %d R=%d",
                                 rows[k], R);
                        g_fd_scale = xs + o;
                        nbad += fd_check(nm, rms_loss, &c, x + o, D, bad + o, 0).bad;
                    }
                    TEST_CHECK_MSG(nbad > 0,
                                   "negative control rmsnorm dx missing the mean term R=%d: "
                                   "passed the FD check (%s forward) seed=%llu",
                                   R, g_fd_dbl ? "double" : "fp32 kernel",
                                   (unsigned long long)g_seed);
                }
                g_fd_dbl = 0;
                fd_threads_end();
                g_fd_scale = NULL;
                free(xs);
                /* negative control: dw off by 1 % */
                for (int i = 0; i < D; i++) gw[i] *= 1.01f;
                snprintf(nm, sizeof nm, "rmsnorm dw * 1.01 R=%d", R);
                fd_expect_fail(nm, rms_loss, &c, w, D, gw);
                free(bad), free(gx), free(gw);
            }
            free(x), free(w), free(dy), free(y), free(yd);
            free(dx0), free(dw0), free(dx), free(dw), free(dxr), free(dwr), free(dx2);
        }
}

/* ================================================================ RoPE */

typedef struct {
    float *x, *dy, *tmp;
    const int32_t *pos;
    const float *inv_freq;
    int T, nh, hd;
} rope_ctx;

static double rope_loss(void *p)
{
    rope_ctx *c = p;
    size_t n = (size_t)c->T * c->nh * c->hd;
    if (g_fd_dbl) {
        int half = c->hd / 2;
        double L = 0;
        for (int t = 0; t < c->T; t++)
            for (int h = 0; h < c->nh; h++)
                for (int i = 0; i < half; i++) {
                    size_t o = ((size_t)t * c->nh + h) * c->hd;
                    double ang = (double)c->pos[t] * (double)c->inv_freq[i];
                    double a = c->x[o + i], b = c->x[o + i + half];
                    L += c->dy[o + i] * (a * cos(ang) - b * sin(ang)) +
                         c->dy[o + i + half] * (b * cos(ang) + a * sin(ang));
                }
        return L;
    }
    memcpy(c->tmp, c->x, n * sizeof *c->tmp);
    e3t_rope(c->tmp, c->pos, c->inv_freq, c->T, c->nh, c->hd, 0);
    return dot_dbl(c->dy, c->tmp, n);
}

static void test_rope(void)
{
    static const int cfg[][3] = {{1, 1, 2}, {3, 4, 8}, {37, 3, 16}, {130, 2, 64}, {5, 6, 128}};
    char nm[160];
    for (size_t ci = 0; ci < sizeof cfg / sizeof *cfg; ci++) {
        int T = cfg[ci][0], nh = cfg[ci][1], hd = cfg[ci][2], half = hd / 2;
        size_t n = (size_t)T * nh * hd;
        int32_t *pos = malloc(T * sizeof *pos);
        float *inv_freq = fnew(half);
        for (int i = 0; i < half; i++) inv_freq[i] = (float)pow(10000.0, -2.0 * i / hd);
        for (int t = 0; t < T; t++) pos[t] = t % 4 == 3 ? (int32_t)(rnd() % 100000) : t + 7;
        float *x = frand(n, 1), *y = frand(n, 1);
        float *rx = fdup(x, n), *iy = fdup(y, n);
        e3t_rope(rx, pos, inv_freq, T, nh, hd, 0);
        e3t_rope(iy, pos, inv_freq, T, nh, hd, 1);
        /* forward vs a double rotation of pair (i, i + hd/2) */
        double *rd = malloc(n * sizeof *rd);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < half; i++) {
                    size_t o = ((size_t)t * nh + h) * hd;
                    double ang = (double)pos[t] * (double)inv_freq[i];
                    double a = x[o + i], b = x[o + i + half];
                    rd[o + i] = a * cos(ang) - b * sin(ang);
                    rd[o + i + half] = b * cos(ang) + a * sin(ang);
                }
        snprintf(nm, sizeof nm, "rope T=%d nh=%d hd=%d vs double", T, nh, hd);
        cmp_dbl(nm, rx, rd, n, 1e-5);
        /* adjoint: <rope(x), y> == <x, rope_inv(y)> */
        double l = dot_dbl(rx, y, n), r = dot_dbl(x, iy, n);
        double mag = 0;
        for (size_t i = 0; i < n; i++) mag += fabs((double)x[i] * iy[i]);
        TEST_CHECK_MSG(fabs(l - r) <= 1e-6 * mag + 1e-12,
                       "rope T=%d nh=%d hd=%d: <rope(x),y> = %.12g but <x,rope_inv(y)> = %.12g", T,
                       nh, hd, l, r);
        /* inverse(forward(x)) == x */
        e3t_rope(rx, pos, inv_freq, T, nh, hd, 1);
        snprintf(nm, sizeof nm, "rope inverse(rope(x)) == x T=%d nh=%d hd=%d", T, nh, hd);
        cmp_arrays(nm, rx, x, n, 1e-5);
        /* FD: the backward of L = <dy, rope(x)> is rope_inv(dy) */
        if (T <= 37) {
            float *tmp = fnew(n);
            rope_ctx c = {x, y, tmp, pos, inv_freq, T, nh, hd};
            snprintf(nm, sizeof nm, "rope (inverse = backward) T=%d nh=%d hd=%d", T, nh, hd);
            fd_both(nm, rope_loss, &c, x, n, iy);
            if (T >= 3) {
                /* negative control: the forward rotation used as the backward */
                float *bad = fdup(y, n);
                e3t_rope(bad, pos, inv_freq, T, nh, hd, 0);
                snprintf(nm, sizeof nm, "rope forward-as-backward T=%d", T);
                fd_expect_fail(nm, rope_loss, &c, x, n, bad);
                free(bad);
            }
            free(tmp);
        }
        free(pos), free(inv_freq), free(x), free(y), free(rx), free(iy), free(rd);
    }
}

/* ================================================================ SwiGLU */

typedef struct {
    float *g, *u, *dh, *h;
    int64_t n;
} swi_ctx;

static double swi_loss(void *p)
{
    swi_ctx *c = p;
    if (g_fd_dbl) {
        double L = 0;
        for (int64_t i = 0; i < c->n; i++)
            L += c->dh[i] * (c->g[i] / (1.0 + exp(-(double)c->g[i])) * c->u[i]);
        return L;
    }
    e3t_swiglu_fwd(c->h, c->g, c->u, c->n);
    return dot_dbl(c->dh, c->h, (size_t)c->n);
}

static void test_swiglu(void)
{
    static const int64_t ns[] = {1, 37, 1000, 70001};
    char nm[160];
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        int64_t n = ns[k];
        float *g = frand(n, 4), *u = frand(n, 2), *dh = frand(n, 1), *h = fnew(n);
        /* include the tails of the sigmoid */
        for (int64_t i = 0; i < n; i += 7) g[i] *= 3;
        double *hd = malloc(n * sizeof *hd), *dgd = malloc(n * sizeof *dgd),
               *dud = malloc(n * sizeof *dud);
        for (int64_t i = 0; i < n; i++) {
            double s = 1.0 / (1.0 + exp(-(double)g[i]));
            hd[i] = g[i] * s * u[i];
            dud[i] = dh[i] * g[i] * s;
            dgd[i] = dh[i] * u[i] * (s + g[i] * s * (1 - s));
        }
        e3t_swiglu_fwd(h, g, u, n);
        snprintf(nm, sizeof nm, "swiglu_fwd n=%lld vs double", (long long)n);
        cmp_dbl(nm, h, hd, n, 1e-5);
        float *dg0 = frand(n, 1), *du0 = frand(n, 1);
        float *dg = fdup(dg0, n), *du = fdup(du0, n);
        e3t_swiglu_bwd(dg, du, dh, g, u, n);
        for (int64_t i = 0; i < n; i++) dgd[i] += dg0[i], dud[i] += du0[i];
        snprintf(nm, sizeof nm, "swiglu_bwd dg n=%lld vs double (accumulating)", (long long)n);
        cmp_dbl(nm, dg, dgd, n, 1e-5);
        snprintf(nm, sizeof nm, "swiglu_bwd du n=%lld vs double (accumulating)", (long long)n);
        cmp_dbl(nm, du, dud, n, 1e-5);
        if (n <= 1000) {
            float *gg = fzero(n), *gu = fzero(n);
            e3t_swiglu_bwd(gg, gu, dh, g, u, n);
            swi_ctx c = {g, u, dh, h, n};
            snprintf(nm, sizeof nm, "swiglu dg n=%lld", (long long)n);
            fd_both(nm, swi_loss, &c, g, n, gg);
            snprintf(nm, sizeof nm, "swiglu du n=%lld", (long long)n);
            fd_both(nm, swi_loss, &c, u, n, gu);
            if (n >= 37) {
                /* negative control: dg = dh * u * sigmoid(g) (the g*s*(1-s)
                 * term forgotten) */
                for (int64_t i = 0; i < n; i++) gg[i] = dh[i] * u[i] / (1 + expf(-g[i]));
                snprintf(nm, sizeof nm, "swiglu dg missing a term n=%lld", (long long)n);
                fd_expect_fail(nm, swi_loss, &c, g, n, gg);
            }
            free(gg), free(gu);
        }
        free(g), free(u), free(dh), free(h), free(hd), free(dgd), free(dud);
        free(dg0), free(du0), free(dg), free(du);
    }
}

/* ================================================================ attention */

#define MAXD 3

typedef struct {
    int T, nh, nkv, hd, nd;
    float *q, *k0, *v0, *kd[MAXD], *vd[MAXD];
    float *dout, *out, *lse;
    e3t_attn a;
} att_set;

static void att_init(att_set *s, int T, int nh, int nkv, int hd, int nd)
{
    memset(s, 0, sizeof *s);
    s->T = T, s->nh = nh, s->nkv = nkv, s->hd = hd, s->nd = nd;
    size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
    /* amplitudes so that the softmax is neither uniform nor one-hot */
    s->q = frand(nq, 1.5f);
    s->k0 = frand(nk, 1.5f);
    s->v0 = frand(nk, 1);
    for (int i = 0; i < nd; i++) s->kd[i] = frand(nk, 1.5f), s->vd[i] = frand(nk, 1);
    s->dout = frand(nq, 1);
    s->out = fnew(nq);
    s->lse = fnew((size_t)T * nh);
    e3t_attn a = {T, nh, nkv, hd, nd, (float)(1.0 / sqrt((double)hd)), s->q, s->k0, s->v0,
                  (const float *const *)s->kd, (const float *const *)s->vd};
    s->a = a;
}

static void att_free(att_set *s)
{
    free(s->q), free(s->k0), free(s->v0), free(s->dout), free(s->out), free(s->lse);
    for (int i = 0; i < s->nd; i++) free(s->kd[i]), free(s->vd[i]);
}

/* straight from docs/eagle3.md §3.4, in double */
static void att_fwd_dbl(const att_set *s, double *out, double *lse)
{
    const int T = s->T, nh = s->nh, hd = s->hd, kvd = s->nkv * hd;
    double *sc = malloc((T + MAXD) * sizeof *sc);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            int g = h / (nh / s->nkv), n = 0;
            const float *q = s->q + ((size_t)t * nh + h) * hd;
            const float *vs[512 + MAXD];
            for (int r = 0; r <= t; r++) {
                sc[n] = dot_dbl(q, s->k0 + (size_t)r * kvd + g * hd, hd) * s->a.scale;
                vs[n++] = s->v0 + (size_t)r * kvd + g * hd;
            }
            for (int i = 0; i < s->nd; i++) {
                sc[n] = dot_dbl(q, s->kd[i] + (size_t)t * kvd + g * hd, hd) * s->a.scale;
                vs[n++] = s->vd[i] + (size_t)t * kvd + g * hd;
            }
            double m = sc[0], sum = 0;
            for (int i = 1; i < n; i++) m = sc[i] > m ? sc[i] : m;
            for (int i = 0; i < n; i++) sum += exp(sc[i] - m);
            lse[(size_t)t * nh + h] = m + log(sum);
            double *o = out + ((size_t)t * nh + h) * hd;
            for (int d = 0; d < hd; d++) o[d] = 0;
            for (int i = 0; i < n; i++) {
                double p = exp(sc[i] - m) / sum;
                for (int d = 0; d < hd; d++) o[d] += p * vs[i][d];
            }
        }
    free(sc);
}

static double att_loss(void *p)
{
    att_set *s = p;
    size_t nq = (size_t)s->T * s->nh * s->hd;
    if (g_fd_dbl) {
        double *o = malloc(nq * sizeof *o), *l = malloc((size_t)s->T * s->nh * sizeof *l), L = 0;
        att_fwd_dbl(s, o, l);
        for (size_t i = 0; i < nq; i++) L += s->dout[i] * o[i];
        free(o), free(l);
        return L;
    }
    e3t_attn_fwd(&s->a, s->out, s->lse);
    return dot_dbl(s->dout, s->out, nq);
}

typedef struct {
    float *dq, *dk0, *dv0, *dkd[MAXD], *dvd[MAXD];
} att_grads;

static void grads_alloc(att_grads *g, const att_set *s, int random_fill)
{
    size_t nq = (size_t)s->T * s->nh * s->hd, nk = (size_t)s->T * s->nkv * s->hd;
    memset(g, 0, sizeof *g);
    g->dq = random_fill ? frand(nq, 1) : fzero(nq);
    g->dk0 = random_fill ? frand(nk, 1) : fzero(nk);
    g->dv0 = random_fill ? frand(nk, 1) : fzero(nk);
    for (int i = 0; i < s->nd; i++) {
        g->dkd[i] = random_fill ? frand(nk, 1) : fzero(nk);
        g->dvd[i] = random_fill ? frand(nk, 1) : fzero(nk);
    }
}
static void grads_copy(att_grads *dst, const att_grads *src, const att_set *s)
{
    size_t nq = (size_t)s->T * s->nh * s->hd, nk = (size_t)s->T * s->nkv * s->hd;
    memset(dst, 0, sizeof *dst);
    dst->dq = fdup(src->dq, nq);
    dst->dk0 = fdup(src->dk0, nk);
    dst->dv0 = fdup(src->dv0, nk);
    for (int i = 0; i < s->nd; i++) dst->dkd[i] = fdup(src->dkd[i], nk), dst->dvd[i] = fdup(src->dvd[i], nk);
}
static void grads_free(att_grads *g, const att_set *s)
{
    free(g->dq), free(g->dk0), free(g->dv0);
    for (int i = 0; i < s->nd; i++) free(g->dkd[i]), free(g->dvd[i]);
}
static void att_bwd(const att_set *s, const float *lse, att_grads *g, int ref)
{
    (ref ? e3t_attn_bwd_ref : e3t_attn_bwd)(&s->a, s->out, lse, s->dout, g->dq, g->dk0, g->dv0,
                                            g->dkd, g->dvd);
}
static int grads_equal(const att_grads *a, const att_grads *b, const att_set *s)
{
    size_t nq = (size_t)s->T * s->nh * s->hd * sizeof(float),
           nk = (size_t)s->T * s->nkv * s->hd * sizeof(float);
    int eq = !memcmp(a->dq, b->dq, nq) && !memcmp(a->dk0, b->dk0, nk) &&
             !memcmp(a->dv0, b->dv0, nk);
    for (int i = 0; i < s->nd; i++)
        eq = eq && !memcmp(a->dkd[i], b->dkd[i], nk) && !memcmp(a->dvd[i], b->dvd[i], nk);
    return eq;
}

static void test_attention(void)
{
    static const int Ts[] = {1, 3, 37, 130};
    static const int heads[][3] = {{4, 2, 8}, {6, 3, 16}, {4, 1, 8}, {4, 4, 16}};
    static const int nds[] = {0, 1, 3};
    char nm[200];
    /* fast vs ref, forward vs double, accumulation, thread determinism */
    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++)
        for (size_t hi = 0; hi < sizeof heads / sizeof *heads; hi++)
            for (size_t di = 0; di < sizeof nds / sizeof *nds; di++) {
                int T = Ts[ti], nh = heads[hi][0], nkv = heads[hi][1], hd = heads[hi][2],
                    nd = nds[di];
                if (T == 130 && hi >= 2) continue;
                att_set s;
                att_init(&s, T, nh, nkv, hd, nd);
                size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
                float *outr = fnew(nq), *lser = fnew((size_t)T * nh);
                double *outd = malloc(nq * sizeof *outd), *lsed = malloc(T * nh * sizeof *lsed);
                e3t_attn_fwd(&s.a, s.out, s.lse);
                e3t_attn_fwd_ref(&s.a, outr, lser);
                att_fwd_dbl(&s, outd, lsed);
#define CFG "T=%d nh=%d nkv=%d hd=%d n_diag=%d"
#define CFGA T, nh, nkv, hd, nd
                snprintf(nm, sizeof nm, "attn_fwd out vs ref " CFG, CFGA);
                cmp_arrays(nm, s.out, outr, nq, 1e-4);
                snprintf(nm, sizeof nm, "attn_fwd lse vs ref " CFG, CFGA);
                cmp_arrays(nm, s.lse, lser, (size_t)T * nh, 1e-4);
                snprintf(nm, sizeof nm, "attn_fwd out vs double " CFG, CFGA);
                cmp_dbl(nm, s.out, outd, nq, 1e-5);
                snprintf(nm, sizeof nm, "attn_fwd lse vs double " CFG, CFGA);
                cmp_dbl(nm, s.lse, lsed, (size_t)T * nh, 1e-5);

                att_grads g0, gf, gr;
                grads_alloc(&g0, &s, 1);
                grads_copy(&gf, &g0, &s);
                grads_copy(&gr, &g0, &s);
                att_bwd(&s, s.lse, &gf, 0);
                att_bwd(&s, s.lse, &gr, 1);
                snprintf(nm, sizeof nm, "attn_bwd dq vs ref (acc.) " CFG, CFGA);
                cmp_arrays(nm, gf.dq, gr.dq, nq, 1e-4);
                snprintf(nm, sizeof nm, "attn_bwd dk0 vs ref (acc.) " CFG, CFGA);
                cmp_arrays(nm, gf.dk0, gr.dk0, nk, 1e-4);
                snprintf(nm, sizeof nm, "attn_bwd dv0 vs ref (acc.) " CFG, CFGA);
                cmp_arrays(nm, gf.dv0, gr.dv0, nk, 1e-4);
                for (int i = 0; i < nd; i++) {
                    snprintf(nm, sizeof nm, "attn_bwd dkd[%d] vs ref (acc.) " CFG, i, CFGA);
                    cmp_arrays(nm, gf.dkd[i], gr.dkd[i], nk, 1e-4);
                    snprintf(nm, sizeof nm, "attn_bwd dvd[%d] vs ref (acc.) " CFG, i, CFGA);
                    cmp_arrays(nm, gf.dvd[i], gr.dvd[i], nk, 1e-4);
                }
                /* the header promises a deterministic backward */
                if (T >= 37) {
                    int nt0 = omp_get_max_threads();
                    for (int k = 1; k <= 3; k += 2) {
                        att_grads gt;
                        grads_copy(&gt, &g0, &s);
                        omp_set_num_threads(k);
                        att_bwd(&s, s.lse, &gt, 0);
                        omp_set_num_threads(nt0);
                        TEST_CHECK_MSG(grads_equal(&gt, &gf, &s),
                                       "attn_bwd " CFG ": %d threads differ from %d", CFGA, k,
                                       nt0);
                        grads_free(&gt, &s);
                    }
                }
                grads_free(&g0, &s), grads_free(&gf, &s), grads_free(&gr, &s);
                free(outr), free(lser), free(outd), free(lsed);
                att_free(&s);
            }

    /* finite differences of every input, n_diag 0..3 */
    static const int fdcfg[][4] = {{9, 4, 2, 8}, {6, 6, 3, 16}, {1, 4, 2, 8}};
    for (size_t ci = 0; ci < sizeof fdcfg / sizeof *fdcfg; ci++)
        for (int nd = 0; nd <= 3; nd++) {
            int T = fdcfg[ci][0], nh = fdcfg[ci][1], nkv = fdcfg[ci][2], hd = fdcfg[ci][3];
            att_set s;
            att_init(&s, T, nh, nkv, hd, nd);
            size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
            e3t_attn_fwd(&s.a, s.out, s.lse);
            att_grads g;
            grads_alloc(&g, &s, 0);
            att_bwd(&s, s.lse, &g, 0);
            snprintf(nm, sizeof nm, "attn dq " CFG, CFGA);
            fd_both(nm, att_loss, &s, s.q, nq, g.dq);
            snprintf(nm, sizeof nm, "attn dk0 " CFG, CFGA);
            fd_both(nm, att_loss, &s, s.k0, nk, g.dk0);
            snprintf(nm, sizeof nm, "attn dv0 " CFG, CFGA);
            fd_both(nm, att_loss, &s, s.v0, nk, g.dv0);
            for (int i = 0; i < nd; i++) {
                snprintf(nm, sizeof nm, "attn dkd[%d] " CFG, i, CFGA);
                fd_both(nm, att_loss, &s, s.kd[i], nk, g.dkd[i]);
                snprintf(nm, sizeof nm, "attn dvd[%d] " CFG, i, CFGA);
                fd_both(nm, att_loss, &s, s.vd[i], nk, g.dvd[i]);
            }
            if (ci == 0) {
                /* negative controls. (a) the backward run with an lse off by
                 * 0.01 (probabilities 1 % off): dq must be rejected */
                e3t_attn_fwd(&s.a, s.out, s.lse);
                float *lse2 = fdup(s.lse, (size_t)T * nh);
                for (int i = 0; i < T * nh; i++) lse2[i] += 0.01f;
                att_grads gb;
                grads_alloc(&gb, &s, 0);
                att_bwd(&s, lse2, &gb, 0);
                snprintf(nm, sizeof nm, "attn dv0 with lse + 0.01 n_diag=%d", nd);
                fd_expect_fail(nm, att_loss, &s, s.v0, nk, gb.dv0);
                snprintf(nm, sizeof nm, "attn dq with lse + 0.01 n_diag=%d", nd);
                fd_expect_fail(nm, att_loss, &s, s.q, nq, gb.dq);
                grads_free(&gb, &s);
                free(lse2);
                /* (b) diagonal gradients of two steps swapped */
                if (nd >= 2) {
                    snprintf(nm, sizeof nm, "attn dkd[0] given dkd[1] n_diag=%d", nd);
                    fd_expect_fail(nm, att_loss, &s, s.kd[0], nk, g.dkd[1]);
                    snprintf(nm, sizeof nm, "attn dvd[0] given dvd[1] n_diag=%d", nd);
                    fd_expect_fail(nm, att_loss, &s, s.vd[0], nk, g.dvd[1]);
                }
                /* (c) KV-head slices swapped in dk0 (GQA grouping wrong) */
                float *sw = fdup(g.dk0, nk);
                for (int t = 0; t < T; t++)
                    for (int d = 0; d < hd; d++) {
                        float *r = sw + (size_t)t * nkv * hd;
                        float tmp = r[d];
                        r[d] = r[hd + d];
                        r[hd + d] = tmp;
                    }
                snprintf(nm, sizeof nm, "attn dk0 with KV heads swapped n_diag=%d", nd);
                fd_expect_fail(nm, att_loss, &s, s.k0, nk, sw);
                free(sw);
            }
            grads_free(&g, &s);
            att_free(&s);
        }
#undef CFG
#undef CFGA
}

/* ================================================================ soft CE */

typedef struct {
    float *z, *tmp, *tlog, *weight;
    int32_t *tid;
    int *n_teach;
    int T, Vd, kmax;
} ce_ctx;

/* double loss and gradient from the definition (header, docs §3.5) */
static double ce_dbl(const ce_ctx *c, double *grad)
{
    double total = 0;
    for (int t = 0; t < c->T; t++) {
        const float *zr = c->z + (size_t)t * c->Vd;
        double *gr = grad ? grad + (size_t)t * c->Vd : NULL;
        if (gr)
            for (int v = 0; v < c->Vd; v++) gr[v] = 0;
        int n = c->n_teach[t];
        double w = c->weight[t];
        if (n <= 0 || w == 0) continue;
        double m = zr[0], s = 0;
        for (int v = 1; v < c->Vd; v++) m = zr[v] > m ? zr[v] : m;
        for (int v = 0; v < c->Vd; v++) s += exp(zr[v] - m);
        double lz = m + log(s);
        const float *tl = c->tlog + (size_t)t * c->kmax;
        const int32_t *ti = c->tid + (size_t)t * c->kmax;
        double tm = tl[0], ts = 0;
        for (int i = 1; i < n; i++) tm = tl[i] > tm ? tl[i] : tm;
        for (int i = 0; i < n; i++) ts += exp(tl[i] - tm);
        if (gr)
            for (int v = 0; v < c->Vd; v++) gr[v] = w * exp(zr[v] - lz);
        for (int i = 0; i < n; i++) {
            double P = exp(tl[i] - tm) / ts;
            total -= w * P * (zr[ti[i]] - lz);
            if (gr) gr[ti[i]] -= w * P;
        }
    }
    return total;
}

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    if (g_fd_dbl) return ce_dbl(c, NULL);
    memcpy(c->tmp, c->z, (size_t)c->T * c->Vd * sizeof *c->tmp);
    return e3t_softce(c->tmp, c->T, c->Vd, c->tid, c->tlog, c->n_teach, c->kmax, c->weight, NULL);
}

static void test_softce(void)
{
    static const int cfg[][2] = {{12, 37}, {3, 1000}, {130, 37}};
    char nm[160];
    for (size_t ci = 0; ci < sizeof cfg / sizeof *cfg; ci++) {
        int T = cfg[ci][0], Vd = cfg[ci][1], kmax = 5;
        size_t n = (size_t)T * Vd;
        float *z = frand(n, 3), *tmp = fnew(n), *tlog = frand((size_t)T * kmax, 4),
              *weight = fnew(T);
        int32_t *tid = malloc((size_t)T * kmax * sizeof *tid), *am = malloc(T * sizeof *am);
        int *n_teach = malloc(T * sizeof *n_teach);
        for (int t = 0; t < T; t++) {
            /* weights: 0, 1, 0.8^j, and one row with no teacher entries */
            weight[t] = t % 4 == 1 ? 0.f : t % 4 == 2 ? 1.f : (float)pow(0.8, 1 + t % 7);
            n_teach[t] = t == 5 ? 0 : t % 3 == 0 ? 1 : 2 + (int)(rnd() % (kmax - 1));
            /* distinct teacher ids (the teacher row is a top-k) */
            for (int i = 0; i < kmax; i++) {
                int32_t v;
                int dup;
                do {
                    v = (int32_t)(rnd() % Vd);
                    dup = 0;
                    for (int j = 0; j < i; j++) dup |= tid[(size_t)t * kmax + j] == v;
                } while (dup && i < Vd);
                tid[(size_t)t * kmax + i] = v;
            }
        }
        /* stress rows: large logits, an argmax tie, the max at the last id */
        if (T > 3) {
            for (int v = 0; v < Vd; v++) z[(size_t)3 * Vd + v] += 80.f;
            z[(size_t)2 * Vd + 3] = z[(size_t)2 * Vd + Vd - 2] = 50.f;
            z[(size_t)0 * Vd + Vd - 1] = 10.f;
        }
        ce_ctx c = {z, tmp, tlog, weight, tid, n_teach, T, Vd, kmax};
        double *gd = malloc(n * sizeof *gd);
        double Ld = ce_dbl(&c, gd);
        memcpy(tmp, z, n * sizeof *tmp);
        for (int t = 0; t < T; t++) am[t] = -7;
        double L = e3t_softce(tmp, T, Vd, tid, tlog, n_teach, kmax, weight, am);
        TEST_CHECK_MSG(fabs(L - Ld) <= 1e-6 * fabs(Ld) + 1e-9,
                       "softce T=%d Vd=%d: loss %.12g, double definition %.12g seed=%llu", T, Vd,
                       L, Ld, (unsigned long long)g_seed);
        if (g_verbose)
            fprintf(stderr, "  softce T=%d Vd=%d loss %.9g vs %.9g\n", T, Vd, L, Ld);
        snprintf(nm, sizeof nm, "softce dz T=%d Vd=%d vs double", T, Vd);
        cmp_dbl(nm, tmp, gd, n, 1e-5);
        int zero_ok = 1, am_ok = 1;
        for (int t = 0; t < T; t++) {
            const float *zr = z + (size_t)t * Vd;
            int want = 0;
            for (int v = 1; v < Vd; v++)
                if (zr[v] > zr[want]) want = v;
            if (am[t] != want) {
                am_ok = 0;
                fprintf(stderr, "softce T=%d Vd=%d row %d: argmax %d, want %d\n", T, Vd, t, am[t],
                        want);
            }
            if (weight[t] == 0 || n_teach[t] == 0)
                for (int v = 0; v < Vd; v++)
                    if (tmp[(size_t)t * Vd + v] != 0.f) zero_ok = 0;
        }
        TEST_CHECK_MSG(am_ok, "softce T=%d Vd=%d: argmax_z wrong (seed=%llu)", T, Vd,
                       (unsigned long long)g_seed);
        TEST_CHECK_MSG(zero_ok, "softce T=%d Vd=%d: weight-0 / no-teacher row with nonzero dz",
                       T, Vd);
        if (T > 3) {
            TEST_CHECK_MSG(am[2] == 3, "softce: tie at ids 3 and %d gave argmax %d (want 3)",
                           Vd - 2, am[2]);
        }
        /* NULL argmax pointer is allowed */
        memcpy(tmp, z, n * sizeof *tmp);
        double L2 = e3t_softce(tmp, T, Vd, tid, tlog, n_teach, kmax, weight, NULL);
        TEST_CHECK_MSG(fabs(L2 - L) <= 1e-12 * fabs(L), "softce: argmax NULL changes the loss");

        /* FD of the returned loss */
        if (Vd <= 1000) {
            float *ga = fdup(tmp, n); /* the kernel's gradient */
            /* always check every teacher entry, where P enters */
            size_t *force = malloc((size_t)T * kmax * sizeof *force), nf = 0;
            for (int t = 0; t < T; t++)
                for (int i = 0; i < n_teach[t]; i++)
                    force[nf++] = (size_t)t * Vd + tid[(size_t)t * kmax + i];
            g_fd_force = force, g_fd_nforce = nf;
            snprintf(nm, sizeof nm, "softce dz T=%d Vd=%d", T, Vd);
            fd_both(nm, ce_loss, &c, z, n, ga);
            /* every element of a few rows: weight 0, one teacher entry,
             * several, large logits */
            for (int t = 0; t < T && t < 6; t++) {
                snprintf(nm, sizeof nm, "softce dz row %d (w=%g, %d teacher) T=%d Vd=%d", t,
                         weight[t], n_teach[t], T, Vd);
                /* n = Vd <= 64: every element of the row; a row with weight 0
                 * has analytic 0 and scale 0, so any nonzero FD fails */
                const size_t *f0 = g_fd_force;
                size_t nf0 = g_fd_nforce;
                g_fd_force = NULL, g_fd_nforce = 0;
                fd_both(nm, ce_loss, &c, z + (size_t)t * Vd, Vd <= 64 ? Vd : 64,
                        ga + (size_t)t * Vd);
                g_fd_force = f0, g_fd_nforce = nf0;
            }
            /* negative control: the unweighted gradient (weight forgotten) */
            float *bad = fdup(ga, n);
            for (int t = 0; t < T; t++)
                if (weight[t] != 0)
                    for (int v = 0; v < Vd; v++) bad[(size_t)t * Vd + v] /= weight[t];
            snprintf(nm, sizeof nm, "softce dz without weight T=%d", T);
            fd_expect_fail(nm, ce_loss, &c, z, n, bad);
            /* negative control: uniform teacher instead of its softmax */
            memcpy(bad, ga, n * sizeof *bad);
            for (int t = 0; t < T; t++) {
                int k = n_teach[t];
                if (weight[t] == 0 || k <= 0) continue;
                const float *tl = tlog + (size_t)t * kmax;
                double tm = tl[0], ts = 0;
                for (int i = 1; i < k; i++) tm = tl[i] > tm ? tl[i] : tm;
                for (int i = 0; i < k; i++) ts += exp(tl[i] - tm);
                for (int i = 0; i < k; i++)
                    bad[(size_t)t * Vd + tid[(size_t)t * kmax + i]] +=
                        (float)(weight[t] * (exp(tl[i] - tm) / ts - 1.0 / k));
            }
            snprintf(nm, sizeof nm, "softce dz with a uniform teacher T=%d", T);
            fd_expect_fail(nm, ce_loss, &c, z, n, bad);
            g_fd_force = NULL, g_fd_nforce = 0;
            free(force);
            free(bad);
            free(ga);
        }
        free(z), free(tmp), free(tlog), free(weight), free(tid), free(am), free(n_teach), free(gd);
    }
}

int main(void)
{
    const char *e = getenv("EYRIE_TEST_SEED");
    g_seed = e && *e ? strtoull(e, NULL, 0) : 0x5eed2024e3ULL;
    /* splitmix64 of the seed: small seeds would start xorshift on tiny values */
    uint64_t z = g_seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    g_rng = (z ^ (z >> 31)) | 1;
    e = getenv("EYRIE_TEST_VERBOSE");
    g_verbose = e && *e && *e != '0';
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    static void (*const parts[])(void) = {test_linear, test_rmsnorm, test_rope,
                                           test_swiglu, test_attention, test_softce};
    static const char *const names[] = {"linear", "rmsnorm", "rope", "swiglu", "attention",
                                        "softce"};
    int fails[6];
    for (int i = 0; i < 6; i++) {
        int f = g_test_failures;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        parts[i]();
        clock_gettime(CLOCK_MONOTONIC, &b);
        fails[i] = g_test_failures - f;
        if (g_verbose)
            fprintf(stderr, "%s: %.2f s\n", names[i],
                    (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("train-kernels:");
    for (int i = 0; i < 6; i++) printf(" %s %s%s", names[i], fails[i] ? "FAIL" : "ok", i < 5 ? "," : "");
    printf(" (%d checks, %d failed, %.1f s, seed=%llu)\n", g_test_checks, g_test_failures, sec,
           (unsigned long long)g_seed);
    if (g_test_failures) fprintf(stderr, "train-kernels: FAILED\n");
    return test_result();
}
