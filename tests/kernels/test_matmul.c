/* Tests for the CPU matmul kernels (kernels/cpu/cpu_matmul.h).
 *
 *  - the reference against a double-precision dot over ey_dequant_row output;
 *  - every fast path this CPU supports (EYRIE_CPU_ISA=scalar|avx2|avx512,
 *    re-read on each call) against the reference, for every weight type,
 *    shapes with N not a multiple of any tile, T in {1,2,3,4,5,8,17,64},
 *    with and without bias; quantized weights also against a double dot
 *    with x quantized by the fast path's documented rule (a tight check);
 *  - the AVX-512 VNNI kernels built with vpdpbusd emulated (matmul_vnni_emu.c)
 *    on any AVX2 host, so their logic is tested even without AVX-512;
 *  - 1 vs 2 vs 3 threads give memcmp-equal output on every path, and
 *    row t of a T-row call equals a T = 1 call on x row t;
 *  - Q4_0/Q4_1/Q8_0 with N % 8 == 0 also repacked by 8 rows (R8): rows read back
 *    exactly, the same checks, and every path bitwise equal to the others.
 *
 * Seed: EYRIE_TEST_SEED if set, else the time; printed on failure. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu_matmul.h"
#include "test.h"

/* matmul_vnni_emu.c */
void ey_cpu_matmul_vnniemu(float *y, ey_dtype wt, const void *W, const float *bias,
                           const float *x, int64_t N, int64_t K, int T, void *scratch,
                           int n_threads);
size_t ey_cpu_matmul_scratch_bytes_vnniemu(ey_dtype wt, int64_t K, int T);
const char *ey_cpu_matmul_isa_vnniemu(void);

typedef void (*matmul_fn)(float *, ey_dtype, const void *, const float *, const float *,
                          int64_t, int64_t, int, void *, int);
typedef size_t (*scratch_fn)(ey_dtype, int64_t, int);

static uint64_t g_rng;
static uint64_t g_seed;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
/* uniform in [0, 1) */
static double rndu(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }
static float rnds(void) { return (float)(2.0 * rndu() - 1.0); }

static int is_quant(ey_dtype t)
{
    return t == EY_Q4_0 || t == EY_Q4_1 || t == EY_Q8_0 || ey_dtype_is_r8(t);
}

static void *make_weights(ey_dtype wt, int64_t N, int64_t K)
{
    size_t rb = ey_dtype_row_bytes(wt, K);
    uint8_t *w = malloc(rb * (size_t)N + 1);
    size_t nel = (size_t)N * (size_t)K;
    switch (wt) {
    case EY_F32:
        for (size_t i = 0; i < nel; i++) ((float *)w)[i] = rnds();
        break;
    case EY_F16:
        for (size_t i = 0; i < nel; i++) ((uint16_t *)w)[i] = ey_f32_to_f16(rnds());
        break;
    case EY_BF16:
        for (size_t i = 0; i < nel; i++) ((uint16_t *)w)[i] = ey_f32_to_bf16(rnds());
        break;
    default: {
        size_t bb = ey_dtype_block_bytes(wt), nblk = nel / EY_QK;
        for (size_t i = 0; i < nblk; i++) {
            uint8_t *b = w + i * bb;
            for (size_t j = 0; j < bb; j++) b[j] = (uint8_t)rnd();
            /* scale: mostly positive, varied magnitude; some negative */
            float d = (float)((0.002 + 0.1 * rndu()) * (rnd() % 8 == 0 ? -1 : 1));
            uint16_t hd = ey_f32_to_f16(d);
            memcpy(b, &hd, 2);
            if (wt == EY_Q4_1) {
                uint16_t hm = ey_f32_to_f16(rnds() * 0.8f);
                memcpy(b + 2, &hm, 2);
            }
        }
        break;
    }
    }
    return w;
}

static float *make_x(int64_t K, int T)
{
    float *x = malloc(sizeof(float) * (size_t)K * (size_t)T);
    for (int t = 0; t < T; t++) {
        float scale = (float)pow(10.0, 2.0 * rndu() - 1.0); /* rows of varied magnitude */
        for (int64_t k = 0; k < K; k++) x[(size_t)t * K + k] = rnds() * scale;
        /* an all-zero block of 32 (scale 0 in the quantized x) in some rows */
        if (K >= 64 && t % 3 == 1)
            memset(x + (size_t)t * K + 32, 0, 32 * sizeof(float));
        /* one outlier per row */
        x[(size_t)t * K + rnd() % K] *= 20.0f;
    }
    return x;
}

typedef struct bounds {
    double *dot;  /* double-precision W.x + bias */
    double *mag;  /* sum |w x| + |bias| */
    double *qerr; /* bound on the effect of quantizing x (quantized W only) */
    double *qmag; /* magnitudes seen by the integer path's f32 arithmetic */
    double *qdot; /* W . (x rounded to int8 blocks as the fast path does) + bias */
} bounds;

/* Everything from the dequantized rows in double. */
static bounds make_bounds(ey_dtype wt, const void *W, const float *bias, const float *x,
                          int64_t N, int64_t K, int T)
{
    bounds B;
    size_t ny = (size_t)N * (size_t)T;
    B.dot = calloc(ny, sizeof(double));
    B.mag = calloc(ny, sizeof(double));
    B.qerr = calloc(ny, sizeof(double));
    B.qmag = calloc(ny, sizeof(double));
    B.qdot = calloc(ny, sizeof(double));
    size_t rb = ey_dtype_row_bytes(wt, K);
    float *w = malloc(sizeof(float) * (size_t)K);
    int64_t nb = K / EY_QK;
    double *dx = malloc(sizeof(double) * (size_t)(nb + 1) * (size_t)T);
    /* x as the fast path quantizes it (the rule documented in cpu_matmul.c:
     * d = amax/127, q = round-to-nearest-even(x * (1/d)), all in f32) */
    double *xq = malloc(sizeof(double) * (size_t)K * (size_t)T + 1);
    for (int t = 0; t < T; t++)
        for (int64_t b = 0; b < nb; b++) {
            float amax = 0;
            const float *p = x + (size_t)t * K + b * EY_QK;
            for (int j = 0; j < EY_QK; j++)
                if (fabsf(p[j]) > amax) amax = fabsf(p[j]);
            dx[t * nb + b] = amax / 127.0;
            float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            for (int j = 0; j < EY_QK; j++)
                xq[(size_t)t * K + b * EY_QK + j] = (double)d * (double)lrintf(p[j] * id);
        }
    for (int64_t n = 0; n < N; n++) {
        ey_dequant_row(wt, (const uint8_t *)W + (size_t)n * rb, w, K);
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * K;
            double s = 0, m = 0, qe = 0, qm = 0, qs = 0;
            for (int64_t k = 0; k < K; k++) {
                s += (double)w[k] * xt[k];
                if (is_quant(wt)) qs += (double)w[k] * xq[(size_t)t * K + k];
                m += fabs((double)w[k] * xt[k]);
                if (is_quant(wt)) {
                    const uint8_t *blk = (const uint8_t *)W + (size_t)n * rb +
                                         (size_t)(k / EY_QK) * ey_dtype_block_bytes(wt);
                    uint16_t h;
                    memcpy(&h, blk, 2);
                    double d = fabs(ey_f16_to_f32(h)), o;
                    if (wt == EY_Q4_0) o = 8 * d;
                    else if (wt == EY_Q4_1) {
                        memcpy(&h, blk + 2, 2);
                        o = fabs(ey_f16_to_f32(h));
                    } else o = 128 * d;
                    double dxb = dx[t * nb + k / EY_QK];
                    qe += fabs((double)w[k]) * dxb;
                    qm += (fabs((double)w[k]) + o) * (fabs((double)xt[k]) + dxb);
                }
            }
            double bb = bias ? bias[n] : 0.0;
            B.dot[(size_t)t * N + n] = s + bb;
            B.mag[(size_t)t * N + n] = m + fabs(bb);
            /* |x - dx*q| <= dx/2 per element (round to nearest; 0.5002 covers
             * the rounding of 1/dx), so sum |w| dx/2 bounds the change. */
            B.qerr[(size_t)t * N + n] = 0.5002 * qe;
            B.qmag[(size_t)t * N + n] = qm + fabs(bb);
            B.qdot[(size_t)t * N + n] = qs + bb;
        }
    }
    free(xq);
    free(dx);
    free(w);
    return B;
}

static void free_bounds(bounds *B)
{
    free(B->dot);
    free(B->mag);
    free(B->qerr);
    free(B->qmag);
    free(B->qdot);
}

static const double U = 1.0 / 16777216.0; /* f32 unit roundoff 2^-24 */

/* Reference vs double: a sequential f32 sum of K products plus a bias has
 * |error| <= (K+1) u sum|w x| + u|b| to first order (Higham, gamma_n). */
static void check_ref(const float *yr, const bounds *B, ey_dtype wt, int64_t N, int64_t K,
                      int T, int has_bias)
{
    int bad = 0;
    for (size_t i = 0; i < (size_t)N * T && bad < 3; i++) {
        double tol = 1.01 * (K + 2) * U * B->mag[i] + 1e-30;
        double e = fabs(yr[i] - B->dot[i]);
        if (!(e <= tol)) bad++;
        TEST_CHECK_MSG(e <= tol, "ref %s N=%lld K=%lld T=%d bias=%d i=%zu: got %.9g want %.9g (err %.3g > %.3g) seed=%llu",
                       ey_dtype_name(wt), (long long)N, (long long)K, T, has_bias, i, yr[i], B->dot[i],
                       e, tol, (unsigned long long)g_seed);
    }
}

/* Fast vs reference.
 * Float weights: both are f32 sums of the same K exact products in some
 * order, each within (K+1) u sum|w x| (+ u|b|) of the exact value, so they
 * differ by at most 2 (K+2) u mag.
 * Quantized weights: the fast path dots W with x rounded to int8 blocks
 * (error <= qerr, derived in make_bounds) and then does f32 arithmetic on
 * per-block terms whose magnitudes are bounded by qmag (weights plus their
 * offset part 8d / |m| / 128d, times |x| + dx): a depth of about
 * nb + 16 roundings for the block sums, 8-lane reduction, scales and offset
 * dot; plus the reference's own error. */
static int check_fast(const char *what, const float *yf, const float *yr, const bounds *B,
                      ey_dtype wt, int64_t N, int64_t K, int T, int has_bias)
{
    int bad = 0;
    int64_t nb = K / EY_QK;
    for (size_t i = 0; i < (size_t)N * T; i++) {
        double tol;
        if (is_quant(wt))
            tol = B->qerr[i] + 2.0 * (nb + 16) * U * B->qmag[i] + 1.01 * (K + 2) * U * B->mag[i] + 1e-30;
        else
            tol = 2.02 * (K + 2) * U * B->mag[i] + 1e-30;
        double e = fabs((double)yf[i] - yr[i]);
        if (!(e <= tol)) {
            if (bad < 3)
                TEST_CHECK_MSG(e <= tol, "%s %s N=%lld K=%lld T=%d bias=%d i=%zu: fast %.9g ref %.9g (err %.3g > tol %.3g) seed=%llu",
                               what, ey_dtype_name(wt), (long long)N, (long long)K, T, has_bias, i, yf[i],
                               yr[i], e, tol, (unsigned long long)g_seed);
            bad++;
        }
        /* Quantized weights, tight: against W . (x quantized by the same
         * rule) in double, only the fast path's f32 rounding remains. */
        if (is_quant(wt)) {
            double tq = 2.0 * (nb + 16) * U * B->qmag[i] + 1e-30;
            double eq = fabs((double)yf[i] - B->qdot[i]);
            if (!(eq <= tq)) {
                if (bad < 3)
                    TEST_CHECK_MSG(eq <= tq, "%s %s N=%lld K=%lld T=%d bias=%d i=%zu: fast %.9g vs quantized-x dot %.9g (err %.3g > tol %.3g) seed=%llu",
                                   what, ey_dtype_name(wt), (long long)N, (long long)K, T, has_bias, i,
                                   yf[i], B->qdot[i], eq, tq, (unsigned long long)g_seed);
                bad++;
            }
        }
    }
    if (!bad) TEST_CHECK(1);
    return bad;
}

static int n_paths;
static const char *paths[8];
static const char *caps[8];

typedef struct shape { int64_t N, K; int T; } shape;

/* Every path (and the emulated VNNI instance) on (wt, W) against the
 * reference yr of the base type bt: tolerance, 1/2/3 threads memcmp-equal,
 * row t of a T-row call equal to a T = 1 call. With `same` non-NULL the
 * paths must also agree bitwise with each other (R8: one arithmetic on every
 * path); the first path's output is left there. */
static void check_paths(ey_dtype wt, const void *W, ey_dtype bt, const float *bias, const float *x,
                        const float *yr, const bounds *B, int64_t N, int64_t K, int T,
                        int has_bias, float *same_out)
{
    size_t ny = (size_t)N * T;
    float *y1 = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float)),
          *y3 = malloc(ny * sizeof(float));
    int have_first = 0;
    for (int p = 0; p <= n_paths; p++) {
        matmul_fn fn = ey_cpu_matmul;
        scratch_fn sfn = ey_cpu_matmul_scratch_bytes;
        const char *name;
        if (p < n_paths) {
            setenv("EYRIE_CPU_ISA", caps[p], 1);
            name = paths[p];
        } else {
            /* emulated VNNI instance (needs AVX2 underneath) */
            setenv("EYRIE_CPU_ISA", "avx512", 1);
            if (strcmp(ey_cpu_matmul_isa_vnniemu(), "avx512vnni") != 0) continue;
            fn = ey_cpu_matmul_vnniemu;
            sfn = ey_cpu_matmul_scratch_bytes_vnniemu;
            name = "avx512vnni-emulated";
        }
        size_t sb = sfn(wt, K, T);
        TEST_CHECK(is_quant(wt) ? sb > 0 : sb == 0);
        uint8_t *scr = sb ? malloc(sb + 1) : NULL;
        /* deliberately misaligned scratch */
        void *sp = scr ? scr + 1 : NULL;
        /* poison y and scratch before each call: every byte must be written */
        memset(y1, 0xff, ny * sizeof(float));
        memset(y2, 0xff, ny * sizeof(float));
        memset(y3, 0xff, ny * sizeof(float));
        if (scr) memset(scr, 0xa5, sb + 1);
        fn(y1, wt, W, bias, x, N, K, T, sp, 1);
        if (scr) memset(scr, 0x5a, sb + 1);
        fn(y2, wt, W, bias, x, N, K, T, sp, 2);
        if (scr) memset(scr, 0xa5, sb + 1);
        fn(y3, wt, W, bias, x, N, K, T, sp, 3);
        check_fast(name, y1, yr, B, bt, N, K, T, has_bias);
        TEST_CHECK_MSG(memcmp(y1, y2, ny * sizeof(float)) == 0 && memcmp(y1, y3, ny * sizeof(float)) == 0,
                       "%s %s N=%lld K=%lld T=%d: 1/2/3 threads differ seed=%llu", name,
                       ey_dtype_name(wt), (long long)N, (long long)K, T, (unsigned long long)g_seed);
        if (same_out) {
            if (!have_first) memcpy(same_out, y1, ny * sizeof(float));
            else
                TEST_CHECK_MSG(memcmp(same_out, y1, ny * sizeof(float)) == 0,
                               "%s %s N=%lld K=%lld T=%d: differs bitwise from path %s seed=%llu", name,
                               ey_dtype_name(wt), (long long)N, (long long)K, T, paths[0],
                               (unsigned long long)g_seed);
            have_first = 1;
        }
        /* row t of a T-row call is bitwise a T = 1 call on x row t (greedy
         * speculative verify must reproduce one-token decode) */
        float *yt = malloc((size_t)N * sizeof(float));
        int same = 1;
        for (int t = 0; t < T && same; t++) {
            fn(yt, wt, W, bias, x + (size_t)t * (size_t)K, N, K, 1, sp, 1);
            same = memcmp(yt, y1 + (size_t)t * (size_t)N, (size_t)N * sizeof(float)) == 0;
        }
        TEST_CHECK_MSG(same, "%s %s N=%lld K=%lld T=%d: differs from T=1 calls seed=%llu", name,
                       ey_dtype_name(wt), (long long)N, (long long)K, T, (unsigned long long)g_seed);
        free(yt);
        free(scr);
    }
    unsetenv("EYRIE_CPU_ISA");
    free(y1);
    free(y2);
    free(y3);
}

static void run_case(ey_dtype wt, shape s, int has_bias)
{
    const int64_t N = s.N, K = s.K;
    const int T = s.T;
    void *W = make_weights(wt, N, K);
    float *x = make_x(K, T);
    float *bias = NULL;
    if (has_bias) {
        bias = malloc(sizeof(float) * (size_t)N);
        for (int64_t n = 0; n < N; n++) bias[n] = rnds() * 2.0f;
    }
    size_t ny = (size_t)N * T;
    float *yr = malloc(ny * sizeof(float));
    ey_cpu_matmul_ref(yr, wt, W, bias, x, N, K, T);
    bounds B = make_bounds(wt, W, bias, x, N, K, T);
    check_ref(yr, &B, wt, N, K, T, has_bias);

    check_paths(wt, W, wt, bias, x, yr, &B, N, K, T, has_bias, NULL);

    /* the same matrix repacked by 8 rows (R8): the reference reads it back
     * exactly, and every path agrees bitwise with the others */
    ey_dtype rt = ey_cpu_repack_type(wt, N, K);
    TEST_CHECK(rt == wt || (N % 8 == 0 && (wt == EY_Q4_0 || wt == EY_Q4_1 || wt == EY_Q8_0)));
    if (rt != wt) {
        size_t wb = ey_dtype_row_bytes(wt, K) * (size_t)N;
        uint8_t *WR = malloc(wb), *row = malloc(ey_dtype_row_bytes(wt, K));
        ey_r8_pack(rt, WR, W, N, K);
        int rows_ok = 1;
        for (int64_t n = 0; n < N && rows_ok; n++) {
            ey_r8_row(rt, WR, n, K, row);
            rows_ok = memcmp(row, (const uint8_t *)W + (size_t)n * ey_dtype_row_bytes(wt, K),
                             ey_dtype_row_bytes(wt, K)) == 0;
        }
        TEST_CHECK_MSG(rows_ok, "%s N=%lld K=%lld: repacked rows do not read back", ey_dtype_name(rt),
                       (long long)N, (long long)K);
        float *yrr = malloc(ny * sizeof(float)), *ys = malloc(ny * sizeof(float));
        ey_cpu_matmul_ref(yrr, rt, WR, bias, x, N, K, T);
        TEST_CHECK_MSG(memcmp(yrr, yr, ny * sizeof(float)) == 0, "ref %s N=%lld K=%lld T=%d differs from %s",
                       ey_dtype_name(rt), (long long)N, (long long)K, T, ey_dtype_name(wt));
        check_paths(rt, WR, wt, bias, x, yr, &B, N, K, T, has_bias, ys);
        free(ys);
        free(yrr);
        free(row);
        free(WR);
    }
    unsetenv("EYRIE_CPU_ISA");
    free_bounds(&B);
    free(W);
    free(x);
    free(bias);
    free(yr);
}

int main(void)
{
    const char *es = getenv("EYRIE_TEST_SEED");
    g_seed = es ? strtoull(es, NULL, 10) : (uint64_t)time(NULL);
    g_rng = g_seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    if (!g_rng) g_rng = 1;
    for (int i = 0; i < 4; i++) rnd();

    /* the distinct paths this CPU offers */
    const char *try_caps[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        setenv("EYRIE_CPU_ISA", try_caps[i], 1);
        const char *nm = ey_cpu_matmul_isa();
        int dup = 0;
        for (int j = 0; j < n_paths; j++) dup |= !strcmp(paths[j], nm);
        if (!dup) {
            caps[n_paths] = try_caps[i];
            paths[n_paths++] = nm;
        }
    }
    unsetenv("EYRIE_CPU_ISA");
    fprintf(stderr, "matmul: seed %llu, best path %s, testing:", (unsigned long long)g_seed,
            ey_cpu_matmul_isa());
    for (int j = 0; j < n_paths; j++) fprintf(stderr, " %s", paths[j]);
    setenv("EYRIE_CPU_ISA", "avx512", 1);
    if (!strcmp(ey_cpu_matmul_isa_vnniemu(), "avx512vnni")) fprintf(stderr, " avx512vnni-emulated");
    unsetenv("EYRIE_CPU_ISA");
    fputc('\n', stderr);

    /* K a multiple of 32 (valid for every type) */
    static const shape qshapes[] = {
        {1, 32, 1},    {5, 64, 2},     {67, 96, 3},    {67, 576, 5},  {130, 1536, 8},
        {33, 256, 17}, {49, 576, 64},  {50, 320, 2},   {5, 8320, 3},  {3, 16384, 2},
        {81, 1536, 1}, {19, 32, 64},   {40, 576, 3},   {37, 320, 7},  {35, 288, 6},
        {37, 576, 4},  {70, 2080, 4},  {18, 4160, 1},  {21, 1056, 2},
        /* N % 8 == 0: the quantized types also run repacked (R8), including a
         * last work item of 8 rows */
        {8, 32, 1},    {16, 64, 2},    {24, 96, 4},    {40, 576, 5},  {192, 576, 8},
        {56, 1536, 2}, {8, 4160, 17},  {64, 320, 64},  {136, 288, 6},
    };
    /* K not a multiple of 8/16: float weights only */
    static const shape fshapes[] = {{67, 37, 5}, {17, 100, 3}, {5, 7, 1}, {9, 24, 64}, {50, 1, 2}};
    static const ey_dtype types[] = {EY_F32, EY_F16, EY_BF16, EY_Q4_0, EY_Q4_1, EY_Q8_0};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        ey_dtype wt = types[ti];
        for (size_t si = 0; si < sizeof qshapes / sizeof *qshapes; si++)
            for (int hb = 0; hb < 2; hb++) run_case(wt, qshapes[si], hb);
        if (!is_quant(wt))
            for (size_t si = 0; si < sizeof fshapes / sizeof *fshapes; si++)
                for (int hb = 0; hb < 2; hb++) run_case(wt, fshapes[si], hb);
    }

    /* scratch is 0 for float weights, and covers T rows for quantized */
    TEST_CHECK(ey_cpu_matmul_scratch_bytes(EY_F16, 576, 64) == 0);
    TEST_CHECK(ey_cpu_matmul_scratch_bytes(EY_Q4_1, 576, 2) > ey_cpu_matmul_scratch_bytes(EY_Q4_1, 576, 1));
    TEST_CHECK(ey_cpu_matmul_scratch_bytes(EY_Q8_0, 576, 1) >= 576);
    return test_result();
}
