/* The stepper under a continuous-batching scheduler: many sequences with
 * mixed methods (none, chain, tree with a random drafter) share each target
 * forward through ey_forward_batch, join and leave between steps, and have
 * their prefill cut into small chunks by a row budget. Every sequence's
 * output must equal ey_generate's on its own: greedy token for token, and
 * with method none also when sampling with a seed. Some jobs stop drafting
 * midway (ey_spec_seq_drop_drafter), which must not change their output.
 *   test_spec_batch TARGET */
#include "spec_util.h"

enum { NJOB = 24, MAXP = 60 };

typedef struct job {
    int32_t prompt[MAXP];
    int n;
    ey_gen_params gp;
    ey_spec_opts so;
    ey_spec_seq *q;
    ey_gen_result ref;
    bool started, finished;
    int arrive; /* step at which it joins */
} job;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TARGET\n", argv[0]);
        return 2;
    }
    ey_backend *be = cpu_backend(2);
    ey_model *m = load_model(be, argv[1]);
    const int V = m->cfg.n_vocab;
    ey_eagle3_init_opts io = {.layout = EY_E3_LAYOUT_EAGLE, .draft_vocab = V / 2, .seed = 3,
                              .random_vocab = true};
    const char *dir = tmp_dir("drafter");
    TEST_CHECK(!ey_eagle3_write_random(m, dir, &io));
    ey_eagle3 *d = NULL;
    TEST_CHECK_MSG(!ey_eagle3_load(dir, m, NULL, &d), "%s", ey_err_detail());
    ey_ctx *ref_c = NULL, *c = NULL;
    TEST_CHECK(!ey_ctx_create(m, 256, 64, 64, &ref_c));
    TEST_CHECK(!ey_ctx_create(m, 4096, 128, 128, &c));
    TEST_CHECK(!ey_spec_ctx_capture(c, d));
    if (!d || !c || !ref_c) return test_result();

    job *jobs = calloc(NJOB, sizeof *jobs);
    for (int i = 0; i < NJOB; i++) {
        job *j = &jobs[i];
        j->n = 1 + (int)(rnd() % (MAXP - 1));
        for (int t = 0; t < j->n; t++) j->prompt[t] = 3 + (int32_t)(rnd() % (uint32_t)(V - 3));
        j->gp.max_tokens = 1 + (int)(rnd() % 60);
        j->gp.sampling = ey_sampling_default();
        j->so = ey_spec_opts_default();
        j->arrive = (int)(rnd() % 40);
        switch (i % 4) {
        case 0: /* plain, sampled with a seed */
            j->so.method = EY_SPEC_NONE;
            j->gp.sampling.temperature = 0.9f;
            j->gp.sampling.seed = 100 + (uint64_t)i;
            break;
        case 1: j->so.method = EY_SPEC_NONE; j->gp.sampling.temperature = 0; break;
        case 2: j->so.method = EY_SPEC_CHAIN; j->so.k = 1 + i % 5; j->gp.sampling.temperature = 0; break;
        case 3:
            j->so.method = EY_SPEC_TREE;
            j->so.top_k = 2 + i % 3;
            j->so.depth = 3;
            j->so.total_tokens = 8 + i % 5;
            j->gp.sampling.temperature = 0;
            break;
        }
        ey_err e = ey_generate(ref_c, j->prompt, j->n, &j->gp, NULL, NULL, &j->ref);
        TEST_CHECK_MSG(!e, "reference %d: %s", i, ey_err_detail());
    }

    /* the scheduler: decode/verify rows first, the rest of a 40-row budget
     * to prefill chunks, so prompts are cut in several pieces */
    const int BUDGET = 40;
    int done = 0, step = 0, max_in_batch = 0, dropped = 0;
    long batched_rows = 0;
    while (done < NJOB && step < 100000) {
        for (int i = 0; i < NJOB; i++) {
            job *j = &jobs[i];
            if (j->started || j->arrive > step) continue;
            ey_err e = ey_spec_seq_create(c, j->so.method == EY_SPEC_NONE ? NULL : d, &j->so,
                                          j->prompt, j->n, &j->gp, NULL, NULL, &j->q);
            TEST_CHECK_MSG(!e, "create %d: %s", i, ey_err_detail());
            j->started = true;
        }
        ey_fwd_item items[NJOB];
        int owner[NJOB], n = 0, used = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < NJOB; i++) {
                job *j = &jobs[i];
                if (!j->q || j->finished) continue;
                bool pf = ey_spec_seq_generated(j->q) == 0;
                if ((pass == 0) == pf) continue; /* decoders first */
                int left = BUDGET - used;
                if (left < 1) break;
                int want = pf ? (left < 13 ? left : 13) : left; /* prefill in <= 13-row chunks */
                TEST_CHECK(!ey_spec_seq_plan(j->q, want, &items[n]));
                used += items[n].T;
                owner[n++] = i;
            }
        if (n) {
            ey_err e = ey_forward_batch(c, items, n);
            TEST_CHECK_MSG(!e, "batch: %s", ey_err_detail());
            if (e) break;
            batched_rows += used;
            if (n > max_in_batch) max_in_batch = n;
        }
        for (int k = 0; k < n; k++) {
            job *j = &jobs[owner[k]];
            TEST_CHECK(!ey_spec_seq_commit(j->q));
            /* some speculating jobs stop drafting midway (the daemon's
             * low-acceptance policy): the output must not change */
            if (!ey_spec_seq_done(j->q) && ey_spec_seq_drafting(j->q) && owner[k] % 3 == 0 &&
                ey_spec_seq_stats(j->q)->rounds >= 2) {
                TEST_CHECK(!ey_spec_seq_drop_drafter(j->q));
                TEST_CHECK(!ey_spec_seq_drafting(j->q));
                dropped++;
            }
            if (ey_spec_seq_done(j->q)) {
                ey_gen_result r;
                ey_spec_stats st;
                TEST_CHECK(!ey_spec_seq_finish(j->q, &r, &st));
                bool same = r.n_ids == j->ref.n_ids &&
                            !memcmp(r.ids, j->ref.ids, (size_t)r.n_ids * sizeof *r.ids) &&
                            !strcmp(r.finish_reason, j->ref.finish_reason) &&
                            !strcmp(r.text, j->ref.text);
                TEST_CHECK_MSG(same, "job %d (%s, T=%.1f, prompt %d, max %d): %d vs %d tokens",
                               owner[k], st.method, j->gp.sampling.temperature, j->n,
                               j->gp.max_tokens, r.n_ids, j->ref.n_ids);
                ey_gen_result_free(&r);
                ey_spec_seq_free(j->q);
                j->q = NULL;
                j->finished = true;
                done++;
            }
        }
        step++;
    }
    TEST_CHECK_MSG(done == NJOB, "%d of %d jobs finished", done, NJOB);
    TEST_CHECK_MSG(max_in_batch >= 4, "batches too small to test anything (%d)", max_in_batch);
    TEST_CHECK_MSG(dropped >= 2, "only %d jobs dropped their drafter", dropped);
    TEST_CHECK(ey_kv_pool_free_rows(&c->kv) >= c->kv.n_rows);
    printf("%d jobs, %d steps, %ld rows, up to %d sequences per forward\n", NJOB, step,
           batched_rows, max_in_batch);
    for (int i = 0; i < NJOB; i++) ey_gen_result_free(&jobs[i].ref);
    free(jobs);
    ey_ctx_free(c);
    ey_ctx_free(ref_c);
    ey_eagle3_free(d);
    ey_model_free(m);
    ey_backend_destroy(be);
    tmp_cleanup();
    return test_result();
}
