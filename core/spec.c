/* eyrie — EAGLE-3 speculative generation. See spec.h and docs/eagle3.md §4. */
#include "spec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ey_spec_opts ey_spec_opts_default(void)
{
    return (ey_spec_opts){.method = EY_SPEC_CHAIN, .k = 4, .top_k = 4, .depth = 5,
                          .total_tokens = 16};
}

const char *ey_spec_method_name(ey_spec_method m)
{
    switch (m) {
    case EY_SPEC_NONE: return "none";
    case EY_SPEC_CHAIN: return "chain";
    case EY_SPEC_TREE: return "tree";
    }
    return "?";
}

/* The tree shape a method runs with: chain k == (1, k, k + 1). */
static void shape(const ey_spec_opts *o, int *K, int *D, int *n)
{
    if (o->method == EY_SPEC_CHAIN) {
        *K = 1;
        *D = o->k;
        *n = o->k + 1;
    } else {
        *K = o->top_k;
        *D = o->depth;
        *n = o->total_tokens;
    }
}

ey_err ey_spec_opts_check(const ey_spec_opts *o)
{
    if (o->method == EY_SPEC_NONE) return EY_OK;
    if (o->method == EY_SPEC_CHAIN) {
        if (o->k < 1 || o->k > EY_SPEC_MAX_DEPTH)
            return ey_err_set(EY_ERR_ARG, "spec: k must be in [1, %d]", EY_SPEC_MAX_DEPTH);
        return EY_OK;
    }
    if (o->method != EY_SPEC_TREE) return ey_err_set(EY_ERR_ARG, "spec: unknown method");
    if (o->top_k < 1 || o->top_k > EY_SPEC_MAX_TOPK)
        return ey_err_set(EY_ERR_ARG, "spec: top_k must be in [1, %d]", EY_SPEC_MAX_TOPK);
    if (o->depth < 1 || o->depth > EY_SPEC_MAX_DEPTH)
        return ey_err_set(EY_ERR_ARG, "spec: depth must be in [1, %d]", EY_SPEC_MAX_DEPTH);
    if (o->total_tokens < 2 || o->total_tokens > EY_SPEC_MAX_NODES)
        return ey_err_set(EY_ERR_ARG, "spec: total_tokens must be in [2, %d]", EY_SPEC_MAX_NODES);
    return EY_OK;
}

int ey_spec_ctx_rows(const ey_spec_opts *o)
{
    int K, D, n;
    if (o->method == EY_SPEC_NONE) return 1;
    shape(o, &K, &D, &n);
    return n;
}

/* ---------------------------------------------------------------- state */

typedef struct spec_run {
    ey_ctx *c;
    ey_eagle3 *d;
    ey_eagle3_ctx *dc;
    const ey_spec_opts *so;
    const ey_gen_params *gp;
    ey_gen_result *res;
    ey_spec_stats *st;
    ey_text_cb cb;
    void *ud;
    int V, Vd, H, FW, K, D, NT;
    int max_rows;
    ey_sampler smp;
    ey_seq seq, dseq;
    ey_textbuf tb;
    ey_detok dt;
    int32_t *hist;
    int n_hist, n_prompt;
    bool done;
    /* verify */
    float *vlogits; /* [NT][V] */
    float *vaux;    /* [max(max_batch, NT)][FW] */
    int32_t node_tok[EY_SPEC_MAX_NODES], node_par[EY_SPEC_MAX_NODES], node_dep[EY_SPEC_MAX_NODES];
    int32_t node_pos[EY_SPEC_MAX_NODES];
    uint8_t *mask; /* [NT][NT] */
    int n_nodes;
    int path[EY_SPEC_MAX_DEPTH + 1];
    /* drafting */
    float *dlogits;  /* [K][Vd] */
    float *dfeat;    /* [K][H] outputs of the last draft forward */
    float *g_last;   /* [H] */
    float *z_last;   /* [Vd] */
    float *fr_feat;  /* [K][H] inputs of the frontier */
    float *fr_feat2; /* [K][H] */
    int32_t fr_tok[EY_SPEC_MAX_TOPK], fr_slot[EY_SPEC_MAX_TOPK];
    int32_t fr_anc[EY_SPEC_MAX_TOPK * EY_SPEC_MAX_DEPTH], fr_anc2[EY_SPEC_MAX_TOPK * EY_SPEC_MAX_DEPTH];
    int n_cand;
    float *cand_score; /* [n_cand] */
    int32_t *cand_tok, *cand_par, *node_of, *order;
    int32_t ext_tok[EY_SPEC_MAX_DEPTH + 2];
    /* stepping (ey_spec_seq_plan / _commit) */
    const int32_t *prompt; /* the caller's, valid until finish */
    int n_pf;              /* prompt rows already run */
    int pf_T;              /* rows of the planned prefill chunk */
    bool pf_last;
    bool prefilled;        /* the first token has been sampled */
    bool planned;
    int L;                 /* root position of the planned round */
    double t_start, t_prefill, t_draft0, t_draft1;
    ey_gen_params gpc;     /* the caller's params, copied */
    ey_spec_opts soc;
} spec_run;

/* Append one produced token; the same checks, in the same order, as
 * ey_generate. Sets r->done at EOG, a stop string or max_tokens. */
static ey_err push_token(spec_run *r, int32_t tok)
{
    const ey_model *m = r->c->m;
    const ey_gen_params *gp = r->gp;
    r->hist[r->n_hist++] = tok;
    bool eog = !gp->ignore_eos && m->tok && ey_tokenizer_is_eog(m->tok, tok);
    char piece[256];
    ey_err e;
    if (!eog && m->tok) {
        int n = ey_detok_push(&r->dt, m->tok, tok, piece, sizeof piece);
        if (n > 0 && (e = ey_textbuf_append(&r->tb, piece, (size_t)n))) return e;
    }
    size_t safe;
    if (ey_textbuf_check_stop(&r->tb, gp, &safe)) {
        r->res->finish_reason = "stop";
        ey_textbuf_emit(&r->tb, r->tb.len, r->cb, r->ud);
        r->done = true;
        return EY_OK;
    }
    ey_textbuf_emit(&r->tb, safe, r->cb, r->ud);
    if (eog) {
        r->res->finish_reason = "stop";
        r->done = true;
        return EY_OK;
    }
    if (r->n_hist - r->n_prompt >= gp->max_tokens) r->done = true;
    return EY_OK;
}

/* log-softmax top-k of one row of draft logits: ids (draft vocab) and
 * log-probs, best first, ties to the lower id. */
static void topk_logprob(const float *z, int n, int k, int32_t *ids, float *lp)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (z[i] > mx) mx = z[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)z[i] - mx);
    float lse = mx + (float)log(sum);
    int m = 0;
    for (int i = 0; i < n; i++) {
        float v = z[i];
        if (m == k && v <= z[ids[m - 1]]) continue;
        int j = m < k ? m++ : m - 1;
        while (j > 0 && z[ids[j - 1]] < v) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
    for (int j = 0; j < m; j++) {
        float l = z[ids[j]] - lse;
        lp[j] = l > 0 ? 0 : l; /* a log-prob never exceeds 0 (keeps selection ancestor-closed) */
    }
}

/* Copy target KV row src to row dst in every layer (tree compaction, §4.5). */
static void kv_move(ey_ctx *c, ey_seq *s, int src, int dst)
{
    const ey_kv_pool *p = &c->kv;
    size_t kvd = (size_t)p->kv_dim, bs = (size_t)p->block_size;
    size_t rs = ((size_t)s->blocks[src / p->block_size] * bs + (size_t)(src % p->block_size)) * kvd;
    size_t rd = ((size_t)s->blocks[dst / p->block_size] * bs + (size_t)(dst % p->block_size)) * kvd;
    for (int l = 0; l < p->n_layer; l++) {
        size_t lo = (size_t)l * p->n_blocks * bs * kvd;
        c->be->iface.copy(c->be, (ey_ptr){p->k, (lo + rd) * 4}, (ey_ptr){p->k, (lo + rs) * 4},
                          (int64_t)kvd);
        c->be->iface.copy(c->be, (ey_ptr){p->v, (lo + rd) * 4}, (ey_ptr){p->v, (lo + rs) * 4},
                          (int64_t)kvd);
    }
}

/* Draft extend (§4.1 step 1, §4.5): rows L.. of the draft KV from target
 * features; keeps the last row's logits and feature for the next tree. */
static ey_err draft_extend(spec_run *r, const int32_t *tok, const float *feat, int T)
{
    ey_draft_in in = {.T = T, .tokens = tok, .feat = feat, .fused = true, .n_out = 1,
                      .logits = r->z_last, .feat_out = r->g_last};
    return ey_eagle3_forward(r->dc, &r->dseq, &in);
}

/* Build the draft tree (§4.1) with the drafter. L: root position (stable
 * draft rows [0, L) hold the extend); depth/total limited by the budget. */
static ey_err build_tree(spec_run *r, int L, int depth, int total)
{
    const int K = r->K, Vd = r->Vd, H = r->H;
    const int32_t *map = r->d->d2t;
    ey_err e;
    /* candidates: level 1 has K slots, each further level K*K */
    int n_cand = K + (depth - 1) * K * K;
    int32_t ids[EY_SPEC_MAX_TOPK];
    float lp[EY_SPEC_MAX_TOPK];
    topk_logprob(r->z_last, Vd, K, ids, lp);
    for (int j = 0; j < K; j++) {
        r->cand_score[j] = lp[j];
        r->cand_tok[j] = map[ids[j]];
        r->cand_par[j] = 0; /* root */
        r->fr_slot[j] = j;
        r->fr_tok[j] = map[ids[j]];
        memcpy(r->fr_feat + (size_t)j * H, r->g_last, (size_t)H * sizeof(float));
    }
    for (int lvl = 2; lvl <= depth; lvl++) {
        /* feed the frontier (depth lvl-1) at position L + lvl - 2; row j
         * sees the stable prefix, its ancestors and itself */
        int base = r->dseq.n_past;
        int32_t pos[EY_SPEC_MAX_TOPK];
        for (int j = 0; j < K; j++) pos[j] = L + lvl - 2;
        ey_draft_in in = {.T = K, .tokens = r->fr_tok, .feat = r->fr_feat, .fused = false,
                          .pos = pos, .anc = r->fr_anc, .n_anc = lvl - 2, .n_prefix = L,
                          .n_out = K, .logits = r->dlogits, .feat_out = r->dfeat};
        if ((e = ey_eagle3_forward(r->dc, &r->dseq, &in))) return e;
        int s0 = K + (lvl - 2) * K * K;
        for (int j = 0; j < K; j++) {
            topk_logprob(r->dlogits + (size_t)j * Vd, Vd, K, ids, lp);
            float ps = r->cand_score[r->fr_slot[j]];
            for (int c = 0; c < K; c++) {
                int s = s0 + j * K + c;
                r->cand_score[s] = ps + lp[c];
                r->cand_tok[s] = map[ids[c]];
                r->cand_par[s] = 1 + r->fr_slot[j];
            }
        }
        if (lvl == depth) break;
        /* next frontier: the K best of this level (ties: lower slot) */
        int best[EY_SPEC_MAX_TOPK], nb = 0;
        for (int s = s0; s < s0 + K * K; s++) {
            float v = r->cand_score[s];
            if (nb == K && !(v > r->cand_score[best[nb - 1]])) continue;
            int j = nb < K ? nb++ : nb - 1;
            while (j > 0 && r->cand_score[best[j - 1]] < v) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = s;
        }
        int na = lvl - 1; /* ancestors of the new frontier: old ancestors + parent row */
        for (int b = 0; b < K; b++) {
            int s = best[b], j = (s - s0) / K; /* parent frontier index */
            memcpy(r->fr_anc2 + (size_t)b * na, r->fr_anc + (size_t)j * (na - 1),
                   (size_t)(na - 1) * sizeof(int32_t));
            r->fr_anc2[(size_t)b * na + na - 1] = base + j;
            memcpy(r->fr_feat2 + (size_t)b * H, r->dfeat + (size_t)j * H, (size_t)H * sizeof(float));
            r->fr_slot[b] = s;
            r->fr_tok[b] = r->cand_tok[s];
        }
        memcpy(r->fr_anc, r->fr_anc2, (size_t)K * na * sizeof(int32_t));
        float *t = r->fr_feat;
        r->fr_feat = r->fr_feat2;
        r->fr_feat2 = t;
    }
    /* selection (§4.1 step 4): top total-1 by score, ties to the lower
     * slot, then slots ascending (parents before children) */
    int M = total - 1 < n_cand ? total - 1 : n_cand, nm = 0;
    for (int s = 0; s < n_cand; s++) {
        float v = r->cand_score[s];
        if (nm == M && !(v > r->cand_score[r->order[nm - 1]])) continue;
        int j = nm < M ? nm++ : nm - 1;
        while (j > 0 && r->cand_score[r->order[j - 1]] < v) {
            r->order[j] = r->order[j - 1];
            j--;
        }
        r->order[j] = s;
    }
    for (int i = 1; i < nm; i++) { /* sort slots ascending */
        int v = r->order[i], j = i;
        while (j > 0 && r->order[j - 1] > v) {
            r->order[j] = r->order[j - 1];
            j--;
        }
        r->order[j] = v;
    }
    for (int s = 0; s < n_cand; s++) r->node_of[s] = -1;
    int n = 1;
    for (int i = 0; i < nm; i++) {
        int s = r->order[i], g = r->cand_par[s];
        int par = g == 0 ? 0 : r->node_of[g - 1];
        if (par < 0) continue; /* parent not selected: cannot happen with log-probs <= 0 */
        r->node_of[s] = n;
        r->node_tok[n] = r->cand_tok[s];
        r->node_par[n] = par;
        r->node_dep[n] = r->node_dep[par] + 1;
        n++;
    }
    r->n_nodes = n;
    return EY_OK;
}

/* Oracle tree for tests (spec.h). */
static void build_oracle(spec_run *r, int depth, int total)
{
    const ey_spec_oracle *o = r->so->oracle;
    const int K = r->K;
    int comp = r->n_hist - r->n_prompt - 1; /* completion index of the root */
    int n = 1, par = 0;
    for (int lvl = 1; lvl <= depth && n + K <= total; lvl++) {
        int i = comp + lvl;
        bool known = i < o->n_cont && !(o->wrong && o->wrong[i]);
        int32_t right = i < o->n_cont ? o->cont[i] : 0;
        int correct = (lvl - 1) % K, next_par = -1;
        for (int s = 0; s < K; s++) {
            int32_t t = (right + 1 + s) % r->V; /* wrong tokens differ from `right` */
            if (s == correct && known) {
                t = right;
                next_par = n;
            }
            r->node_tok[n] = t;
            r->node_par[n] = par;
            r->node_dep[n] = lvl;
            n++;
        }
        if (next_par < 0) break;
        par = next_par;
    }
    r->n_nodes = n;
}

/* Draft and lay out one round (§4.1, §4.6): tree nodes, positions L +
 * depth and the ancestor mask; the verify rows are node_tok[0..n). */
static ey_err plan_round(spec_run *r, int budget, ey_fwd_item *it)
{
    const int L = r->seq.n_past; /* the root x_L is not in the target KV yet */
    ey_err e;
    int remaining = r->gp->max_tokens - (r->n_hist - r->n_prompt);
    int total = r->NT < r->max_rows - L ? r->NT : r->max_rows - L;
    if (total > budget) total = budget;
    int depth = r->D < remaining - 1 ? r->D : remaining - 1;
    if (depth > total - 1) depth = total - 1;
    if (!r->d && !r->so->oracle) depth = 0;
    r->node_tok[0] = r->hist[r->n_hist - 1];
    r->node_par[0] = -1;
    r->node_dep[0] = 0;
    r->n_nodes = 1;
    r->t_draft0 = ey_now_ms();
    if (depth >= 1) {
        if (r->so->oracle) build_oracle(r, depth, total);
        else if ((e = build_tree(r, L, depth, total))) return e;
    }
    r->t_draft1 = ey_now_ms();
    const int n = r->n_nodes;
    /* tree attention mask (§4.1 step 5): ancestors and self */
    memset(r->mask, 0, (size_t)n * n);
    for (int j = 0; j < n; j++) {
        if (j) memcpy(r->mask + (size_t)j * n, r->mask + (size_t)r->node_par[j] * n, (size_t)j);
        r->mask[(size_t)j * n + j] = 1;
        r->node_pos[j] = L + r->node_dep[j];
    }
    r->L = L;
    *it = (ey_fwd_item){.s = &r->seq, .tokens = r->node_tok, .T = n, .pos = r->node_pos,
                        .mask = n > 1 ? r->mask : NULL, .n_logits = n, .logits = r->vlogits,
                        .aux = r->d ? r->vaux : NULL};
    return EY_OK;
}

/* Accept along the verified tree, compact the KV, re-extend the drafter. */
static ey_err commit_round(spec_run *r)
{
    ey_ctx *c = r->c;
    const int L = r->L, V = r->V, n = r->n_nodes;
    ey_err e;
    r->res->decode_steps++;
    /* accept (§4.4): at node `cur`, p = the sampler's transformed target
     * distribution; children in ascending node index (= descending draft
     * score) are tried with the recursive rule for deterministic drafts:
     * accept c with probability p(c)/Z, else remove c from p. Greedy is the
     * special case p = one-hot(argmax). */
    int cur = 0, m = 0;
    r->path[0] = 0;
    while (!r->done) {
        float *lg = r->vlogits + (size_t)cur * V;
        int nc = ey_sampler_dist(&r->smp, lg, r->hist, r->n_hist);
        float *prob = r->smp.prob;
        const int32_t *idx = r->smp.idx;
        double Z = 0;
        for (int i = 0; i < nc; i++) Z += prob[i];
        int next = -1;
        bool removed = false;
        for (int ch = cur + 1; ch < n && next < 0; ch++) {
            if (r->node_par[ch] != cur) continue;
            int at = -1;
            for (int i = 0; i < nc; i++)
                if (idx[i] == r->node_tok[ch]) {
                    at = i;
                    break;
                }
            if (at < 0 || prob[at] <= 0) continue; /* p(c) = 0: rejected for sure */
            if (nc == 1) {
                next = ch;
                break;
            }
            double u = ey_rng_uniform(&r->smp.rng);
            if (u * Z < prob[at]) {
                next = ch;
            } else {
                Z -= prob[at];
                prob[at] = 0;
                removed = true;
            }
        }
        if (next >= 0) {
            if ((e = push_token(r, r->node_tok[next]))) return e;
            m++;
            r->path[m] = next;
            cur = next;
            continue;
        }
        /* every child rejected: draw from what is left of p (the bonus when
         * cur is a leaf: then exactly ey_sample's draw, so a round without
         * drafts is a plain decoding step) */
        int32_t tok = idx[0];
        if (!removed) {
            tok = ey_sampler_draw(&r->smp, nc);
        } else if (nc > 1) {
            double u = ey_rng_uniform(&r->smp.rng) * Z, acc = 0;
            int last = -1;
            for (int i = 0; i < nc; i++) {
                if (prob[i] <= 0) continue;
                last = i;
                acc += prob[i];
                if (u < acc) break;
            }
            tok = last >= 0 ? idx[last] : idx[0];
        }
        if ((e = push_token(r, tok))) return e;
        break;
    }
    /* stats (§5) */
    ey_spec_stats *st = r->st;
    st->rounds++;
    st->drafted += n - 1;
    st->draft_rounds += n > 1;
    st->accepted += m;
    for (int i = 0; i < m && i < EY_SPEC_MAX_DEPTH; i++) st->accepted_at[i]++;
    /* target KV: keep root + accepted path, compacted to L.. (§4.5) */
    for (int j = 1; j <= m; j++)
        if (r->path[j] != j) kv_move(c, &r->seq, L + r->path[j], L + j);
    if ((e = ey_seq_truncate(&c->kv, &r->seq, L + m + 1))) return e;
    double t3 = ey_now_ms();
    st->draft_ms += r->t_draft1 - r->t_draft0;
    st->verify_ms += t3 - r->t_draft1; /* from the end of drafting: the verify forward too */
    if (r->done || !r->d) return EY_OK;
    /* draft KV: drop the tree rows, re-extend rows L..L+m from the target's
     * captures of the accepted path, paired with the next committed token */
    if ((e = ey_seq_truncate(&r->dc->kv, &r->dseq, L))) return e;
    for (int j = 0; j <= m; j++) {
        if (r->path[j] != j)
            memmove(r->vaux + (size_t)j * r->FW, r->vaux + (size_t)r->path[j] * r->FW,
                    (size_t)r->FW * sizeof(float));
        r->ext_tok[j] = j < m ? r->node_tok[r->path[j + 1]] : r->hist[r->n_hist - 1];
    }
    double t4 = ey_now_ms();
    e = draft_extend(r, r->ext_tok, r->vaux, m + 1);
    st->draft_ms += ey_now_ms() - t4;
    return e;
}

/* ---------------------------------------------------------------- stepper */

struct ey_spec_seq {
    spec_run r;
    ey_gen_result res;
    ey_spec_stats st;
};

bool ey_spec_seq_done(const ey_spec_seq *q)
{
    const spec_run *r = &q->r;
    return r->done || (r->prefilled && r->seq.n_past + 1 > r->max_rows);
}

ey_err ey_spec_seq_plan(ey_spec_seq *q, int budget, ey_fwd_item *it)
{
    spec_run *r = &q->r;
    if (r->planned) return ey_err_set(EY_ERR_ARG, "spec: plan twice without commit");
    if (ey_spec_seq_done(q)) return ey_err_set(EY_ERR_ARG, "spec: sequence is done");
    if (budget < 1) return ey_err_set(EY_ERR_ARG, "spec: no rows to plan");
    ey_err e;
    if (!r->prefilled) {
        /* prefill chunk; each chunk's captures extend the draft KV, except
         * the last prompt row, which pairs with the token sampled from the
         * prefill (§2.3) */
        int T = r->n_prompt - r->n_pf;
        if (T > budget) T = budget;
        if (T > r->c->max_batch) T = r->c->max_batch;
        r->pf_T = T;
        r->pf_last = r->n_pf + T == r->n_prompt;
        *it = (ey_fwd_item){.s = &r->seq, .tokens = r->prompt + r->n_pf, .T = T,
                            .n_logits = r->pf_last ? 1 : 0, .logits = r->vlogits,
                            .aux = r->d ? r->vaux : NULL};
    } else if ((e = plan_round(r, budget, it))) {
        return e;
    }
    r->planned = true;
    return EY_OK;
}

ey_err ey_spec_seq_commit(ey_spec_seq *q)
{
    spec_run *r = &q->r;
    if (!r->planned) return ey_err_set(EY_ERR_ARG, "spec: commit without plan");
    r->planned = false;
    if (r->prefilled) return commit_round(r);
    ey_err e;
    const int T = r->pf_T, t0c = r->n_pf;
    r->n_pf += T;
    if (r->d) {
        /* rows t0c .. t0c+T-1 (minus the last prompt row) pair with x_{t+1} */
        int Te = r->pf_last ? T - 1 : T;
        if (Te > 0) {
            ey_draft_in in = {.T = Te, .tokens = r->prompt + t0c + 1, .feat = r->vaux,
                              .fused = true};
            if ((e = ey_eagle3_forward(r->dc, &r->dseq, &in))) return e;
        }
    }
    if (!r->pf_last) return EY_OK;
    r->t_prefill = ey_now_ms();
    r->res->prefill_ms = r->t_prefill - r->t_start;
    r->prefilled = true;
    int32_t tok = ey_sample(&r->smp, r->vlogits, r->hist, r->n_hist);
    if ((e = push_token(r, tok))) return e;
    if (!r->done && r->d) {
        /* the held-back last prompt row: (a_{L-1}, x_L) */
        e = draft_extend(r, &r->hist[r->n_hist - 1], r->vaux + (size_t)(T - 1) * r->FW, 1);
        if (e) return e;
    }
    return EY_OK;
}

int ey_spec_seq_generated(const ey_spec_seq *q) { return q->r.n_hist - q->r.n_prompt; }

const ey_spec_stats *ey_spec_seq_stats(const ey_spec_seq *q) { return &q->st; }

bool ey_spec_seq_drafting(const ey_spec_seq *q) { return q->r.d != NULL; }

ey_err ey_spec_seq_drop_drafter(ey_spec_seq *q)
{
    spec_run *r = &q->r;
    if (r->planned) return ey_err_set(EY_ERR_ARG, "spec: drop the drafter between rounds");
    if (!r->d) return EY_OK;
    if (r->dc) {
        ey_seq_release(&r->dc->kv, &r->dseq);
        ey_eagle3_ctx_free(r->dc);
        r->dc = NULL;
    }
    r->d = NULL; /* rounds verify the root alone from now on */
    return EY_OK;
}

const char *ey_spec_seq_text(const ey_spec_seq *q, size_t *emitted)
{
    *emitted = q->r.tb.emitted;
    return q->r.tb.s ? q->r.tb.s : "";
}

static void spec_run_free(spec_run *r)
{
    ey_ctx *c = r->c;
    if (c) ey_seq_release(&c->kv, &r->seq);
    if (r->dc) {
        ey_seq_release(&r->dc->kv, &r->dseq);
        ey_eagle3_ctx_free(r->dc);
    }
    ey_sampler_free(&r->smp);
    free(r->tb.s);
    free(r->hist);
    free(r->vlogits);
    free(r->mask);
    free(r->cand_score);
    free(r->cand_tok);
    free(r->cand_par);
    free(r->node_of);
    free(r->order);
    free(r->vaux);
    free(r->dlogits);
    free(r->dfeat);
    free(r->fr_feat);
    free(r->fr_feat2);
    free(r->g_last);
    free(r->z_last);
}

void ey_spec_seq_free(ey_spec_seq *q)
{
    if (!q) return;
    spec_run_free(&q->r);
    ey_gen_result_free(&q->res);
    free(q);
}

ey_err ey_spec_seq_create(ey_ctx *c, ey_eagle3 *d, const ey_spec_opts *so,
                          const int32_t *prompt, int n_prompt, const ey_gen_params *gp,
                          ey_text_cb cb, void *ud, ey_spec_seq **out)
{
    *out = NULL;
    ey_err e = ey_spec_opts_check(so);
    if (e) return e;
    const ey_model *m = c->m;
    if (so->method != EY_SPEC_NONE && !d && !so->oracle)
        return ey_err_set(EY_ERR_ARG, "spec: no drafter");
    if (so->method == EY_SPEC_NONE) d = NULL;
    if (d && (d->cfg.V != m->cfg.n_vocab || d->cfg.Ht != m->cfg.n_embd))
        return ey_err_set(EY_ERR_ARG, "spec: the drafter was loaded for another target");
    if (n_prompt < 1) return ey_err_set(EY_ERR_ARG, "empty prompt");
    if (gp->max_tokens < 1) return ey_err_set(EY_ERR_ARG, "max_tokens must be >= 1");
    if (gp->n_stop < 0 || gp->n_stop > EY_MAX_STOP)
        return ey_err_set(EY_ERR_ARG, "at most %d stop strings", EY_MAX_STOP);
    for (int i = 0; i < gp->n_stop; i++)
        if (!gp->stop[i] || strlen(gp->stop[i]) > EY_MAX_STOP_LEN)
            return ey_err_set(EY_ERR_ARG, "stop string longer than %d bytes", EY_MAX_STOP_LEN);
    if (d && !c->n_capture)
        return ey_err_set(EY_ERR_ARG, "spec: the target ctx does not capture the drafter's "
                          "aux layers (ey_spec_ctx_capture)");
    ey_spec_seq *q = calloc(1, sizeof *q);
    if (!q) return ey_err_set(EY_ERR_NOMEM, "no memory");
    spec_run *r = &q->r;
    r->gpc = *gp;
    r->soc = *so;
    r->c = c;
    r->d = d;
    r->so = &r->soc;
    r->gp = &r->gpc;
    r->res = &q->res;
    r->st = &q->st;
    r->cb = cb;
    r->ud = ud;
    r->prompt = prompt;
    q->st.method = ey_spec_method_name(so->method);
    r->V = m->cfg.n_vocab;
    r->H = d ? d->cfg.H : 0;
    r->Vd = d ? d->cfg.Vd : 0;
    r->FW = d ? ey_eagle3_feat_width(d) : 0;
    if (so->method == EY_SPEC_NONE) {
        r->K = 1;
        r->D = 0;
        r->NT = 1;
    } else {
        shape(so, &r->K, &r->D, &r->NT);
    }
    if (d && r->K > r->Vd) r->K = r->Vd;
    r->max_rows = gp->max_ctx > 0 && gp->max_ctx < c->kv.n_rows ? gp->max_ctx : c->kv.n_rows;
    r->n_prompt = n_prompt;
    r->dt = (ey_detok){.skip_special = true};
    ey_seq_init(&r->seq, r->max_rows);
    r->t_start = ey_now_ms();
    if (r->NT > c->max_logit_rows || r->NT > c->max_batch) {
        e = ey_err_set(EY_ERR_ARG, "spec: the target ctx allows %d logit rows, %d are needed "
                       "(create it with ey_spec_ctx_rows())", c->max_logit_rows, r->NT);
        goto fail;
    }
    if (n_prompt >= r->max_rows) {
        e = ey_err_set(EY_ERR_CAPACITY, "prompt of %d tokens does not fit the context of %d",
                       n_prompt, r->max_rows);
        goto fail;
    }
    if ((e = ey_sampler_init(&r->smp, &gp->sampling, r->V))) goto fail;
    /* everything the loop needs, sized once */
    const int NT = r->NT, K = r->K, D = r->D;
    size_t aux_rows = (size_t)(c->max_batch > NT ? c->max_batch : NT);
    r->n_cand = K + (D > 0 ? D - 1 : 0) * K * K;
    r->hist = malloc(((size_t)n_prompt + gp->max_tokens + NT + 1) * sizeof *r->hist);
    r->vlogits = malloc((size_t)NT * r->V * sizeof(float));
    r->mask = malloc((size_t)NT * NT);
    r->cand_score = malloc((size_t)r->n_cand * sizeof(float));
    r->cand_tok = malloc((size_t)r->n_cand * sizeof(int32_t));
    r->cand_par = malloc((size_t)r->n_cand * sizeof(int32_t));
    r->node_of = malloc((size_t)r->n_cand * sizeof(int32_t));
    r->order = malloc((size_t)r->n_cand * sizeof(int32_t));
    if (!r->hist || !r->vlogits || !r->mask || !r->cand_score || !r->cand_tok || !r->cand_par ||
        !r->node_of || !r->order) {
        e = ey_err_set(EY_ERR_NOMEM, "spec: no memory");
        goto fail;
    }
    if (d) {
        r->vaux = malloc(aux_rows * r->FW * sizeof(float));
        r->dlogits = malloc((size_t)K * r->Vd * sizeof(float));
        r->dfeat = malloc((size_t)K * r->H * sizeof(float));
        r->fr_feat = malloc((size_t)K * r->H * sizeof(float));
        r->fr_feat2 = malloc((size_t)K * r->H * sizeof(float));
        r->g_last = malloc((size_t)r->H * sizeof(float));
        r->z_last = malloc((size_t)r->Vd * sizeof(float));
        if (!r->vaux || !r->dlogits || !r->dfeat || !r->fr_feat || !r->fr_feat2 || !r->g_last ||
            !r->z_last) {
            e = ey_err_set(EY_ERR_NOMEM, "spec: no memory");
            goto fail;
        }
        /* draft rows: the target's plus one tree's worth (§4.1); the
         * draft batch only needs a tree level (K rows) and extend chunks */
        int drows = r->max_rows + K * D + 2;
        int dbatch = c->max_batch < 64 ? c->max_batch : 64;
        if (dbatch < K) dbatch = K;
        if ((e = ey_eagle3_ctx_create(d, drows, dbatch, K, &r->dc))) goto fail;
        ey_seq_init(&r->dseq, drows);
        /* size the draft block table once (block size 1: one entry per
         * row), then hand the blocks back: no reallocation in the loop */
        if ((e = ey_seq_reserve(&r->dc->kv, &r->dseq, drows)) ||
            (e = ey_seq_truncate(&r->dc->kv, &r->dseq, 0)))
            goto fail;
    }
    memcpy(r->hist, prompt, (size_t)n_prompt * sizeof *r->hist);
    r->n_hist = n_prompt;
    q->res.prompt_tokens = n_prompt;
    q->res.finish_reason = "length";
    *out = q;
    return EY_OK;
fail:
    r->d = NULL; /* capture belongs to the caller */
    ey_spec_seq_free(q);
    return e;
}

ey_err ey_spec_seq_finish(ey_spec_seq *q, ey_gen_result *res, ey_spec_stats *st)
{
    spec_run *r = &q->r;
    const ey_model *m = r->c->m;
    ey_err e;
    memset(res, 0, sizeof *res);
    if (m->tok && strcmp(q->res.finish_reason, "stop")) {
        char piece[256];
        int np = ey_detok_flush(&r->dt, piece, sizeof piece);
        if (np > 0 && (e = ey_textbuf_append(&r->tb, piece, (size_t)np))) return e;
        size_t safe;
        ey_textbuf_check_stop(&r->tb, r->gp, &safe);
    }
    ey_textbuf_emit(&r->tb, r->tb.len, r->cb, r->ud);
    q->res.decode_ms = r->prefilled ? ey_now_ms() - r->t_prefill : 0;
    q->res.n_ids = r->n_hist - r->n_prompt;
    q->res.ids = malloc((size_t)(q->res.n_ids ? q->res.n_ids : 1) * sizeof *q->res.ids);
    if (!q->res.ids) return ey_err_set(EY_ERR_NOMEM, "no memory");
    memcpy(q->res.ids, r->hist + r->n_prompt, (size_t)q->res.n_ids * sizeof *q->res.ids);
    if (!r->tb.s && (e = ey_textbuf_append(&r->tb, "", 0))) return e;
    q->res.text = r->tb.s;
    q->res.text_len = r->tb.len;
    r->tb.s = NULL;
    ey_spec_stats *s = &q->st;
    s->n_pos = r->D < EY_SPEC_MAX_DEPTH ? r->D : EY_SPEC_MAX_DEPTH;
    s->mean_accept_len = s->rounds ? 1.0 + (double)s->accepted / s->rounds : 0;
    s->accept_rate = s->drafted ? (double)s->accepted / s->drafted : 0;
    for (int i = 0; i < s->n_pos; i++)
        s->per_position[i] = s->rounds ? (double)s->accepted_at[i] / s->rounds : 0;
    *res = q->res;
    memset(&q->res, 0, sizeof q->res);
    if (st) *st = *s;
    return EY_OK;
}

ey_err ey_spec_ctx_capture(ey_ctx *c, const ey_eagle3 *d)
{
    return d ? ey_ctx_set_capture(c, d->cfg.aux_layers, d->cfg.n_aux) : EY_OK;
}

ey_err ey_spec_generate(ey_ctx *c, ey_eagle3 *d, const ey_spec_opts *so, const int32_t *prompt,
                        int n_prompt, const ey_gen_params *gp, ey_text_cb cb, void *ud,
                        ey_gen_result *res, ey_spec_stats *st)
{
    memset(res, 0, sizeof *res);
    memset(st, 0, sizeof *st);
    ey_err e = ey_spec_opts_check(so);
    if (e) return e;
    st->method = ey_spec_method_name(so->method);
    if (so->method == EY_SPEC_NONE) return ey_generate(c, prompt, n_prompt, gp, cb, ud, res);
    bool capture = d && !c->n_capture;
    if (capture && (e = ey_spec_ctx_capture(c, d))) return e;
    ey_spec_seq *q = NULL;
    if ((e = ey_spec_seq_create(c, d, so, prompt, n_prompt, gp, cb, ud, &q))) goto out;
    while (!ey_spec_seq_done(q)) {
        ey_fwd_item it;
        if ((e = ey_spec_seq_plan(q, c->max_batch, &it))) goto out;
        if ((e = ey_forward_batch(c, &it, 1))) goto out;
        if ((e = ey_spec_seq_commit(q))) goto out;
    }
    e = ey_spec_seq_finish(q, res, st);
out:
    ey_spec_seq_free(q);
    if (capture) ey_ctx_set_capture(c, NULL, 0);
    return e;
}
