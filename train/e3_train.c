/* eyrie — EAGLE-3 drafter training-time test: forward, backward, AdamW,
 * checkpoints (see e3_train.h; docs/eagle3.md §3; docs/training.md). */
#include "e3_train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e3t_kernels.h"

static const char *const TENSOR_NAMES[E3T_N_TENSORS] = {
    "fc.weight",
    "midlayer.hidden_norm.weight",
    "midlayer.input_layernorm.weight",
    "midlayer.self_attn.q_proj.weight",
    "midlayer.self_attn.k_proj.weight",
    "midlayer.self_attn.v_proj.weight",
    "midlayer.self_attn.o_proj.weight",
    "midlayer.post_attention_layernorm.weight",
    "midlayer.mlp.gate_proj.weight",
    "midlayer.mlp.up_proj.weight",
    "midlayer.mlp.down_proj.weight",
    "norm.weight",
    "lm_head.weight",
};

const char *ey_e3t_tensor_name(int i)
{
    return i >= 0 && i < E3T_N_TENSORS ? TENSOR_NAMES[i] : NULL;
}

void ey_e3t_layout_make(const ey_e3t_dims *d, ey_e3t_layout *l)
{
    const size_t H = (size_t)d->H, qd = (size_t)d->nh * d->hd, kvd = (size_t)d->nkv * d->hd;
    const size_t shp[E3T_N_TENSORS][2] = {
        {H, (size_t)d->n_aux * d->Ht}, {H, 1}, {H, 1}, {qd, 2 * H}, {kvd, 2 * H}, {kvd, 2 * H},
        {H, qd}, {H, 1}, {(size_t)d->I, H}, {(size_t)d->I, H}, {H, (size_t)d->I}, {H, 1},
        {(size_t)d->Vd, H},
    };
    size_t off = 0;
    for (int i = 0; i < E3T_N_TENSORS; i++) {
        l->off[i] = off;
        l->rows[i] = shp[i][0];
        l->cols[i] = shp[i][1];
        off += shp[i][0] * shp[i][1];
        off = (off + 15) & ~(size_t)15; /* 64-byte aligned tensors */
    }
    l->n = off;
}

/* activations of one unrolled step, kept for the backward */
typedef struct step_act {
    float *u;    /* [T][2H]  concat(en, hn) */
    float *q;    /* [T][nh*hd] after RoPE */
    float *k, *v;/* [T][kvd] (k after RoPE) */
    float *lse;  /* [T][nh] */
    float *att;  /* [T][nh*hd] */
    float *r1;   /* [T][H] */
    float *p;    /* [T][H] post-attention norm output */
    float *gt, *up, *hh; /* [T][I] */
    float *dg;   /* [T][H] gradient of g from this step's head */
    float *dk, *dv; /* [T][kvd] gradients (accumulated from later steps) */
} step_act;

struct ey_e3t {
    ey_e3t_dims d;
    ey_e3t_opts o;
    ey_e3t_layout L;
    const float *embed;
    float *p, *g, *m, *v;
    int32_t *sel, *t2d;
    float *inv_freq;
    bool have_vocab;
    /* workspace for Tcap rows */
    int Tcap;
    float *ws;
    float *F;   /* [K+1][T][H] features: F[0] = fc(aux), F[j+1] = g_j */
    step_act st[EY_E3T_MAX_STEPS];
    float *e, *en, *hn, *tmpH, *xn, *z, *tlog;
    float *dU, *dQ, *dATT, *dR1, *dP, *dGt, *dUP, *dHH, *dF, *dEN, *dHN, *wrow;
    int32_t *pos, *tok, *tid, *amax, *nt;
};

ey_err ey_e3t_create(const ey_e3t_dims *d, const ey_e3t_opts *o, const float *embed, ey_e3t **out)
{
    *out = NULL;
    if (d->H < 1 || d->H > 16384 || d->n_aux < 1 || d->n_aux > 8 || d->Ht < 1 || d->Ht > 16384 ||
        d->nh < 1 || d->nkv < 1 || d->nh % d->nkv || d->hd < 2 || d->hd % 2 || d->hd > 512 ||
        d->I < 1 || d->I > 65536 || d->V < 2 || d->V > (1 << 22) || d->Vd < 2 || d->Vd > d->V ||
        !(d->eps > 0))
        return ey_err_set(EY_ERR_ARG, "train: bad drafter dimensions");
    if (o->K < 1 || o->K > EY_E3T_MAX_STEPS)
        return ey_err_set(EY_ERR_ARG, "train: unrolled steps must be in [1, %d]", EY_E3T_MAX_STEPS);
    if (!embed) return ey_err_set(EY_ERR_ARG, "train: no embedding");
    ey_e3t *tr = calloc(1, sizeof *tr);
    if (!tr) return ey_err_set(EY_ERR_NOMEM, "no memory");
    tr->d = *d;
    tr->o = *o;
    if (!(tr->o.decay > 0)) tr->o.decay = 0.8f;
    tr->o.inv_freq = NULL;
    tr->embed = embed;
    ey_e3t_layout_make(d, &tr->L);
    size_t n = tr->L.n;
    tr->p = aligned_alloc(64, n * sizeof(float));
    tr->g = aligned_alloc(64, n * sizeof(float));
    tr->m = aligned_alloc(64, n * sizeof(float));
    tr->v = aligned_alloc(64, n * sizeof(float));
    tr->sel = malloc((size_t)d->Vd * sizeof *tr->sel);
    tr->t2d = malloc((size_t)d->V * sizeof *tr->t2d);
    tr->inv_freq = malloc((size_t)(d->hd / 2) * sizeof *tr->inv_freq);
    if (!tr->p || !tr->g || !tr->m || !tr->v || !tr->sel || !tr->t2d || !tr->inv_freq) {
        ey_e3t_free(tr);
        return ey_err_set(EY_ERR_NOMEM, "train: no memory for %zu parameters", n);
    }
    memset(tr->p, 0, n * sizeof(float));
    memset(tr->g, 0, n * sizeof(float));
    memset(tr->m, 0, n * sizeof(float));
    memset(tr->v, 0, n * sizeof(float));
    for (int i = 0; i < d->hd / 2; i++)
        tr->inv_freq[i] = o->inv_freq ? o->inv_freq[i]
                                      : (float)pow(o->rope_theta > 0 ? o->rope_theta : 10000.0,
                                                   -2.0 * i / d->hd);
    *out = tr;
    return EY_OK;
}

void ey_e3t_free(ey_e3t *tr)
{
    if (!tr) return;
    free(tr->p);
    free(tr->g);
    free(tr->m);
    free(tr->v);
    free(tr->sel);
    free(tr->t2d);
    free(tr->inv_freq);
    free(tr->ws);
    free(tr->pos);
    free(tr);
}

const ey_e3t_layout *ey_e3t_layout_of(const ey_e3t *tr) { return &tr->L; }
float *ey_e3t_params(ey_e3t *tr) { return tr->p; }
float *ey_e3t_grads(ey_e3t *tr) { return tr->g; }
const int32_t *ey_e3t_vocab(const ey_e3t *tr) { return tr->sel; }

ey_err ey_e3t_set_vocab(ey_e3t *tr, const int32_t *sel)
{
    for (int i = 0; i < tr->d.V; i++) tr->t2d[i] = -1;
    for (int i = 0; i < tr->d.Vd; i++) {
        if (sel[i] < 0 || sel[i] >= tr->d.V || (i && sel[i] <= sel[i - 1]))
            return ey_err_set(EY_ERR_ARG, "train: the draft vocabulary must be ascending target "
                                          "ids (entry %d)", i);
        tr->sel[i] = sel[i];
        tr->t2d[sel[i]] = i;
    }
    tr->have_vocab = true;
    return EY_OK;
}

void ey_e3t_zero_grad(ey_e3t *tr) { memset(tr->g, 0, tr->L.n * sizeof(float)); }

/* ---------------------------------------------------------------- workspace */

static ey_err ensure_ws(ey_e3t *tr, int T)
{
    if (T <= tr->Tcap) return EY_OK;
    const ey_e3t_dims *d = &tr->d;
    const size_t H = d->H, qd = (size_t)d->nh * d->hd, kvd = (size_t)d->nkv * d->hd, I = d->I;
    const size_t Tn = (size_t)T, K = tr->o.K, kmax = (size_t)d->Vd;
    size_t per_step = Tn * (2 * H + qd + 2 * kvd + d->nh + qd + 2 * H + 3 * I + H + 2 * kvd);
    size_t fixed = (K + 1) * Tn * H + Tn * (5 * H + d->Vd + kmax) +
                   Tn * (2 * H + qd + qd + H + H + 3 * I + H + H + H + 1);
    size_t total = per_step * K + fixed + 64;
    float *ws = malloc(total * sizeof(float));
    int32_t *iw = malloc(Tn * (4 + kmax) * sizeof(int32_t) + 64);
    if (!ws || !iw) {
        free(ws);
        free(iw);
        return ey_err_set(EY_ERR_NOMEM, "train: no memory for a %d-row workspace", T);
    }
    free(tr->ws);
    free(tr->pos);
    tr->ws = ws;
    tr->pos = iw;
    float *c = ws;
#define TAKE(ptr, cnt)                                                                            \
    do {                                                                                         \
        (ptr) = c;                                                                               \
        c += (cnt);                                                                              \
    } while (0)
    TAKE(tr->F, (K + 1) * Tn * H);
    for (size_t j = 0; j < K; j++) {
        step_act *s = &tr->st[j];
        TAKE(s->u, Tn * 2 * H);
        TAKE(s->q, Tn * qd);
        TAKE(s->k, Tn * kvd);
        TAKE(s->v, Tn * kvd);
        TAKE(s->lse, Tn * d->nh);
        TAKE(s->att, Tn * qd);
        TAKE(s->r1, Tn * H);
        TAKE(s->p, Tn * H);
        TAKE(s->gt, Tn * I);
        TAKE(s->up, Tn * I);
        TAKE(s->hh, Tn * I);
        TAKE(s->dg, Tn * H);
        TAKE(s->dk, Tn * kvd);
        TAKE(s->dv, Tn * kvd);
    }
    TAKE(tr->e, Tn * H);
    TAKE(tr->en, Tn * H);
    TAKE(tr->hn, Tn * H);
    TAKE(tr->tmpH, Tn * H);
    TAKE(tr->xn, Tn * H);
    TAKE(tr->z, Tn * d->Vd);
    TAKE(tr->tlog, Tn * kmax);
    TAKE(tr->dU, Tn * 2 * H);
    TAKE(tr->dQ, Tn * qd);
    TAKE(tr->dATT, Tn * qd);
    TAKE(tr->dR1, Tn * H);
    TAKE(tr->dP, Tn * H);
    TAKE(tr->dGt, Tn * I);
    TAKE(tr->dUP, Tn * I);
    TAKE(tr->dHH, Tn * I);
    TAKE(tr->dF, Tn * H);
    TAKE(tr->dEN, Tn * H);
    TAKE(tr->dHN, Tn * H);
    TAKE(tr->wrow, Tn);
#undef TAKE
    int32_t *ic = iw;
    tr->pos = ic;
    ic += Tn;
    tr->tok = ic;
    ic += Tn;
    tr->amax = ic;
    ic += Tn;
    tr->nt = ic;
    ic += Tn;
    tr->tid = ic;
    tr->Tcap = T;
    return EY_OK;
}

#define PW(tr, i) ((tr)->p + (tr)->L.off[i])
#define GW(tr, i) ((tr)->g + (tr)->L.off[i])

/* rows [T][a] and [T][b] -> [T][a+b] and back */
static void cat2(float *dst, const float *x, const float *y, int T, int a, int b)
{
    for (int t = 0; t < T; t++) {
        memcpy(dst + (size_t)t * (a + b), x + (size_t)t * a, (size_t)a * sizeof(float));
        memcpy(dst + (size_t)t * (a + b) + a, y + (size_t)t * b, (size_t)b * sizeof(float));
    }
}

static void split2(float *x, float *y, const float *src, int T, int a, int b)
{
    for (int t = 0; t < T; t++) {
        memcpy(x + (size_t)t * a, src + (size_t)t * (a + b), (size_t)a * sizeof(float));
        memcpy(y + (size_t)t * b, src + (size_t)t * (a + b) + a, (size_t)b * sizeof(float));
    }
}

static void embed_rows(const ey_e3t *tr, float *e, const int32_t *tok, int T)
{
    const int H = tr->d.H;
    for (int t = 0; t < T; t++)
        memcpy(e + (size_t)t * H, tr->embed + (size_t)tok[t] * H, (size_t)H * sizeof(float));
}

static void step_tokens(const ey_e3t *tr, const ey_e3t_seq *s, int j, int32_t *tok, int32_t *pos)
{
    (void)tr;
    for (int t = 0; t < s->T; t++) {
        tok[t] = t + 1 + j < s->T ? s->ids[t + 1 + j] : 0;
        pos[t] = t + j;
    }
}

static ey_err check_seq(const ey_e3t *tr, const ey_e3t_seq *s)
{
    if (!tr->have_vocab) return ey_err_set(EY_ERR_ARG, "train: no draft vocabulary set");
    if (s->T < 2 || s->T > EY_E3T_MAX_T)
        return ey_err_set(EY_ERR_ARG, "train: sequence length %d outside [2, %d]", s->T,
                          EY_E3T_MAX_T);
    if (s->kmax < 1 || !s->ids || !s->mask || !s->aux || !s->n_teach || !s->teach_ids ||
        !s->teach_logits || !s->top1)
        return ey_err_set(EY_ERR_ARG, "train: incomplete sequence");
    for (int t = 0; t < s->T; t++) {
        if (s->ids[t] < 0 || s->ids[t] >= tr->d.V || s->top1[t] < 0 || s->top1[t] >= tr->d.V ||
            s->n_teach[t] < 0 || s->n_teach[t] > s->kmax)
            return ey_err_set(EY_ERR_FORMAT, "train: sequence row %d out of range", t);
        for (int i = 0; i < s->n_teach[t]; i++) {
            int32_t id = s->teach_ids[(size_t)t * s->kmax + i];
            if (id < 0 || id >= tr->d.V)
                return ey_err_set(EY_ERR_FORMAT, "train: teacher id %d out of range at row %d",
                                  id, t);
        }
    }
    return EY_OK;
}

/* ---------------------------------------------------------------- step */

ey_err ey_e3t_accumulate(ey_e3t *tr, const ey_e3t_seq *s, double norm, ey_e3t_stats *stats,
                         float *logits0)
{
    ey_err e = check_seq(tr, s);
    if (e) return e;
    if (!(norm > 0)) return ey_err_set(EY_ERR_ARG, "train: the loss divisor must be positive");
    if ((e = ensure_ws(tr, s->T))) return e;
    const ey_e3t_dims *d = &tr->d;
    const int T = s->T, H = d->H, nh = d->nh, nkv = d->nkv, hd = d->hd, I = d->I, Vd = d->Vd;
    const int qd = nh * hd, kvd = nkv * hd, FW = d->n_aux * d->Ht, K = tr->o.K;
    const float eps = d->eps;
    const size_t TH = (size_t)T * H;
    stats->K = K;
    stats->rows += T;

    /* f_0 = fc(aux) */
    e3t_linear_fwd(tr->F, s->aux, PW(tr, E3T_FC), T, H, FW);

    double wj = 1.0;
    for (int j = 0; j < K; j++, wj *= tr->o.decay) {
        step_act *a = &tr->st[j];
        const float *f = tr->F + (size_t)j * TH;
        float *g = tr->F + (size_t)(j + 1) * TH;
        step_tokens(tr, s, j, tr->tok, tr->pos);
        embed_rows(tr, tr->e, tr->tok, T);
        e3t_rmsnorm_fwd(tr->en, tr->e, PW(tr, E3T_INPUT_LN), T, H, eps);
        e3t_rmsnorm_fwd(tr->hn, f, PW(tr, E3T_HIDDEN_NORM), T, H, eps);
        cat2(a->u, tr->en, tr->hn, T, H, H);
        e3t_linear_fwd(a->q, a->u, PW(tr, E3T_WQ), T, qd, 2 * H);
        e3t_linear_fwd(a->k, a->u, PW(tr, E3T_WK), T, kvd, 2 * H);
        e3t_linear_fwd(a->v, a->u, PW(tr, E3T_WV), T, kvd, 2 * H);
        e3t_rope(a->q, tr->pos, tr->inv_freq, T, nh, hd, 0);
        e3t_rope(a->k, tr->pos, tr->inv_freq, T, nkv, hd, 0);
        const float *kd[EY_E3T_MAX_STEPS], *vd[EY_E3T_MAX_STEPS];
        for (int i = 1; i <= j; i++) {
            kd[i - 1] = tr->st[i].k;
            vd[i - 1] = tr->st[i].v;
        }
        e3t_attn at = {.T = T, .nh = nh, .nkv = nkv, .hd = hd, .n_diag = j,
                       .scale = 1.0f / sqrtf((float)hd), .q = a->q, .k0 = tr->st[0].k,
                       .v0 = tr->st[0].v, .kd = kd, .vd = vd};
        e3t_attn_fwd(&at, a->att, a->lse);
        e3t_linear_fwd(tr->tmpH, a->att, PW(tr, E3T_WO), T, H, qd);
        for (size_t i = 0; i < TH; i++) a->r1[i] = f[i] + tr->tmpH[i];
        e3t_rmsnorm_fwd(a->p, a->r1, PW(tr, E3T_POST_NORM), T, H, eps);
        e3t_linear_fwd(a->gt, a->p, PW(tr, E3T_WGATE), T, I, H);
        e3t_linear_fwd(a->up, a->p, PW(tr, E3T_WUP), T, I, H);
        e3t_swiglu_fwd(a->hh, a->gt, a->up, (int64_t)T * I);
        e3t_linear_fwd(tr->tmpH, a->hh, PW(tr, E3T_WDOWN), T, H, I);
        for (size_t i = 0; i < TH; i++) g[i] = a->r1[i] + tr->tmpH[i];

        /* head, loss and the head's backward right away (the logits are
         * not kept) */
        e3t_rmsnorm_fwd(tr->xn, g, PW(tr, E3T_NORM), T, H, eps);
        e3t_linear_fwd(tr->z, tr->xn, PW(tr, E3T_LM_HEAD), T, Vd, H);
        if (j == 0 && logits0) memcpy(logits0, tr->z, (size_t)T * Vd * sizeof(float));
        const int kmax = Vd < s->kmax ? Vd : s->kmax;
        long counted = 0;
        for (int t = 0; t < T; t++) {
            int r = t + 1 + j;
            tr->nt[t] = 0;
            tr->wrow[t] = 0;
            if (t + 2 + j >= T || !s->mask[t + 2 + j] || tr->t2d[s->top1[r]] < 0) continue;
            int n = 0;
            for (int i = 0; i < s->n_teach[r] && n < kmax; i++) {
                int32_t dv = tr->t2d[s->teach_ids[(size_t)r * s->kmax + i]];
                if (dv < 0) continue;
                tr->tid[(size_t)t * kmax + n] = dv;
                tr->tlog[(size_t)t * kmax + n] = s->teach_logits[(size_t)r * s->kmax + i];
                n++;
            }
            if (!n) continue;
            tr->nt[t] = n;
            tr->wrow[t] = (float)(wj / norm);
            counted++;
        }
        double wl = e3t_softce(tr->z, T, Vd, tr->tid, tr->tlog, tr->nt, kmax, tr->wrow, tr->amax);
        stats->loss[j] += wl * norm / wj;
        stats->counted[j] += counted;
        for (int t = 0; t < T; t++)
            if (tr->wrow[t] != 0 && tr->amax[t] == tr->t2d[s->top1[t + 1 + j]])
                stats->correct[j]++;
        memset(tr->tmpH, 0, TH * sizeof(float));
        e3t_linear_bwd(tr->tmpH, GW(tr, E3T_LM_HEAD), tr->z, tr->xn, PW(tr, E3T_LM_HEAD), T, Vd,
                       H);
        memset(a->dg, 0, TH * sizeof(float));
        e3t_rmsnorm_bwd(a->dg, GW(tr, E3T_NORM), tr->tmpH, g, PW(tr, E3T_NORM), T, H, eps);
        memset(a->dk, 0, (size_t)T * kvd * sizeof(float));
        memset(a->dv, 0, (size_t)T * kvd * sizeof(float));
    }

    /* backward, last step first; dF carries dL/dg_j from step j+1 */
    memset(tr->dF, 0, TH * sizeof(float));
    for (int j = K - 1; j >= 0; j--) {
        step_act *a = &tr->st[j];
        const float *f = tr->F + (size_t)j * TH;
        /* dg = head part + what step j+1 sent back through its feature */
        for (size_t i = 0; i < TH; i++) tr->dR1[i] = a->dg[i] + tr->dF[i];
        /* g = r1 + W_down h: dr1 = dg, dh = dg . W_down */
        memset(tr->dHH, 0, (size_t)T * I * sizeof(float));
        e3t_linear_bwd(tr->dHH, GW(tr, E3T_WDOWN), tr->dR1, a->hh, PW(tr, E3T_WDOWN), T, H, I);
        memset(tr->dGt, 0, (size_t)T * I * sizeof(float));
        memset(tr->dUP, 0, (size_t)T * I * sizeof(float));
        e3t_swiglu_bwd(tr->dGt, tr->dUP, tr->dHH, a->gt, a->up, (int64_t)T * I);
        memset(tr->dP, 0, TH * sizeof(float));
        e3t_linear_bwd(tr->dP, GW(tr, E3T_WGATE), tr->dGt, a->p, PW(tr, E3T_WGATE), T, I, H);
        e3t_linear_bwd(tr->dP, GW(tr, E3T_WUP), tr->dUP, a->p, PW(tr, E3T_WUP), T, I, H);
        e3t_rmsnorm_bwd(tr->dR1, GW(tr, E3T_POST_NORM), tr->dP, a->r1, PW(tr, E3T_POST_NORM), T,
                        H, eps);
        /* r1 = f + W_o att */
        memcpy(tr->dF, tr->dR1, TH * sizeof(float));
        memset(tr->dATT, 0, (size_t)T * qd * sizeof(float));
        e3t_linear_bwd(tr->dATT, GW(tr, E3T_WO), tr->dR1, a->att, PW(tr, E3T_WO), T, H, qd);
        const float *kd[EY_E3T_MAX_STEPS], *vd[EY_E3T_MAX_STEPS];
        float *dkd[EY_E3T_MAX_STEPS], *dvd[EY_E3T_MAX_STEPS];
        for (int i = 1; i <= j; i++) {
            kd[i - 1] = tr->st[i].k;
            vd[i - 1] = tr->st[i].v;
            dkd[i - 1] = tr->st[i].dk;
            dvd[i - 1] = tr->st[i].dv;
        }
        e3t_attn at = {.T = T, .nh = nh, .nkv = nkv, .hd = hd, .n_diag = j,
                       .scale = 1.0f / sqrtf((float)hd), .q = a->q, .k0 = tr->st[0].k,
                       .v0 = tr->st[0].v, .kd = kd, .vd = vd};
        memset(tr->dQ, 0, (size_t)T * qd * sizeof(float));
        e3t_attn_bwd(&at, a->att, a->lse, tr->dATT, tr->dQ, tr->st[0].dk, tr->st[0].dv, dkd, dvd);
        /* every later step has added into this step's dk/dv by now */
        step_tokens(tr, s, j, tr->tok, tr->pos);
        e3t_rope(tr->dQ, tr->pos, tr->inv_freq, T, nh, hd, 1);
        e3t_rope(a->dk, tr->pos, tr->inv_freq, T, nkv, hd, 1);
        memset(tr->dU, 0, (size_t)T * 2 * H * sizeof(float));
        e3t_linear_bwd(tr->dU, GW(tr, E3T_WQ), tr->dQ, a->u, PW(tr, E3T_WQ), T, qd, 2 * H);
        e3t_linear_bwd(tr->dU, GW(tr, E3T_WK), a->dk, a->u, PW(tr, E3T_WK), T, kvd, 2 * H);
        e3t_linear_bwd(tr->dU, GW(tr, E3T_WV), a->dv, a->u, PW(tr, E3T_WV), T, kvd, 2 * H);
        split2(tr->dEN, tr->dHN, tr->dU, T, H, H);
        embed_rows(tr, tr->e, tr->tok, T);
        e3t_rmsnorm_bwd(NULL, GW(tr, E3T_INPUT_LN), tr->dEN, tr->e, PW(tr, E3T_INPUT_LN), T, H,
                        eps);
        e3t_rmsnorm_bwd(tr->dF, GW(tr, E3T_HIDDEN_NORM), tr->dHN, f, PW(tr, E3T_HIDDEN_NORM), T,
                        H, eps);
    }
    /* f_0 = W_fc aux (aux is data: no dx) */
    e3t_linear_bwd(NULL, GW(tr, E3T_FC), tr->dF, s->aux, PW(tr, E3T_FC), T, H, FW);
    return EY_OK;
}

/* ---------------------------------------------------------------- AdamW */

float ey_e3t_lr_at(const ey_e3t_optim *o, long step)
{
    if (o->warmup > 0 && step < o->warmup) return o->lr * (float)(step + 1) / (float)o->warmup;
    long span = o->total - o->warmup;
    if (span <= 0) return o->lr;
    double prog = (double)(step - o->warmup) / (double)span;
    if (prog > 1) prog = 1;
    double lo = o->min_lr_ratio;
    return (float)(o->lr * (lo + (1 - lo) * 0.5 * (1 + cos(M_PI * prog))));
}

double ey_e3t_adamw_step(ey_e3t *tr, const ey_e3t_optim *o, long step)
{
    const size_t n = tr->L.n;
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)tr->g[i] * tr->g[i];
    double gn = sqrt(ss);
    if (!isfinite(gn)) return gn; /* no update: the caller reports it */
    float scale = 1.0f;
    if (o->clip > 0 && gn > o->clip) scale = (float)(o->clip / (gn + 1e-6));
    const float lr = ey_e3t_lr_at(o, step);
    const float b1 = o->beta1, b2 = o->beta2;
    const float bc1 = 1.0f - powf(b1, (float)(step + 1)), bc2 = 1.0f - powf(b2, (float)(step + 1));
    const float wd = o->weight_decay, ep = o->eps;
    float *p = tr->p, *g = tr->g, *m = tr->m, *v = tr->v;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * scale;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        float mh = m[i] / bc1, vh = v[i] / bc2;
        p[i] -= lr * (mh / (sqrtf(vh) + ep) + wd * p[i]);
    }
    return gn;
}

/* ---------------------------------------------------------------- checkpoints */

typedef struct ckpt_hdr {
    char magic[8];      /* "EYE3TRN1" */
    ey_e3t_dims dims;
    int32_t K, pad;
    uint64_t n_floats, blob_len;
    int64_t step;
} ckpt_hdr;

ey_err ey_e3t_save(const ey_e3t *tr, const char *path, long step, const void *blob,
                   size_t blob_len)
{
    char tmp[4096 + 16];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ey_err_set(EY_ERR_ARG, "train: checkpoint path too long");
    ckpt_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, "EYE3TRN1", 8);
    h.dims = tr->d;
    h.K = tr->o.K;
    h.n_floats = tr->L.n;
    h.blob_len = blob_len;
    h.step = step;
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return ey_err_set(EY_ERR_IO, "train: cannot create '%s': %s", tmp, strerror(errno));
    size_t n = tr->L.n;
    bool ok = fwrite(&h, sizeof h, 1, fp) == 1 &&
              fwrite(tr->sel, sizeof(int32_t), (size_t)tr->d.Vd, fp) == (size_t)tr->d.Vd &&
              fwrite(tr->p, sizeof(float), n, fp) == n && fwrite(tr->m, sizeof(float), n, fp) == n &&
              fwrite(tr->v, sizeof(float), n, fp) == n &&
              (!blob_len || fwrite(blob, 1, blob_len, fp) == blob_len);
    ok = fflush(fp) == 0 && ok && fsync(fileno(fp)) == 0;
    if (fclose(fp) || !ok) {
        unlink(tmp);
        return ey_err_set(EY_ERR_IO, "train: writing '%s' failed", tmp);
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        return ey_err_set(EY_ERR_IO, "train: cannot rename '%s': %s", tmp, strerror(errno));
    }
    return EY_OK;
}

ey_err ey_e3t_load(ey_e3t *tr, const char *path, long *step, void *blob, size_t blob_len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return ey_err_set(EY_ERR_IO, "train: cannot open '%s': %s", path, strerror(errno));
    ckpt_hdr h;
    ey_err e = EY_OK;
    size_t n = tr->L.n;
    if (fread(&h, sizeof h, 1, fp) != 1 || memcmp(h.magic, "EYE3TRN1", 8))
        e = ey_err_set(EY_ERR_FORMAT, "train: '%s' is not an eyrie trainer checkpoint", path);
    else if (memcmp(&h.dims, &tr->d, sizeof h.dims) || h.K != tr->o.K || h.n_floats != n)
        e = ey_err_set(EY_ERR_FORMAT, "train: checkpoint '%s' was made for other drafter "
                                      "dimensions or unrolled steps", path);
    else if (h.step < 0)
        e = ey_err_set(EY_ERR_FORMAT, "train: checkpoint '%s' has a negative step", path);
    else if (h.blob_len != blob_len)
        e = ey_err_set(EY_ERR_FORMAT, "train: checkpoint '%s' has a %llu-byte state record, "
                                      "expected %zu", path, (unsigned long long)h.blob_len,
                       blob_len);
    /* read everything aside first: a failed load leaves the trainer as it was */
    int32_t *sel = e ? NULL : malloc((size_t)tr->d.Vd * sizeof *sel);
    float *tmp = e ? NULL : malloc(3 * n * sizeof *tmp);
    if (!e && (!sel || !tmp)) e = ey_err_set(EY_ERR_NOMEM, "no memory");
    if (!e && (fread(sel, sizeof(int32_t), (size_t)tr->d.Vd, fp) != (size_t)tr->d.Vd ||
               fread(tmp, sizeof(float), 3 * n, fp) != 3 * n ||
               (blob_len && fread(blob, 1, blob_len, fp) != blob_len) || fgetc(fp) != EOF))
        e = ey_err_set(EY_ERR_FORMAT, "train: checkpoint '%s' is truncated or too long", path);
    for (int i = 0; !e && i < tr->d.Vd; i++)
        if (sel[i] < 0 || sel[i] >= tr->d.V || (i && sel[i] <= sel[i - 1]))
            e = ey_err_set(EY_ERR_FORMAT, "train: checkpoint '%s' has a bad draft vocabulary",
                           path);
    if (!e) {
        memcpy(tr->p, tmp, n * sizeof(float));
        memcpy(tr->m, tmp + n, n * sizeof(float));
        memcpy(tr->v, tmp + 2 * n, n * sizeof(float));
        e = ey_e3t_set_vocab(tr, sel);
    }
    free(tmp);
    if (!e) *step = (long)h.step;
    free(sel);
    fclose(fp);
    return e;
}
