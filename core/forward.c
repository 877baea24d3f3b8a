#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- KV pool */

ey_err ey_kv_pool_init(ey_kv_pool *p, ey_backend *be, const ey_model_config *c, int n_rows,
                       int block_size)
{
    memset(p, 0, sizeof *p);
    if (block_size < 1 || n_rows < 1 || n_rows > (1 << 24))
        return ey_err_set(EY_ERR_ARG, "kv: bad size (%d rows, block %d)", n_rows, block_size);
    p->be = be;
    p->n_layer = c->n_layer;
    p->kv_dim = c->n_kv_head * c->head_dim;
    p->block_size = block_size;
    p->n_blocks = (n_rows + block_size - 1) / block_size;
    p->n_rows = n_rows;
    size_t bytes = (size_t)p->n_layer * p->n_blocks * block_size * p->kv_dim * sizeof(float);
    ey_err e;
    if ((e = be->iface.buf_alloc(be, bytes, &p->k))) return e;
    if ((e = be->iface.buf_alloc(be, bytes, &p->v))) {
        ey_kv_pool_free(p);
        return e;
    }
    p->free_list = malloc((size_t)p->n_blocks * sizeof *p->free_list);
    if (!p->free_list) {
        ey_kv_pool_free(p);
        return ey_err_set(EY_ERR_NOMEM, "kv: no memory");
    }
    /* hand out low block numbers first */
    for (int i = 0; i < p->n_blocks; i++) p->free_list[i] = p->n_blocks - 1 - i;
    p->n_free = p->n_blocks;
    return EY_OK;
}

void ey_kv_pool_free(ey_kv_pool *p)
{
    if (p->be) {
        if (p->k) p->be->iface.buf_free(p->be, p->k);
        if (p->v) p->be->iface.buf_free(p->be, p->v);
    }
    free(p->free_list);
    memset(p, 0, sizeof *p);
}

int ey_kv_pool_free_rows(const ey_kv_pool *p) { return p->n_free * p->block_size; }

ey_err ey_seq_init(ey_seq *s, int max_rows)
{
    memset(s, 0, sizeof *s);
    s->max_rows = max_rows;
    return EY_OK;
}

ey_err ey_seq_reserve(ey_kv_pool *p, ey_seq *s, int n_rows)
{
    if (n_rows > s->max_rows)
        return ey_err_set(EY_ERR_CAPACITY, "context full: %d rows requested, limit %d", n_rows,
                          s->max_rows);
    int need = (n_rows + p->block_size - 1) / p->block_size;
    if (need <= s->n_blocks) return EY_OK;
    if (need - s->n_blocks > p->n_free)
        return ey_err_set(EY_ERR_CAPACITY, "KV cache full: %d blocks needed, %d free",
                          need - s->n_blocks, p->n_free);
    if (need > s->cap_blocks) {
        int cap = s->cap_blocks ? s->cap_blocks : 16;
        while (cap < need) cap *= 2;
        int32_t *g = realloc(s->blocks, (size_t)cap * sizeof *g);
        if (!g) return ey_err_set(EY_ERR_NOMEM, "kv: no memory for block table");
        s->blocks = g;
        s->cap_blocks = cap;
    }
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = p->free_list[--p->n_free];
    return EY_OK;
}

ey_err ey_seq_truncate(ey_kv_pool *p, ey_seq *s, int n)
{
    if (n < 0 || n > s->n_past)
        return ey_err_set(EY_ERR_ARG, "kv: truncate to %d rows but sequence has %d", n, s->n_past);
    int keep = (n + p->block_size - 1) / p->block_size;
    while (s->n_blocks > keep) p->free_list[p->n_free++] = s->blocks[--s->n_blocks];
    s->n_past = n;
    return EY_OK;
}

void ey_seq_release(ey_kv_pool *p, ey_seq *s)
{
    if (s->blocks) {
        s->n_past = 0;
        while (s->n_blocks > 0) p->free_list[p->n_free++] = s->blocks[--s->n_blocks];
    }
    free(s->blocks);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- ctx */

ey_err ey_ctx_create(ey_model *m, int n_ctx, int max_batch, int max_logit_rows, ey_ctx **out)
{
    *out = NULL;
    const ey_model_config *c = &m->cfg;
    if (max_batch < 1 || max_batch > 8192 || max_logit_rows < 1 || max_logit_rows > max_batch)
        return ey_err_set(EY_ERR_ARG, "ctx: bad batch sizes (%d, %d)", max_batch, max_logit_rows);
    ey_ctx *x = calloc(1, sizeof *x);
    if (!x) return ey_err_set(EY_ERR_NOMEM, "no memory");
    x->m = m;
    x->be = m->be;
    x->max_batch = max_batch;
    x->max_logit_rows = max_logit_rows;
    ey_err e = ey_kv_pool_init(&x->kv, m->be, c, n_ctx, 16);
    if (e) {
        free(x);
        return e;
    }
    size_t B = (size_t)max_batch, Qd = (size_t)c->n_head * c->head_dim,
           KVd = (size_t)c->n_kv_head * c->head_dim;
    size_t sizes[] = {B * c->n_embd, B * c->n_embd, B * Qd, B * KVd, B * KVd, B * Qd,
                      B * c->n_ff, B * c->n_ff, (size_t)max_logit_rows * c->n_vocab, B, B};
    ey_ptr *slots[] = {&x->x, &x->xn, &x->q, &x->k, &x->v, &x->att,
                       &x->gate, &x->up, &x->logits, &x->ids, &x->pos};
    size_t off[11], total = 0;
    for (int i = 0; i < 11; i++) {
        off[i] = total;
        total += (sizes[i] * 4 + 63) & ~(size_t)63;
    }
    if ((e = m->be->iface.buf_alloc(m->be, total, &x->act))) {
        ey_ctx_free(x);
        return e;
    }
    for (int i = 0; i < 11; i++) *slots[i] = (ey_ptr){x->act, off[i]};
    x->hpos = malloc(B * 2 * sizeof *x->hpos);
    if (!x->hpos) {
        ey_ctx_free(x);
        return ey_err_set(EY_ERR_NOMEM, "no memory");
    }
    x->hids = x->hpos + B;
    *out = x;
    return EY_OK;
}

ey_err ey_ctx_set_capture(ey_ctx *c, const int *layers, int n)
{
    if (n < 0 || n > EY_MAX_CAPTURE)
        return ey_err_set(EY_ERR_ARG, "capture: %d layers (max %d)", n, EY_MAX_CAPTURE);
    for (int i = 0; i < n; i++)
        if (layers[i] < 0 || layers[i] > c->m->cfg.n_layer)
            return ey_err_set(EY_ERR_ARG, "capture: layer %d outside [0, %d]", layers[i],
                              c->m->cfg.n_layer);
    if (c->aux) {
        c->be->iface.buf_free(c->be, c->aux);
        c->aux = NULL;
    }
    c->n_capture = 0;
    if (n == 0) return EY_OK;
    size_t bytes = (size_t)c->max_batch * n * c->m->cfg.n_embd * sizeof(float);
    ey_err e = c->be->iface.buf_alloc(c->be, bytes, &c->aux);
    if (e) return e;
    memcpy(c->capture_layers, layers, (size_t)n * sizeof *layers);
    c->n_capture = n;
    return EY_OK;
}

/* Copy the residual stream rows into capture slot `slot` (row-interleaved:
 * row t, slot i at (t * n_capture + i) * H). */
static void capture(ey_ctx *c, int slot, int T)
{
    const int H = c->m->cfg.n_embd;
    for (int t = 0; t < T; t++)
        c->be->iface.copy(c->be,
                          (ey_ptr){c->aux, ((size_t)t * c->n_capture + slot) * H * sizeof(float)},
                          ey_ptr_at(c->x, (size_t)t * H * sizeof(float)), H);
}

static void capture_at(ey_ctx *c, int layer, int T)
{
    for (int i = 0; i < c->n_capture; i++)
        if (c->capture_layers[i] == layer) capture(c, i, T);
}

void ey_ctx_free(ey_ctx *c)
{
    if (!c) return;
    if (c->aux) c->be->iface.buf_free(c->be, c->aux);
    if (c->act) c->be->iface.buf_free(c->be, c->act);
    ey_kv_pool_free(&c->kv);
    free(c->hpos);
    free(c);
}

/* ---------------------------------------------------------------- forward */

/* Rows of all items are concatenated: matmuls, norms and RoPE run once over
 * the whole batch; KV stores and attention run per item (each against its
 * own block table). Every matmul row is computed the same way whatever T is
 * (tests/kernels/test_matmul.c), so an item's results do not depend on what
 * else shares the batch. */
static void layer_forward(ey_ctx *c, const ey_fwd_item *it, int n, int l, int T)
{
    ey_backend *be = c->be;
    const struct ey_backend_i *f = &be->iface;
    const ey_model *m = c->m;
    const ey_model_config *cfg = &m->cfg;
    const ey_layer_w *L = &m->layers[l];
    const int H = cfg->n_embd, hd = cfg->head_dim, Qd = cfg->n_head * hd,
              KVd = cfg->n_kv_head * hd;
    size_t layer_off = (size_t)l * c->kv.n_blocks * c->kv.block_size * KVd * sizeof(float);
    ey_ptr kc = {c->kv.k, layer_off}, vc = {c->kv.v, layer_off};

    f->rmsnorm(be, c->xn, c->x, L->attn_norm.p, T, H, cfg->rms_eps);
    f->matmul(be, c->q, L->wq.type, L->wq.p, L->bq.p, c->xn, Qd, H, T);
    f->matmul(be, c->k, L->wk.type, L->wk.p, L->bk.p, c->xn, KVd, H, T);
    f->matmul(be, c->v, L->wv.type, L->wv.p, L->bv.p, c->xn, KVd, H, T);
    if (cfg->qk_norm) {
        f->rmsnorm(be, c->q, c->q, L->q_norm.p, (int64_t)T * cfg->n_head, hd, cfg->rms_eps);
        f->rmsnorm(be, c->k, c->k, L->k_norm.p, (int64_t)T * cfg->n_kv_head, hd, cfg->rms_eps);
    }
    f->rope(be, c->q, c->pos, m->inv_freq, T, cfg->n_head, hd, cfg->rope_dim, cfg->rope_mode);
    f->rope(be, c->k, c->pos, m->inv_freq, T, cfg->n_kv_head, hd, cfg->rope_dim,
            cfg->rope_mode);
    int r0 = 0;
    for (int i = 0; i < n; i++) {
        const ey_fwd_item *x = &it[i];
        const int start = x->s->n_past;
        f->kv_store(be, kc, vc, ey_ptr_at(c->k, (size_t)r0 * KVd * 4),
                    ey_ptr_at(c->v, (size_t)r0 * KVd * 4), KVd, start, x->T, x->s->blocks,
                    c->kv.block_size);
        ey_attn_args a = {
            .n_head = cfg->n_head, .n_kv_head = cfg->n_kv_head, .head_dim = hd,
            .n_kv = start + x->T, .T = x->T, .blocks = x->s->blocks,
            .block_size = c->kv.block_size, .mask = x->mask, .scale = 1.0f / sqrtf((float)hd),
        };
        f->attention(be, ey_ptr_at(c->att, (size_t)r0 * Qd * 4),
                     ey_ptr_at(c->q, (size_t)r0 * Qd * 4), kc, vc, &a);
        r0 += x->T;
    }
    f->matmul(be, c->xn, L->wo.type, L->wo.p, (ey_ptr){0}, c->att, H, Qd, T);
    f->add(be, c->x, c->xn, (int64_t)T * H);

    f->rmsnorm(be, c->xn, c->x, L->ffn_norm.p, T, H, cfg->rms_eps);
    f->matmul(be, c->gate, L->w_gate.type, L->w_gate.p, (ey_ptr){0}, c->xn, cfg->n_ff, H, T);
    f->matmul(be, c->up, L->w_up.type, L->w_up.p, (ey_ptr){0}, c->xn, cfg->n_ff, H, T);
    f->silu_mul(be, c->gate, c->up, (int64_t)T * cfg->n_ff);
    f->matmul(be, c->xn, L->w_down.type, L->w_down.p, (ey_ptr){0}, c->gate, H, cfg->n_ff, T);
    f->add(be, c->x, c->xn, (int64_t)T * H);
}

/* Check every item and reserve its KV rows; nothing runs yet. */
static ey_err batch_check(ey_ctx *c, const ey_fwd_item *it, int n, int *rows, int *lrows)
{
    const ey_model_config *cfg = &c->m->cfg;
    int T = 0, NL = 0;
    for (int i = 0; i < n; i++) {
        const ey_fwd_item *x = &it[i];
        if (!x->s || !x->tokens || x->T < 1)
            return ey_err_set(EY_ERR_ARG, "forward: item %d has no tokens", i);
        if (x->n_logits < 0 || x->n_logits > x->T)
            return ey_err_set(EY_ERR_ARG, "forward: item %d asks %d logit rows of %d", i,
                              x->n_logits, x->T);
        for (int j = 0; j < i; j++)
            if (it[j].s == x->s) return ey_err_set(EY_ERR_ARG, "forward: sequence twice in a batch");
        if (x->s->n_past + x->T > x->s->max_rows)
            return ey_err_set(EY_ERR_CAPACITY, "context full: %d + %d rows exceed %d",
                              x->s->n_past, x->T, x->s->max_rows);
        for (int t = 0; t < x->T; t++)
            if (x->tokens[t] < 0 || x->tokens[t] >= cfg->n_vocab)
                return ey_err_set(EY_ERR_ARG, "token id %d out of range [0, %d)", x->tokens[t],
                                  cfg->n_vocab);
        T += x->T;
        NL += x->n_logits;
        if (T > c->max_batch || NL > c->max_logit_rows)
            return ey_err_set(EY_ERR_ARG, "forward: batch of %d rows / %d logit rows exceeds "
                              "%d / %d", T, NL, c->max_batch, c->max_logit_rows);
    }
    for (int i = 0; i < n; i++) {
        ey_err e = ey_seq_reserve(&c->kv, it[i].s, it[i].s->n_past + it[i].T);
        if (e) return e;
    }
    *rows = T;
    *lrows = NL;
    return EY_OK;
}

static ey_err forward_rows(ey_ctx *c, const ey_fwd_item *it, int n)
{
    ey_backend *be = c->be;
    const struct ey_backend_i *f = &be->iface;
    const ey_model *m = c->m;
    const ey_model_config *cfg = &m->cfg;
    const int H = cfg->n_embd;
    int T = 0, NL = 0;
    ey_err e = batch_check(c, it, n, &T, &NL);
    if (e) return e;
    int r0 = 0;
    for (int i = 0; i < n; i++) {
        const ey_fwd_item *x = &it[i];
        for (int t = 0; t < x->T; t++) {
            c->hpos[r0 + t] = x->pos ? x->pos[t] : x->s->n_past + t;
            c->hids[r0 + t] = x->tokens[t];
        }
        r0 += x->T;
    }
    if ((e = f->buf_set(be, c->pos, c->hpos, (size_t)T * 4))) return e;
    if ((e = f->buf_set(be, c->ids, c->hids, (size_t)T * 4))) return e;
    f->get_rows(be, c->x, m->tok_embd.type, m->tok_embd.p, H, c->ids, T);
    for (int l = 0; l < cfg->n_layer; l++) {
        capture_at(c, l, T);
        layer_forward(c, it, n, l, T);
    }
    capture_at(c, cfg->n_layer, T);
    for (int i = 0; i < n; i++) it[i].s->n_past += it[i].T;
    if (c->n_capture) {
        bool any = false;
        for (int i = 0; i < n; i++) any |= it[i].aux != NULL;
        if (any && (e = f->sync(be))) return e;
        const size_t rowb = (size_t)c->n_capture * H * sizeof(float);
        r0 = 0;
        for (int i = 0; i < n; i++) {
            if (it[i].aux &&
                (e = f->buf_get(be, it[i].aux, (ey_ptr){c->aux, r0 * rowb}, it[i].T * rowb)))
                return e;
            r0 += it[i].T;
        }
    }
    if (NL > 0) {
        /* gather the logit rows of every item, one norm + head matmul */
        const size_t rowb = (size_t)H * 4;
        int g = 0;
        r0 = 0;
        for (int i = 0; i < n; i++) {
            const int nl = it[i].n_logits;
            if (nl)
                f->copy(be, ey_ptr_at(c->xn, g * rowb),
                        ey_ptr_at(c->x, (size_t)(r0 + it[i].T - nl) * rowb), (int64_t)nl * H);
            g += nl;
            r0 += it[i].T;
        }
        f->rmsnorm(be, c->xn, c->xn, m->out_norm.p, NL, H, cfg->rms_eps);
        f->matmul(be, c->logits, m->output.type, m->output.p, (ey_ptr){0}, c->xn, cfg->n_vocab,
                  H, NL);
        if ((e = f->sync(be))) return e;
        const size_t lrow = (size_t)cfg->n_vocab * sizeof(float);
        g = 0;
        for (int i = 0; i < n; i++) {
            const int nl = it[i].n_logits;
            if (nl && (e = f->buf_get(be, it[i].logits, ey_ptr_at(c->logits, g * lrow),
                                      nl * lrow)))
                return e;
            g += nl;
        }
    }
    return f->sync(be);
}

ey_err ey_forward_batch(ey_ctx *c, const ey_fwd_item *items, int n)
{
    if (n < 1) return ey_err_set(EY_ERR_ARG, "forward: empty batch");
    return forward_rows(c, items, n);
}

ey_err ey_forward(ey_ctx *c, ey_seq *s, const int32_t *tokens, int T, const int32_t *pos,
                  const uint8_t *mask, int n_logits, float *logits_out)
{
    return ey_forward_aux(c, s, tokens, T, pos, mask, n_logits, logits_out, NULL);
}

ey_err ey_forward_aux(ey_ctx *c, ey_seq *s, const int32_t *tokens, int T, const int32_t *pos,
                      const uint8_t *mask, int n_logits, float *logits_out, float *aux_out)
{
    if (T < 1) return ey_err_set(EY_ERR_ARG, "forward: no tokens");
    if (n_logits < 0 || n_logits > c->max_logit_rows || n_logits > T)
        return ey_err_set(EY_ERR_ARG, "forward: %d logit rows requested (max %d)", n_logits,
                          c->max_logit_rows);
    if (T > c->max_batch && (mask || pos))
        return ey_err_set(EY_ERR_ARG, "forward: masked/positioned batch of %d exceeds %d", T,
                          c->max_batch);
    if (s->n_past + T > s->max_rows)
        return ey_err_set(EY_ERR_CAPACITY, "context full: %d + %d rows exceed %d", s->n_past, T,
                          s->max_rows);
    int done = 0;
    while (done < T) {
        int n = T - done < c->max_batch ? T - done : c->max_batch;
        bool last = done + n == T;
        int nl = last ? n_logits : 0;
        if (last && nl > n) return ey_err_set(EY_ERR_ARG, "forward: logits span chunks");
        ey_fwd_item it = {
            .s = s, .tokens = tokens + done, .T = n, .pos = pos, .mask = mask, .n_logits = nl,
            .logits = logits_out,
            .aux = aux_out ? aux_out + (size_t)done * c->n_capture * c->m->cfg.n_embd : NULL,
        };
        ey_err e = forward_rows(c, &it, 1);
        if (e) return e;
        done += n;
    }
    return EY_OK;
}
