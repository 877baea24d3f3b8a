/* The whole training-time-test loss and its gradient against torch autograd:
 * tests/fixtures/train/grad_tiny.safetensors (scripts/make_train_fixture.py,
 * a float64 torch reference of docs/eagle3.md §3 as specified by
 * train/e3_train.h) holds a tiny drafter (H=32, 3 aux captures, 4/2 heads of
 * dim 8, MLP 48, vocab 64, draft vocab 24), one sequence of T=11 tokens with
 * a loss mask and a sparse teacher, and the reference outputs of K=4
 * unrolled steps with decay 0.8:
 *  - the step-0 logits [T][Vd]          max|Δ| <= 1e-4 * max(1, max|z|);
 *  - the total loss (sum_j 0.8^j loss_j / T)   relative 1e-5, and each step's
 *    summed CE relative 1e-5;
 *  - counted rows and top-1 hits per step     exactly (the generator keeps a
 *    top-1 margin >= 2e-3 on every counted row);
 *  - the gradient of every trainable tensor   max|Δ| <= 1e-4 * max(1, max|g|).
 * Then: a second accumulate without zeroing doubles the gradient (and the
 * stats), and after ey_e3t_zero_grad a third one reproduces the first
 * gradient and logits bit for bit.
 *   test_e3t_torch FIXTURE.safetensors */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "../../core/safetensors.h"
#include "../../train/e3_train.h"

#define GRAD_TOL 1e-4
#define LOGIT_TOL 1e-4
#define LOSS_TOL 1e-5

static ey_safetensors g_st;

static const ey_st_tensor *need(const char *name, ey_dtype type, size_t n)
{
    const ey_st_tensor *t = ey_st_find(&g_st, name);
    if (!t) {
        fprintf(stderr, "fixture: tensor '%s' missing\n", name);
        exit(1);
    }
    if (t->type != type || t->bytes != n * 4) {
        fprintf(stderr, "fixture: tensor '%s' has type %d and %zu bytes, expected %d and %zu\n",
                name, (int)t->type, t->bytes, (int)type, n * 4);
        exit(1);
    }
    return t;
}

/* aligned copies (the data section need not be 4-byte aligned in memory) */
static float *getf(const char *name, size_t n)
{
    const ey_st_tensor *t = need(name, EY_F32, n);
    float *p = malloc(n * sizeof *p);
    memcpy(p, t->data, n * sizeof *p);
    return p;
}

static int32_t *geti(const char *name, size_t n)
{
    const ey_st_tensor *t = need(name, EY_I32, n);
    int32_t *p = malloc(n * sizeof *p);
    memcpy(p, t->data, n * sizeof *p);
    return p;
}

static double maxabs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i]) > m) m = fabs((double)a[i]);
    return m;
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (isnan(x)) return INFINITY;
        if (x > m) m = x;
    }
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s grad_tiny.safetensors\n", argv[0]);
        return 2;
    }
    char *img = NULL;
    size_t img_n = 0;
    if (ey_read_file(argv[1], 16u << 20, &img, &img_n) != EY_OK ||
        ey_st_parse_into(&g_st, img, img_n, argv[1]) != EY_OK) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }

    int32_t *dv = geti("dims", 12);
    float *hp = getf("hparams", 3);
    ey_e3t_dims d = {.H = dv[0], .n_aux = dv[1], .Ht = dv[2], .nh = dv[3], .nkv = dv[4],
                     .hd = dv[5], .I = dv[6], .V = dv[7], .Vd = dv[8], .eps = hp[0]};
    const int K = dv[9], T = dv[10], kmax = dv[11];
    ey_e3t_opts o = {.K = K, .decay = hp[1], .rope_theta = hp[2], .inv_freq = NULL};
    printf("dims H=%d n_aux=%d Ht=%d nh=%d nkv=%d hd=%d I=%d V=%d Vd=%d eps=%g; K=%d decay=%g "
           "theta=%g T=%d kmax=%d\n", d.H, d.n_aux, d.Ht, d.nh, d.nkv, d.hd, d.I, d.V, d.Vd,
           (double)d.eps, K, (double)o.decay, (double)o.rope_theta, T, kmax);

    float *embed = getf("embed", (size_t)d.V * d.H);
    int32_t *sel = geti("sel", (size_t)d.Vd);
    int32_t *ids = geti("ids", (size_t)T);
    int32_t *mask32 = geti("mask", (size_t)T);
    float *aux = getf("aux", (size_t)T * d.n_aux * d.Ht);
    int32_t *n_teach = geti("n_teach", (size_t)T);
    int32_t *teach_ids = geti("teach_ids", (size_t)T * kmax);
    float *teach_logits = getf("teach_logits", (size_t)T * kmax);
    int32_t *top1 = geti("top1", (size_t)T);
    float *z_ref = getf("logits0", (size_t)T * d.Vd);
    float *loss_total = getf("loss_total", 1);
    float *loss_step = getf("loss_step", (size_t)K);
    int32_t *counted = geti("counted", (size_t)K);
    int32_t *correct = geti("correct", (size_t)K);

    uint8_t *mask = malloc((size_t)T);
    int *nt = malloc((size_t)T * sizeof *nt);
    for (int t = 0; t < T; t++) {
        mask[t] = (uint8_t)mask32[t];
        nt[t] = n_teach[t];
    }
    ey_e3t_seq seq = {.T = T, .ids = ids, .mask = mask, .aux = aux, .kmax = kmax,
                      .n_teach = nt, .teach_ids = teach_ids, .teach_logits = teach_logits,
                      .top1 = top1};

    ey_e3t *tr = NULL;
    ey_err e = ey_e3t_create(&d, &o, embed, &tr);
    TEST_CHECK_MSG(e == EY_OK && tr, "ey_e3t_create: %d", (int)e);
    if (!tr) return test_result();
    const ey_e3t_layout *L = ey_e3t_layout_of(tr);
    float *params = ey_e3t_params(tr);
    float *grads = ey_e3t_grads(tr);

    /* parameters in at the layout offsets; the reference gradients alongside */
    float *g_ref = calloc(L->n, sizeof *g_ref);
    size_t sum_n = 0;
    for (int i = 0; i < E3T_N_TENSORS; i++) {
        const char *name = ey_e3t_tensor_name(i);
        size_t n = L->rows[i] * L->cols[i];
        const ey_st_tensor *t = ey_st_find(&g_st, name);
        TEST_CHECK_MSG(t != NULL, "fixture lacks '%s'", name);
        if (!t) return test_result();
        size_t want = 1;
        for (int k = 0; k < t->n_dims; k++) want *= (size_t)t->shape[k];
        TEST_CHECK_MSG(want == n && L->off[i] + n <= L->n,
                       "%s: layout %zux%zu at %zu (n %zu), fixture %zu values", name, L->rows[i],
                       L->cols[i], L->off[i], L->n, want);
        if (want != n || L->off[i] + n > L->n) return test_result();
        if (t->n_dims == 2)
            TEST_CHECK_MSG((size_t)t->shape[0] == L->rows[i] && (size_t)t->shape[1] == L->cols[i],
                           "%s: layout %zux%zu, fixture %lldx%lld", name, L->rows[i], L->cols[i],
                           (long long)t->shape[0], (long long)t->shape[1]);
        float *p = getf(name, n);
        memcpy(params + L->off[i], p, n * sizeof *p);
        free(p);
        char gname[256];
        snprintf(gname, sizeof gname, "grad.%s", name);
        float *g = getf(gname, n);
        memcpy(g_ref + L->off[i], g, n * sizeof *g);
        free(g);
        sum_n += n;
    }
    TEST_CHECK_MSG(sum_n == L->n, "layout n %zu, tensors sum to %zu", L->n, sum_n);
    TEST_CHECK(ey_e3t_set_vocab(tr, sel) == EY_OK);
    const int32_t *vb = ey_e3t_vocab(tr);
    TEST_CHECK(vb && !memcmp(vb, sel, (size_t)d.Vd * sizeof *sel));

    /* ---- pass 1 */
    float *z = calloc((size_t)T * d.Vd, sizeof *z);
    ey_e3t_stats st;
    memset(&st, 0, sizeof st);
    ey_e3t_zero_grad(tr);
    e = ey_e3t_accumulate(tr, &seq, (double)T, &st, z);
    TEST_CHECK_MSG(e == EY_OK, "ey_e3t_accumulate: %d", (int)e);

    double zs = fmax(1.0, maxabs(z_ref, (size_t)T * d.Vd));
    double zd = maxdiff(z, z_ref, (size_t)T * d.Vd);
    printf("logits0: max|dz| %.3e (scale %.3e)\n", zd, zs);
    TEST_CHECK_MSG(zd <= LOGIT_TOL * zs, "logits0 differ by %.3e", zd);

    double tot = 0;
    for (int j = 0; j < K; j++) {
        tot += pow((double)o.decay, j) * st.loss[j];
        double rel = fabs(st.loss[j] - loss_step[j]) / fmax(1e-30, fabs((double)loss_step[j]));
        printf("step %d: loss %.7f (torch %.7f, rel %.2e)  counted %ld (torch %d)  correct %ld "
               "(torch %d)\n", j, st.loss[j], (double)loss_step[j], rel, st.counted[j], counted[j],
               st.correct[j], correct[j]);
        TEST_CHECK_MSG(rel <= LOSS_TOL, "step %d loss rel err %.3e", j, rel);
        TEST_CHECK_MSG(st.counted[j] == counted[j], "step %d counted %ld vs %d", j, st.counted[j],
                       counted[j]);
        TEST_CHECK_MSG(st.correct[j] == correct[j], "step %d correct %ld vs %d", j, st.correct[j],
                       correct[j]);
    }
    tot /= T;
    double trel = fabs(tot - loss_total[0]) / fabs((double)loss_total[0]);
    printf("total loss %.7f (torch %.7f, rel %.2e); stats.K %d rows %ld\n", tot,
           (double)loss_total[0], trel, st.K, st.rows);
    TEST_CHECK_MSG(trel <= LOSS_TOL, "total loss rel err %.3e", trel);

    for (int i = 0; i < E3T_N_TENSORS; i++) {
        size_t n = L->rows[i] * L->cols[i], off = L->off[i];
        double gs = maxabs(g_ref + off, n), gd = maxdiff(grads + off, g_ref + off, n);
        double tol = GRAD_TOL * fmax(1.0, gs);
        printf("grad %-42s max|g| %.3e  max|dg| %.3e  %s\n", ey_e3t_tensor_name(i), gs, gd,
               gd <= tol ? "ok" : "FAIL");
        TEST_CHECK_MSG(gd <= tol, "gradient of %s differs by %.3e (tol %.3e)",
                       ey_e3t_tensor_name(i), gd, tol);
    }

    /* ---- pass 2: accumulation adds (gradients and stats) */
    float *g1 = malloc(L->n * sizeof *g1);
    memcpy(g1, grads, L->n * sizeof *g1);
    float *z1 = malloc((size_t)T * d.Vd * sizeof *z1);
    memcpy(z1, z, (size_t)T * d.Vd * sizeof *z1);
    ey_e3t_stats st1 = st;
    e = ey_e3t_accumulate(tr, &seq, (double)T, &st, NULL);
    TEST_CHECK(e == EY_OK);
    double g1s = fmax(1.0, maxabs(g1, L->n)), dd = 0;
    for (size_t k = 0; k < L->n; k++) {
        double x = fabs((double)grads[k] - 2.0 * g1[k]);
        if (isnan(x) || x > dd) dd = isnan(x) ? INFINITY : x;
    }
    printf("accumulate twice: max|g2 - 2 g1| %.3e\n", dd);
    TEST_CHECK_MSG(dd <= 1e-6 * g1s, "second accumulate: max|g2 - 2 g1| %.3e", dd);
    for (int j = 0; j < K; j++) {
        TEST_CHECK(st.counted[j] == 2 * st1.counted[j] && st.correct[j] == 2 * st1.correct[j]);
        TEST_CHECK(fabs(st.loss[j] - 2 * st1.loss[j]) <= 1e-9 * fabs(st1.loss[j]) + 1e-12);
    }

    /* ---- pass 3: zero_grad, then the same result bit for bit */
    ey_e3t_zero_grad(tr);
    for (size_t k = 0; k < L->n; k++)
        if (grads[k] != 0.0f) {
            TEST_CHECK_MSG(0, "zero_grad left grads[%zu] = %g", k, (double)grads[k]);
            break;
        }
    ey_e3t_stats st3;
    memset(&st3, 0, sizeof st3);
    memset(z, 0, (size_t)T * d.Vd * sizeof *z);
    e = ey_e3t_accumulate(tr, &seq, (double)T, &st3, z);
    TEST_CHECK(e == EY_OK);
    TEST_CHECK_MSG(!memcmp(grads, g1, L->n * sizeof *g1), "gradients not bit-identical on rerun");
    TEST_CHECK_MSG(!memcmp(z, z1, (size_t)T * d.Vd * sizeof *z), "logits0 not bit-identical");
    for (int j = 0; j < K; j++)
        TEST_CHECK(st3.loss[j] == st1.loss[j] && st3.counted[j] == st1.counted[j] &&
                   st3.correct[j] == st1.correct[j]);

    ey_e3t_free(tr);
    for (int64_t i = 0; i < g_st.n_tensors; i++) free(g_st.tensors[i].name);
    free(g_st.tensors);
    free(img);
    free(dv), free(hp), free(embed), free(sel), free(ids), free(mask32), free(aux);
    free(n_teach), free(teach_ids), free(teach_logits), free(top1), free(z_ref);
    free(loss_total), free(loss_step), free(counted), free(correct), free(mask), free(nt);
    free(g_ref), free(g1), free(z), free(z1);
    return test_result();
}
