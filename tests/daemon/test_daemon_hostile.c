/* Hostile input against the real eyried (issue 5): every case gets its exact
 * ErrorCode, and afterwards the daemon still answers Health "ok", serves a
 * normal request, and exits 0 on SIGTERM (under the sanitizer build: with no
 * leak or UB report).
 *
 * Raw bytes go through a plain nanomsg REQ socket (the Response is unpacked
 * here); well-formed but invalid requests through libeyrie.
 *
 * The daemon runs with --max-msg-bytes 65536 --max-prompt-bytes 32768
 * --max-running 1 --max-queued 1 --seq-ctx 8192: one long job (8000 tokens,
 * cancelled when done with) occupies the only slot, which makes "while the
 * first runs", "queue full" and "deadline while queued" deterministic.
 *
 *   test_daemon_hostile EYRIED MODEL_DIR */
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <stdint.h>

#include "dtest.h"

#define E(x) EYRIE__ERROR_CODE__ERR_##x
#define LONG_TOKENS 8000

static dt_proc g_d;

/* ---------------------------------------------------------------- raw */

static int raw_open(void)
{
    int s = nn_socket(AF_SP, NN_REQ);
    int tmo = 10000, resend = 600000, maxsz = 1 << 22;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &tmo, sizeof tmo);
    nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &tmo, sizeof tmo);
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof maxsz);
    nn_setsockopt(s, NN_REQ, NN_REQ_RESEND_IVL, &resend, sizeof resend);
    if (nn_connect(s, g_d.url) < 0) fprintf(stderr, "nn_connect: %s\n", nn_strerror(nn_errno()));
    return s;
}

/* Send raw bytes, return the error code of the answer (0 = a body, -1 = no
 * answer or not a Response). *id_out: the answer's id (may be NULL). */
static int raw_code(const void *buf, size_t n, char *id_out, size_t id_cap)
{
    int s = raw_open();
    int code = -1;
    if (nn_send(s, buf, n, 0) < 0) {
        fprintf(stderr, "raw send: %s\n", nn_strerror(nn_errno()));
    } else {
        void *r = NULL;
        int rn = nn_recv(s, &r, NN_MSG, 0);
        if (rn < 0) {
            fprintf(stderr, "raw receive: %s\n", nn_strerror(nn_errno()));
        } else {
            Eyrie__Response *rs = eyrie__response__unpack(NULL, (size_t)rn, r);
            if (rs && rs->version == 1) {
                code = rs->error ? (int)rs->error->code : 0;
                if (rs->error && rs->body_case != EYRIE__RESPONSE__BODY__NOT_SET)
                    code = -2; /* error and body: never */
                if (id_out) snprintf(id_out, id_cap, "%s", rs->id ? rs->id : "");
            }
            if (rs) eyrie__response__free_unpacked(rs, NULL);
            nn_freemsg(r);
        }
    }
    nn_close(s);
    return code;
}

static uint8_t *pack_req(const Eyrie__Request *rq, size_t *n)
{
    *n = eyrie__request__get_packed_size(rq);
    uint8_t *b = malloc(*n ? *n : 1);
    eyrie__request__pack(rq, b);
    return b;
}

static int raw_req_code(const Eyrie__Request *rq)
{
    size_t n;
    uint8_t *b = pack_req(rq, &n);
    int c = raw_code(b, n, NULL, 0);
    free(b);
    return c;
}

#define EXPECT_RAW(buf, n, want, what)                                                          \
    do {                                                                                       \
        int got_ = raw_code(buf, n, NULL, 0);                                                  \
        TEST_CHECK_MSG(got_ == (want), "%s: got %d, want %d", what, got_, (int)(want));        \
    } while (0)

/* ---------------------------------------------------------------- libeyrie */

static eyc_client *g_c;

static void text_part(Eyrie__Part *p, const char *t)
{
    eyrie__part__init(p);
    p->kind_case = EYRIE__PART__KIND_TEXT;
    p->text = (char *)t;
}

/* A one-message chat Generate (storage in the caller's struct). */
typedef struct chat1 {
    Eyrie__Generate g;
    Eyrie__Message m;
    Eyrie__Message *mp;
    Eyrie__Part p;
    Eyrie__Part *pp;
    Eyrie__Sampling s;
} chat1;

static void chat1_init(chat1 *c, const char *text, int max_tokens)
{
    eyrie__generate__init(&c->g);
    eyrie__message__init(&c->m);
    text_part(&c->p, text);
    c->pp = &c->p;
    c->m.role = EYRIE__ROLE__ROLE_USER;
    c->m.n_parts = 1;
    c->m.parts = &c->pp;
    c->mp = &c->m;
    c->g.n_messages = 1;
    c->g.messages = &c->mp;
    c->g.has_max_tokens = true;
    c->g.max_tokens = max_tokens;
    eyrie__sampling__init(&c->s);
    c->s.has_temperature = true;
    c->s.temperature = 0;
    c->g.sampling = &c->s;
}

/* A long greedy completion (max LONG_TOKENS tokens, ignore_eos). */
static void long_gen(Eyrie__Generate *g, Eyrie__Sampling *s)
{
    dt_long_gen(g, s, "Once upon a time", LONG_TOKENS);
}

static int gen_code(const Eyrie__Generate *g, const char *id)
{
    Eyrie__Response *r = NULL;
    int rc = eyc_generate(g_c, g, id, 15000, &r);
    eyc_response_free(r);
    return rc;
}

#define EXPECT_GEN(g, want, what)                                                              \
    do {                                                                                       \
        int got_ = gen_code(g, NULL);                                                          \
        TEST_CHECK_MSG(got_ == (want), "%s: got %d (%s), want %d", what, got_,                 \
                       eyc_errmsg(g_c), (int)(want));                                         \
    } while (0)

/* running/queued from Health */
static bool health(uint32_t *running, uint32_t *queued)
{
    Eyrie__Response *r;
    if (eyc_health(g_c, 5000, &r)) return false;
    *running = r->health->running;
    *queued = r->health->queued;
    eyc_response_free(r);
    return true;
}

static bool wait_running(uint32_t want, int timeout_ms)
{
    double until = dt_now_ms() + timeout_ms;
    uint32_t run = 0, q = 0;
    while (dt_now_ms() < until) {
        if (health(&run, &q) && run == want) return true;
        dt_sleep_ms(5);
    }
    fprintf(stderr, "running = %u, wanted %u\n", run, want);
    return false;
}

/* ---------------------------------------------------------------- cases */

static void case_bytes(void)
{
    /* random bytes (fixed seed), the empty message */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    static const size_t lens[] = {1, 2, 7, 33, 100, 1000, 5000, 60000};
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
        uint8_t *b = malloc(lens[k]);
        for (size_t i = 0; i < lens[k]; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b[i] = (uint8_t)(x >> 24);
        }
        char what[64];
        snprintf(what, sizeof what, "%zu random bytes", lens[k]);
        EXPECT_RAW(b, lens[k], E(MALFORMED), what);
        free(b);
    }
    EXPECT_RAW("", 0, E(MALFORMED), "empty message");

    /* every truncation of a valid Generate request */
    chat1 c;
    chat1_init(&c, "hello there", 4);
    Eyrie__Request rq = EYRIE__REQUEST__INIT;
    rq.version = 1;
    rq.id = "trunc-1";
    rq.body_case = EYRIE__REQUEST__BODY_GENERATE;
    rq.generate = &c.g;
    size_t n;
    uint8_t *b = pack_req(&rq, &n);
    int bad = 0;
    for (size_t cut = 0; cut < n; cut++) {
        int got = raw_code(b, cut, NULL, 0);
        if (got != E(MALFORMED)) {
            fprintf(stderr, "truncated at %zu of %zu: got %d\n", cut, n, got);
            bad++;
        }
    }
    TEST_CHECK_MSG(bad == 0, "%d truncations not answered ERR_MALFORMED", bad);
    TEST_CHECK_MSG(raw_code(b, n, NULL, 0) == 0, "the untruncated request is served");
    free(b);

    /* wrong versions: nothing else is looked at */
    Eyrie__Health h = EYRIE__HEALTH__INIT;
    Eyrie__Request hv = EYRIE__REQUEST__INIT;
    hv.id = "v-1";
    hv.body_case = EYRIE__REQUEST__BODY_HEALTH;
    hv.health = &h;
    static const uint32_t versions[] = {0, 2, 3, 0xffffffffu};
    for (size_t k = 0; k < 4; k++) {
        hv.version = versions[k];
        int got = raw_req_code(&hv);
        TEST_CHECK_MSG(got == E(BAD_VERSION), "version %u: got %d", versions[k], got);
    }
    hv.version = 2;
    rq.version = 2; /* a bad version with an otherwise good Generate */
    TEST_CHECK(raw_req_code(&rq) == E(BAD_VERSION));
    char rid[80] = "";
    b = pack_req(&hv, &n);
    TEST_CHECK(raw_code(b, n, rid, sizeof rid) == E(BAD_VERSION) && !strcmp(rid, "v-1"));
    free(b);

    /* huge declared sizes: a length prefix of 2^60 (id, generate body),
     * a repeated field claiming 2^31 bytes, an 11-byte varint */
    static const uint8_t huge_id[] = {0x08, 0x01, 0x12, 0x80, 0x80, 0x80, 0x80, 0x80,
                                      0x80, 0x80, 0x80, 0x10, 'a', 'b', 'c'};
    EXPECT_RAW(huge_id, sizeof huge_id, E(MALFORMED), "id length 2^60");
    static const uint8_t huge_gen[] = {0x08, 0x01, 0x12, 0x01, 'x', 0x52, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0x12, 0x00};
    EXPECT_RAW(huge_gen, sizeof huge_gen, E(MALFORMED), "generate length 2^60");
    static const uint8_t huge_msgs[] = {0x08, 0x01, 0x12, 0x01, 'x', 0x52, 0x06, 0x12,
                                        0x80, 0x80, 0x80, 0x80, 0x08};
    EXPECT_RAW(huge_msgs, sizeof huge_msgs, E(MALFORMED), "message length 2^31");
    static const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0x01, 0x12, 0x01, 'x'};
    EXPECT_RAW(long_varint, sizeof long_varint, E(MALFORMED), "11-byte varint");

    /* no body */
    Eyrie__Request nb = EYRIE__REQUEST__INIT;
    nb.version = 1;
    nb.id = "nobody";
    TEST_CHECK_MSG(raw_req_code(&nb) == E(MALFORMED), "request without a body");
    /* missing required id */
    static const uint8_t no_id[] = {0x08, 0x01, 0x6a, 0x00};
    EXPECT_RAW(no_id, sizeof no_id, E(MALFORMED), "no id");

    /* bad ids */
    static const char *bad_ids[] = {
        "", "a b", "tab\tid", "semi;colon", "\xc3\xa9t\xc3\xa9",
        "0123456789012345678901234567890123456789012345678901234567890123X"}; /* 65 */
    for (size_t k = 0; k < sizeof bad_ids / sizeof *bad_ids; k++) {
        hv.version = 1;
        hv.id = (char *)bad_ids[k];
        int got = raw_req_code(&hv);
        TEST_CHECK_MSG(got == E(INVALID_ARGUMENT), "id '%s': got %d", bad_ids[k], got);
    }
    hv.id = "0123456789012345678901234567890123456789012345678901234567890123"; /* 64 */
    TEST_CHECK_MSG(raw_req_code(&hv) == 0, "a 64-byte id is fine");
}

static void case_sizes(void)
{
    /* over --max-msg-bytes (65536) but under nanomsg's limit: ERR_TOO_LARGE */
    size_t big = 70000;
    char *p = malloc(big + 1);
    memset(p, 'a', big);
    p[big] = 0;
    Eyrie__Generate g = EYRIE__GENERATE__INIT;
    g.has_task = true;
    g.task = EYRIE__TASK__TASK_COMPLETE;
    g.prompt = p;
    Eyrie__Request rq = EYRIE__REQUEST__INIT;
    rq.version = 1;
    rq.id = "big-1";
    rq.body_case = EYRIE__REQUEST__BODY_GENERATE;
    rq.generate = &g;
    int got = raw_req_code(&rq);
    TEST_CHECK_MSG(got == E(TOO_LARGE), "70000-byte request: got %d", got);
    /* over nanomsg's receive limit (max-msg-bytes + 1/16 + 64 KiB): the
     * daemon's nanomsg drops the connection, no answer; the daemon lives on
     * (checked at the end) */
    {
        size_t huge = 300000;
        char *hb = calloc(1, huge);
        int sk = raw_open();
        int tmo = 300;
        nn_setsockopt(sk, NN_SOL_SOCKET, NN_RCVTIMEO, &tmo, sizeof tmo);
        TEST_CHECK(nn_send(sk, hb, huge, 0) == (int)huge);
        void *rb = NULL;
        int rn = nn_recv(sk, &rb, NN_MSG, 0);
        TEST_CHECK_MSG(rn < 0, "an answer to a message over nanomsg's limit");
        if (rn >= 0) nn_freemsg(rb);
        nn_close(sk);
        free(hb);
    }
    /* the same through libeyrie (its own limit is the default 64 MiB) */
    EXPECT_GEN(&g, E(TOO_LARGE), "70000-byte request via libeyrie");
    /* a prompt over --max-prompt-bytes (32768) in a message under the limit */
    p[40000] = 0;
    EXPECT_GEN(&g, E(TOO_LARGE), "40000-byte prompt");
    free(p);

    /* 10 000 parts */
    enum { NP = 10000 };
    Eyrie__Part *parts = calloc(NP, sizeof *parts);
    Eyrie__Part **pp = calloc(NP, sizeof *pp);
    for (int i = 0; i < NP; i++) {
        text_part(&parts[i], "ab");
        pp[i] = &parts[i];
    }
    chat1 c;
    chat1_init(&c, "x", 4);
    c.m.n_parts = NP;
    c.m.parts = pp;
    EXPECT_GEN(&c.g, E(TOO_LARGE), "10000 parts");
    /* 65 parts: one over --max-parts' default 64 */
    c.m.n_parts = 65;
    EXPECT_GEN(&c.g, E(TOO_LARGE), "65 parts");
    c.m.n_parts = 64;
    EXPECT_GEN(&c.g, 0, "64 parts");
    /* 300 messages (max-messages 256) */
    enum { NM = 300 };
    Eyrie__Message *ms = calloc(NM, sizeof *ms);
    Eyrie__Message **mp = calloc(NM, sizeof *mp);
    for (int i = 0; i < NM; i++) {
        eyrie__message__init(&ms[i]);
        ms[i].role = EYRIE__ROLE__ROLE_USER;
        mp[i] = &ms[i];
    }
    c.g.n_messages = NM;
    c.g.messages = mp;
    EXPECT_GEN(&c.g, E(TOO_LARGE), "300 messages");
    free(ms);
    free(mp);
    free(parts);
    free(pp);

    /* stop strings: 17 -> TOO_LARGE; empty or 257 bytes -> INVALID_ARGUMENT */
    chat1_init(&c, "hello", 4);
    char *stops[17];
    for (int i = 0; i < 17; i++) stops[i] = "zz";
    c.g.n_stop = 17;
    c.g.stop = stops;
    EXPECT_GEN(&c.g, E(TOO_LARGE), "17 stop strings");
    c.g.n_stop = 1;
    stops[0] = "";
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "empty stop string");
    char longstop[258];
    memset(longstop, 's', 257);
    longstop[257] = 0;
    stops[0] = longstop;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "257-byte stop string");
    stops[0] = "\xff";
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "invalid UTF-8 stop string");
}

static void case_fields(void)
{
    chat1 c;
    /* unknown enum values */
    chat1_init(&c, "hello", 4);
    c.g.has_task = true;
    c.g.task = (Eyrie__Task)99;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "task 99");
    c.g.task = (Eyrie__Task)-1;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "task -1");
    chat1_init(&c, "hello", 4);
    c.m.role = (Eyrie__Role)7;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "role 7");
    chat1_init(&c, "hello", 4);
    Eyrie__Speculative sq = EYRIE__SPECULATIVE__INIT;
    sq.has_method = true;
    sq.method = (Eyrie__SpecMethod)42;
    c.g.spec = &sq;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "spec method 42");

    /* empty chats */
    chat1_init(&c, "hello", 4);
    c.g.n_messages = 0;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "no messages");
    chat1_init(&c, "you are a system", 4);
    c.m.role = EYRIE__ROLE__ROLE_SYSTEM;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "only a system message");
    chat1_init(&c, "", 4);
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "an empty user message");
    chat1_init(&c, "x", 4);
    c.m.n_parts = 0;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "a user message without parts");
    chat1_init(&c, "x", 4);
    c.p.kind_case = EYRIE__PART__KIND__NOT_SET;
    EXPECT_GEN(&c.g, E(MALFORMED), "a part with no kind");

    /* invalid UTF-8 */
    static const char *bad_utf8[] = {"abc\xff", "\xc0\xaf", "\xed\xa0\x80 surrogate",
                                     "cut \xe2\x82", "\x80"};
    for (int k = 0; k < 5; k++) {
        chat1_init(&c, bad_utf8[k], 4);
        char what[64];
        snprintf(what, sizeof what, "invalid UTF-8 text part %d", k);
        EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), what);
    }
    Eyrie__Generate g = EYRIE__GENERATE__INIT;
    g.has_task = true;
    g.task = EYRIE__TASK__TASK_COMPLETE;
    g.prompt = "ok \xf8\x88\x80\x80\x80";
    EXPECT_GEN(&g, E(INVALID_ARGUMENT), "invalid UTF-8 prompt");
    g.prompt = "";
    EXPECT_GEN(&g, E(INVALID_ARGUMENT), "complete with an empty prompt");
    g.prompt = NULL;
    EXPECT_GEN(&g, E(INVALID_ARGUMENT), "complete without a prompt");
    chat1_init(&c, "hello", 4);
    c.g.prompt = "a prompt too";
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "chat with a prompt");

    /* media and tasks a text model cannot serve */
    chat1_init(&c, "x", 4);
    Eyrie__Media md = EYRIE__MEDIA__INIT;
    static uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    md.data.data = png;
    md.data.len = sizeof png;
    md.mime_type = "image/png";
    c.p.kind_case = EYRIE__PART__KIND_IMAGE;
    c.p.image = &md;
    EXPECT_GEN(&c.g, E(UNSUPPORTED), "image part");
    c.p.kind_case = EYRIE__PART__KIND_AUDIO;
    c.p.audio = &md;
    md.mime_type = "audio/wav";
    EXPECT_GEN(&c.g, E(UNSUPPORTED), "audio part");
    chat1_init(&c, "x", 4);
    c.g.has_task = true;
    c.g.task = EYRIE__TASK__TASK_TRANSCRIBE;
    EXPECT_GEN(&c.g, E(UNSUPPORTED), "task transcribe");
    c.g.task = EYRIE__TASK__TASK_SPEAK;
    EXPECT_GEN(&c.g, E(UNSUPPORTED), "task speak");

    /* numbers out of range */
    chat1_init(&c, "x", 0);
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "max_tokens 0");
    c.g.max_tokens = -5;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "max_tokens -5");
    c.g.max_tokens = 100000;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "max_tokens 100000 (over max-tokens-limit)");
    chat1_init(&c, "x", 4);
    c.s.temperature = -1;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "temperature -1");
    c.s.temperature = NAN;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "temperature NaN");
    chat1_init(&c, "x", 4);
    c.s.has_top_p = true;
    c.s.top_p = 0;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "top_p 0");
    chat1_init(&c, "x", 4);
    c.g.has_deadline_ms = true;
    c.g.deadline_ms = 0xffffffffu;
    EXPECT_GEN(&c.g, E(INVALID_ARGUMENT), "deadline_ms 2^32-1");

    /* a prompt that can never fit --seq-ctx 8192 (about 12000 tokens) */
    size_t reps = 12000;
    char *p = malloc(2 * reps + 2);
    p[0] = 'a';
    for (size_t i = 0; i < reps; i++) memcpy(p + 1 + 2 * i, " a", 2);
    p[1 + 2 * reps] = 0;
    g.prompt = p;
    g.has_max_tokens = true;
    g.max_tokens = 4;
    EXPECT_GEN(&g, E(CAPACITY), "prompt over seq-ctx");
    free(p);

    /* Poll/Cancel of unknown jobs */
    Eyrie__Response *r = NULL;
    int rc = eyc_poll(g_c, "no-such-job", 0, 10, &r);
    TEST_CHECK_MSG(rc == E(NOT_FOUND), "poll unknown: %d", rc);
    eyc_response_free(r);
    rc = eyc_cancel(g_c, "no-such-job", NULL, NULL);
    TEST_CHECK_MSG(rc == E(NOT_FOUND), "cancel unknown: %d", rc);
    /* a bad job id in Poll is simply unknown */
    rc = eyc_poll(g_c, "bad id with spaces", 0, 10, &r);
    TEST_CHECK_MSG(rc == E(NOT_FOUND), "poll bad job id: %d", rc);
    eyc_response_free(r);
}

/* ---- the long-job cases */

typedef struct unary_call {
    const Eyrie__Generate *g;
    const char *id;
    int rc;
    Eyrie__Response *r;
    char url[160];
} unary_call;

static void *unary_thread(void *arg)
{
    unary_call *u = arg;
    eyc_client *c = dt_client(u->url, 60000);
    u->r = NULL;
    u->rc = c ? eyc_generate(c, u->g, u->id, 0, &u->r) : EYC_ERR_TRANSPORT;
    eyc_close(c);
    return NULL;
}

static double finished_total(void)
{
    static const char *reasons[] = {"stop", "length", "cancelled", "deadline"};
    double s = 0;
    for (int i = 0; i < 4; i++) s += dt_metric(g_c, "jobs_finished_total", reasons[i]);
    return s;
}

static void case_duplicate(void)
{
    Eyrie__Generate g;
    Eyrie__Sampling s;
    long_gen(&g, &s);
    double fin0 = finished_total(), tok0 = dt_metric(g_c, "generation_tokens_total", NULL);
    double req0 = dt_metric(g_c, "requests_total", "generate");
    unary_call a = {.g = &g, .id = "dup-1"}, b = {.g = &g, .id = "dup-1"};
    snprintf(a.url, sizeof a.url, "%s", g_d.url);
    snprintf(b.url, sizeof b.url, "%s", g_d.url);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, unary_thread, &a);
    TEST_CHECK(wait_running(1, 10000));
    /* same id, different content, while the first runs */
    Eyrie__Generate g2;
    Eyrie__Sampling s2;
    long_gen(&g2, &s2);
    g2.max_tokens = LONG_TOKENS - 1;
    int rc = gen_code(&g2, "dup-1");
    TEST_CHECK_MSG(rc == E(DUPLICATE_ID), "same id, other content: %d", rc);
    g2.max_tokens = LONG_TOKENS;
    s2.has_seed = true; /* an unset field set to its default is different bytes too */
    s2.seed = 0;
    rc = gen_code(&g2, "dup-1");
    TEST_CHECK_MSG(rc == E(DUPLICATE_ID), "same id, other bytes: %d", rc);
    /* the identical resend waits for the same job */
    pthread_create(&tb, NULL, unary_thread, &b);
    dt_sleep_ms(150);
    uint32_t run = 0, q = 0;
    TEST_CHECK(health(&run, &q) && run == 1 && q == 0);
    bool found = false, was_running = false;
    rc = eyc_cancel(g_c, "dup-1", &found, &was_running);
    TEST_CHECK_MSG(rc == 0 && found && was_running, "cancel dup-1: %d", rc);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    TEST_CHECK_MSG(a.rc == 0 && b.rc == 0, "dup-1 answers: %d %d", a.rc, b.rc);
    if (a.rc == 0 && b.rc == 0) {
        const Eyrie__GenerateResult *ra = a.r->result, *rb = b.r->result;
        TEST_CHECK(ra->finish_reason == EYRIE__FINISH_REASON__FINISH_CANCELLED);
        TEST_CHECK(!strcmp(ra->text, rb->text));
        TEST_CHECK(ra->usage && rb->usage &&
                   ra->usage->completion_tokens == rb->usage->completion_tokens);
        /* one run: one job finished, its tokens counted once */
        double fin1 = finished_total(), tok1 = dt_metric(g_c, "generation_tokens_total", NULL);
        TEST_CHECK_MSG(fin1 - fin0 == 1, "jobs finished: %.0f -> %.0f", fin0, fin1);
        TEST_CHECK_MSG(tok1 - tok0 == ra->usage->completion_tokens,
                       "tokens generated %.0f, the job made %u", tok1 - tok0,
                       ra->usage->completion_tokens);
        /* a resend after it finished: the same result, still no second run */
        Eyrie__Response *r = NULL;
        rc = eyc_generate(g_c, &g, "dup-1", 10000, &r);
        TEST_CHECK_MSG(rc == 0 && r && !strcmp(r->result->text, ra->text) &&
                           r->result->finish_reason == EYRIE__FINISH_REASON__FINISH_CANCELLED,
                       "resend after the end: %d", rc);
        eyc_response_free(r);
        TEST_CHECK(finished_total() == fin1);
        TEST_CHECK(dt_metric(g_c, "generation_tokens_total", NULL) == tok1);
        TEST_CHECK(dt_metric(g_c, "requests_total", "generate") - req0 == 5);
        /* and a different Generate under that id stays a duplicate */
        TEST_CHECK(gen_code(&g2, "dup-1") == E(DUPLICATE_ID));
    }
    eyc_response_free(a.r);
    eyc_response_free(b.r);
}

static void case_queue(void)
{
    Eyrie__Generate g;
    Eyrie__Sampling s;
    long_gen(&g, &s);
    char *ja = NULL, *jb = NULL, *jc = NULL;
    int rc = eyc_submit(g_c, &g, "q-a", &ja);
    TEST_CHECK_MSG(rc == 0, "submit q-a: %d", rc);
    TEST_CHECK(wait_running(1, 10000));
    rc = eyc_submit(g_c, &g, "q-b", &jb);
    TEST_CHECK_MSG(rc == 0, "submit q-b: %d", rc);
    rc = eyc_submit(g_c, &g, "q-c", &jc);
    TEST_CHECK_MSG(rc == E(BUSY), "third job with max-running 1, max-queued 1: %d", rc);
    rc = eyc_submit(g_c, &g, "q-c", &jc); /* BUSY keeps no job: a retry is judged anew */
    TEST_CHECK_MSG(rc == E(BUSY), "retry while still full: %d", rc);
    /* the queued one cancelled: its Poll says ERR_CANCELLED */
    bool found = false, was_running = true;
    rc = eyc_cancel(g_c, "q-b", &found, &was_running);
    TEST_CHECK(rc == 0 && found && !was_running);
    Eyrie__Response *r = NULL;
    rc = eyc_poll(g_c, "q-b", 0, 100, &r);
    TEST_CHECK_MSG(rc == E(CANCELLED), "poll of a job cancelled while queued: %d", rc);
    eyc_response_free(r);
    /* a queued job whose 1 ms deadline passes: ERR_DEADLINE_EXCEEDED */
    chat1 c;
    chat1_init(&c, "hello", 4);
    c.g.has_deadline_ms = true;
    c.g.deadline_ms = 1;
    rc = gen_code(&c.g, "dl-queued");
    TEST_CHECK_MSG(rc == E(DEADLINE_EXCEEDED), "deadline while queued: %d (%s)", rc,
                   eyc_errmsg(g_c));
    /* Poll past the text of a running job: waits (a resumed stream does
     * that), then answers nothing new, never moving `next` backwards */
    rc = eyc_poll(g_c, "q-a", 1u << 30, 20, &r);
    TEST_CHECK_MSG(rc == 0 && r->poll->text.len == 0 && r->poll->next == 1u << 30 &&
                       !r->poll->done,
                   "poll after = 2^30 of a running job: %d", rc);
    eyc_response_free(r);
    /* a poll of the running job answers text */
    rc = eyc_poll(g_c, "q-a", 0, 2000, &r);
    TEST_CHECK_MSG(rc == 0 && r->poll->has_next && !r->poll->done, "poll q-a: %d", rc);
    eyc_response_free(r);
    rc = eyc_cancel(g_c, "q-a", &found, &was_running);
    TEST_CHECK(rc == 0 && found && was_running);
    /* the cancelled stream ends with FINISH_CANCELLED */
    uint64_t after = 0;
    bool done = false;
    for (int i = 0; i < 200 && !done; i++) {
        rc = eyc_poll(g_c, "q-a", after, 1000, &r);
        if (rc) break;
        after = r->poll->next;
        done = r->poll->done;
        if (done)
            TEST_CHECK(r->poll->result &&
                       r->poll->result->finish_reason == EYRIE__FINISH_REASON__FINISH_CANCELLED);
        eyc_response_free(r);
    }
    TEST_CHECK_MSG(done, "q-a ended after cancel (rc %d)", rc);
    /* Poll past the final text: ERR_INVALID_ARGUMENT */
    rc = eyc_poll(g_c, "q-a", after + 1, 10, &r);
    TEST_CHECK_MSG(rc == E(INVALID_ARGUMENT), "poll past the final text: %d", rc);
    eyc_response_free(r);
    free(ja);
    free(jb);
    free(jc);
    TEST_CHECK(wait_running(0, 10000));

    /* a running job whose deadline passes: FINISH_DEADLINE with its text */
    g.has_deadline_ms = true;
    g.deadline_ms = 300;
    double t0 = dt_now_ms();
    rc = eyc_generate(g_c, &g, "dl-running", 20000, &r);
    TEST_CHECK_MSG(rc == 0, "deadline while running: %d (%s)", rc, eyc_errmsg(g_c));
    if (rc == 0) {
        TEST_CHECK_MSG(r->result->finish_reason == EYRIE__FINISH_REASON__FINISH_DEADLINE,
                       "finish reason %d after %.0f ms", r->result->finish_reason,
                       dt_now_ms() - t0);
        eyc_response_free(r);
    }
}

static void case_disconnect(void)
{
    /* a client that sends a long unary request and goes away */
    Eyrie__Generate g;
    Eyrie__Sampling s;
    long_gen(&g, &s);
    g.has_stream = true; /* the bytes eyc_generate sends, for the resend below */
    g.stream = false;
    Eyrie__Request rq = EYRIE__REQUEST__INIT;
    rq.version = 1;
    rq.id = "gone-1";
    rq.body_case = EYRIE__REQUEST__BODY_GENERATE;
    rq.generate = &g;
    size_t n;
    uint8_t *b = pack_req(&rq, &n);
    int sk = raw_open();
    TEST_CHECK(nn_send(sk, b, n, 0) == (int)n);
    free(b);
    TEST_CHECK(wait_running(1, 10000));
    nn_close(sk);
    /* a streaming client that disconnects in the middle of a long poll */
    g.has_stream = true;
    g.stream = true;
    rq.id = "gone-2";
    b = pack_req(&rq, &n);
    int rc = raw_code(b, n, NULL, 0); /* accepted, queued behind gone-1 */
    TEST_CHECK_MSG(rc == 0, "gone-2 accepted: %d", rc);
    free(b);
    Eyrie__Poll p = EYRIE__POLL__INIT;
    p.job_id = "gone-2";
    p.has_wait_ms = true;
    p.wait_ms = 5000;
    Eyrie__Request pr = EYRIE__REQUEST__INIT;
    pr.version = 1;
    pr.id = "poll-gone-2";
    pr.body_case = EYRIE__REQUEST__BODY_POLL;
    pr.poll = &p;
    b = pack_req(&pr, &n);
    sk = raw_open();
    TEST_CHECK(nn_send(sk, b, n, 0) == (int)n);
    free(b);
    dt_sleep_ms(50);
    nn_close(sk);
    /* still serving: health, then cancel both */
    uint32_t run, q;
    TEST_CHECK(health(&run, &q) && run == 1 && q == 1);
    bool found = false, was_running = false;
    TEST_CHECK(eyc_cancel(g_c, "gone-2", &found, &was_running) == 0 && found && !was_running);
    TEST_CHECK(eyc_cancel(g_c, "gone-1", &found, &was_running) == 0 && found && was_running);
    TEST_CHECK(wait_running(0, 10000));
    /* the result of gone-1 is still there for a resend of the same bytes */
    long_gen(&g, &s);
    Eyrie__Response *r = NULL;
    rc = eyc_generate(g_c, &g, "gone-1", 10000, &r);
    TEST_CHECK_MSG(rc == 0 && r->result->finish_reason == EYRIE__FINISH_REASON__FINISH_CANCELLED,
                   "resend of gone-1: %d", rc);
    eyc_response_free(r);
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
    const char *extra[] = {"--max-msg-bytes", "65536", "--max-prompt-bytes", "32768",
                           "--max-running", "1", "--max-queued", "1", "--seq-ctx", "8192",
                           "--grace-s", "5", NULL};
    TEST_CHECK(dt_daemon_start(&g_d, argv[1], argv[2], "hostile", extra));
    if (!dt_wait_health(&g_d, 30000)) {
        dt_kill(&g_d);
        TEST_CHECK_MSG(0, "the daemon did not come up");
        return test_result();
    }
    g_c = dt_client(g_d.url, 20000);
    struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"bytes", case_bytes}, {"sizes", case_sizes}, {"fields", case_fields},
                 {"duplicate", case_duplicate}, {"queue", case_queue},
                 {"disconnect", case_disconnect}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double t = dt_now_ms();
        int f0 = g_test_failures;
        cases[i].fn();
        fprintf(stderr, "case %-10s %s (%.0f ms)\n", cases[i].name,
                g_test_failures == f0 ? "ok" : "FAILED", dt_now_ms() - t);
    }
    /* after all that: healthy, and a normal request is served */
    Eyrie__Response *r = NULL;
    int rc = eyc_health(g_c, 5000, &r);
    TEST_CHECK_MSG(rc == 0 && !strcmp(r->health->status, "ok"), "health after: %d", rc);
    eyc_response_free(r);
    chat1 c;
    chat1_init(&c, "hello, are you still there?", 8);
    rc = eyc_generate(g_c, &c.g, NULL, 10000, &r);
    TEST_CHECK_MSG(rc == 0 && r->result->usage && r->result->usage->completion_tokens >= 1,
                   "a normal request after the hostile ones: %d", rc);
    eyc_response_free(r);
    TEST_CHECK(dt_metric(g_c, "errors_total", "internal") == 0);
    TEST_CHECK(dt_metric(g_c, "errors_total", "malformed") > 0);
    eyc_close(g_c);
    int st = dt_stop(&g_d, 20000);
    TEST_CHECK_MSG(st == 0, "exit status %d", st);
    fprintf(stderr, "total %.0f ms\n", dt_now_ms() - t0);
    if (!g_test_failures) dt_rmdir();
    else fprintf(stderr, "logs kept in %s\n", g_dt_dir);
    return test_result();
}
