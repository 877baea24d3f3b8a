/* eyrie — EAGLE-3 speculative generation (chain and EAGLE-2 dynamic tree).
 *
 * ey_spec_generate mirrors ey_generate (same parameters, result, stop rules
 * and text streaming) and adds drafting with an EAGLE-3 drafter plus
 * verification in one target forward per round (docs/eagle3.md §4.6):
 *
 *   prefill target (captures aux rows) -> sample root x_L
 *   draft extend over (a_t, x_{t+1}) rows        (§2.3)
 *   loop: build candidates (chain = tree with top_k 1, §4.1/§4.3)
 *         verify root + candidates in one tree-masked target forward,
 *           positions L + depth (§4.4)
 *         accept along the tree with the sampler's own distribution:
 *           greedy = argmax match; T > 0 = recursive rejection sampling
 *           with deterministic drafts (§4.4), lossless
 *         compact the target KV to the accepted path, truncate the rest;
 *         truncate the draft KV to the stable rows and re-extend from the
 *           target's captures of the accepted rows (§4.5)
 *
 * Greedy output is token-for-token the output of ey_generate (the tests
 * check it); at T > 0 the output distribution is the target's.
 *
 * Parameters: `depth` counts draft LEVELS (= the most drafts one round can
 * accept; SGLang --speculative-num-steps, EAGLE's `depth` + 1);
 * `total_tokens` counts tree nodes INCLUDING the root (EAGLE total_token,
 * SGLang --speculative-num-draft-tokens). Chain k == tree (1, k, k + 1). */
#ifndef EY_SPEC_H
#define EY_SPEC_H

#include "eagle3.h"
#include "generate.h"

typedef enum ey_spec_method { EY_SPEC_NONE = 0, EY_SPEC_CHAIN, EY_SPEC_TREE } ey_spec_method;

#define EY_SPEC_MAX_TOPK 16
#define EY_SPEC_MAX_DEPTH 32
#define EY_SPEC_MAX_NODES 256

/* Test oracle (issue 3, "Accounting"): drafts come from a known completion
 * cont[] instead of the drafter; a draft for completion index i is wrong
 * when wrong[i] is set (or i >= n_cont). In tree mode each level holds
 * top_k siblings with the correct one at sibling index (level-1) % top_k,
 * children only under the correct one. */
typedef struct ey_spec_oracle {
    const int32_t *cont;
    int n_cont;
    const uint8_t *wrong; /* [n_cont] or NULL */
} ey_spec_oracle;

typedef struct ey_spec_opts {
    ey_spec_method method;
    int k;            /* chain: drafts per round (default 4) */
    int top_k;        /* tree: children per expanded node (default 4) */
    int depth;        /* tree: draft levels (default 5) */
    int total_tokens; /* tree: nodes incl. the root (default 16) */
    const ey_spec_oracle *oracle; /* tests only; the drafter may then be NULL */
} ey_spec_opts;

ey_spec_opts ey_spec_opts_default(void);
ey_err ey_spec_opts_check(const ey_spec_opts *o);
const char *ey_spec_method_name(ey_spec_method m);
/* Rows of logits / batch the target ctx must allow (max_logit_rows,
 * max_batch of ey_ctx_create) for these options. */
int ey_spec_ctx_rows(const ey_spec_opts *o);

/* Acceptance statistics, definitions of eagle3.md §5. */
typedef struct ey_spec_stats {
    const char *method;
    int rounds;            /* verify forwards */
    int draft_rounds;      /* rounds that verified at least one draft */
    long drafted;          /* draft tokens sent to verification (tree: nodes - root) */
    long accepted;         /* draft tokens accepted */
    double mean_accept_len;/* tau = 1 + accepted / rounds (the +1 is the bonus/correction) */
    double accept_rate;    /* accepted / drafted */
    int n_pos;             /* entries of per_position */
    long accepted_at[EY_SPEC_MAX_DEPTH];   /* rounds whose drafts 0..i were all accepted */
    double per_position[EY_SPEC_MAX_DEPTH]; /* accepted_at[i] / rounds (unconditional) */
    double draft_ms, verify_ms;
} ey_spec_stats;

/* c: the target ctx (its max_logit_rows/max_batch >= ey_spec_ctx_rows);
 * d: the drafter (NULL only with an oracle). Method NONE runs ey_generate. */
ey_err ey_spec_generate(ey_ctx *c, ey_eagle3 *d, const ey_spec_opts *so, const int32_t *prompt,
                        int n_prompt, const ey_gen_params *gp, ey_text_cb cb, void *ud,
                        ey_gen_result *res, ey_spec_stats *st);

/* ---------------------------------------------------------------- stepper
 *
 * The same generation, one forward at a time, for a scheduler that batches
 * many sequences (the daemon's continuous batching): plan() says which rows
 * to run next — a prefill chunk, or a drafted tree to verify (a single row
 * with no drafter: plain decoding) — as an ey_fwd_item pointing into the
 * sequence's own buffers; the caller runs it (alone or in an
 * ey_forward_batch with other sequences' items) and calls commit(), which
 * samples/accepts, streams text through cb and updates both KV caches.
 * ey_spec_generate is exactly this loop with one item per forward.
 *
 * With method NONE (or d == NULL and no oracle) every round verifies just
 * the root, and a round without drafts draws like ey_sample, so the output
 * equals ey_generate's token for token, also when sampling with a seed.
 * A drafter needs the target ctx to capture its aux layers
 * (ey_spec_ctx_capture) before create. prompt and the strings of gp must
 * stay valid until finish; gp itself is copied. */
typedef struct ey_spec_seq ey_spec_seq;

ey_err ey_spec_ctx_capture(ey_ctx *c, const ey_eagle3 *d);
ey_err ey_spec_seq_create(ey_ctx *c, ey_eagle3 *d, const ey_spec_opts *so,
                          const int32_t *prompt, int n_prompt, const ey_gen_params *gp,
                          ey_text_cb cb, void *ud, ey_spec_seq **out);
/* Rows to run next, at most `budget` (>= 1; a smaller budget shrinks the
 * draft tree: 1 = no drafts this round). Not when done. */
ey_err ey_spec_seq_plan(ey_spec_seq *q, int budget, ey_fwd_item *it);
ey_err ey_spec_seq_commit(ey_spec_seq *q);
bool ey_spec_seq_done(const ey_spec_seq *q);
/* Completion tokens so far; the text so far and how much of it is final
 * (streamable: never part of a possible stop string). */
int ey_spec_seq_generated(const ey_spec_seq *q);
/* Statistics so far (the definitions of ey_spec_stats; tau and the rates
 * are filled by finish). */
const ey_spec_stats *ey_spec_seq_stats(const ey_spec_seq *q);
/* Stop drafting for the rest of this sequence (a scheduler's choice when the
 * drafter does not pay off): the draft KV is freed and later rounds are
 * plain decoding steps. Between commit and plan only. */
ey_err ey_spec_seq_drop_drafter(ey_spec_seq *q);
bool ey_spec_seq_drafting(const ey_spec_seq *q);
const char *ey_spec_seq_text(const ey_spec_seq *q, size_t *emitted);
/* Final flush (text, ids, stats) into res (caller frees with
 * ey_gen_result_free) and st (may be NULL). Call once, when done or to stop
 * early (cancel, deadline: finish_reason stays what it was, "length"). */
ey_err ey_spec_seq_finish(ey_spec_seq *q, ey_gen_result *res, ey_spec_stats *st);
void ey_spec_seq_free(ey_spec_seq *q);

#endif
