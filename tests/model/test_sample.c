/* Sampler tests: greedy, top-k / top-p / min-p truncation, temperature,
 * repetition penalty, seed determinism, and a distribution test (the
 * empirical frequencies of 200k draws match the transformed distribution). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/sample.h"
#include "test.h"

#define V 64

static void fill(float *l, unsigned seed)
{
    srand(seed);
    for (int i = 0; i < V; i++) l[i] = (float)(rand() % 1000) / 100.0f - 5.0f;
}

/* reference transform in double, straightforwardly */
static void ref_dist(const float *logits, const ey_sampling *p, double *out)
{
    int order[V];
    double pr[V];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++) /* stable selection sort by logit desc */
        for (int j = i + 1; j < V; j++)
            if (logits[order[j]] > logits[order[i]] ||
                (logits[order[j]] == logits[order[i]] && order[j] < order[i])) {
                int t = order[i]; order[i] = order[j]; order[j] = t;
            }
    int n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double mx = logits[order[0]], z = 0;
    for (int i = 0; i < n; i++) z += pr[i] = exp((logits[order[i]] - mx) / p->temperature);
    for (int i = 0; i < n; i++) pr[i] /= z;
    if (p->top_p < 1) {
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += pr[i];
            if (acc >= p->top_p) { n = i + 1; break; }
        }
    }
    if (p->min_p > 0) {
        int m = 1;
        while (m < n && pr[m] >= p->min_p * pr[0]) m++;
        n = m;
    }
    z = 0;
    for (int i = 0; i < n; i++) z += pr[i];
    memset(out, 0, V * sizeof *out);
    for (int i = 0; i < n; i++) out[order[i]] = pr[i] / z;
}

static void check_dist(ey_sampling p, unsigned seed)
{
    float logits[V], work[V];
    fill(logits, seed);
    double want[V];
    ref_dist(logits, &p, want);
    ey_sampler s;
    TEST_CHECK(ey_sampler_init(&s, &p, V) == EY_OK);
    memcpy(work, logits, sizeof work);
    int n = ey_sampler_dist(&s, work, NULL, 0);
    double got[V] = {0};
    for (int i = 0; i < n; i++) got[s.idx[i]] = s.prob[i];
    for (int i = 0; i < V; i++)
        TEST_CHECK_MSG(fabs(got[i] - want[i]) < 1e-5, "token %d: %g vs %g (k=%d p=%g minp=%g)", i,
                       got[i], want[i], p.top_k, p.top_p, p.min_p);
    /* empirical frequencies: chi-square style bound per token (5 sigma) */
    enum { N = 200000 };
    static int cnt[V];
    memset(cnt, 0, sizeof cnt);
    for (int k = 0; k < N; k++) {
        memcpy(work, logits, sizeof work);
        int32_t t = ey_sample(&s, work, NULL, 0);
        TEST_CHECK(t >= 0 && t < V);
        cnt[t]++;
    }
    for (int i = 0; i < V; i++) {
        double mu = N * want[i], sd = sqrt(N * want[i] * (1 - want[i])) + 1e-9;
        TEST_CHECK_MSG(fabs(cnt[i] - mu) <= 5 * sd + (want[i] == 0 ? 0 : 1),
                       "token %d: %d draws, expected %.1f +- %.1f", i, cnt[i], mu, sd);
    }
    ey_sampler_free(&s);
}

int main(void)
{
    float logits[V];
    ey_sampling p = ey_sampling_default();
    /* greedy */
    fill(logits, 1);
    p.temperature = 0;
    ey_sampler s;
    TEST_CHECK(ey_sampler_init(&s, &p, V) == EY_OK);
    int32_t am = ey_argmax(logits, V);
    TEST_CHECK(ey_sample(&s, logits, NULL, 0) == am);
    /* ties resolve to the lowest id */
    float tie[V] = {0};
    tie[7] = tie[3] = 2.0f;
    TEST_CHECK(ey_sample(&s, tie, NULL, 0) == 3);
    /* repetition penalty can change the argmax */
    p.repeat_penalty = 5.0f;
    ey_sampler_free(&s);
    TEST_CHECK(ey_sampler_init(&s, &p, V) == EY_OK);
    float w[V];
    memcpy(w, logits, sizeof w);
    int32_t hist[1] = {am};
    int32_t t2 = ey_sample(&s, w, hist, 1);
    TEST_CHECK(t2 != am || logits[am] <= 0);
    ey_sampler_free(&s);

    /* distributions */
    ey_sampling d = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0,
                     .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 42};
    check_dist(d, 2);
    d.temperature = 0.7f, d.top_k = 10;
    check_dist(d, 3);
    d.top_k = 0, d.top_p = 0.9f;
    check_dist(d, 4);
    d.top_p = 1.0f, d.min_p = 0.1f, d.temperature = 1.5f;
    check_dist(d, 5);
    d = ey_sampling_default();
    d.seed = 7;
    check_dist(d, 6);

    /* same seed, same stream; different seed, different stream */
    int32_t a[64], b[64], c[64];
    for (int pass = 0; pass < 3; pass++) {
        ey_sampling q = ey_sampling_default();
        q.top_k = 0, q.top_p = 1, q.min_p = 0, q.temperature = 1;
        q.seed = pass == 2 ? 8 : 7;
        TEST_CHECK(ey_sampler_init(&s, &q, V) == EY_OK);
        for (int i = 0; i < 64; i++) {
            float l2[V];
            fill(l2, 9);
            (pass == 0 ? a : pass == 1 ? b : c)[i] = ey_sample(&s, l2, NULL, 0);
        }
        ey_sampler_free(&s);
    }
    TEST_CHECK(memcmp(a, b, sizeof a) == 0);
    TEST_CHECK(memcmp(a, c, sizeof a) != 0);

    /* invalid parameters are refused */
    ey_sampling bad = ey_sampling_default();
    bad.top_p = 0;
    TEST_CHECK(ey_sampling_check(&bad) == EY_ERR_ARG);
    bad = ey_sampling_default();
    bad.temperature = -1;
    TEST_CHECK(ey_sampling_check(&bad) == EY_ERR_ARG);
    bad = ey_sampling_default();
    bad.temperature = NAN;
    TEST_CHECK(ey_sampling_check(&bad) == EY_ERR_ARG);
    return test_result();
}
