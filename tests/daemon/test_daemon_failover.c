/* Scale-out (issue 5):
 * 1. one libeyrie client (one REQ socket) connected to two daemons spreads
 *    sequential requests over both (each daemon's requests_total{generate}
 *    > 0, their sum = the requests: nothing ran twice);
 * 2. failover: clients connected to both, one daemon SIGKILLed while it
 *    runs their requests: every request is still answered, by the survivor
 *    (REQ resends at once when the pipe closes), with the in-process
 *    reference answer; a streamed job resumes on the survivor and its
 *    concatenated text is still the reference;
 * 3. eyrie-broker (nn_device) fronting a pool of two daemons: a client
 *    through the broker gets correct answers from both; the broker exits 0
 *    on SIGTERM.
 *
 *   test_daemon_failover EYRIED EYRIE_BROKER MODEL_DIR */
#include <pthread.h>
#include <stdatomic.h>

#include "dref.h"
#include "dtest.h"
#include "kernels/ey_backend.h"

#define N_SPECS 24

static dr_spec g_spec[N_SPECS];
static dr_ref g_ref[N_SPECS];
static char g_urls[512];
static atomic_int g_ok, g_bad, g_sent;

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    atomic_fetch_add(&g_bad, 1);
}

static void check_answer(int si, int rc, eyc_client *c, const Eyrie__GenerateResult *res,
                         const char *id)
{
    const char *why;
    if (rc) bad("%s: %s", id, eyc_errmsg(c));
    else if (!dr_match(&g_ref[si], res, true, &why))
        bad("%s (spec %d): %s: '%s' vs '%s'", id, si, why, res->text, g_ref[si].text);
    else atomic_fetch_add(&g_ok, 1);
}

static int unary(eyc_client *c, int si, const char *id)
{
    dr_gen d;
    dr_gen_build(&d, &g_spec[si], true);
    Eyrie__Response *r = NULL;
    atomic_fetch_add(&g_sent, 1);
    int rc = eyc_generate(c, &d.g, id, 0, &r);
    check_answer(si, rc, c, rc ? NULL : r->result, id);
    eyc_response_free(r);
    dr_gen_free(&d);
    return rc;
}

/* ---- failover workers: each its own client on both daemons */

typedef struct fw {
    int t, n;
    bool stream;
} fw;

typedef struct sbuf {
    char *p;
    size_t n;
} sbuf;

static int on_text(void *ud, const char *t, size_t n)
{
    sbuf *b = ud;
    b->p = realloc(b->p, b->n + n + 1);
    memcpy(b->p + b->n, t, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static void *fail_worker(void *arg)
{
    fw *w = arg;
    /* a short resend interval (still above a job's run time): a daemon that
     * dies with the request is noticed at once anyway (its pipe closes) */
    eyc_options o = {.timeout_ms = 60000, .resend_ivl_ms = 3000, .reconnect_ivl_ms = 50,
                     .poll_wait_ms = 500, .lost_retries = 16};
    eyc_client *c = NULL;
    if (eyc_connect(g_urls, &o, &c)) {
        bad("connect %s: %s", g_urls, eyc_last_error());
        return NULL;
    }
    for (int k = 0; k < w->n; k++) {
        int si = (w->t * 5 + k) % N_SPECS;
        char id[48];
        snprintf(id, sizeof id, "fo-%d-%d", w->t, k);
        if (!w->stream) {
            unary(c, si, id);
            continue;
        }
        dr_gen d;
        dr_gen_build(&d, &g_spec[si], true);
        sbuf b = {calloc(1, 1), 0};
        Eyrie__Response *r = NULL;
        atomic_fetch_add(&g_sent, 1);
        int rc = eyc_generate_stream(c, &d.g, id, on_text, &b, &r);
        check_answer(si, rc, c, rc ? NULL : r->poll->result, id);
        if (!rc && strcmp(b.p, g_ref[si].text))
            bad("%s: streamed text '%s' != reference '%s'", id, b.p, g_ref[si].text);
        free(b.p);
        eyc_response_free(r);
        dr_gen_free(&d);
    }
    eyc_close(c);
    return NULL;
}

/* ---- a stream whose daemon is SIGKILLed after the first piece */

static dt_proc *g_victim;
static int g_pieces;

static int kill_on_first(void *ud, const char *t, size_t n)
{
    if (g_pieces++ == 0 && g_victim && g_victim->pid > 0) kill(g_victim->pid, SIGKILL);
    return on_text(ud, t, n);
}

/* Does the daemon at url hold job id? */
static bool holds(const char *url, const char *id)
{
    eyc_client *c = dt_client(url, 2000);
    Eyrie__Response *r = NULL;
    int rc = c ? eyc_poll(c, id, 0, 0, &r) : -1;
    eyc_response_free(r);
    eyc_close(c);
    return rc == 0;
}

static double gen_requests(const char *url)
{
    eyc_client *c = dt_client(url, 10000);
    double v = c ? dt_metric(c, "requests_total", "generate") : -1;
    eyc_close(c);
    return v;
}

static int running(const char *url)
{
    eyc_client *c = dt_client(url, 2000);
    Eyrie__Response *r;
    int n = -1;
    if (c && eyc_health(c, 2000, &r) == 0) {
        n = (int)r->health->running;
        eyc_response_free(r);
    }
    eyc_close(c);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s EYRIED EYRIE_BROKER MODEL_DIR\n", argv[0]);
        return 2;
    }
    dt_watchdog(240);
    const char *exe = argv[1], *broker = argv[2], *model = argv[3];
    const char *dir = dt_mkdir();
    double t0 = dt_now_ms();

    /* references: the load-test specs, made longer (the failover needs
     * requests that are still running when a daemon dies) */
    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_ctx *ctx = NULL;
    if (ey_backend_cpu_create(1, &be) || ey_model_load(model, be, &m) ||
        ey_ctx_create(m, 2048, 512, 64, &ctx)) {
        fprintf(stderr, "in-process model: %s\n", ey_err_detail());
        return 1;
    }
    for (int i = 0; i < N_SPECS; i++) {
        dr_make_spec(i, &g_spec[i]);
        g_spec[i].max_tokens = 150 + 10 * i;
        g_spec[i].ignore_eos = true;
        g_spec[i].n_stop = 0;
        if (!dr_reference(ctx, &g_spec[i], &g_ref[i])) return 1;
    }
    ey_ctx_free(ctx);
    ey_model_free(m);
    ey_backend_destroy(be);

    dt_proc a, b, c2, br;
    const char *extra[] = {"--max-running", "8", NULL};
    TEST_CHECK(dt_daemon_start(&a, exe, model, "a", extra));
    TEST_CHECK(dt_daemon_start(&b, exe, model, "b", extra));
    if (!dt_wait_health(&a, 30000) || !dt_wait_health(&b, 30000)) {
        dt_kill(&a);
        dt_kill(&b);
        TEST_CHECK_MSG(0, "the daemons did not come up");
        return test_result();
    }
    snprintf(g_urls, sizeof g_urls, "%s,%s", a.url, b.url);

    /* ---- 1. one REQ socket, two daemons: round robin */
    {
        eyc_options o = {.timeout_ms = 30000, .resend_ivl_ms = 30000};
        eyc_client *c = NULL;
        TEST_CHECK(eyc_connect(g_urls, &o, &c) == 0);
        /* let both pipes come up before counting on the round robin */
        dt_sleep_ms(200);
        enum { N = 16 };
        for (int k = 0; c && k < N; k++) {
            char id[32];
            snprintf(id, sizeof id, "rr-%d", k);
            unary(c, k % N_SPECS, id);
        }
        eyc_close(c);
        double na = gen_requests(a.url), nb = gen_requests(b.url);
        fprintf(stderr, "round robin: a served %.0f, b served %.0f\n", na, nb);
        TEST_CHECK_MSG(na > 0 && nb > 0, "both daemons serve: %.0f, %.0f", na, nb);
        TEST_CHECK_MSG(na + nb == N, "each request ran once: %.0f + %.0f", na, nb);
        TEST_CHECK(atomic_load(&g_bad) == 0);
    }

    /* ---- 2. SIGKILL a while it holds requests */
    {
        atomic_store(&g_ok, 0);
        atomic_store(&g_sent, 0);
        enum { NT = 6, PER = 6 };
        pthread_t th[NT];
        fw w[NT];
        for (int t = 0; t < NT; t++) {
            w[t] = (fw){t, PER, t == NT - 1};
            pthread_create(&th[t], NULL, fail_worker, &w[t]);
        }
        int run_a = 0;
        double until = dt_now_ms() + 20000;
        while (dt_now_ms() < until && (run_a = running(a.url)) < 2) dt_sleep_ms(5);
        fprintf(stderr, "failover: SIGKILL a with %d running\n", run_a);
        TEST_CHECK_MSG(run_a >= 2, "a never ran 2 jobs at once");
        kill(a.pid, SIGKILL);
        int st = dt_wait_exit(&a, 5000);
        TEST_CHECK(st == 128 + SIGKILL);
        for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
        fprintf(stderr, "failover: %d of %d answered correctly, %d bad\n", atomic_load(&g_ok),
                atomic_load(&g_sent), atomic_load(&g_bad));
        TEST_CHECK(atomic_load(&g_ok) == NT * PER);
        TEST_CHECK(atomic_load(&g_bad) == 0);
        TEST_CHECK(running(b.url) == 0);
    }

    /* ---- 3. a broker in front of b and a fresh daemon c */
    TEST_CHECK(dt_daemon_start(&c2, exe, model, "c", extra));
    TEST_CHECK(dt_wait_health(&c2, 30000));
    double b0 = gen_requests(b.url), c0 = gen_requests(c2.url);
    {
        char front[160];
        snprintf(front, sizeof front, "ipc://%s/front.sock", dir);
        char *bargv[] = {(char *)broker, "--front", front, "--back", b.url, "--back", c2.url,
                         NULL};
        memset(&br, 0, sizeof br);
        snprintf(br.url, sizeof br.url, "%s", front);
        TEST_CHECK(dt_spawn(&br, "broker", bargv));
        eyc_options o = {.timeout_ms = 30000, .resend_ivl_ms = 5000, .reconnect_ivl_ms = 20};
        eyc_client *c = NULL;
        TEST_CHECK(eyc_connect(front, &o, &c) == 0);
        /* the broker is up when Health answers through it */
        bool up = false;
        for (int k = 0; k < 100 && !up; k++) {
            Eyrie__Response *r;
            up = eyc_health(c, 300, &r) == 0;
            eyc_response_free(r);
            if (!up) dt_sleep_ms(50);
        }
        TEST_CHECK_MSG(up, "no Health through the broker");
        if (!up) dt_print_log(&br, 20);
        dt_sleep_ms(100); /* both back pipes */
        atomic_store(&g_bad, 0);
        enum { N = 10 };
        for (int k = 0; up && k < N; k++) {
            char id[32];
            snprintf(id, sizeof id, "br-%d", k);
            unary(c, (k * 7) % N_SPECS, id);
        }
        /* streaming through the broker too: Polls may reach the other daemon */
        dr_gen d;
        dr_gen_build(&d, &g_spec[3], true);
        sbuf sb = {calloc(1, 1), 0};
        Eyrie__Response *r = NULL;
        int rc = up ? eyc_generate_stream(c, &d.g, "br-stream", on_text, &sb, &r) : -1;
        TEST_CHECK_MSG(rc == 0 && !strcmp(sb.p, g_ref[3].text), "stream via broker: %d %s", rc,
                       eyc_errmsg(c));
        free(sb.p);
        eyc_response_free(r);
        dr_gen_free(&d);
        eyc_close(c);
        TEST_CHECK(atomic_load(&g_bad) == 0);
        double nb = gen_requests(b.url) - b0, nc = gen_requests(c2.url) - c0;
        fprintf(stderr, "broker: b served %.0f, c served %.0f\n", nb, nc);
        TEST_CHECK_MSG(nb > 0 && nc > 0, "the broker spreads over the pool: %.0f, %.0f", nb, nc);
        TEST_CHECK_MSG(nb + nc >= N + 1, "every request reached a daemon");
        kill(br.pid, SIGTERM);
        int st = dt_wait_exit(&br, 10000);
        TEST_CHECK_MSG(st == 0, "broker exit status %d", st);
        if (st) dt_print_log(&br, 20);
    }

    /* ---- 4. a stream resumed on the survivor: its daemon dies after the
     * first piece; libeyrie resubmits the same Generate (same id) to the
     * other daemon and polls on from the bytes it holds */
    {
        char urls[400];
        snprintf(urls, sizeof urls, "%s,%s", b.url, c2.url);
        eyc_options o = {.timeout_ms = 30000, .resend_ivl_ms = 3000, .reconnect_ivl_ms = 50,
                         .poll_wait_ms = 500, .lost_retries = 16};
        eyc_client *c = NULL;
        TEST_CHECK(eyc_connect(urls, &o, &c) == 0);
        dt_sleep_ms(100);
        const int si = N_SPECS - 1; /* the longest */
        dr_gen d;
        dr_gen_build(&d, &g_spec[si], true);
        char *job = NULL;
        int rc = c ? eyc_submit(c, &d.g, "resume-1", &job) : -1;
        TEST_CHECK_MSG(rc == 0, "submit resume-1: %d", rc);
        dt_proc *holder = rc ? NULL : holds(b.url, "resume-1") ? &b
                                     : holds(c2.url, "resume-1") ? &c2 : NULL;
        TEST_CHECK_MSG(holder != NULL, "neither daemon holds resume-1");
        if (holder) {
            dt_proc *other = holder == &b ? &c2 : &b;
            double o0 = gen_requests(other->url);
            g_victim = holder;
            sbuf sb = {calloc(1, 1), 0};
            Eyrie__Response *r = NULL;
            rc = eyc_stream(c, job, &d.g, "resume-1", kill_on_first, &sb, &r);
            TEST_CHECK_MSG(rc == 0, "resumed stream: %d %s", rc, eyc_errmsg(c));
            TEST_CHECK_MSG(!rc && !strcmp(sb.p, g_ref[si].text) &&
                               !strcmp(r->poll->result->text, g_ref[si].text),
                           "resumed stream text '%s' != reference '%s'", sb.p, g_ref[si].text);
            TEST_CHECK(dt_wait_exit(holder, 5000) == 128 + SIGKILL);
            TEST_CHECK_MSG(gen_requests(other->url) - o0 == 1, "the survivor ran it once");
            fprintf(stderr, "resume: %s killed after the first of %d pieces; %s finished it\n",
                    holder->name, g_pieces, other->name);
            free(sb.p);
            eyc_response_free(r);
        }
        free(job);
        dr_gen_free(&d);
        eyc_close(c);
    }
    if (b.pid > 0) TEST_CHECK_MSG(dt_stop(&b, 20000) == 0, "b exit status");
    if (c2.pid > 0) TEST_CHECK_MSG(dt_stop(&c2, 20000) == 0, "c exit status");
    for (int i = 0; i < N_SPECS; i++) dr_ref_free(&g_ref[i]);
    fprintf(stderr, "total %.0f ms\n", dt_now_ms() - t0);
    if (!g_test_failures) dt_rmdir();
    else fprintf(stderr, "logs kept in %s\n", dir);
    return test_result();
}
