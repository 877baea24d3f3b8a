/* eyrie — EAGLE-3 drafter training: the training-time-test forward and
 * backward (docs/eagle3.md §3), AdamW, the schedule and checkpoints.
 *
 * Scope: the drafter layout eyrie writes and trains is the original
 * EAGLE-3 one (one layer; fc over the concatenated aux states; no
 * norm_before_fc / fc_norm / norm_before_residual / norm_output; no
 * biases). All state is fp32 on the host; the embedding is the target's
 * and frozen.
 *
 * One training row t of a sequence x_0..x_{T-1} at unrolled step j
 * (j = 0..K-1) pairs the feature f_j[t] (f_0 = fc(aux[t]); f_j = g_{j-1}[t],
 * the previous step's pre-norm output) with the token x_{t+1+j}, at RoPE
 * position t+j, and predicts x_{t+2+j}. Its teacher is the target's
 * distribution at row t+1+j restricted to the draft vocabulary. The row
 * counts (docs/training.md) iff x_{t+2+j} exists and is a loss-masked
 * (assistant) token and the target's top-1 there is in the draft vocab. */
#ifndef EY_E3_TRAIN_H
#define EY_E3_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/ey_err.h"

#define EY_E3T_MAX_STEPS 16
#define EY_E3T_MAX_T 2048

typedef struct ey_e3t_dims {
    int H;            /* draft hidden size (= target hidden size) */
    int n_aux, Ht;    /* aux captures and their width: fc input is n_aux * Ht */
    int nh, nkv, hd;  /* heads, KV heads, head dim (nh * hd need not equal H) */
    int I;            /* MLP width */
    int V, Vd;        /* target vocab, draft vocab */
    float eps;        /* RMSNorm epsilon */
} ey_e3t_dims;

/* Every trainable tensor, as offsets into one flat fp32 array (the order is
 * the checkpoint order). Shapes are those of the published layout. */
enum {
    E3T_FC,          /* [H][n_aux*Ht] */
    E3T_HIDDEN_NORM, /* [H] */
    E3T_INPUT_LN,    /* [H] */
    E3T_WQ,          /* [nh*hd][2H] */
    E3T_WK,          /* [nkv*hd][2H] */
    E3T_WV,          /* [nkv*hd][2H] */
    E3T_WO,          /* [H][nh*hd] */
    E3T_POST_NORM,   /* [H] */
    E3T_WGATE,       /* [I][H] */
    E3T_WUP,         /* [I][H] */
    E3T_WDOWN,       /* [H][I] */
    E3T_NORM,        /* [H] */
    E3T_LM_HEAD,     /* [Vd][H] */
    E3T_N_TENSORS
};

typedef struct ey_e3t_layout {
    size_t off[E3T_N_TENSORS], rows[E3T_N_TENSORS], cols[E3T_N_TENSORS];
    size_t n; /* total floats */
} ey_e3t_layout;

void ey_e3t_layout_make(const ey_e3t_dims *d, ey_e3t_layout *l);
/* Published tensor name of tensor i ("fc.weight", "midlayer.self_attn.q_proj.weight", ...). */
const char *ey_e3t_tensor_name(int i);

/* One training sequence. Teacher row r (0 <= r < T) is the target's
 * distribution after x_0..x_r, i.e. over x_{r+1}: n_teach[r] entries of
 * (target id, logit), in any order; top1[r] is the target's argmax over the
 * FULL vocabulary at row r. kmax is the row stride of teach_ids/teach_logits. */
typedef struct ey_e3t_seq {
    int T;
    const int32_t *ids;     /* [T] target-vocab ids */
    const uint8_t *mask;    /* [T] 1 = assistant token (trained on) */
    const float *aux;       /* [T][n_aux*Ht] target captures */
    int kmax;
    const int *n_teach;     /* [T] */
    const int32_t *teach_ids;  /* [T][kmax] target ids */
    const float *teach_logits; /* [T][kmax] */
    const int32_t *top1;    /* [T] */
} ey_e3t_seq;

typedef struct ey_e3t_stats {
    int K;
    double loss[EY_E3T_MAX_STEPS];  /* sum over counted rows of the step's CE */
    long correct[EY_E3T_MAX_STEPS]; /* draft top-1 == teacher top-1 */
    long counted[EY_E3T_MAX_STEPS];
    long rows;                      /* rows seen (the loss divisor) */
} ey_e3t_stats;

typedef struct ey_e3t_opts {
    int K;              /* unrolled steps (default 7) */
    float decay;        /* step weight decay^j (default 0.8) */
    float rope_theta;
    const float *inv_freq; /* [hd/2] (NULL: rope_theta^(-2i/hd)) */
} ey_e3t_opts;

typedef struct ey_e3t ey_e3t;

/* The trainer: dims, fixed options and the frozen embedding ([V][H] f32,
 * borrowed; it must outlive the trainer). Parameters start at zero. */
ey_err ey_e3t_create(const ey_e3t_dims *d, const ey_e3t_opts *o, const float *embed,
                     ey_e3t **out);
void ey_e3t_free(ey_e3t *tr);
const ey_e3t_layout *ey_e3t_layout_of(const ey_e3t *tr);
float *ey_e3t_params(ey_e3t *tr);  /* [layout.n] */
float *ey_e3t_grads(ey_e3t *tr);   /* [layout.n] */
/* Draft id of each target id (-1 outside the draft vocab), [V]; set by
 * ey_e3t_set_vocab from the sorted draft vocabulary sel[Vd] (d2t[i] = sel[i] - i). */
ey_err ey_e3t_set_vocab(ey_e3t *tr, const int32_t *sel);
const int32_t *ey_e3t_vocab(const ey_e3t *tr); /* sel[Vd] */

void ey_e3t_zero_grad(ey_e3t *tr);
/* Forward + backward of one sequence over K steps; the gradient of
 * (sum_j decay^j * sum_rows CE_j) / norm is ADDED to the gradients (norm:
 * the rows of the whole batch, so that the loss is a mean over all rows as
 * in EA-train). Stats are accumulated into *st (not reset). logits0, when
 * not NULL, receives the step-0 logits [T][Vd] (tests). */
ey_err ey_e3t_accumulate(ey_e3t *tr, const ey_e3t_seq *s, double norm, ey_e3t_stats *st,
                         float *logits0);

/* ---- optimizer */
typedef struct ey_e3t_optim {
    float lr, beta1, beta2, eps, weight_decay, clip; /* clip <= 0: none */
    long warmup, total;  /* steps; lr(step) = linear warmup then cosine to min_lr_ratio * lr */
    float min_lr_ratio;
} ey_e3t_optim;

float ey_e3t_lr_at(const ey_e3t_optim *o, long step);
/* Clip the global gradient norm, then one AdamW update (fp32 masters) at
 * optimizer step `step` (0-based). Returns the gradient norm before clipping;
 * when it is not finite nothing is updated. */
double ey_e3t_adamw_step(ey_e3t *tr, const ey_e3t_optim *o, long step);

/* ---- checkpoints: parameters, AdamW moments, the step counter and an
 * opaque caller blob (data position, schedule, options), written atomically
 * (temporary file + rename). Loading checks dims and sizes. */
ey_err ey_e3t_save(const ey_e3t *tr, const char *path, long step, const void *blob,
                   size_t blob_len);
ey_err ey_e3t_load(ey_e3t *tr, const char *path, long *step, void *blob, size_t blob_len);

#endif
