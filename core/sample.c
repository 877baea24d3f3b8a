#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ey_sampling ey_sampling_default(void)
{
    return (ey_sampling){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                         .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

ey_err ey_sampling_check(const ey_sampling *s)
{
    if (!(s->temperature >= 0 && s->temperature <= 100))
        return ey_err_set(EY_ERR_ARG, "temperature must be in [0, 100]");
    if (!(s->top_p > 0 && s->top_p <= 1)) return ey_err_set(EY_ERR_ARG, "top_p must be in (0, 1]");
    if (!(s->min_p >= 0 && s->min_p <= 1)) return ey_err_set(EY_ERR_ARG, "min_p must be in [0, 1]");
    if (s->top_k < 0) return ey_err_set(EY_ERR_ARG, "top_k must be >= 0");
    if (!(s->repeat_penalty > 0 && s->repeat_penalty <= 10))
        return ey_err_set(EY_ERR_ARG, "repeat_penalty must be in (0, 10]");
    if (s->repeat_last_n < -1) return ey_err_set(EY_ERR_ARG, "repeat_last_n must be >= -1");
    return EY_OK;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ey_rng_seed(ey_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ey_rng_next(ey_rng *r) /* xoshiro256** */
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

double ey_rng_uniform(ey_rng *r) { return (double)(ey_rng_next(r) >> 11) * 0x1.0p-53; }

double ey_rng_normal(ey_rng *r)
{
    double u1 = ey_rng_uniform(r), u2 = ey_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

ey_err ey_sampler_init(ey_sampler *s, const ey_sampling *p, int n_vocab)
{
    memset(s, 0, sizeof *s);
    ey_err e = ey_sampling_check(p);
    if (e) return e;
    s->p = *p;
    s->n_vocab = n_vocab;
    ey_rng_seed(&s->rng, p->seed);
    s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    s->sort_buf = malloc((size_t)n_vocab * 8);
    if (!s->idx || !s->prob || !s->sort_buf) {
        ey_sampler_free(s);
        return ey_err_set(EY_ERR_NOMEM, "sampler: no memory");
    }
    return EY_OK;
}

void ey_sampler_free(ey_sampler *s)
{
    free(s->idx);
    free(s->prob);
    free(s->sort_buf);
    memset(s, 0, sizeof *s);
}

int32_t ey_argmax(const float *l, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

static void apply_penalty(const ey_sampler *s, float *logits, const int32_t *h, int n)
{
    if (s->p.repeat_penalty == 1.0f || n <= 0) return;
    int from = s->p.repeat_last_n < 0 ? 0 : (n > s->p.repeat_last_n ? n - s->p.repeat_last_n : 0);
    /* each distinct token once: mark by flipping through a sign-free pass */
    for (int i = from; i < n; i++) {
        int32_t t = h[i];
        if (t < 0 || t >= s->n_vocab) continue;
        bool seen = false;
        for (int j = from; j < i; j++)
            if (h[j] == t) { seen = true; break; }
        if (seen) continue;
        logits[t] = logits[t] > 0 ? logits[t] / s->p.repeat_penalty : logits[t] * s->p.repeat_penalty;
    }
}

/* sort (idx, prob) by prob descending, ties by id ascending */
typedef struct { float p; int32_t i; } cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int ey_sampler_dist(ey_sampler *s, float *logits, const int32_t *history, int n_hist)
{
    const int V = s->n_vocab;
    apply_penalty(s, logits, history, n_hist);
    if (s->p.temperature <= 0) {
        s->idx[0] = ey_argmax(logits, V);
        s->prob[0] = 1.0f;
        return 1;
    }
    const float invT = 1.0f / s->p.temperature;
    int n = 0;
    /* candidate set: top-k by a bounded insertion (k small) or all tokens */
    int k = s->p.top_k > 0 && s->p.top_k < V ? s->p.top_k : V;
    if (k < V && k > 64) {
        /* large k: one O(V log V) sort instead of O(V k) insertions (same
         * order: logit descending, ties by id ascending) */
        cand *cs = s->sort_buf;
        for (int i = 0; i < V; i++) cs[i] = (cand){logits[i], i};
        qsort(cs, (size_t)V, sizeof *cs, cand_cmp);
        for (int i = 0; i < k; i++) s->idx[i] = cs[i].i;
        n = k;
    } else if (k < V) {
        /* keep the k largest logits in idx[0..n) sorted descending */
        for (int i = 0; i < V; i++) {
            float v = logits[i];
            if (n == k && v <= logits[s->idx[n - 1]]) continue;
            int j = n < k ? n++ : n - 1;
            while (j > 0 && logits[s->idx[j - 1]] < v) {
                s->idx[j] = s->idx[j - 1];
                j--;
            }
            s->idx[j] = i;
        }
    } else {
        for (int i = 0; i < V; i++) s->idx[i] = i;
        n = V;
    }
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[s->idx[i]] > mx) mx = logits[s->idx[i]];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        float e = expf((logits[s->idx[i]] - mx) * invT);
        s->prob[i] = e;
        sum += e;
    }
    for (int i = 0; i < n; i++) s->prob[i] = (float)(s->prob[i] / sum);
    if (k == V && (s->p.top_p < 1.0f || s->p.min_p > 0)) {
        /* need a sorted order: sort (prob, id) pairs */
        cand *cs = s->sort_buf;
        for (int i = 0; i < n; i++) cs[i] = (cand){s->prob[i], s->idx[i]};
        qsort(cs, (size_t)n, sizeof *cs, cand_cmp);
        for (int i = 0; i < n; i++) {
            s->prob[i] = cs[i].p;
            s->idx[i] = cs[i].i;
        }
    }
    /* top-p: smallest prefix with mass >= top_p */
    if (s->p.top_p < 1.0f) {
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += s->prob[i];
            if (acc >= s->p.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    /* min-p: drop tokens below min_p * max prob (the first is the max) */
    if (s->p.min_p > 0) {
        float thr = s->p.min_p * s->prob[0];
        int m = 1;
        while (m < n && s->prob[m] >= thr) m++;
        n = m;
    }
    double z = 0;
    for (int i = 0; i < n; i++) z += s->prob[i];
    for (int i = 0; i < n; i++) s->prob[i] = (float)(s->prob[i] / z);
    return n;
}

int32_t ey_sample(ey_sampler *s, float *logits, const int32_t *history, int n_hist)
{
    return ey_sampler_draw(s, ey_sampler_dist(s, logits, history, n_hist));
}

int32_t ey_sampler_draw(ey_sampler *s, int n)
{
    if (n == 1) return s->idx[0];
    double u = ey_rng_uniform(&s->rng), acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->prob[i];
        if (u < acc) return s->idx[i];
    }
    return s->idx[n - 1];
}
