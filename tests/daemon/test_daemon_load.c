/* Daemon under concurrent load (issue 5): the real eyried on ipc:// in a
 * temporary directory, 32 client threads x 20 requests with mixed lengths and
 * options (chat with/without system prompt, multi-turn, split parts;
 * complete; greedy and seeded sampling; top-k, repeat penalty, stop strings,
 * ignore_eos; max_tokens 1..40), some streamed with Poll. Every request must
 * be answered exactly once, with the text, token ids and finish reason of the
 * in-process reference (ey_generate on the same prompt, built as the daemon
 * builds it), so no sequence is mixed up with another; a streamed answer's
 * Poll pieces must concatenate to the same text. Then a second daemon with a
 * random EAGLE-3 drafter (--spec-method tree; requests also ask chain and
 * none) must give the plain greedy references too (lossless), with
 * spec_decode_num_drafts > 0 in Stats. A third daemon checks the back-off
 * from a useless drafter (jobs stop drafting, then drafting is rationed).
 *
 *   test_daemon_load EYRIED MODEL_DIR */
#include <pthread.h>
#include <stdatomic.h>

#include "core/eagle3.h"
#include "dref.h"
#include "dtest.h"
#include "kernels/ey_backend.h"

#define N_THREADS 32
#define N_PER_THREAD 20
#define N_SPECS 80

static const char *g_model;
static dr_spec g_spec[N_SPECS];
static dr_ref g_ref[N_SPECS];

static pthread_mutex_t g_err_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_errors, g_err_printed;
static atomic_int g_answered, g_streamed, g_spec_calls;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
    pthread_mutex_lock(&g_err_mu);
    g_errors++;
    if (g_err_printed++ < 30) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&g_err_mu);
}

/* Stream one job with explicit Polls; on success *text is the concatenation
 * and *res the final response (poll->result). */
static int stream_one(eyc_client *c, const Eyrie__Generate *g, const char *id, char **text,
                      Eyrie__Response **res)
{
    *text = NULL;
    *res = NULL;
    char *job = NULL;
    int rc = eyc_submit(c, g, id, &job);
    if (rc) return rc;
    size_t len = 0, cap = 64;
    char *buf = malloc(cap);
    buf[0] = 0;
    uint64_t after = 0;
    for (int polls = 0; polls < 10000; polls++) {
        Eyrie__Response *r;
        rc = eyc_poll(c, job, after, 2000, &r);
        if (rc) break;
        Eyrie__PollResult *p = r->poll;
        if (p->has_text && p->text.len) {
            if (len + p->text.len + 1 > cap) {
                while (len + p->text.len + 1 > cap) cap *= 2;
                buf = realloc(buf, cap);
            }
            memcpy(buf + len, p->text.data, p->text.len);
            len += p->text.len;
            buf[len] = 0;
        }
        if (!p->has_next || p->next != after + (p->has_text ? p->text.len : 0)) {
            eyc_response_free(r);
            rc = EYC_ERR_BAD_RESPONSE;
            break;
        }
        after = p->next;
        if (p->done) {
            *res = r;
            break;
        }
        eyc_response_free(r);
    }
    free(job);
    if (!*res && !rc) rc = EYC_ERR_TIMEOUT;
    if (rc) {
        free(buf);
        return rc;
    }
    *text = buf;
    return EYC_OK;
}

typedef struct worker {
    int t;
    const char *url;
    int n;              /* requests */
    bool drafter;       /* the speculative daemon: greedy only, methods mixed */
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    eyc_client *c = dt_client(w->url, 120000);
    if (!c) {
        report("thread %d: no client", w->t);
        return NULL;
    }
    for (int k = 0; k < w->n; k++) {
        int si = (w->t * 7 + k * 3) % N_SPECS;
        if (w->drafter) /* greedy specs only (i % 3 != 2) */
            while (si % 3 == 2) si = (si + 1) % N_SPECS;
        dr_gen d;
        dr_gen_build(&d, &g_spec[si], true);
        Eyrie__Speculative sq = EYRIE__SPECULATIVE__INIT;
        if (w->drafter) {
            static const Eyrie__SpecMethod meth[] = {
                EYRIE__SPEC_METHOD__SPEC_DEFAULT, EYRIE__SPEC_METHOD__SPEC_CHAIN,
                EYRIE__SPEC_METHOD__SPEC_TREE, EYRIE__SPEC_METHOD__SPEC_NONE};
            sq.has_method = true;
            sq.method = meth[(w->t + k) % 4];
            d.g.spec = &sq;
        }
        char id[64];
        snprintf(id, sizeof id, "load-%s-%d-%d", w->drafter ? "d" : "p", w->t, k);
        bool stream = (w->t + k) % 5 == 4;
        const char *why;
        if (stream) {
            char *text;
            Eyrie__Response *r;
            int rc = stream_one(c, &d.g, id, &text, &r);
            if (rc) {
                report("%s (spec %d, stream): %s", id, si, eyc_errmsg(c));
            } else {
                atomic_fetch_add(&g_streamed, 1);
                atomic_fetch_add(&g_answered, 1);
                const Eyrie__GenerateResult *res = r->poll->result;
                if (strcmp(text, res->text ? res->text : ""))
                    report("%s: stream concatenation '%s' != result text '%s'", id, text,
                           res->text);
                if (!dr_match(&g_ref[si], res, true, &why))
                    report("%s (spec %d, stream): %s: got '%s', want '%s'", id, si, why,
                           res->text, g_ref[si].text);
                free(text);
                eyc_response_free(r);
            }
        } else {
            Eyrie__Response *r;
            int rc = eyc_generate(c, &d.g, id, 0, &r);
            if (rc) {
                report("%s (spec %d): %s", id, si, eyc_errmsg(c));
            } else {
                atomic_fetch_add(&g_answered, 1);
                if (strcmp(r->id, id)) report("%s: answer carries id %s", id, r->id);
                if (!dr_match(&g_ref[si], r->result, true, &why))
                    report("%s (spec %d, t=%.1f, max %d): %s: got '%s', want '%s'", id, si,
                           g_spec[si].temperature, g_spec[si].max_tokens, why, r->result->text,
                           g_ref[si].text);
                if (w->drafter && d.g.spec->method != EYRIE__SPEC_METHOD__SPEC_NONE &&
                    r->result->spec)
                    atomic_fetch_add(&g_spec_calls, 1);
                eyc_response_free(r);
            }
        }
        dr_gen_free(&d);
    }
    eyc_close(c);
    return NULL;
}

static bool run_workers(const char *url, int n_threads, int n_per, bool drafter)
{
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int t = 0; t < n_threads; t++) {
        w[t] = (worker){t, url, n_per, drafter};
        if (pthread_create(&th[t], NULL, work, &w[t])) {
            fprintf(stderr, "pthread_create failed\n");
            return false;
        }
    }
    for (int t = 0; t < n_threads; t++) pthread_join(th[t], NULL);
    return true;
}

static double sum_finished(eyc_client *c)
{
    double s = 0;
    static const char *reasons[] = {"stop", "length", "cancelled", "deadline"};
    for (int i = 0; i < 4; i++) {
        double v = dt_metric(c, "jobs_finished_total", reasons[i]);
        if (v > 0) s += v;
    }
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s EYRIED MODEL_DIR\n", argv[0]);
        return 2;
    }
    dt_watchdog(400);
    const char *exe = argv[1];
    g_model = argv[2];
    const char *dir = dt_mkdir();
    double t0 = dt_now_ms();

    /* the references, in-process */
    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_ctx *ctx = NULL;
    if (ey_backend_cpu_create(1, &be) || ey_model_load(g_model, be, &m) ||
        ey_ctx_create(m, 2048, 512, 64, &ctx)) {
        fprintf(stderr, "in-process model: %s\n", ey_err_detail());
        dt_rmdir();
        return 1;
    }
    int distinct = 0;
    for (int i = 0; i < N_SPECS; i++) {
        dr_make_spec(i, &g_spec[i]);
        if (!dr_reference(ctx, &g_spec[i], &g_ref[i])) {
            dt_rmdir();
            return 1;
        }
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(g_ref[j].text, g_ref[i].text);
        distinct += !seen;
    }
    /* outputs vary across prompts, so a mixed-up answer is noticed */
    TEST_CHECK_MSG(distinct >= N_SPECS * 3 / 4, "%d distinct reference texts of %d", distinct,
                   N_SPECS);
    char dpath[200];
    snprintf(dpath, sizeof dpath, "%s/drafter", dir);
    ey_eagle3_init_opts io = {.layout = EY_E3_LAYOUT_EAGLE, .dtype = EY_BF16, .seed = 7};
    TEST_CHECK_MSG(ey_eagle3_write_random(m, dpath, &io) == EY_OK, "drafter: %s",
                   ey_err_detail());
    fprintf(stderr, "references: %.0f ms\n", dt_now_ms() - t0);

    /* ---- 1. plain daemon, 32 x 20 */
    dt_proc d;
    const char *extra[] = {"--max-running", "16", NULL};
    TEST_CHECK(dt_daemon_start(&d, exe, g_model, "plain", extra));
    bool up = dt_wait_health(&d, 30000);
    TEST_CHECK(up);
    if (up) {
        double t1 = dt_now_ms();
        run_workers(d.url, N_THREADS, N_PER_THREAD, false);
        fprintf(stderr, "plain daemon: %d answers (%d streamed) in %.0f ms\n",
                atomic_load(&g_answered), atomic_load(&g_streamed), dt_now_ms() - t1);
        TEST_CHECK_MSG(g_errors == 0, "%d bad answers", g_errors);
        TEST_CHECK(atomic_load(&g_answered) == N_THREADS * N_PER_THREAD);
        TEST_CHECK(atomic_load(&g_streamed) > 0);
        eyc_client *c = dt_client(d.url, 10000);
        /* exactly once: one Generate received and one job finished per request */
        double gen = dt_metric(c, "requests_total", "generate");
        double fin = sum_finished(c);
        TEST_CHECK_MSG(gen == N_THREADS * N_PER_THREAD, "requests_total{generate} = %.0f", gen);
        TEST_CHECK_MSG(fin == N_THREADS * N_PER_THREAD, "jobs finished = %.0f", fin);
        double steps = dt_metric(c, "engine_steps_total", NULL);
        double gtok = dt_metric(c, "generation_tokens_total", NULL);
        /* continuous batching: far fewer forwards than tokens */
        fprintf(stderr, "plain daemon: %.0f tokens in %.0f batched forwards\n", gtok, steps);
        TEST_CHECK_MSG(steps > 0 && steps < gtok, "%.0f forwards for %.0f tokens", steps, gtok);
        TEST_CHECK(dt_metric(c, "running_sequences", NULL) == 0);
        TEST_CHECK(dt_metric(c, "queue_depth", NULL) == 0);
        eyc_close(c);
    }
    TEST_CHECK_MSG(dt_stop(&d, 20000) == 0, "plain daemon exit status");

    /* ---- 2. with a drafter: lossless against the plain references */
    g_errors = 0;
    atomic_store(&g_answered, 0);
    atomic_store(&g_streamed, 0);
    dt_proc s;
    const char *extra2[] = {"--drafter", dpath, "--spec-method", "tree", "--max-running", "8",
                            NULL};
    TEST_CHECK(dt_daemon_start(&s, exe, g_model, "spec", extra2));
    up = dt_wait_health(&s, 30000);
    TEST_CHECK(up);
    if (up) {
        double t1 = dt_now_ms();
        run_workers(s.url, 4, 8, true);
        fprintf(stderr, "drafter daemon: %d answers (%d streamed, %d with spec stats) in %.0f ms\n",
                atomic_load(&g_answered), atomic_load(&g_streamed),
                atomic_load(&g_spec_calls), dt_now_ms() - t1);
        TEST_CHECK_MSG(g_errors == 0, "%d bad answers", g_errors);
        TEST_CHECK(atomic_load(&g_answered) == 4 * 8);
        TEST_CHECK(atomic_load(&g_spec_calls) > 0);
        eyc_client *c = dt_client(s.url, 10000);
        double drafts = dt_metric(c, "spec_decode_num_drafts", NULL);
        TEST_CHECK_MSG(drafts > 0, "spec_decode_num_drafts = %.0f", drafts);
        TEST_CHECK(dt_metric(c, "requests_total", "generate") == 4 * 8);
        Eyrie__Response *r;
        if (eyc_list_models(c, 5000, &r) == EYC_OK) {
            TEST_CHECK(r->models->n_models == 1 && r->models->models[0]->drafter &&
                       strstr(r->models->models[0]->drafter, "drafter"));
            eyc_response_free(r);
        } else {
            TEST_CHECK_MSG(0, "list models: %s", eyc_errmsg(c));
        }
        eyc_close(c);
    }
    TEST_CHECK_MSG(dt_stop(&s, 20000) == 0, "drafter daemon exit status");

    /* ---- 3. the back-off from a useless (random) drafter: jobs stop
     * drafting after their probe rounds, then drafting is rationed to one
     * job in four; answers stay the plain references */
    g_errors = 0;
    atomic_store(&g_answered, 0);
    atomic_store(&g_streamed, 0);
    dt_proc b;
    const char *extra3[] = {"--drafter", dpath, "--spec-method", "chain", "--spec-k", "3",
                            "--spec-probe-rounds", "2", "--spec-probe-jobs", "2",
                            "--spec-probe-every", "4", NULL};
    TEST_CHECK(dt_daemon_start(&b, exe, g_model, "backoff", extra3));
    up = dt_wait_health(&b, 30000);
    TEST_CHECK(up);
    if (up) {
        run_workers(b.url, 1, 24, true);
        TEST_CHECK_MSG(g_errors == 0, "%d bad answers", g_errors);
        TEST_CHECK(atomic_load(&g_answered) == 24);
        eyc_client *c = dt_client(b.url, 10000);
        double stopped = dt_metric(c, "spec_decode_jobs_stopped_drafting", NULL);
        double skipped = dt_metric(c, "spec_decode_jobs_not_drafting", NULL);
        fprintf(stderr, "back-off daemon: %.0f jobs stopped drafting, %.0f did not draft\n",
                stopped, skipped);
        TEST_CHECK_MSG(stopped >= 2, "spec_decode_jobs_stopped_drafting = %.0f", stopped);
        TEST_CHECK_MSG(skipped >= 1, "spec_decode_jobs_not_drafting = %.0f", skipped);
        eyc_close(c);
    }
    TEST_CHECK_MSG(dt_stop(&b, 20000) == 0, "back-off daemon exit status");

    for (int i = 0; i < N_SPECS; i++) dr_ref_free(&g_ref[i]);
    ey_ctx_free(ctx);
    ey_model_free(m);
    ey_backend_destroy(be);
    if (!g_test_failures) dt_rmdir();
    else fprintf(stderr, "logs kept in %s\n", dir);
    fprintf(stderr, "total %.0f ms\n", dt_now_ms() - t0);
    return test_result();
}
