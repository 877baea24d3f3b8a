/* SIGTERM during load (issue 5).
 *
 * 1. cut: --grace-s 1, 16 long unary and 8 long streamed jobs (more than fit:
 *    some run, some queue), plus 4 clients that keep sending short requests.
 *    SIGTERM while they run: every accepted request is answered exactly once
 *    with a result or ERR_SHUTTING_DOWN (none lost: no client times out), new
 *    requests during the drain get ERR_SHUTTING_DOWN, and the daemon exits 0.
 * 2. graceful: --grace-s 60, 8 jobs running at SIGTERM all finish with full
 *    results; Health says "draining" and a new Generate gets
 *    ERR_SHUTTING_DOWN meanwhile; exit 0.
 * Under the sanitizer build a leak or UB report makes the exit status
 * non-zero (ASAN_OPTIONS/UBSAN_OPTIONS pass through to the daemon).
 *
 *   test_daemon_signal EYRIED MODEL_DIR */
#include <pthread.h>
#include <stdatomic.h>

#include "dtest.h"

#define E(x) EYRIE__ERROR_CODE__ERR_##x

static const char *g_url;
static atomic_int g_results, g_shutdown, g_other, g_sent;
static atomic_bool g_stop_loopers;

static void long_gen(Eyrie__Generate *g, Eyrie__Sampling *s, int max_tokens)
{
    dt_long_gen(g, s, "The history of the world, in a great many words:", max_tokens);
}

static void count(int rc, const char *what, eyc_client *c)
{
    if (rc == 0) atomic_fetch_add(&g_results, 1);
    else if (rc == E(SHUTTING_DOWN)) atomic_fetch_add(&g_shutdown, 1);
    else {
        atomic_fetch_add(&g_other, 1);
        fprintf(stderr, "%s: unexpected answer %d: %s\n", what, rc, eyc_errmsg(c));
    }
}

typedef struct job {
    int i, max_tokens;
    bool stream;
    int rc;
    int finish;        /* of a result */
    uint32_t tokens;   /* completion tokens of a result */
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    /* no resume: a lost job must show as lost, not be run again */
    eyc_options o = {.timeout_ms = 20000, .resend_ivl_ms = 60000, .no_resume = true};
    eyc_client *c = NULL;
    if (eyc_connect(g_url, &o, &c)) {
        j->rc = EYC_ERR_TRANSPORT;
        count(j->rc, "connect", NULL);
        return NULL;
    }
    Eyrie__Generate g;
    Eyrie__Sampling s;
    long_gen(&g, &s, j->max_tokens);
    char id[32];
    snprintf(id, sizeof id, "sig-%d", j->i);
    Eyrie__Response *r = NULL;
    atomic_fetch_add(&g_sent, 1);
    if (j->stream) {
        j->rc = eyc_generate_stream(c, &g, id, NULL, NULL, &r);
        if (!j->rc) {
            j->finish = r->poll->result->finish_reason;
            j->tokens = r->poll->result->usage ? r->poll->result->usage->completion_tokens : 0;
        }
    } else {
        j->rc = eyc_generate(c, &g, id, 0, &r);
        if (!j->rc) {
            j->finish = r->result->finish_reason;
            j->tokens = r->result->usage ? r->result->usage->completion_tokens : 0;
        }
    }
    eyc_response_free(r);
    count(j->rc, id, c);
    eyc_close(c);
    return NULL;
}

/* short requests until the daemon says it shuts down */
static void *looper(void *arg)
{
    int t = (int)(intptr_t)arg;
    eyc_client *c = dt_client(g_url, 20000);
    Eyrie__Generate g;
    Eyrie__Sampling s;
    long_gen(&g, &s, 4);
    for (int k = 0; !atomic_load(&g_stop_loopers); k++) {
        char id[32];
        snprintf(id, sizeof id, "loop-%d-%d", t, k);
        Eyrie__Response *r = NULL;
        atomic_fetch_add(&g_sent, 1);
        int rc = eyc_generate(c, &g, id, 0, &r);
        eyc_response_free(r);
        count(rc, id, c);
        if (rc) break; /* ERR_SHUTTING_DOWN (or a failure, counted) */
        dt_sleep_ms(2);
    }
    eyc_close(c);
    return NULL;
}

static bool wait_health(eyc_client *c, int min_running, int timeout_ms)
{
    double until = dt_now_ms() + timeout_ms;
    while (dt_now_ms() < until) {
        Eyrie__Response *r;
        if (eyc_health(c, 2000, &r) == 0) {
            int run = (int)r->health->running;
            eyc_response_free(r);
            if (run >= min_running) return true;
        }
        dt_sleep_ms(5);
    }
    return false;
}

static void reset(void)
{
    atomic_store(&g_results, 0);
    atomic_store(&g_shutdown, 0);
    atomic_store(&g_other, 0);
    atomic_store(&g_sent, 0);
    atomic_store(&g_stop_loopers, false);
}

static void variant_cut(const char *exe, const char *model)
{
    enum { N_UNARY = 16, N_STREAM = 8, N_LOOP = 4 };
    reset();
    dt_proc d;
    /* 2048 rows each at most: 8 fit the 16384-row cache, the rest queue */
    const char *extra[] = {"--grace-s", "1", "--max-running", "16", "--seq-ctx", "2048",
                           NULL};
    TEST_CHECK(dt_daemon_start(&d, exe, model, "cut", extra));
    if (!dt_wait_health(&d, 30000)) {
        TEST_CHECK_MSG(0, "cut: the daemon did not come up");
        dt_kill(&d);
        return;
    }
    g_url = d.url;
    eyc_client *c = dt_client(d.url, 10000);
    pthread_t th[N_UNARY + N_STREAM + N_LOOP];
    job jobs[N_UNARY + N_STREAM];
    int n = 0;
    /* the loopers first: they get results until the long jobs fill the queue */
    for (int i = 0; i < N_LOOP; i++)
        pthread_create(&th[n++], NULL, looper, (void *)(intptr_t)i);
    for (int k = 0; k < 2000 && atomic_load(&g_results) < N_LOOP; k++) dt_sleep_ms(5);
    for (int i = 0; i < N_UNARY + N_STREAM; i++) {
        jobs[i] = (job){.i = i, .max_tokens = 2000, .stream = i >= N_UNARY};
        pthread_create(&th[n++], NULL, run_job, &jobs[i]);
    }
    bool busy = wait_health(c, 8, 20000);
    TEST_CHECK_MSG(busy, "cut: 8 jobs never ran together");
    dt_sleep_ms(200);
    Eyrie__Response *r;
    uint32_t run = 0, queued = 0;
    if (eyc_health(c, 2000, &r) == 0) {
        run = r->health->running;
        queued = r->health->queued;
        eyc_response_free(r);
    }
    fprintf(stderr, "cut: SIGTERM with %u running, %u queued\n", run, queued);
    TEST_CHECK(queued > 0);
    double t0 = dt_now_ms();
    kill(d.pid, SIGTERM);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double t_answers = dt_now_ms() - t0;
    int st = dt_wait_exit(&d, 20000);
    fprintf(stderr, "cut: all answered %.0f ms after SIGTERM, exit after %.0f ms: "
            "%d results, %d shutting_down, %d other of %d sent\n", t_answers, dt_now_ms() - t0,
            atomic_load(&g_results), atomic_load(&g_shutdown), atomic_load(&g_other),
            atomic_load(&g_sent));
    TEST_CHECK_MSG(st == 0, "cut: exit status %d", st);
    if (st) dt_print_log(&d, 60);
    TEST_CHECK(atomic_load(&g_other) == 0);
    TEST_CHECK(atomic_load(&g_results) + atomic_load(&g_shutdown) == atomic_load(&g_sent));
    /* the long jobs were cut: every one ERR_SHUTTING_DOWN (running or queued) */
    int cut = 0;
    for (int i = 0; i < N_UNARY + N_STREAM; i++) {
        cut += jobs[i].rc == E(SHUTTING_DOWN);
        if (jobs[i].rc == 0)
            TEST_CHECK_MSG(jobs[i].tokens == 2000, "job %d: %u tokens", i, jobs[i].tokens);
    }
    TEST_CHECK_MSG(cut > 0, "cut: no long job was cut by the grace period");
    TEST_CHECK(atomic_load(&g_results) >= N_LOOP);
    /* each looper ended with ERR_SHUTTING_DOWN */
    TEST_CHECK(atomic_load(&g_shutdown) >= N_LOOP);
    eyc_close(c);
}

static void variant_graceful(const char *exe, const char *model)
{
    enum { N = 8, TOKENS = 600 };
    reset();
    dt_proc d;
    const char *extra[] = {"--grace-s", "60", "--max-running", "8", NULL};
    TEST_CHECK(dt_daemon_start(&d, exe, model, "graceful", extra));
    if (!dt_wait_health(&d, 30000)) {
        TEST_CHECK_MSG(0, "graceful: the daemon did not come up");
        dt_kill(&d);
        return;
    }
    g_url = d.url;
    eyc_client *c = dt_client(d.url, 10000);
    pthread_t th[N];
    job jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){.i = 100 + i, .max_tokens = TOKENS, .stream = i % 2 == 1};
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    TEST_CHECK_MSG(wait_health(c, N, 20000), "graceful: %d jobs never ran together", N);
    double t0 = dt_now_ms();
    kill(d.pid, SIGTERM);
    /* while it drains: health says so, new jobs are refused */
    bool drained_seen = false;
    for (int k = 0; k < 200 && !drained_seen; k++) {
        Eyrie__Response *r;
        if (eyc_health(c, 2000, &r) == 0) {
            drained_seen = !strcmp(r->health->status, "draining");
            if (drained_seen) TEST_CHECK(r->health->running > 0);
            eyc_response_free(r);
        }
        if (!drained_seen) dt_sleep_ms(2);
    }
    TEST_CHECK_MSG(drained_seen, "graceful: Health never said draining");
    Eyrie__Generate g;
    Eyrie__Sampling s;
    long_gen(&g, &s, 4);
    Eyrie__Response *r = NULL;
    int rc = eyc_generate(c, &g, "late-1", 5000, &r);
    eyc_response_free(r);
    TEST_CHECK_MSG(rc == E(SHUTTING_DOWN), "graceful: new job while draining: %d", rc);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    int st = dt_wait_exit(&d, 30000);
    fprintf(stderr, "graceful: exit %.0f ms after SIGTERM: %d results, %d shutting_down, "
            "%d other\n", dt_now_ms() - t0, atomic_load(&g_results), atomic_load(&g_shutdown),
            atomic_load(&g_other));
    TEST_CHECK_MSG(st == 0, "graceful: exit status %d", st);
    if (st) dt_print_log(&d, 60);
    for (int i = 0; i < N; i++)
        TEST_CHECK_MSG(jobs[i].rc == 0 && jobs[i].tokens == TOKENS &&
                           jobs[i].finish == EYRIE__FINISH_REASON__FINISH_LENGTH,
                       "graceful job %d: rc %d, %u tokens, finish %d", i, jobs[i].rc,
                       jobs[i].tokens, jobs[i].finish);
    eyc_close(c);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s EYRIED MODEL_DIR\n", argv[0]);
        return 2;
    }
    dt_watchdog(240);
    dt_mkdir();
    double t0 = dt_now_ms();
    variant_cut(argv[1], argv[2]);
    variant_graceful(argv[1], argv[2]);
    fprintf(stderr, "total %.0f ms\n", dt_now_ms() - t0);
    if (!g_test_failures) dt_rmdir();
    else fprintf(stderr, "logs kept in %s\n", g_dt_dir);
    return test_result();
}
