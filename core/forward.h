/* eyrie — KV cache in fixed-size blocks, per-request sequences, and the
 * batched decoder forward pass.
 *
 * ey_kv_pool holds K and V for every layer in blocks of `block_size` rows;
 * a sequence owns a block table. Rows are appended by the forward pass and
 * removed only by ey_seq_truncate (speculative rollback), a checked
 * operation. ey_ctx is the forward workspace (activations sized at creation
 * for at most max_batch rows): nothing is allocated per token. */
#ifndef EY_FORWARD_H
#define EY_FORWARD_H

#include "model.h"

typedef struct ey_kv_pool {
    ey_backend *be;
    int n_layer, kv_dim, block_size, n_blocks;
    int n_rows; /* rows a context may use (the pool rounds up to whole blocks) */
    ey_buf *k, *v;   /* [n_layer][n_blocks][block_size][kv_dim] f32 each */
    int32_t *free_list;
    int n_free;
} ey_kv_pool;

typedef struct ey_seq {
    int32_t *blocks; /* block table */
    int n_blocks, cap_blocks;
    int n_past;      /* rows in the cache */
    int max_rows;    /* context limit for this sequence */
} ey_seq;

ey_err ey_kv_pool_init(ey_kv_pool *p, ey_backend *be, const ey_model_config *c, int n_rows,
                       int block_size);
void ey_kv_pool_free(ey_kv_pool *p);
int ey_kv_pool_free_rows(const ey_kv_pool *p);

ey_err ey_seq_init(ey_seq *s, int max_rows);
/* Ensure blocks exist for rows [0, n_rows). EY_ERR_CAPACITY when the pool
 * or the sequence limit is exhausted (nothing changes then). */
ey_err ey_seq_reserve(ey_kv_pool *p, ey_seq *s, int n_rows);
/* Drop rows >= n (n <= n_past); frees whole blocks past the new end. */
ey_err ey_seq_truncate(ey_kv_pool *p, ey_seq *s, int n);
void ey_seq_release(ey_kv_pool *p, ey_seq *s);

#define EY_MAX_CAPTURE 8

typedef struct ey_ctx {
    ey_model *m;
    ey_backend *be;
    ey_kv_pool kv;
    int max_batch, max_logit_rows;
    ey_buf *act; /* one buffer for every activation */
    ey_ptr x, xn, q, k, v, att, gate, up, logits, ids, pos;
    /* hidden-state capture (EAGLE-3 aux features): the residual stream at
     * the INPUT of each listed layer (id == n_layer: the final pre-norm
     * output), for every processed row */
    int n_capture;
    int capture_layers[EY_MAX_CAPTURE];
    ey_buf *aux; /* [max_batch][n_capture][n_embd] f32 */
    int32_t *hpos, *hids; /* host staging, max_batch each */
} ey_ctx;

/* Select the layers to capture (n <= EY_MAX_CAPTURE, ids in [0, n_layer]);
 * n = 0 turns capture off. Allocates the capture buffer once. */
ey_err ey_ctx_set_capture(ey_ctx *c, const int *layers, int n);

/* n_ctx: KV rows in the pool (shared by all sequences of this ctx). */
ey_err ey_ctx_create(ey_model *m, int n_ctx, int max_batch, int max_logit_rows, ey_ctx **out);
void ey_ctx_free(ey_ctx *c);

/* Run T tokens of sequence s at positions n_past.. (or pos[] if given),
 * append their K/V, and copy the logits of the last n_logits rows into
 * logits_out ([n_logits][n_vocab], host) when n_logits > 0. mask: optional
 * T x T tree mask over the new rows (see ey_attn_args). Longer inputs than
 * max_batch run in chunks (then mask must be NULL). */
ey_err ey_forward(ey_ctx *c, ey_seq *s, const int32_t *tokens, int T, const int32_t *pos,
                  const uint8_t *mask, int n_logits, float *logits_out);
/* As ey_forward, and when capture is on and aux_out != NULL, copies the
 * captures of all T rows to aux_out ([T][n_capture][n_embd], host). */
ey_err ey_forward_aux(ey_ctx *c, ey_seq *s, const int32_t *tokens, int T, const int32_t *pos,
                      const uint8_t *mask, int n_logits, float *logits_out, float *aux_out);

/* One sequence's rows in a batched forward (continuous batching: prefill
 * chunks, decode steps and tree verifications of different sequences share
 * one pass). tokens/pos/mask/outputs as in ey_forward_aux. */
typedef struct ey_fwd_item {
    ey_seq *s;
    const int32_t *tokens;
    int T;
    const int32_t *pos;    /* NULL: s->n_past + t */
    const uint8_t *mask;   /* T x T tree mask or NULL (causal) */
    int n_logits;          /* logits of the last n_logits rows */
    float *logits;         /* [n_logits][n_vocab] host */
    float *aux;            /* [T][n_capture][n_embd] host, or NULL */
} ey_fwd_item;

/* Run n items (distinct sequences) in one pass: the rows of all items
 * together at most max_batch, their logit rows at most max_logit_rows (no
 * chunking here). Each item's outputs equal those of its own ey_forward_aux
 * call bit for bit. On an error nothing has run (KV rows may have been
 * reserved for the items; they stay with their sequences). */
ey_err ey_forward_batch(ey_ctx *c, const ey_fwd_item *items, int n);

#endif
