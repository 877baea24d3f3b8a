/* Speculative generation: greedy losslessness against ey_generate (random
 * drafters in several layouts, chain and tree shapes, prompts and lengths
 * crossing 16-row KV blocks, chunked prefill, a context that fills up) and
 * exact acceptance accounting with the oracle drafter.
 *   test_spec_gen lossless TARGET
 *   test_spec_gen oracle TARGET
 *   test_spec_gen real            (the default model; 77 if not fetched) */
#include "spec_util.h"

typedef struct shape_t {
    ey_spec_method m;
    int k, top_k, depth, total;
} shape_t;

static const shape_t k_shapes[] = {
    {EY_SPEC_CHAIN, 1, 0, 0, 0},  {EY_SPEC_CHAIN, 2, 0, 0, 0},  {EY_SPEC_CHAIN, 4, 0, 0, 0},
    {EY_SPEC_CHAIN, 7, 0, 0, 0},  {EY_SPEC_TREE, 0, 4, 4, 12},  {EY_SPEC_TREE, 0, 2, 6, 10},
    {EY_SPEC_TREE, 0, 3, 3, 16},  {EY_SPEC_TREE, 0, 1, 5, 6},   {EY_SPEC_TREE, 0, 8, 2, 16},
};
enum { N_SHAPES = sizeof k_shapes / sizeof *k_shapes };

static ey_spec_opts opts_of(const shape_t *s)
{
    ey_spec_opts o = ey_spec_opts_default();
    o.method = s->m;
    if (s->m == EY_SPEC_CHAIN) o.k = s->k;
    else {
        o.top_k = s->top_k;
        o.depth = s->depth;
        o.total_tokens = s->total;
    }
    return o;
}

static bool same_ids(const ey_gen_result *a, const ey_gen_result *b)
{
    return a->n_ids == b->n_ids && !memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof *a->ids) &&
           !strcmp(a->finish_reason, b->finish_reason);
}

static void random_prompt(int32_t *p, int n, int V)
{
    for (int i = 0; i < n; i++) p[i] = 3 + (int32_t)(rnd() % (uint32_t)(V - 3));
    if (rnd() % 2) p[0] = 1; /* BOS sometimes */
}

/* One comparison: spec output vs plain output on the same ctx. */
static void compare(ey_ctx *c, ey_eagle3 *d, const shape_t *s, const int32_t *p, int n,
                    const ey_gen_params *gp, const ey_gen_result *ref, double *tau_sum,
                    int *tau_n, const char *label)
{
    ey_spec_opts o = opts_of(s);
    ey_gen_result r;
    ey_spec_stats st;
    ey_err e = ey_spec_generate(c, d, &o, p, n, gp, NULL, NULL, &r, &st);
    TEST_CHECK_MSG(!e, "%s: %s", label, ey_err_detail());
    if (e) return;
    bool ok = same_ids(&r, ref);
    TEST_CHECK_MSG(ok, "%s: method %s k=%d tree=(%d,%d,%d) prompt %d max %d: %d vs %d tokens (%s/%s)",
                   label, st.method, s->k, s->top_k, s->depth, s->total, n, gp->max_tokens,
                   r.n_ids, ref->n_ids, r.finish_reason, ref->finish_reason);
    if (!ok) {
        for (int i = 0; i < r.n_ids && i < ref->n_ids; i++)
            if (r.ids[i] != ref->ids[i]) {
                fprintf(stderr, "  first difference at %d: %d vs %d\n", i, r.ids[i], ref->ids[i]);
                break;
            }
    }
    TEST_CHECK(st.accepted <= st.drafted && (st.rounds >= 1 || r.n_ids <= 1 ||
                                             !strcmp(r.finish_reason, "length")));
    TEST_CHECK(st.accepted + st.rounds >= r.n_ids - 1);
    if (st.rounds) {
        *tau_sum += st.mean_accept_len;
        (*tau_n)++;
    }
    ey_gen_result_free(&r);
}

static void lossless(ey_model *m)
{
    const int V = m->cfg.n_vocab;
    /* drafters: three layouts and flag sets */
    ey_eagle3_init_opts dopt[3] = {
        {.layout = EY_E3_LAYOUT_EAGLE, .draft_vocab = V / 2, .seed = 11, .random_vocab = true,
         .init_std = 0.2f},
        {.layout = EY_E3_LAYOUT_SPECFORGE, .seed = 12, .fc_norm = true, .dtype = EY_BF16,
         .init_std = 0.2f},
        {.layout = EY_E3_LAYOUT_SPECULATORS, .draft_vocab = V / 3, .seed = 13,
         .random_vocab = true, .norm_before_residual = true, .norm_output = true,
         .norm_before_fc = true, .dtype = EY_F16, .init_std = 0.2f},
    };
    /* and drafters 0 and 1 again with their matrices quantized at load
     * (--drafter-quant): other drafts, the same output */
    enum { ND = 5 };
    ey_eagle3 *ds[ND] = {0};
    for (int i = 0; i < ND; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "d%d", i % 3);
        const char *dir = tmp_dir(nm);
        ey_eagle3_opts lo = {.quant = i == 3 ? EY_E3_QUANT_Q8_0 : i == 4 ? EY_E3_QUANT_Q4_1
                                                                         : EY_E3_QUANT_NONE};
        ey_err e = i < 3 ? ey_eagle3_write_random(m, dir, &dopt[i]) : EY_OK;
        if (!e) e = ey_eagle3_load(dir, m, &lo, &ds[i]);
        TEST_CHECK_MSG(!e, "drafter %d: %s", i, ey_err_detail());
        if (e) return;
    }
    /* (the CPU backend then repacks them: R8) */
    TEST_CHECK(ey_dtype_r8_base(ds[3]->wq.type) == EY_Q8_0 &&
               ey_dtype_r8_base(ds[3]->w_down.type) == EY_Q8_0 &&
               ey_dtype_r8_base(ds[3]->lm_head.type) == EY_Q8_0);
    TEST_CHECK(ey_dtype_r8_base(ds[4]->wq.type) == EY_Q4_1 &&
               ey_dtype_r8_base(ds[4]->fc.type) == EY_Q4_1);
    TEST_CHECK(ds[0]->wq.type == EY_F32 && ds[1]->wq.type == EY_BF16);
    /* ctx A: roomy; ctx B: 48 rows, batch 16 (chunked prefill, context fills up) */
    ey_ctx *ca = NULL, *cb = NULL;
    TEST_CHECK(!ey_ctx_create(m, 512, 64, 64, &ca));
    TEST_CHECK(!ey_ctx_create(m, 48, 16, 16, &cb));
    if (!ca || !cb) return;
    double tau = 0;
    int ntau = 0, runs = 0;
    int32_t prompt[64];
    for (int it = 0; it < 18; it++) {
        bool small = it % 3 == 2;
        ey_ctx *c = small ? cb : ca;
        int n = 1 + (int)(rnd() % (small ? 40 : 50));
        random_prompt(prompt, n, V);
        ey_gen_params gp = {.max_tokens = 1 + (int)(rnd() % 70)};
        if (it == 0) gp.max_tokens = 1;
        gp.sampling = ey_sampling_default();
        gp.sampling.temperature = 0;
        if (it % 4 == 1) { /* a repetition penalty changes argmax with history */
            gp.sampling.repeat_penalty = 1.3f;
            gp.sampling.repeat_last_n = 16;
        }
        ey_gen_result ref;
        ey_err e = ey_generate(c, prompt, n, &gp, NULL, NULL, &ref);
        TEST_CHECK_MSG(!e, "generate: %s", ey_err_detail());
        if (e) continue;
        for (int s = 0; s < N_SHAPES; s++) {
            if (small && ey_spec_ctx_rows(&(ey_spec_opts){.method = k_shapes[s].m,
                                                          .k = k_shapes[s].k,
                                                          .total_tokens = k_shapes[s].total}) > 16)
                continue;
            char label[64];
            snprintf(label, sizeof label, "iter %d drafter %d", it, (it + s) % ND);
            compare(c, ds[(it + s) % ND], &k_shapes[s], prompt, n, &gp, &ref, &tau, &ntau, label);
            runs++;
        }
        ey_gen_result_free(&ref);
    }
    fprintf(stderr, "lossless: %d spec runs, mean tau with random drafters %.3f\n", runs,
            ntau ? tau / ntau : 0);
    /* sampling at T > 0 runs and stays in range (distribution: test_spec_dist) */
    for (int it = 0; it < 6; it++) {
        int n = 1 + (int)(rnd() % 20);
        random_prompt(prompt, n, V);
        ey_gen_params gp = {.max_tokens = 40, .sampling = ey_sampling_default()};
        gp.sampling.temperature = 0.5f + 0.3f * (float)it;
        gp.sampling.seed = (uint64_t)it;
        ey_spec_opts o = opts_of(&k_shapes[it % N_SHAPES]);
        ey_gen_result r;
        ey_spec_stats st;
        ey_err e = ey_spec_generate(ca, ds[it % ND], &o, prompt, n, &gp, NULL, NULL, &r, &st);
        TEST_CHECK_MSG(!e, "sampling: %s", ey_err_detail());
        if (e) continue;
        TEST_CHECK_MSG(r.n_ids == 40 || !strcmp(r.finish_reason, "stop"), "sampling run %d: %d ids (%s)", it, r.n_ids, r.finish_reason);
        for (int i = 0; i < r.n_ids; i++) TEST_CHECK(r.ids[i] >= 0 && r.ids[i] < V);
        ey_gen_result_free(&r);
    }
    /* a ctx without room for the tree is refused with a clear error */
    ey_spec_opts big = ey_spec_opts_default();
    big.method = EY_SPEC_TREE;
    big.total_tokens = 40;
    ey_gen_params gp = {.max_tokens = 4};
    ey_gen_result r;
    ey_spec_stats st;
    TEST_CHECK(ey_spec_generate(cb, ds[0], &big, prompt, 4, &gp, NULL, NULL, &r, &st) ==
               EY_ERR_ARG);
    ey_ctx_free(ca);
    ey_ctx_free(cb);
    for (int i = 0; i < ND; i++) ey_eagle3_free(ds[i]);
}

/* ---------------------------------------------------------------- oracle */

/* Expected statistics, replaying round_once's budget rules. */
static void expect_stats(const ey_spec_opts *o, int n_prompt, int max_rows, int max_tokens,
                         const uint8_t *wrong, int n_cont, ey_spec_stats *x)
{
    memset(x, 0, sizeof *x);
    int K = o->method == EY_SPEC_CHAIN ? 1 : o->top_k;
    int D = o->method == EY_SPEC_CHAIN ? o->k : o->depth;
    int NT = o->method == EY_SPEC_CHAIN ? o->k + 1 : o->total_tokens;
    int produced = 1, r = 0, L = n_prompt;
    while (produced < max_tokens && L + 1 <= max_rows) {
        int remaining = max_tokens - produced;
        int total = NT < max_rows - L ? NT : max_rows - L;
        int depth = D < remaining - 1 ? D : remaining - 1;
        if (depth > total - 1) depth = total - 1;
        int nodes = 1, m = 0;
        for (int lvl = 1; lvl <= depth && nodes + K <= total; lvl++) {
            int i = r + lvl;
            nodes += K;
            if (i >= n_cont || wrong[i]) break;
            m = lvl;
        }
        x->rounds++;
        x->drafted += nodes - 1;
        x->accepted += m;
        for (int i = 0; i < m; i++) x->accepted_at[i]++;
        produced += m + 1;
        r += m + 1;
        L += m + 1;
    }
    x->mean_accept_len = 1.0 + (double)x->accepted / x->rounds;
}

static void oracle_case(ey_ctx *c, const int32_t *prompt, int n, int max_tokens, double p_wrong,
                        const ey_spec_opts *o)
{
    ey_gen_params gp = {.max_tokens = max_tokens, .sampling = ey_sampling_default()};
    gp.sampling.temperature = 0;
    gp.ignore_eos = true;
    ey_gen_result ref;
    ey_err e = ey_generate(c, prompt, n, &gp, NULL, NULL, &ref);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    if (e) return;
    uint8_t wrong[512] = {0};
    for (int i = 0; i < ref.n_ids && i < 512; i++)
        wrong[i] = (double)(rnd() % 10000) / 10000.0 < p_wrong;
    ey_spec_oracle orc = {.cont = ref.ids, .n_cont = ref.n_ids, .wrong = wrong};
    ey_spec_opts so = *o;
    so.oracle = &orc;
    ey_gen_result r;
    ey_spec_stats st, x;
    e = ey_spec_generate(c, NULL, &so, prompt, n, &gp, NULL, NULL, &r, &st);
    TEST_CHECK_MSG(!e, "oracle: %s", ey_err_detail());
    if (!e) {
        bool same = same_ids(&r, &ref);
        TEST_CHECK_MSG(same, "oracle %s: output differs from ey_generate", st.method);
        for (int i = 0; !same && i < r.n_ids && i < ref.n_ids; i++)
            if (r.ids[i] != ref.ids[i]) {
                fprintf(stderr, "  first difference at %d of %d/%d: %d vs %d\n", i, r.n_ids,
                        ref.n_ids, r.ids[i], ref.ids[i]);
                break;
            }
        int max_rows = c->kv.n_blocks * c->kv.block_size;
        expect_stats(&so, n, max_rows, max_tokens, wrong, ref.n_ids, &x);
        TEST_CHECK_MSG(st.rounds == x.rounds && st.drafted == x.drafted &&
                       st.accepted == x.accepted,
                       "oracle %s p=%.2f: rounds %d/%d drafted %ld/%ld accepted %ld/%ld",
                       st.method, p_wrong, st.rounds, x.rounds, st.drafted, x.drafted,
                       st.accepted, x.accepted);
        TEST_CHECK(fabs(st.mean_accept_len - x.mean_accept_len) < 1e-12);
        for (int i = 0; i < st.n_pos; i++) {
            TEST_CHECK_MSG(st.accepted_at[i] == x.accepted_at[i], "position %d: %ld vs %ld", i,
                           st.accepted_at[i], x.accepted_at[i]);
            TEST_CHECK(fabs(st.per_position[i] - (double)x.accepted_at[i] / x.rounds) < 1e-12);
        }
        ey_gen_result_free(&r);
    }
    ey_gen_result_free(&ref);
}

static void oracle(ey_model *m)
{
    ey_ctx *ca = NULL, *cb = NULL;
    TEST_CHECK(!ey_ctx_create(m, 512, 64, 64, &ca));
    TEST_CHECK(!ey_ctx_create(m, 48, 16, 16, &cb));
    if (!ca || !cb) return;
    const shape_t sh[] = {{EY_SPEC_CHAIN, 1, 0, 0, 0}, {EY_SPEC_CHAIN, 3, 0, 0, 0},
                          {EY_SPEC_CHAIN, 6, 0, 0, 0}, {EY_SPEC_TREE, 0, 3, 4, 13},
                          {EY_SPEC_TREE, 0, 2, 5, 8},  {EY_SPEC_TREE, 0, 4, 3, 16}};
    const double pw[] = {0.0, 0.2, 0.5, 1.0};
    int32_t prompt[64];
    int cases = 0;
    for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
        for (size_t w = 0; w < sizeof pw / sizeof *pw; w++) {
            int n = 1 + (int)(rnd() % 30);
            random_prompt(prompt, n, m->cfg.n_vocab);
            ey_spec_opts o = opts_of(&sh[s]);
            oracle_case(ca, prompt, n, 10 + (int)(rnd() % 80), pw[w], &o);
            if (ey_spec_ctx_rows(&o) <= 16) oracle_case(cb, prompt, n, 60, pw[w], &o);
            cases++;
        }
    fprintf(stderr, "oracle: %d cases\n", cases);
    ey_ctx_free(ca);
    ey_ctx_free(cb);
}

/* ---------------------------------------------------------------- real */

static int real(void)
{
    char path[600];
    char *def = ey_default_model_path(); /* where the CLI looks too */
    snprintf(path, sizeof path, "%s", def ? def : "");
    free(def);
    if (access(path, R_OK)) TEST_SKIP("default model %s not fetched (scripts/fetch-model.sh)", path);
    ey_backend *be = cpu_backend(0);
    ey_model *m = load_model(be, path);
    ey_eagle3_init_opts io = {.layout = EY_E3_LAYOUT_EAGLE, .draft_vocab = 4096, .seed = 7,
                              .dtype = EY_BF16};
    const char *dir = tmp_dir("real");
    ey_eagle3 *d = NULL;
    ey_err e = ey_eagle3_write_random(m, dir, &io);
    if (!e) e = ey_eagle3_load(dir, m, NULL, &d);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    ey_ctx *c = NULL;
    TEST_CHECK(!ey_ctx_create(m, 512, 64, 16, &c));
    const char *qs[] = {"What is the capital of France?"};
    /* small shapes: the scalar path (see meson.build) is slow on a real model */
    const shape_t sh[] = {{EY_SPEC_CHAIN, 2, 0, 0, 0}, {EY_SPEC_TREE, 0, 2, 3, 6}};
    double tau = 0;
    int ntau = 0;
    for (size_t q = 0; d && c && q < sizeof qs / sizeof *qs; q++) {
        int32_t *ids;
        int n;
        if ((e = ey_prompt_chat(m, NULL, qs[q], &ids, &n))) {
            TEST_CHECK_MSG(0, "%s", ey_err_detail());
            continue;
        }
        ey_gen_params gp = {.max_tokens = 20, .sampling = ey_sampling_default()};
        gp.sampling.temperature = 0;
        ey_gen_result ref;
        if ((e = ey_generate(c, ids, n, &gp, NULL, NULL, &ref))) {
            TEST_CHECK_MSG(0, "%s", ey_err_detail());
            free(ids);
            continue;
        }
        for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
            compare(c, d, &sh[s], ids, n, &gp, &ref, &tau, &ntau, qs[q]);
        /* the oracle on the real model: tree verify + compaction are exact */
        ey_spec_opts o = opts_of(&sh[1]);
        oracle_case(c, ids, n, 20, 0.3, &o);
        ey_gen_result_free(&ref);
        free(ids);
    }
    fprintf(stderr, "real: mean tau with a random drafter %.3f over %d runs\n",
            ntau ? tau / ntau : 0, ntau);
    ey_ctx_free(c);
    ey_eagle3_free(d);
    ey_model_free(m);
    ey_backend_destroy(be);
    tmp_cleanup();
    return test_result();
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "real")) return real();
    if (argc < 3) {
        fprintf(stderr, "usage: test_spec_gen lossless|oracle TARGET | real\n");
        return 2;
    }
    ey_backend *be = cpu_backend(1); /* tiny models: threads only add overhead */
    ey_model *m = load_model(be, argv[2]);
    if (!strcmp(argv[1], "lossless")) lossless(m);
    else if (!strcmp(argv[1], "oracle")) oracle(m);
    else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    ey_model_free(m);
    ey_backend_destroy(be);
    tmp_cleanup();
    return test_result();
}
