/* eyrie — target features for EAGLE-3 drafter training: one forward pass of
 * the target over a whole sequence, keeping the captured aux hidden states,
 * the full-vocabulary argmax and a teacher distribution per row (the top-k
 * logits, or the logits of a fixed id list such as a draft vocabulary).
 *
 * The result maps onto the trainer's ey_e3t_seq (train/e3_train.h) field by
 * field: aux -> aux, top1 -> top1, k -> kmax, n_teach -> n_teach,
 * teach_ids -> teach_ids, teach_logits -> teach_logits (ids and mask are
 * the caller's). */
#ifndef EY_TARGET_FEATS_H
#define EY_TARGET_FEATS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/ey_err.h"
#include "../core/forward.h"

/* Buffers are grown on demand and reused across calls; zero-initialise the
 * struct before the first call and release it with ey_tfeat_free. */
typedef struct ey_tfeat {
    int T;                /* rows of the last ey_tfeat_compute */
    int k;                /* teacher entries per row (row stride of teach_*) */
    int width;            /* floats per aux row: n_capture * n_embd */
    float *aux;           /* [T][width]: row t, capture i at [t][i * n_embd] */
    int32_t *top1;        /* [T] argmax over the full vocabulary (ties: lower id) */
    int *n_teach;         /* [T] entries used in row t (always k here) */
    int32_t *teach_ids;   /* [T][k] target ids */
    float *teach_logits;  /* [T][k] raw target logits */
    /* private */
    float *logits;        /* [rows][V] scratch of one chunk */
    size_t cap_aux, cap_T, cap_teach, cap_teach_l, cap_logits;
    int32_t *heap_id;     /* [k] top-k scratch */
    float *heap_v;
    size_t cap_heap;
} ey_tfeat;

/* Run the target over ids[0..T) in a fresh sequence of c's KV pool (rows
 * released again before returning), in chunks of at most
 * min(c->max_batch, c->max_logit_rows) rows, with the capture layers the
 * caller set on c (ey_ctx_set_capture; at least one). Row t's teacher is
 * the target's distribution after ids[0..t]:
 *  - restrict_ids == NULL: the k largest logits, by descending logit (ties:
 *    lower id first), 1 <= k <= n_vocab;
 *  - restrict_ids != NULL: exactly the logits of restrict_ids[0..n_restrict)
 *    in that order (a dense teacher over a draft vocabulary); k must equal
 *    n_restrict and every id be in [0, n_vocab).
 * T must be in [2, c->kv.n_rows]. On an error *out's contents are
 * unspecified (its buffers stay owned by it). */
ey_err ey_tfeat_compute(ey_ctx *c, const int32_t *ids, int T, int k, const int32_t *restrict_ids,
                        int n_restrict, ey_tfeat *out);
void ey_tfeat_free(ey_tfeat *f);

/* The default aux capture layers of an n_layer-deep target, as input-of-layer
 * ids (what ey_ctx_set_capture takes): {2, N/2, N-3}, each clamped to
 * [0, N] (core/eagle3.c's drafter default). Returns 3. */
int ey_tfeat_default_aux(int n_layer, int out[3]);

#endif
