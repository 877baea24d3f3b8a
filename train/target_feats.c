/* eyrie — target features for drafter training (see target_feats.h). */
#include "target_feats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ey_tfeat_default_aux(int n_layer, int out[3])
{
    const int N = n_layer;
    int a[3] = {2, N / 2, N - 3};
    for (int i = 0; i < 3; i++) out[i] = a[i] < 0 ? 0 : a[i] > N ? N : a[i];
    return 3;
}

/* Grow *p to at least n elements of size sz. */
static ey_err grow(void **p, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap) return EY_OK;
    void *q = realloc(*p, n * sz);
    if (!q) return ey_err_set(EY_ERR_NOMEM, "target features: no memory for %zu x %zu bytes", n,
                              sz);
    *p = q;
    *cap = n;
    return EY_OK;
}

void ey_tfeat_free(ey_tfeat *f)
{
    if (!f) return;
    free(f->aux);
    free(f->top1);
    free(f->n_teach);
    free(f->teach_ids);
    free(f->teach_logits);
    free(f->logits);
    free(f->heap_id);
    free(f->heap_v);
    memset(f, 0, sizeof *f);
}

/* a ranks above b: larger logit, then lower id (NaN ranks lowest) */
static inline int better(float av, int32_t ai, float bv, int32_t bi)
{
    if (isnan(bv)) return !isnan(av) || ai < bi;
    if (isnan(av)) return 0;
    return av > bv || (av == bv && ai < bi);
}

/* Min-heap (the worst kept entry at the root) of k entries. */
static void sift_down(float *v, int32_t *id, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(v[w], id[w], v[l], id[l])) w = l;
        if (r < n && better(v[w], id[w], v[r], id[r])) w = r;
        if (w == i) return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[w];
        id[i] = id[w];
        v[w] = tv;
        id[w] = ti;
        i = w;
    }
}

static void topk_row(const float *lg, int V, int k, float *hv, int32_t *hid, int32_t *out_id,
                     float *out_v)
{
    for (int i = 0; i < k; i++) {
        hv[i] = lg[i];
        hid[i] = i;
    }
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(hv, hid, k, i);
    for (int i = k; i < V; i++)
        if (better(lg[i], i, hv[0], hid[0])) {
            hv[0] = lg[i];
            hid[0] = i;
            sift_down(hv, hid, k, 0);
        }
    /* pop the worst first: fill from the back */
    for (int n = k; n > 0; n--) {
        out_id[n - 1] = hid[0];
        out_v[n - 1] = hv[0];
        hv[0] = hv[n - 1];
        hid[0] = hid[n - 1];
        sift_down(hv, hid, n - 1, 0);
    }
}

ey_err ey_tfeat_compute(ey_ctx *c, const int32_t *ids, int T, int k, const int32_t *restrict_ids,
                        int n_restrict, ey_tfeat *out)
{
    if (!c || !ids || !out) return ey_err_set(EY_ERR_ARG, "target features: NULL argument");
    const int V = c->m->cfg.n_vocab, H = c->m->cfg.n_embd;
    if (T < 2) return ey_err_set(EY_ERR_ARG, "target features: %d tokens (at least 2)", T);
    if (T > c->kv.n_rows)
        return ey_err_set(EY_ERR_LIMIT, "target features: %d tokens exceed the context's %d KV "
                          "rows", T, c->kv.n_rows);
    if (c->n_capture < 1)
        return ey_err_set(EY_ERR_ARG, "target features: no capture layers set on the context "
                          "(ey_ctx_set_capture)");
    if (restrict_ids) {
        if (n_restrict < 1 || k != n_restrict)
            return ey_err_set(EY_ERR_ARG, "target features: restricted teacher of %d ids with "
                              "k = %d (k must equal the id count)", n_restrict, k);
        for (int i = 0; i < n_restrict; i++)
            if (restrict_ids[i] < 0 || restrict_ids[i] >= V)
                return ey_err_set(EY_ERR_ARG, "target features: restricted id %d outside the "
                                  "vocabulary [0, %d)", restrict_ids[i], V);
    } else if (k < 1 || k > V) {
        return ey_err_set(EY_ERR_ARG, "target features: top-k %d outside [1, %d]", k, V);
    }
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return ey_err_set(EY_ERR_ARG, "target features: token %d at row %d outside the "
                              "vocabulary [0, %d)", ids[t], t, V);
    int rows = c->max_batch < c->max_logit_rows ? c->max_batch : c->max_logit_rows;
    if (rows < 1) return ey_err_set(EY_ERR_ARG, "target features: context has no logit rows");
    if (rows > T) rows = T;
    const size_t W = (size_t)c->n_capture * H;
    ey_err e;
    if ((e = grow((void **)&out->aux, &out->cap_aux, (size_t)T * W, sizeof(float))) ||
        (e = grow((void **)&out->logits, &out->cap_logits, (size_t)rows * V, sizeof(float))) ||
        (e = grow((void **)&out->teach_ids, &out->cap_teach, (size_t)T * k, sizeof(int32_t))))
        return e;
    if ((e = grow((void **)&out->teach_logits, &out->cap_teach_l, (size_t)T * k, sizeof(float))))
        return e;
    if ((size_t)T > out->cap_T) {
        int32_t *a = realloc(out->top1, (size_t)T * sizeof *a);
        if (a) out->top1 = a;
        int *b = realloc(out->n_teach, (size_t)T * sizeof *b);
        if (b) out->n_teach = b;
        if (!a || !b) return ey_err_set(EY_ERR_NOMEM, "target features: no memory");
        out->cap_T = (size_t)T;
    }
    if (!restrict_ids && (size_t)k > out->cap_heap) {
        float *a = realloc(out->heap_v, (size_t)k * sizeof *a);
        if (a) out->heap_v = a;
        int32_t *b = realloc(out->heap_id, (size_t)k * sizeof *b);
        if (b) out->heap_id = b;
        if (!a || !b) return ey_err_set(EY_ERR_NOMEM, "target features: no memory");
        out->cap_heap = (size_t)k;
    }
    out->T = T;
    out->k = k;
    out->width = (int)W;

    ey_seq s;
    if ((e = ey_seq_init(&s, T))) return e;
    if ((e = ey_seq_reserve(&c->kv, &s, T))) {
        ey_seq_release(&c->kv, &s);
        return e;
    }
    for (int done = 0; done < T && !e;) {
        int n = T - done < rows ? T - done : rows;
        e = ey_forward_aux(c, &s, ids + done, n, NULL, NULL, n, out->logits, out->aux + done * W);
        if (e) break;
        for (int r = 0; r < n; r++) {
            const float *lg = out->logits + (size_t)r * V;
            const int t = done + r;
            int32_t best = 0;
            for (int i = 1; i < V; i++)
                if (better(lg[i], i, lg[best], best)) best = i;
            out->top1[t] = best;
            out->n_teach[t] = k;
            int32_t *ti = out->teach_ids + (size_t)t * k;
            float *tv = out->teach_logits + (size_t)t * k;
            if (restrict_ids) {
                for (int j = 0; j < k; j++) {
                    ti[j] = restrict_ids[j];
                    tv[j] = lg[restrict_ids[j]];
                }
            } else {
                topk_row(lg, V, k, out->heap_v, out->heap_id, ti, tv);
            }
        }
        done += n;
    }
    ey_seq_release(&c->kv, &s);
    return e;
}
