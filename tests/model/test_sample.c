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

/* top-k on a larger vocabulary: the sort path (k > 64) and the insertion
 * path (k <= 64) keep the same order (logit descending, ties by id). */
static void check_large_topk(void)
{
    enum { BV = 4096 };
    static float lg[BV], work[BV];
    srand(11);
    for (int i = 0; i < BV; i++) lg[i] = (float)(rand() % 300) / 30.0f; /* many ties */
    ey_sampling p = ey_sampling_default();
    p.temperature = 1.0f, p.top_p = 1.0f, p.min_p = 0;
    int32_t big[1000], small[50];
    for (int pass = 0; pass < 2; pass++) {
        p.top_k = pass ? 50 : 1000;
        ey_sampler s;
        TEST_CHECK(ey_sampler_init(&s, &p, BV) == EY_OK);
        memcpy(work, lg, sizeof lg);
        int n = ey_sampler_dist(&s, work, NULL, 0);
        TEST_CHECK(n == p.top_k);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += s.prob[i];
        TEST_CHECK(fabs(sum - 1.0) < 1e-5);
        for (int i = 1; i < n; i++)
            TEST_CHECK_MSG(lg[s.idx[i - 1]] > lg[s.idx[i]] ||
                               (lg[s.idx[i - 1]] == lg[s.idx[i]] && s.idx[i - 1] < s.idx[i]),
                           "top-%d order broken at %d", p.top_k, i);
        memcpy(pass ? small : big, s.idx, (size_t)n * sizeof *s.idx);
        ey_sampler_free(&s);
    }
    TEST_CHECK_MSG(!memcmp(big, small, sizeof small), "top-50 is not a prefix of top-1000");
    /* nothing outside the top-1000 beats its last member */
    float last = lg[big[999]];
    int above = 0;
    for (int i = 0; i < BV; i++) above += lg[i] > last;
    TEST_CHECK(above <= 1000);
}

int main(void)
{
    check_large_topk();
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
