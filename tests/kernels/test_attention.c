/* Tests for the CPU backend's attention (kernels/cpu/cpu_backend.c), on the
 * fast path (AVX2 + FMA where the CPU has it) and the portable one
 * (EYRIE_CPU_ISA=scalar):
 *  - against a double-precision softmax(q k^T * scale) v over the visible
 *    rows, for head sizes on and off the fast path (8..256, and 100), GQA,
 *    a shuffled block table, causal and random tree masks, T = 1..6;
 *  - 1 vs 2 vs 3 threads give memcmp-equal output;
 *  - row t of a causal T-row call equals a 1-row call over the same keys
 *    (speculative verify must reproduce one-token decode bitwise).
 * Seed: EYRIE_TEST_SEED if set, else the time; printed on failure. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/ey_backend.h"
#include "test.h"

static uint64_t g_rng, g_seed;
static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float rnds(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

typedef struct acase {
    int nh, nkvh, hd, n_kv, T, bs;
    bool tree;
} acase;

static ey_ptr upload(ey_backend *be, const void *src, size_t bytes)
{
    ey_buf *b = NULL;
    TEST_CHECK(!be->iface.buf_alloc(be, bytes, &b));
    if (src) TEST_CHECK(!be->iface.buf_set(be, (ey_ptr){b, 0}, src, bytes));
    return (ey_ptr){b, 0};
}

/* out[T][nh*hd] through the backend with nt threads */
static void run(const acase *c, int nt, const float *q, const float *kc, const float *vc,
                size_t cache_floats, const int32_t *blocks, const uint8_t *mask, int T, int n_kv,
                float *out)
{
    ey_backend *be = NULL;
    TEST_CHECK(!ey_backend_cpu_create(nt, &be));
    if (!be) return;
    const size_t qn = (size_t)T * c->nh * c->hd;
    ey_ptr Q = upload(be, q, qn * sizeof(float)), O = upload(be, NULL, qn * sizeof(float));
    ey_ptr Kc = upload(be, kc, cache_floats * sizeof(float)), Vc = upload(be, vc, cache_floats * sizeof(float));
    ey_attn_args a = {.n_head = c->nh, .n_kv_head = c->nkvh, .head_dim = c->hd, .n_kv = n_kv, .T = T,
                      .blocks = blocks, .block_size = c->bs, .mask = mask,
                      .scale = 1.0f / sqrtf((float)c->hd)};
    be->iface.attention(be, O, Q, Kc, Vc, &a);
    TEST_CHECK(!be->iface.sync(be));
    TEST_CHECK(!be->iface.buf_get(be, out, O, qn * sizeof(float)));
    ey_ptr bufs[] = {Q, O, Kc, Vc};
    for (int i = 0; i < 4; i++) be->iface.buf_free(be, bufs[i].buf);
    be->iface.destroy(be);
}

static void one_case(const acase *c, const char *path)
{
    const int kvd = c->nkvh * c->hd, nblk = (c->n_kv + c->bs - 1) / c->bs + 2;
    const size_t cache_floats = (size_t)nblk * c->bs * kvd;
    float *kc = malloc(cache_floats * sizeof(float)), *vc = malloc(cache_floats * sizeof(float));
    for (size_t i = 0; i < cache_floats; i++) {
        kc[i] = rnds() * 2.0f;
        vc[i] = rnds();
    }
    int32_t *blocks = malloc((size_t)nblk * sizeof *blocks);
    for (int i = 0; i < nblk; i++) blocks[i] = i;
    for (int i = nblk - 1; i > 0; i--) { /* shuffled: rows are not contiguous across blocks */
        int j = (int)(rnd() % (uint64_t)(i + 1)), x = blocks[i];
        blocks[i] = blocks[j];
        blocks[j] = x;
    }
    const int T = c->T, past = c->n_kv - T, qd = c->nh * c->hd;
    uint8_t *mask = NULL;
    if (c->tree) { /* random tree: parent of i uniform in [0, i); ancestor-or-self visible */
        mask = calloc((size_t)T * T, 1);
        int *par = malloc((size_t)T * sizeof *par);
        for (int i = 0; i < T; i++) {
            par[i] = i ? (int)(rnd() % (uint64_t)i) : -1;
            for (int p = i; p >= 0; p = par[p]) mask[(size_t)i * T + p] = 1;
        }
        free(par);
    }
    float *q = malloc((size_t)T * qd * sizeof(float));
    for (int i = 0; i < T * qd; i++) q[i] = rnds() * 2.0f;
    float *o1 = malloc((size_t)T * qd * sizeof(float)), *o2 = malloc((size_t)T * qd * sizeof(float)),
          *o3 = malloc((size_t)T * qd * sizeof(float)), *ot = malloc((size_t)qd * sizeof(float));
    run(c, 1, q, kc, vc, cache_floats, blocks, mask, T, c->n_kv, o1);
    run(c, 2, q, kc, vc, cache_floats, blocks, mask, T, c->n_kv, o2);
    run(c, 3, q, kc, vc, cache_floats, blocks, mask, T, c->n_kv, o3);
    TEST_CHECK_MSG(!memcmp(o1, o2, (size_t)T * qd * sizeof(float)) &&
                       !memcmp(o1, o3, (size_t)T * qd * sizeof(float)),
                   "%s hd=%d n_kv=%d T=%d: thread counts differ seed=%llu", path, c->hd, c->n_kv, T,
                   (unsigned long long)g_seed);
    /* reference in double */
    int bad = 0;
    double *w = malloc((size_t)c->n_kv * sizeof(double));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < c->nh; h++) {
            const int kvh = h / (c->nh / c->nkvh), last = past + t;
            const float *qv = q + (size_t)t * qd + (size_t)h * c->hd;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= last; j++) {
                bool vis = j < past || !mask || mask[(size_t)t * T + (j - past)];
                if (!vis) {
                    w[j] = -INFINITY;
                    continue;
                }
                size_t r = ((size_t)blocks[j / c->bs] * c->bs + j % c->bs) * kvd + (size_t)kvh * c->hd;
                double s = 0;
                for (int d = 0; d < c->hd; d++) s += (double)qv[d] * kc[r + d];
                w[j] = s / sqrt((double)c->hd);
                if (w[j] > mx) mx = w[j];
            }
            for (int j = 0; j <= last; j++) {
                w[j] = w[j] == -INFINITY ? 0 : exp(w[j] - mx);
                sum += w[j];
            }
            for (int d = 0; d < c->hd; d++) {
                double ref = 0;
                for (int j = 0; j <= last; j++) {
                    size_t r = ((size_t)blocks[j / c->bs] * c->bs + j % c->bs) * kvd + (size_t)kvh * c->hd;
                    ref += w[j] / sum * vc[r + d];
                }
                double got = o1[(size_t)t * qd + (size_t)h * c->hd + d], e = fabs(got - ref);
                if (!(e <= 2e-5) && bad++ < 3)
                    TEST_CHECK_MSG(0, "%s hd=%d n_kv=%d T=%d tree=%d t=%d h=%d d=%d: %.8g vs %.8g seed=%llu",
                                   path, c->hd, c->n_kv, T, c->tree, t, h, d, got, ref,
                                   (unsigned long long)g_seed);
            }
        }
    if (!bad) TEST_CHECK(1);
    /* causal: row t alone (n_kv = past + t + 1) gives the same bits */
    if (!mask)
        for (int t = 0; t < T; t++) {
            run(c, 2, q + (size_t)t * qd, kc, vc, cache_floats, blocks, NULL, 1, past + t + 1, ot);
            TEST_CHECK_MSG(!memcmp(ot, o1 + (size_t)t * qd, (size_t)qd * sizeof(float)),
                           "%s hd=%d n_kv=%d T=%d: row %d differs from a 1-row call seed=%llu", path,
                           c->hd, c->n_kv, T, t, (unsigned long long)g_seed);
        }
    free(w);
    free(q);
    free(o1);
    free(o2);
    free(o3);
    free(ot);
    free(mask);
    free(blocks);
    free(kc);
    free(vc);
}

int main(void)
{
    const char *es = getenv("EYRIE_TEST_SEED");
    g_seed = es ? strtoull(es, NULL, 10) : (uint64_t)time(NULL);
    g_rng = g_seed * 0x9E3779B97F4A7C15ull + 77;
    if (!g_rng) g_rng = 1;
    static const acase cases[] = {
        {9, 3, 64, 1, 1, 16, false},   {9, 3, 64, 37, 1, 16, false},  {9, 3, 64, 70, 4, 16, false},
        {9, 3, 64, 70, 6, 16, true},   {4, 4, 8, 5, 2, 4, false},     {4, 2, 24, 33, 3, 8, true},
        {2, 1, 256, 40, 5, 16, false}, {2, 2, 128, 18, 2, 16, true},  {3, 1, 100, 21, 3, 16, false},
        {6, 2, 64, 130, 2, 16, true},  {2, 1, 264, 9, 2, 16, false},
    };
    static const char *paths[] = {NULL, "scalar"};
    for (int p = 0; p < 2; p++) {
        if (paths[p]) setenv("EYRIE_CPU_ISA", paths[p], 1);
        else unsetenv("EYRIE_CPU_ISA");
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            one_case(&cases[i], paths[p] ? paths[p] : "best");
    }
    unsetenv("EYRIE_CPU_ISA");
    return test_result();
}
