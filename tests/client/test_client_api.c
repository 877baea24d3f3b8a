/* libeyrie against fake daemons (raw REP sockets in threads, ipc in a 0700
 * temp folder): unary and streamed generation, errors, timeouts, limits, and
 * the scale-out behaviours that come from nanomsg itself: one REQ socket
 * connected to two daemons spreads requests over both and survives one of
 * them going away (immediate resend), and a stream whose daemon vanished is
 * resumed on the other one. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "eyrie_client.h"
#include "test.h"

typedef struct fake {
    char url[128];
    int sock;
    pthread_t th;
    const char *name;
    int served;           /* answers sent */
    int die_on_generate;  /* close without answering the first unary Generate */
    int silent_models;    /* never answer ListModels */
    int busy_stats;       /* answer Stats with ERR_BUSY */
    const char *job_text; /* streaming: the text of every job */
    size_t chunk;         /* bytes per Poll answer */
    int die_after_polls;  /* vanish after this many Poll answers (0: never) */
    int polls;
    int *deaths;          /* shared: only the first of a pair may vanish */
    char jobs[8][80];     /* ids of jobs it holds */
    int n_jobs;
    volatile int stop;
} fake;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static Eyrie__GenerateResult *canned_result(const char *text)
{
    static Eyrie__GenerateResult r;
    static Eyrie__Usage u;
    static int32_t ids[3] = {5, 6, 2};
    eyrie__generate_result__init(&r);
    eyrie__usage__init(&u);
    r.text = (char *)text;
    r.n_token_ids = 3;
    r.token_ids = ids;
    r.has_finish_reason = true;
    r.finish_reason = EYRIE__FINISH_REASON__FINISH_STOP;
    u.prompt_tokens = 4;
    u.completion_tokens = 3;
    r.usage = &u;
    return &r;
}

static bool holds(fake *f, const char *job)
{
    for (int i = 0; i < f->n_jobs; i++)
        if (!strcmp(f->jobs[i], job)) return true;
    return false;
}

/* returns false to drop the request (no answer) */
static bool handle(fake *f, const Eyrie__Request *q, Eyrie__Response *r, bool *die)
{
    static Eyrie__Error err;
    static Eyrie__HealthResult h;
    static Eyrie__StatsResult st;
    static Eyrie__Accepted acc;
    static Eyrie__PollResult pr;
    static char jobbuf[80];
    eyrie__error__init(&err);
    r->version = 1;
    r->id = q->id;
    switch (q->body_case) {
    case EYRIE__REQUEST__BODY_HEALTH:
        eyrie__health_result__init(&h);
        h.status = (char *)f->name;
        h.has_running = true;
        r->body_case = EYRIE__RESPONSE__BODY_HEALTH;
        r->health = &h;
        return true;
    case EYRIE__REQUEST__BODY_STATS:
        if (f->busy_stats) {
            err.code = EYRIE__ERROR_CODE__ERR_BUSY;
            err.message = "queue full";
            r->error = &err;
            return true;
        }
        eyrie__stats_result__init(&st);
        r->body_case = EYRIE__RESPONSE__BODY_STATS;
        r->stats = &st;
        return true;
    case EYRIE__REQUEST__BODY_LIST_MODELS: return !f->silent_models;
    case EYRIE__REQUEST__BODY_GENERATE:
        if (q->generate->stream) {
            snprintf(jobbuf, sizeof jobbuf, "%s-%s", f->name, q->id);
            if (f->n_jobs < 8) snprintf(f->jobs[f->n_jobs++], 80, "%s", jobbuf);
            eyrie__accepted__init(&acc);
            acc.job_id = jobbuf;
            r->body_case = EYRIE__RESPONSE__BODY_ACCEPTED;
            r->accepted = &acc;
            return true;
        }
        if (f->die_on_generate) {
            *die = true;
            return false;
        }
        if (!q->generate->return_tokens || q->version != 1) {
            err.code = EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT;
            r->error = &err;
            return true;
        }
        r->body_case = EYRIE__RESPONSE__BODY_RESULT;
        r->result = canned_result(f->name);
        return true;
    case EYRIE__REQUEST__BODY_POLL: {
        const Eyrie__Poll *p = q->poll;
        if (!holds(f, p->job_id)) {
            err.code = EYRIE__ERROR_CODE__ERR_NOT_FOUND;
            err.message = "no such job";
            r->error = &err;
            return true;
        }
        size_t len = strlen(f->job_text), a = p->after < len ? p->after : len;
        size_t n = len - a < f->chunk ? len - a : f->chunk;
        eyrie__poll_result__init(&pr);
        pr.has_text = true;
        pr.text.data = (uint8_t *)f->job_text + a;
        pr.text.len = n;
        pr.has_next = true;
        pr.next = a + n;
        pr.has_done = true;
        pr.done = a + n == len;
        if (pr.done) pr.result = canned_result(f->job_text);
        r->body_case = EYRIE__RESPONSE__BODY_POLL;
        r->poll = &pr;
        if (f->die_after_polls && ++f->polls >= f->die_after_polls && !*f->deaths) {
            *f->deaths = 1;
            *die = true;
        }
        return true;
    }
    default: return false;
    }
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    while (!f->stop) {
        void *body = NULL, *ctl = NULL;
        struct nn_iovec iov = {&body, NN_MSG};
        struct nn_msghdr hdr = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                                .msg_controllen = NN_MSG};
        int n = nn_recvmsg(f->sock, &hdr, 0);
        if (n < 0) continue; /* timeout: check stop */
        Eyrie__Request *q = eyrie__request__unpack(NULL, (size_t)n, body);
        nn_freemsg(body);
        Eyrie__Response r = EYRIE__RESPONSE__INIT;
        bool die = false, answer = q && handle(f, q, &r, &die);
        if (answer) {
            size_t len = eyrie__response__get_packed_size(&r);
            void *out = nn_allocmsg(len ? len : 1, 0);
            eyrie__response__pack(&r, out);
            struct nn_iovec oiov = {&out, NN_MSG};
            struct nn_msghdr oh = {.msg_iov = &oiov, .msg_iovlen = 1, .msg_control = &ctl,
                                   .msg_controllen = NN_MSG};
            if (nn_sendmsg(f->sock, &oh, 0) < 0) nn_freemsg(out);
            f->served++;
        } else {
            nn_freemsg(ctl);
        }
        if (q) eyrie__request__free_unpacked(q, NULL);
        if (die) {
            usleep(20000); /* let the last answer leave */
            break;
        }
    }
    nn_close(f->sock);
    f->sock = -1;
    return NULL;
}

static char g_dir[64];

static void fake_start(fake *f, const char *name)
{
    f->name = name;
    snprintf(f->url, sizeof f->url, "ipc://%s/%s.sock", g_dir, name);
    f->sock = nn_socket(AF_SP_RAW, NN_REP);
    int t = 50, mx = 1 << 20;
    nn_setsockopt(f->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &t, sizeof t);
    nn_setsockopt(f->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &mx, sizeof mx);
    if (nn_bind(f->sock, f->url) < 0) {
        fprintf(stderr, "bind %s: %s\n", f->url, nn_strerror(nn_errno()));
        exit(1);
    }
    pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(fake *f)
{
    f->stop = 1;
    pthread_join(f->th, NULL);
}

static int collect(void *ud, const char *t, size_t n)
{
    strncat(ud, t, n);
    return 0;
}

static void basics(void)
{
    fake a = {.job_text = "Hello, stream!", .chunk = 4};
    fake_start(&a, "A");
    eyc_client *c;
    eyc_options o = {.timeout_ms = 3000, .max_request_bytes = 4096};
    TEST_CHECK(eyc_connect(a.url, &o, &c) == EYC_OK);

    Eyrie__Response *r;
    TEST_CHECK(eyc_health(c, 0, &r) == EYC_OK);
    if (r) TEST_CHECK(!strcmp(r->health->status, "A"));
    eyc_response_free(r);

    Eyrie__Generate g = EYRIE__GENERATE__INIT;
    g.has_task = true;
    g.task = EYRIE__TASK__TASK_COMPLETE;
    g.prompt = "hi";
    g.has_return_tokens = true;
    g.return_tokens = true;
    TEST_CHECK(eyc_generate(c, &g, "my-id.1", 0, &r) == EYC_OK);
    if (r) {
        TEST_CHECK(!strcmp(r->id, "my-id.1") && !strcmp(r->result->text, "A"));
        cJSON *j = eyc_result_json(r->result);
        char *s = cJSON_PrintUnformatted(j);
        TEST_CHECK_MSG(!strcmp(s, "{\"text\":\"A\",\"token_ids\":[5,6,2],\"finish_reason\":\"stop\","
                                  "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3},"
                                  "\"timing\":{\"prefill_ms\":0,\"decode_ms\":0,"
                                  "\"decode_tokens_per_s\":0}}"), "%s", s);
        free(s);
        cJSON_Delete(j);
    }
    eyc_response_free(r);

    /* a daemon error comes back as its code with its message */
    g.return_tokens = false;
    TEST_CHECK(eyc_generate(c, &g, NULL, 0, &r) == EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT && !r);
    a.busy_stats = 1;
    TEST_CHECK(eyc_stats(c, 0, &r) == EYRIE__ERROR_CODE__ERR_BUSY);
    TEST_CHECK_MSG(!strcmp(eyc_errmsg(c), "ERR_BUSY: queue full"), "%s", eyc_errmsg(c));

    /* bad ids are refused before sending */
    TEST_CHECK(eyc_generate(c, &g, "bad id", 0, &r) == EYC_ERR_INVALID);

    /* over the request limit: refused locally, nothing sent */
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    g.prompt = big;
    int served = a.served;
    TEST_CHECK(eyc_generate(c, &g, NULL, 0, &r) == EYRIE__ERROR_CODE__ERR_TOO_LARGE);
    TEST_CHECK(a.served == served);
    g.prompt = "hi";

    /* no answer: a timeout, and the socket still works afterwards */
    a.silent_models = 1;
    double t0 = now_ms();
    TEST_CHECK(eyc_list_models(c, 200, &r) == EYC_ERR_TIMEOUT);
    TEST_CHECK(now_ms() - t0 < 2000);
    TEST_CHECK(eyc_health(c, 0, &r) == EYC_OK);
    eyc_response_free(r);

    /* streaming: the pieces concatenate to the text */
    char text[128] = "";
    TEST_CHECK(eyc_generate_stream(c, &g, NULL, collect, text, &r) == EYC_OK);
    TEST_CHECK_MSG(!strcmp(text, "Hello, stream!"), "'%s'", text);
    if (r) TEST_CHECK(r->poll->done && !strcmp(r->poll->result->text, "Hello, stream!"));
    eyc_response_free(r);

    /* an unknown job */
    TEST_CHECK(eyc_poll(c, "nope", 0, 10, &r) == EYRIE__ERROR_CODE__ERR_NOT_FOUND);
    eyc_close(c);
    fake_stop(&a);
}

static void urls(void)
{
    eyc_client *c = NULL;
    char u[200];
    snprintf(u, sizeof u, "ipc:///tmp/%0110d", 0); /* 114-byte path: nanomsg would abort */
    TEST_CHECK(eyc_connect(u, NULL, &c) == EYC_ERR_INVALID && !c);
    TEST_CHECK(eyc_connect("http://x", NULL, &c) == EYC_ERR_INVALID);
    TEST_CHECK(eyc_connect("ipc:///tmp/a,,ipc:///tmp/b", NULL, &c) == EYC_ERR_INVALID);
    eyc_options bad = {.resend_ivl_ms = -1};
    TEST_CHECK(eyc_connect("ipc:///tmp/a", &bad, &c) == EYC_ERR_INVALID);
    TEST_CHECK(*eyc_last_error());
    char id1[EYC_ID_MAX + 1], id2[EYC_ID_MAX + 1];
    TEST_CHECK(eyc_connect("tcp://127.0.0.1:1", NULL, &c) == EYC_OK);
    if (c) {
        eyc_new_id(c, id1);
        eyc_new_id(c, id2);
        TEST_CHECK(strcmp(id1, id2) && strlen(id1) <= EYC_ID_MAX);
        eyc_close(c);
    }
}

static void two_daemons(void)
{
    fake a = {.job_text = "0123456789abcdefghij", .chunk = 3};
    fake b = {.job_text = "0123456789abcdefghij", .chunk = 3};
    fake_start(&a, "A");
    fake_start(&b, "B");
    char u[300];
    snprintf(u, sizeof u, "%s,%s", a.url, b.url);
    eyc_client *c;
    eyc_options o = {.timeout_ms = 5000}; /* resend interval: the default 60 s */
    TEST_CHECK(eyc_connect(u, &o, &c) == EYC_OK);
    usleep(100000); /* both pipes up */

    /* spread: round robin over both */
    int na = 0, nb = 0;
    for (int i = 0; i < 10; i++) {
        Eyrie__Response *r;
        if (eyc_health(c, 0, &r) == EYC_OK) {
            if (!strcmp(r->health->status, "A")) na++;
            else nb++;
            eyc_response_free(r);
        }
    }
    TEST_CHECK_MSG(na >= 3 && nb >= 3 && na + nb == 10, "A %d, B %d", na, nb);

    /* a stream survives its daemon vanishing half-way: the Polls it misses
     * land on the other daemon (ERR_NOT_FOUND, retried), then the job is
     * resubmitted there with the same id and continues from the bytes
     * already delivered */
    int deaths = 0;
    a.deaths = b.deaths = &deaths;
    a.die_after_polls = 2;
    b.die_after_polls = 2;
    Eyrie__Generate g = EYRIE__GENERATE__INIT;
    g.prompt = "x";
    char text[128] = "";
    Eyrie__Response *r = NULL;
    int rc = eyc_generate_stream(c, &g, "stream-1", collect, text, &r);
    TEST_CHECK_MSG(rc == EYC_OK, "%d %s", rc, eyc_errmsg(c));
    TEST_CHECK_MSG(!strcmp(text, "0123456789abcdefghij"), "'%s'", text);
    eyc_response_free(r);
    /* one of them died after 2 polls; the survivor finished the job */
    fake *alive = a.sock >= 0 ? &a : &b, *dead = alive == &a ? &b : &a;
    TEST_CHECK(dead->sock < 0);
    alive->die_after_polls = 0;

    /* unary: the survivor answers even when the first pick was the dead one */
    for (int i = 0; i < 4; i++) {
        g.has_return_tokens = true;
        g.return_tokens = true;
        TEST_CHECK(eyc_generate(c, &g, NULL, 0, &r) == EYC_OK);
        eyc_response_free(r);
    }
    eyc_close(c);
    fake_stop(&a);
    fake_stop(&b);
}

static void failover(void)
{
    /* a daemon that goes away holding a unary request: nanomsg resends it at
     * once to the other one (not after the 60 s resend interval) */
    fake a = {.die_on_generate = 1}, b = {.die_on_generate = 1};
    fake_start(&a, "A");
    fake_start(&b, "B");
    char u[300];
    snprintf(u, sizeof u, "%s,%s", a.url, b.url);
    eyc_client *c;
    eyc_options o = {.timeout_ms = 5000};
    TEST_CHECK(eyc_connect(u, &o, &c) == EYC_OK);
    usleep(100000);
    Eyrie__Generate g = EYRIE__GENERATE__INIT;
    g.prompt = "x";
    g.has_return_tokens = true;
    g.return_tokens = true;
    /* make the second one answer: whichever gets it first dies */
    Eyrie__Response *r;
    Eyrie__Response *h;
    TEST_CHECK(eyc_health(c, 0, &h) == EYC_OK); /* which one is next? round robin */
    fake *next = h && !strcmp(h->health->status, "A") ? &b : &a;
    eyc_response_free(h);
    (next == &a ? &b : &a)->die_on_generate = 0;
    double t0 = now_ms();
    int rc = eyc_generate(c, &g, "fo-1", 0, &r);
    TEST_CHECK_MSG(rc == EYC_OK, "%d %s", rc, eyc_errmsg(c));
    TEST_CHECK_MSG(now_ms() - t0 < 3000, "%.0f ms", now_ms() - t0);
    if (r) TEST_CHECK(!strcmp(r->result->text, next == &a ? "B" : "A"));
    eyc_response_free(r);
    TEST_CHECK(next->sock < 0);
    eyc_close(c);
    fake_stop(&a);
    fake_stop(&b);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/eyc-test-XXXXXX");
    if (!mkdtemp(g_dir)) TEST_SKIP("no temp folder");
    chmod(g_dir, 0700);
    urls();
    basics();
    two_daemons();
    failover();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_result();
}
