/* Lossless sampling (eagle3.md §4.4): at T > 0 the tokens speculative
 * generation emits follow the same distribution as plain sampling.
 *
 * For a fixed prompt, N independent runs of each engine (different seeds)
 * give the 2nd, 3rd and 4th completion tokens (the first comes from the prefill
 * and is not speculative); a two-sample chi-square test compares the
 * histograms (bins with fewer than 10 pooled samples are merged). Drafts
 * come from the oracle (the greedy continuation: plausible tokens that are
 * often but not always accepted), in chain and tree shapes, at several
 * temperatures and top-p values. The statistic is turned into a z-score with
 * the Wilson-Hilferty approximation and the test fails at z > 4.5, a
 * false-alarm rate of about 3.4e-6 per comparison (24 comparisons: < 1e-4
 * overall).
 *   test_spec_dist TARGET */
#include "spec_util.h"

#define NS 1500

static int g_hist[2][3][1024]; /* [engine][position][token] */

static double chi2_z(int pos, int V, int *df_out)
{
    double x2 = 0;
    int df = -1, ra = 0, rb = 0;
    for (int t = 0; t < V; t++) {
        int a = g_hist[0][pos][t], b = g_hist[1][pos][t];
        if (a + b < 10) {
            ra += a;
            rb += b;
            continue;
        }
        x2 += (double)(a - b) * (a - b) / (a + b);
        df++;
    }
    if (ra + rb > 0) {
        x2 += (double)(ra - rb) * (ra - rb) / (ra + rb);
        df++;
    }
    *df_out = df;
    if (df < 1) return 0;
    double k = df, h = 2.0 / (9.0 * k);
    return (pow(x2 / k, 1.0 / 3.0) - (1.0 - h)) / sqrt(h);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_spec_dist TARGET\n");
        return 2;
    }
    ey_backend *be = cpu_backend(1);
    ey_model *m = load_model(be, argv[1]);
    const int V = m->cfg.n_vocab;
    if (V > 1024) TEST_SKIP("vocab too large for this test");
    ey_ctx *c = NULL;
    TEST_CHECK(!ey_ctx_create(m, 128, 32, 32, &c));
    if (!c) return test_result();
    const int32_t prompt[] = {1, 45, 200, 17, 99, 3};
    const int n = 6;
    /* the oracle continuation: greedy */
    ey_gen_params gg = {.max_tokens = 8, .sampling = ey_sampling_default()};
    gg.sampling.temperature = 0;
    gg.ignore_eos = true;
    ey_gen_result ref;
    TEST_CHECK(!ey_generate(c, prompt, n, &gg, NULL, NULL, &ref));
    ey_spec_oracle orc = {.cont = ref.ids, .n_cont = ref.n_ids};
    const struct { float temp, top_p, min_p; int top_k; } samp[] = {
        {1.0f, 1.0f, 0.0f, 0}, {0.7f, 0.9f, 0.0f, 0}, {1.5f, 1.0f, 0.05f, 40}, {0.4f, 0.8f, 0.0f, 0}};
    ey_spec_opts shapes[2] = {ey_spec_opts_default(), ey_spec_opts_default()};
    shapes[0].method = EY_SPEC_CHAIN;
    shapes[0].k = 3;
    shapes[1].method = EY_SPEC_TREE;
    shapes[1].top_k = 3;
    shapes[1].depth = 3;
    shapes[1].total_tokens = 10;
    double worst = -1e9;
    for (size_t si = 0; si < sizeof samp / sizeof *samp; si++)
        for (int sh = 0; sh < 2; sh++) {
            memset(g_hist, 0, sizeof g_hist);
            ey_gen_params gp = {.max_tokens = 4, .sampling = ey_sampling_default(),
                                .ignore_eos = true};
            gp.sampling.temperature = samp[si].temp;
            gp.sampling.top_p = samp[si].top_p;
            gp.sampling.min_p = samp[si].min_p;
            gp.sampling.top_k = samp[si].top_k;
            ey_spec_opts so = shapes[sh];
            so.oracle = &orc;
            long acc = 0, drafted = 0;
            for (int i = 0; i < NS; i++) {
                ey_gen_result r;
                ey_spec_stats st;
                gp.sampling.seed = 1000003ull * (si * 2 + sh) + (uint64_t)i;
                if (ey_generate(c, prompt, n, &gp, NULL, NULL, &r) || r.n_ids != 4) {
                    TEST_CHECK_MSG(0, "generate: %s", ey_err_detail());
                    break;
                }
                for (int q = 0; q < 3; q++) g_hist[0][q][r.ids[q + 1]]++;
                ey_gen_result_free(&r);
                gp.sampling.seed += 7777777ull;
                if (ey_spec_generate(c, NULL, &so, prompt, n, &gp, NULL, NULL, &r, &st) ||
                    r.n_ids != 4) {
                    TEST_CHECK_MSG(0, "spec: %s", ey_err_detail());
                    break;
                }
                for (int q = 0; q < 3; q++) g_hist[1][q][r.ids[q + 1]]++;
                acc += st.accepted;
                drafted += st.drafted;
                ey_gen_result_free(&r);
            }
            for (int pos = 0; pos < 3; pos++) {
                int df;
                double z = chi2_z(pos, V, &df);
                if (z > worst) worst = z;
                TEST_CHECK_MSG(z < 4.5, "T=%.2f top_p=%.2f %s position %d: chi-square z = %.2f "
                               "(df %d)", samp[si].temp, samp[si].top_p, ey_spec_method_name(so.method),
                               pos + 1, z, df);
            }
            fprintf(stderr, "T=%.2f top_p=%.2f min_p=%.2f top_k=%d %s: accepted %ld of %ld "
                    "drafts\n", samp[si].temp, samp[si].top_p, samp[si].min_p, samp[si].top_k,
                    ey_spec_method_name(so.method), acc, drafted);
            TEST_CHECK(acc > 0); /* the accept path was exercised */
        }
    fprintf(stderr, "largest z %.2f\n", worst);
    ey_gen_result_free(&ref);
    ey_ctx_free(c);
    ey_model_free(m);
    ey_backend_destroy(be);
    return test_result();
}
