/* Multi-sequence batched forward (continuous batching): every item of a
 * batch gets bit-identical logits and aux captures to running it alone,
 * whatever else shares the pass (prefill chunks, decode rows, tree-masked
 * verify rows), and a rejected batch changes nothing.
 *   test_batch MODEL [THREADS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/forward.h"
#include "../test.h"

static uint64_t g_s = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    g_s ^= g_s << 13;
    g_s ^= g_s >> 7;
    g_s ^= g_s << 17;
    return (uint32_t)(g_s >> 20);
}

enum { NSEQ = 6, MAXT = 40 };

typedef struct shape {
    int past;     /* rows already in the cache */
    int T;        /* rows this step */
    int nl;       /* logit rows */
    bool tree;    /* random tree mask over the T rows */
} shape;

static void make_mask(uint8_t *m, int T, int *par)
{
    memset(m, 0, (size_t)T * T);
    for (int i = 0; i < T; i++) {
        par[i] = i ? (int)(rnd() % i) : -1;
        for (int j = i; j >= 0; j = par[j]) m[i * T + j] = 1;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [THREADS]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    ey_backend *be;
    TEST_CHECK(ey_backend_cpu_create(threads, &be) == EY_OK);
    ey_model *m = NULL;
    ey_err e = ey_model_load(argv[1], be, &m);
    TEST_CHECK_MSG(!e, "load: %s", ey_err_detail());
    if (e) return test_result();
    const int V = m->cfg.n_vocab, H = m->cfg.n_embd, N = m->cfg.n_layer;
    ey_ctx *cb, *c1; /* batched ctx, and a ctx for the one-at-a-time runs */
    TEST_CHECK(!ey_ctx_create(m, 2048, 256, 64, &cb));
    TEST_CHECK(!ey_ctx_create(m, 2048, 256, 64, &c1));
    const int cap[3] = {0, N / 2, N};
    TEST_CHECK(!ey_ctx_set_capture(cb, cap, 3));
    TEST_CHECK(!ey_ctx_set_capture(c1, cap, 3));

    int checked = 0;
    for (int round = 0; round < 12; round++) {
        int n = 1 + (int)(rnd() % NSEQ);
        shape sh[NSEQ];
        int rows = 0, lrows = 0;
        for (int i = 0; i < n; i++) {
            sh[i].past = (int)(rnd() % 60); /* crosses 16-row KV blocks */
            sh[i].T = 1 + (int)(rnd() % MAXT);
            sh[i].tree = sh[i].T > 1 && rnd() % 3 == 0;
            sh[i].nl = sh[i].tree ? sh[i].T : (int)(rnd() % 3 == 0 ? 0 : 1 + rnd() % sh[i].T % 4);
            if (sh[i].nl > sh[i].T) sh[i].nl = sh[i].T;
            if (rows + sh[i].T > 256 || lrows + sh[i].nl > 64) {
                n = i;
                break;
            }
            rows += sh[i].T;
            lrows += sh[i].nl;
        }
        if (n == 0) continue;
        ey_seq sb[NSEQ], s1[NSEQ];
        int32_t *tok[NSEQ], *hist[NSEQ], pos[NSEQ][MAXT];
        uint8_t mask[NSEQ][MAXT * MAXT];
        int par[MAXT];
        float *lb[NSEQ], *l1[NSEQ], *ab[NSEQ], *a1[NSEQ];
        ey_fwd_item it[NSEQ];
        for (int i = 0; i < n; i++) {
            ey_seq_init(&sb[i], 2048);
            ey_seq_init(&s1[i], 2048);
            hist[i] = malloc((size_t)(sh[i].past + 1) * 4);
            for (int t = 0; t < sh[i].past; t++) hist[i][t] = (int32_t)(rnd() % V);
            if (sh[i].past) {
                TEST_CHECK(!ey_forward(cb, &sb[i], hist[i], sh[i].past, NULL, NULL, 0, NULL));
                TEST_CHECK(!ey_forward(c1, &s1[i], hist[i], sh[i].past, NULL, NULL, 0, NULL));
            }
            tok[i] = malloc((size_t)sh[i].T * 4);
            for (int t = 0; t < sh[i].T; t++) tok[i][t] = (int32_t)(rnd() % V);
            if (sh[i].tree) {
                make_mask(mask[i], sh[i].T, par);
                for (int t = 0; t < sh[i].T; t++) {
                    int d = 0;
                    for (int j = par[t]; j >= 0; j = par[j]) d++;
                    pos[i][t] = sh[i].past + d;
                }
            }
            lb[i] = malloc((size_t)(sh[i].nl + 1) * V * 4);
            l1[i] = malloc((size_t)(sh[i].nl + 1) * V * 4);
            ab[i] = malloc((size_t)sh[i].T * 3 * H * 4);
            a1[i] = malloc((size_t)sh[i].T * 3 * H * 4);
            it[i] = (ey_fwd_item){.s = &sb[i], .tokens = tok[i], .T = sh[i].T,
                                  .pos = sh[i].tree ? pos[i] : NULL,
                                  .mask = sh[i].tree ? mask[i] : NULL, .n_logits = sh[i].nl,
                                  .logits = lb[i], .aux = ab[i]};
        }
        e = ey_forward_batch(cb, it, n);
        TEST_CHECK_MSG(!e, "batch: %s", ey_err_detail());
        for (int i = 0; i < n; i++) {
            e = ey_forward_aux(c1, &s1[i], tok[i], sh[i].T, sh[i].tree ? pos[i] : NULL,
                               sh[i].tree ? mask[i] : NULL, sh[i].nl, l1[i], a1[i]);
            TEST_CHECK_MSG(!e, "single: %s", ey_err_detail());
            TEST_CHECK(sb[i].n_past == s1[i].n_past);
            TEST_CHECK_MSG(!memcmp(lb[i], l1[i], (size_t)sh[i].nl * V * 4),
                           "round %d item %d/%d (past %d, T %d, tree %d): logits differ", round,
                           i, n, sh[i].past, sh[i].T, sh[i].tree);
            TEST_CHECK_MSG(!memcmp(ab[i], a1[i], (size_t)sh[i].T * 3 * H * 4),
                           "round %d item %d: captures differ", round, i);
            checked++;
        }
        for (int i = 0; i < n; i++) {
            ey_seq_release(&cb->kv, &sb[i]);
            ey_seq_release(&c1->kv, &s1[i]);
            free(tok[i]), free(hist[i]), free(lb[i]), free(l1[i]), free(ab[i]), free(a1[i]);
        }
    }
    TEST_CHECK(checked >= 20);
    TEST_CHECK(ey_kv_pool_free_rows(&cb->kv) == cb->kv.n_blocks * cb->kv.block_size);

    /* refusals: nothing runs, nothing moves */
    ey_seq a, b;
    ey_seq_init(&a, 2048);
    ey_seq_init(&b, 8);
    int32_t t9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, bad = V;
    ey_fwd_item two[2] = {{.s = &a, .tokens = t9, .T = 3}, {.s = &a, .tokens = t9, .T = 2}};
    TEST_CHECK(ey_forward_batch(cb, two, 2) == EY_ERR_ARG); /* same sequence twice */
    two[1] = (ey_fwd_item){.s = &b, .tokens = t9, .T = 9};
    TEST_CHECK(ey_forward_batch(cb, two, 2) == EY_ERR_CAPACITY); /* b's limit is 8 */
    two[1] = (ey_fwd_item){.s = &b, .tokens = &bad, .T = 1};
    TEST_CHECK(ey_forward_batch(cb, two, 2) == EY_ERR_ARG);
    two[1] = (ey_fwd_item){.s = &b, .tokens = t9, .T = 2, .n_logits = 3};
    TEST_CHECK(ey_forward_batch(cb, two, 2) == EY_ERR_ARG);
    TEST_CHECK(ey_forward_batch(cb, two, 0) == EY_ERR_ARG);
    TEST_CHECK(a.n_past == 0 && b.n_past == 0);
    ey_seq_release(&cb->kv, &a);
    ey_seq_release(&cb->kv, &b);

    ey_ctx_free(cb);
    ey_ctx_free(c1);
    ey_model_free(m);
    ey_backend_destroy(be);
    printf("%d batched items compared\n", checked);
    return test_result();
}
