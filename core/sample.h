/* eyrie — token samplers.
 *
 * The transform applied to the logits, in order: repetition penalty (CTRL
 * rule as transformers/llama.cpp: positive logits divided, negative
 * multiplied, over the last repeat_last_n tokens), temperature, top-k, top-p,
 * min-p; then a draw from the resulting distribution with a seeded RNG.
 * temperature <= 0 is greedy (argmax, lowest id on ties; penalties still
 * apply). ey_sampler_dist exposes the final distribution so speculative
 * verification can apply the very same transform. */
#ifndef EY_SAMPLE_H
#define EY_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/ey_err.h"

typedef struct ey_sampling {
    float temperature;    /* <= 0: greedy */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;    /* window for the penalty; -1: whole context */
    uint64_t seed;
} ey_sampling;

/* llama.cpp's defaults: T 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalty. */
ey_sampling ey_sampling_default(void);
ey_err ey_sampling_check(const ey_sampling *s);

typedef struct ey_rng { uint64_t s[4]; } ey_rng;
void ey_rng_seed(ey_rng *r, uint64_t seed);
uint64_t ey_rng_next(ey_rng *r);
double ey_rng_uniform(ey_rng *r); /* [0, 1) with 53 bits */
double ey_rng_normal(ey_rng *r);  /* standard normal (Box-Muller) */

typedef struct ey_sampler {
    ey_sampling p;
    ey_rng rng;
    int n_vocab;
    int32_t *idx; /* [n_vocab] candidate ids */
    float *prob;  /* [n_vocab] candidate probabilities */
    void *sort_buf; /* [n_vocab] (prob, id) pairs for sorting */
} ey_sampler;

ey_err ey_sampler_init(ey_sampler *s, const ey_sampling *p, int n_vocab);
void ey_sampler_free(ey_sampler *s);

/* Applies penalty to logits in place (history: previous tokens, prompt
 * included), then returns the final distribution as n candidates
 * (s->idx[0..n), s->prob[0..n), sorted by probability descending, summing
 * to 1). Greedy gives one candidate with probability 1. */
int ey_sampler_dist(ey_sampler *s, float *logits, const int32_t *history, int n_hist);
/* Full sample: dist + draw. */
int32_t ey_sample(ey_sampler *s, float *logits, const int32_t *history, int n_hist);
/* Draw from the n-entry distribution the last ey_sampler_dist left in s
 * (ey_sample = dist + draw). */
int32_t ey_sampler_draw(ey_sampler *s, int n);
int32_t ey_argmax(const float *logits, int n);

#endif
