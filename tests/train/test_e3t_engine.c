/* The trainer computes the same draft forward as the inference engine.
 *
 * On the tiny chat target (argv[1]): a trainer with the target's dims
 * (built as train/train_cli.c does), random parameters (norms 1 + noise,
 * matrices std 0.1) and a random sorted draft vocabulary holding the
 * sequence's tokens and the target's top-1s; a 40-token sequence whose
 * captures and teacher come from ey_tfeat_compute.
 *  1. step 0: the trainer's logits0 (ey_e3t_accumulate) against the engine's
 *     drafter (ey_eagle3_write_random with .values, ey_eagle3_load,
 *     ey_eagle3_forward over fused rows t = 0..T-2 with tokens x_{t+1} at
 *     positions t): max|Δ| <= 1e-3 * max(1, max|z|);
 *  2. steps 1 and 2 (docs/eagle3.md §3.4) for a few rows t: the engine runs
 *     the row as a tree row (anc / n_prefix) on top of the step-0 rows
 *     0..t, fed with its own recurrent feature of the previous step, token
 *     x_{t+1+j} at position t+j, attending to rows 0..t, the row's earlier
 *     steps and itself. The trainer's step-j logits are not exposed, so they
 *     are probed through its loss: with the loss mask one-hot at x_{t+2+j}
 *     and a one-hot teacher on draft id v, stats.loss[j] = lse(z) - z[v] of
 *     exactly that row (counted[j] == 1); every v is probed and compared
 *     with the engine's lse(z) - z[v] (same tolerance), and the trainer's
 *     top-1 hit count with the engine's argmax;
 *  3. the exported config.json carries eagle_aux_hidden_state_layer_ids =
 *     the default aux ids (and the loader resolves them verbatim); the
 *     file's d2t holds offsets vocab[i] - i, t2d marks exactly the vocab,
 *     and the loaded drafter's d2t (absolute ids) equals the vocab.
 *   test_e3t_engine TARGET_DIR */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../test.h"
#include "../../core/eagle3.h"
#include "../../core/forward.h"
#include "../../core/model.h"
#include "../../core/safetensors.h"
#include "../../core/sample.h"
#include "../../kernels/ey_backend.h"
#include "../../kernels/ey_dtype.h"
#include "../../train/e3_train.h"
#include "../../train/target_feats.h"

#define T_SEQ 40
#define VD 200
#define KSTEPS 3
#define TOL 1e-3

static double randn(ey_rng *r)
{
    double u1 = ey_rng_uniform(r), u2 = ey_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static void die(const char *what, ey_err e)
{
    fprintf(stderr, "test_e3t_engine: %s: %s: %s\n", what, ey_strerror(e), ey_err_detail());
    exit(1);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static double lse(const float *z, int n)
{
    double mx = z[0], s = 0;
    for (int i = 1; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < n; i++) s += exp((double)z[i] - mx);
    return mx + log(s);
}

static char g_dir[256];

static void cleanup(void)
{
    if (!g_dir[0]) return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd)) fprintf(stderr, "cleanup of %s failed\n", g_dir);
}

/* The exported files: config aux ids, d2t offsets and t2d. */
static void check_files(const char *dir, const int aux[3], const int32_t *vocab, int Vd, int V)
{
    char path[512], *js = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    ey_err e = ey_read_file(path, 1 << 20, &js, &len);
    if (e) die("config.json", e);
    cJSON *root = cJSON_Parse(js);
    TEST_CHECK_MSG(root != NULL, "config.json does not parse");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "eagle_aux_hidden_state_layer_ids");
    TEST_CHECK_MSG(cJSON_IsArray(ids) && cJSON_GetArraySize(ids) == 3,
                   "config.json: no top-level eagle_aux_hidden_state_layer_ids of 3 entries");
    if (cJSON_IsArray(ids) && cJSON_GetArraySize(ids) == 3)
        for (int i = 0; i < 3; i++) {
            int v = cJSON_GetArrayItem(ids, i)->valueint;
            TEST_CHECK_MSG(v == aux[i], "config aux id %d: %d, expected %d", i, v, aux[i]);
        }
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(root, "draft_vocab_size");
    TEST_CHECK_MSG(cJSON_IsNumber(dv) && dv->valueint == Vd, "draft_vocab_size");
    cJSON_Delete(root);
    free(js);

    ey_safetensors *st = NULL;
    if ((e = ey_safetensors_open_dir(dir, &st))) die("model.safetensors", e);
    const ey_st_tensor *d2t = ey_st_find(st, "d2t"), *t2d = ey_st_find(st, "t2d");
    TEST_CHECK_MSG(d2t && d2t->type == EY_I64 && d2t->bytes == (size_t)Vd * 8, "d2t tensor");
    TEST_CHECK_MSG(t2d && t2d->type == EY_BOOL && t2d->bytes == (size_t)V, "t2d tensor");
    if (d2t && d2t->bytes == (size_t)Vd * 8) {
        int bad = 0;
        for (int i = 0; i < Vd; i++) {
            int64_t o;
            memcpy(&o, (const uint8_t *)d2t->data + (size_t)i * 8, 8);
            bad += o + i != vocab[i];
        }
        TEST_CHECK_MSG(!bad, "file d2t: %d entries with d2t[i] + i != vocab[i]", bad);
    }
    if (t2d && t2d->bytes == (size_t)V) {
        const uint8_t *b = t2d->data;
        int bad = 0, n = 0;
        for (int v = 0; v < V; v++) {
            bool in = bsearch(&(int32_t){v}, vocab, Vd, sizeof *vocab, cmp_i32) != NULL;
            bad += (b[v] != 0) != in;
            n += b[v] != 0;
        }
        TEST_CHECK_MSG(!bad && n == Vd, "file t2d: %d mismatches, %d set", bad, n);
    }
    ey_safetensors_close(st);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_e3t_engine TARGET_DIR\n");
        return 2;
    }
    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_err e = ey_backend_cpu_create(1, &be);
    if (!e) e = ey_model_load(argv[1], be, &m);
    if (e) die(argv[1], e);
    const ey_model_config *tc = &m->cfg;

    /* ---- trainer, as train_cli.c builds it */
    int aux[3];
    ey_tfeat_default_aux(tc->n_layer, aux);
    ey_e3t_dims d = {.H = tc->n_embd, .n_aux = 3, .Ht = tc->n_embd, .nh = tc->n_head,
                     .nkv = tc->n_kv_head, .hd = tc->head_dim, .I = tc->n_ff, .V = tc->n_vocab,
                     .Vd = VD, .eps = tc->rms_eps};
    const int T = T_SEQ, V = d.V, H = d.H, Vd = d.Vd, FW = d.n_aux * d.Ht;
    TEST_CHECK(Vd < V);
    float inv_freq[512];
    for (int i = 0; i < d.hd / 2; i++)
        inv_freq[i] = ey_rope_inv_freq(tc->rope_theta, i, d.hd, "none", 1, 0, 0, 0);
    float *embed = malloc((size_t)V * H * sizeof *embed);
    if (!embed) die("embedding", EY_ERR_NOMEM);
    ey_err we = ey_weight_rows_f32(m->be, &m->tok_embd, H, NULL, V, embed);
    if (we) die("reading the embedding", we);
    ey_e3t_opts to = {.K = KSTEPS, .decay = 0.8f, .rope_theta = tc->rope_theta,
                      .inv_freq = inv_freq};
    ey_e3t *tr = NULL;
    if ((e = ey_e3t_create(&d, &to, embed, &tr))) die("ey_e3t_create", e);
    const ey_e3t_layout *L = ey_e3t_layout_of(tr);
    float *p = ey_e3t_params(tr);
    ey_rng r;
    ey_rng_seed(&r, 20240611);
    for (int i = 0; i < E3T_N_TENSORS; i++) {
        size_t n = L->rows[i] * L->cols[i];
        bool vec = L->cols[i] == 1;
        for (size_t k = 0; k < n; k++)
            p[L->off[i] + k] = vec ? (float)(1.0 + 0.2 * randn(&r)) : (float)(0.1 * randn(&r));
    }

    /* ---- sequence: random ids with a repeated stretch */
    int32_t ids[T_SEQ];
    for (int t = 0; t < T; t++) ids[t] = 3 + (int32_t)(ey_rng_next(&r) % (uint64_t)(V - 6));
    for (int t = 25; t < 33; t++) ids[t] = ids[t - 20];

    ey_ctx *c = NULL;
    if ((e = ey_ctx_create(m, 64, 64, 64, &c))) die("ey_ctx_create", e);
    if ((e = ey_ctx_set_capture(c, aux, 3))) die("ey_ctx_set_capture", e);
    ey_tfeat tf;
    memset(&tf, 0, sizeof tf);
    if ((e = ey_tfeat_compute(c, ids, T, 1, NULL, 0, &tf))) die("ey_tfeat_compute (top-1)", e);
    TEST_CHECK(tf.T == T && tf.width == FW);

    /* draft vocabulary: the next tokens and the target's top-1s, then random */
    int32_t vocab[VD];
    int nv = 0;
    uint8_t *in = calloc((size_t)V, 1);
    for (int t = 1; t < T; t++)
        if (!in[ids[t]]) in[ids[t]] = 1, nv++;
    for (int t = 0; t < T; t++)
        if (!in[tf.top1[t]]) in[tf.top1[t]] = 1, nv++;
    TEST_CHECK(nv <= Vd);
    while (nv < Vd) {
        int v = (int)(ey_rng_next(&r) % (uint64_t)V);
        if (!in[v]) in[v] = 1, nv++;
    }
    nv = 0;
    for (int v = 0; v < V; v++)
        if (in[v]) vocab[nv++] = v;
    free(in);
    if ((e = ey_e3t_set_vocab(tr, vocab))) die("ey_e3t_set_vocab", e);

    /* dense teacher over the draft vocabulary */
    if ((e = ey_tfeat_compute(c, ids, T, Vd, vocab, Vd, &tf))) die("ey_tfeat_compute", e);
    uint8_t mask[T_SEQ];
    memset(mask, 1, sizeof mask);
    ey_e3t_seq sq = {.T = T, .ids = ids, .mask = mask, .aux = tf.aux, .kmax = tf.k,
                     .n_teach = tf.n_teach, .teach_ids = tf.teach_ids,
                     .teach_logits = tf.teach_logits, .top1 = tf.top1};
    float *z0 = calloc((size_t)T * Vd, sizeof *z0);
    ey_e3t_stats stats;
    memset(&stats, 0, sizeof stats);
    if ((e = ey_e3t_accumulate(tr, &sq, T, &stats, z0))) die("ey_e3t_accumulate", e);
    TEST_CHECK_MSG(stats.counted[0] > 0, "no counted rows at step 0");

    /* ---- export and load */
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/eyrie-e3t-engine-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    ey_e3_values vals = {
        .fc = p + L->off[E3T_FC], .hidden_norm = p + L->off[E3T_HIDDEN_NORM],
        .input_layernorm = p + L->off[E3T_INPUT_LN], .wq = p + L->off[E3T_WQ],
        .wk = p + L->off[E3T_WK], .wv = p + L->off[E3T_WV], .wo = p + L->off[E3T_WO],
        .post_norm = p + L->off[E3T_POST_NORM], .w_gate = p + L->off[E3T_WGATE],
        .w_up = p + L->off[E3T_WUP], .w_down = p + L->off[E3T_WDOWN],
        .norm = p + L->off[E3T_NORM], .lm_head = p + L->off[E3T_LM_HEAD],
        .vocab = ey_e3t_vocab(tr)};
    ey_eagle3_init_opts io = {.layout = EY_E3_LAYOUT_EAGLE, .draft_vocab = Vd, .n_ff = d.I,
                              .dtype = EY_F32, .write_aux_ids = true, .aux_ids = aux,
                              .values = &vals};
    if ((e = ey_eagle3_write_random(m, g_dir, &io))) die("ey_eagle3_write_random", e);
    check_files(g_dir, aux, vocab, Vd, V);

    ey_eagle3 *dr = NULL;
    if ((e = ey_eagle3_load(g_dir, m, NULL, &dr))) die("ey_eagle3_load", e);
    TEST_CHECK(dr->cfg.H == H && dr->cfg.Vd == Vd && dr->cfg.V == V && dr->cfg.n_aux == 3);
    TEST_CHECK(dr->cfg.n_head == d.nh && dr->cfg.n_kv_head == d.nkv && dr->cfg.head_dim == d.hd);
    TEST_CHECK(dr->cfg.n_ff == d.I && ey_eagle3_feat_width(dr) == FW);
    TEST_CHECK(dr->cfg.aux_from_config);
    for (int i = 0; i < 3; i++)
        TEST_CHECK_MSG(dr->cfg.aux_layers[i] == aux[i], "loaded aux layer %d: %d, expected %d",
                       i, dr->cfg.aux_layers[i], aux[i]);
    {
        int bad = 0;
        for (int i = 0; i < Vd; i++) bad += dr->d2t[i] != vocab[i];
        TEST_CHECK_MSG(!bad, "loaded d2t (absolute ids): %d entries differ from the vocab", bad);
    }

    /* ---- step 0: fused rows t = 0..T-2 */
    const int R = T - 1;
    ey_eagle3_ctx *ec = NULL;
    if ((e = ey_eagle3_ctx_create(dr, 64, 64, 64, &ec))) die("ey_eagle3_ctx_create", e);
    ey_seq s;
    if ((e = ey_seq_init(&s, 64))) die("ey_seq_init", e);
    int32_t tok[T_SEQ], pos[T_SEQ];
    for (int t = 0; t < R; t++) tok[t] = ids[t + 1], pos[t] = t;
    float *lg = calloc((size_t)R * Vd, sizeof *lg), *g0 = calloc((size_t)R * H, sizeof *g0);
    ey_draft_in din = {.T = R, .tokens = tok, .feat = tf.aux, .fused = true, .pos = pos,
                       .n_out = R, .logits = lg, .feat_out = g0};
    if ((e = ey_eagle3_forward(ec, &s, &din))) die("ey_eagle3_forward (step 0)", e);
    double dmax = 0, zmax = 0;
    int arg_bad = 0, worst_t = 0;
    for (int t = 0; t < R; t++) {
        for (int v = 0; v < Vd; v++) {
            double a = lg[(size_t)t * Vd + v], b = z0[(size_t)t * Vd + v];
            double x = fabs(a - b);
            if (x > dmax || isnan(x)) dmax = isnan(x) ? INFINITY : x, worst_t = t;
            zmax = fmax(zmax, fabs(b));
        }
        arg_bad += argmax(lg + (size_t)t * Vd, Vd) != argmax(z0 + (size_t)t * Vd, Vd);
    }
    double tol = TOL * fmax(1.0, zmax);
    printf("step 0: %d rows x %d logits, max|z| %.4g, max|engine - trainer| %.3g (row %d), "
           "tol %.3g, argmax mismatches %d\n", R, Vd, zmax, dmax, worst_t, tol, arg_bad);
    TEST_CHECK_MSG(dmax <= tol, "step-0 logits differ: %.3g > %.3g", dmax, tol);
    TEST_CHECK_MSG(!arg_bad, "step-0 argmax differs on %d rows", arg_bad);

    /* ---- steps 1 and 2 as tree rows, probed through the trainer's loss
     * (many tiny accumulates: one OpenMP thread, or a busy machine spends
     * its time in thread wake-ups) */
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    const int rows_t[] = {0, 7, 19, T - 2 - KSTEPS};
    int32_t *p_tid = malloc((size_t)T * sizeof *p_tid), *p_top1 = malloc((size_t)T * sizeof *p_top1);
    int *p_nt = malloc((size_t)T * sizeof *p_nt);
    float *p_tl = calloc((size_t)T, sizeof *p_tl);
    float zj[VD], gprev[512], gj[512];
    double dmax_j[KSTEPS] = {0}, zmax_j[KSTEPS] = {0};
    int argbad_j[KSTEPS] = {0};
    for (size_t ri = 0; ri < sizeof rows_t / sizeof *rows_t; ri++) {
        const int t = rows_t[ri];
        int row_of[KSTEPS]; /* sequence row of step j's entry for this t */
        row_of[0] = t;
        memcpy(gprev, g0 + (size_t)t * H, (size_t)H * sizeof(float));
        for (int j = 1; j < KSTEPS; j++) {
            if (t + 2 + j >= T) break;
            /* engine: feature g_{j-1}[t], token x_{t+1+j}, position t+j,
             * attending to rows 0..t, this row's steps 1..j-1 and itself */
            int32_t anc[KSTEPS], tk = ids[t + 1 + j], ps = t + j;
            for (int i = 1; i < j; i++) anc[i - 1] = row_of[i];
            ey_draft_in ti = {.T = 1, .tokens = &tk, .feat = gprev, .fused = false, .pos = &ps,
                              .anc = anc, .n_anc = j - 1, .n_prefix = t + 1, .n_out = 1,
                              .logits = zj, .feat_out = gj};
            row_of[j] = s.n_past;
            if ((e = ey_eagle3_forward(ec, &s, &ti))) die("ey_eagle3_forward (tree row)", e);
            memcpy(gprev, gj, (size_t)H * sizeof(float));
            const double lz = lse(zj, Vd);
            for (int v = 0; v < Vd; v++) zmax_j[j] = fmax(zmax_j[j], fabs(zj[v]));

            /* trainer: the sequence cut after x_{t+2+j}, the mask one-hot
             * there, a one-hot teacher on draft id v at row t+1+j */
            const int Tc = t + 3 + j;
            uint8_t pm[T_SEQ];
            memset(pm, 0, sizeof pm);
            pm[t + 2 + j] = 1;
            int hits = 0, hit_v = -1;
            for (int v = 0; v < Vd; v++) {
                for (int k = 0; k < T; k++) p_tid[k] = p_top1[k] = vocab[v], p_nt[k] = 1;
                ey_e3t_seq ps_ = {.T = Tc, .ids = ids, .mask = pm, .aux = tf.aux, .kmax = 1,
                                  .n_teach = p_nt, .teach_ids = p_tid, .teach_logits = p_tl,
                                  .top1 = p_top1};
                ey_e3t_stats st1;
                memset(&st1, 0, sizeof st1);
                if ((e = ey_e3t_accumulate(tr, &ps_, 1.0, &st1, NULL))) die("probe", e);
                if (st1.counted[j] != 1) {
                    TEST_CHECK_MSG(st1.counted[j] == 1, "probe t=%d j=%d: %ld rows counted", t,
                                   j, st1.counted[j]);
                    break;
                }
                if (st1.correct[j]) hits++, hit_v = v;
                double x = fabs((lz - zj[v]) - st1.loss[j]);
                if (x > dmax_j[j] || isnan(x)) dmax_j[j] = isnan(x) ? INFINITY : x;
            }
            /* the trainer's top-1 hit fires for exactly the engine's argmax */
            argbad_j[j] += hits != 1 || hit_v != argmax(zj, Vd);
        }
    }
    for (int j = 1; j < KSTEPS; j++) {
        double tj = TOL * fmax(1.0, zmax_j[j]);
        printf("step %d: rows t = {%d, %d, %d, %d} x %d draft ids probed, max|z| %.4g, "
               "max|Δ(lse - z_v)| %.3g, tol %.3g, top-1 disagreements %d\n", j, rows_t[0],
               rows_t[1], rows_t[2], rows_t[3], Vd, zmax_j[j], dmax_j[j], tj, argbad_j[j]);
        TEST_CHECK_MSG(dmax_j[j] <= tj, "step-%d logits differ: %.3g > %.3g", j, dmax_j[j], tj);
        TEST_CHECK_MSG(!argbad_j[j], "step-%d top-1 differs on %d rows", j, argbad_j[j]);
    }
    /* the trainer's parameters were not touched by the probes */
    TEST_CHECK(ey_e3t_params(tr) == p);

    free(p_tid);
    free(p_top1);
    free(p_nt);
    free(p_tl);
    free(lg);
    free(g0);
    free(z0);
    ey_seq_release(&ec->kv, &s);
    ey_eagle3_ctx_free(ec);
    ey_eagle3_free(dr);
    ey_tfeat_free(&tf);
    ey_ctx_free(c);
    ey_e3t_free(tr);
    free(embed);
    ey_model_free(m);
    ey_backend_destroy(be);
    return test_result();
}
