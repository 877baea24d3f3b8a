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
    free(c);
}

/* ---------------------------------------------------------------- forward */

static void layer_forward(ey_ctx *c, ey_seq *s, int l, int T, int start, const uint8_t *mask)
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
    f->kv_store(be, kc, vc, c->k, c->v, KVd, start, T, s->blocks, c->kv.block_size);
    ey_attn_args a = {
        .n_head = cfg->n_head, .n_kv_head = cfg->n_kv_head, .head_dim = hd,
        .n_kv = start + T, .T = T, .blocks = s->blocks, .block_size = c->kv.block_size,
        .mask = mask, .scale = 1.0f / sqrtf((float)hd),
    };
    f->attention(be, c->att, c->q, kc, vc, &a);
    f->matmul(be, c->xn, L->wo.type, L->wo.p, (ey_ptr){0}, c->att, H, Qd, T);
    f->add(be, c->x, c->xn, (int64_t)T * H);

    f->rmsnorm(be, c->xn, c->x, L->ffn_norm.p, T, H, cfg->rms_eps);
    f->matmul(be, c->gate, L->w_gate.type, L->w_gate.p, (ey_ptr){0}, c->xn, cfg->n_ff, H, T);
    f->matmul(be, c->up, L->w_up.type, L->w_up.p, (ey_ptr){0}, c->xn, cfg->n_ff, H, T);
    f->silu_mul(be, c->gate, c->up, (int64_t)T * cfg->n_ff);
    f->matmul(be, c->xn, L->w_down.type, L->w_down.p, (ey_ptr){0}, c->gate, H, cfg->n_ff, T);
    f->add(be, c->x, c->xn, (int64_t)T * H);
}

static ey_err forward_chunk(ey_ctx *c, ey_seq *s, const int32_t *tokens, int T,
                            const int32_t *pos, const uint8_t *mask, int n_logits,
                            float *logits_out, float *aux_out)
{
    ey_backend *be = c->be;
    const struct ey_backend_i *f = &be->iface;
    const ey_model *m = c->m;
    const ey_model_config *cfg = &m->cfg;
    const int start = s->n_past;
    ey_err e;
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= cfg->n_vocab)
            return ey_err_set(EY_ERR_ARG, "token id %d out of range [0, %d)", tokens[t],
                              cfg->n_vocab);
    if ((e = ey_seq_reserve(&c->kv, s, start + T))) return e;
    int32_t posbuf[256];
    const int32_t *pp = pos;
    if (!pp) {
        /* positions n_past.. written in slices to avoid a per-call allocation */
        for (int t0 = 0; t0 < T; t0 += 256) {
            int n = T - t0 < 256 ? T - t0 : 256;
            for (int i = 0; i < n; i++) posbuf[i] = start + t0 + i;
            if ((e = f->buf_set(be, ey_ptr_at(c->pos, (size_t)t0 * 4), posbuf, (size_t)n * 4)))
                return e;
        }
    } else if ((e = f->buf_set(be, c->pos, pp, (size_t)T * 4))) {
        return e;
    }
    if ((e = f->buf_set(be, c->ids, tokens, (size_t)T * 4))) return e;
    f->get_rows(be, c->x, m->tok_embd.type, m->tok_embd.p, cfg->n_embd, c->ids, T);
    for (int l = 0; l < cfg->n_layer; l++) {
        capture_at(c, l, T);
        layer_forward(c, s, l, T, start, mask);
    }
    capture_at(c, cfg->n_layer, T);
    s->n_past = start + T;
    if (aux_out && c->n_capture) {
        if ((e = f->sync(be))) return e;
        if ((e = f->buf_get(be, aux_out, (ey_ptr){c->aux, 0},
                            (size_t)T * c->n_capture * cfg->n_embd * sizeof(float))))
            return e;
    }
    if (n_logits > 0) {
        size_t row = (size_t)cfg->n_embd * 4;
        ey_ptr last = ey_ptr_at(c->x, (size_t)(T - n_logits) * row);
        f->rmsnorm(be, c->xn, last, m->out_norm.p, n_logits, cfg->n_embd, cfg->rms_eps);
        f->matmul(be, c->logits, m->output.type, m->output.p, (ey_ptr){0}, c->xn, cfg->n_vocab,
                  cfg->n_embd, n_logits);
        if ((e = f->sync(be))) return e;
        if ((e = f->buf_get(be, logits_out, c->logits,
                            (size_t)n_logits * cfg->n_vocab * sizeof(float))))
            return e;
    }
    return f->sync(be);
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
        float *aux = aux_out ? aux_out + (size_t)done * c->n_capture * c->m->cfg.n_embd : NULL;
        ey_err e = forward_chunk(c, s, tokens + done, n, pos, mask, nl, logits_out, aux);
        if (e) return e;
        done += n;
    }
    return EY_OK;
}
