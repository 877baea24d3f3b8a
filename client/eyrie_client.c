/* libeyrie — C client of the eyrie daemon. See eyrie_client.h. */
#include "eyrie_client.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <nanomsg/tcp.h>

#define DEFAULT_TIMEOUT_MS 300000
#define DEFAULT_RESEND_MS 60000
#define DEFAULT_MAX_RESPONSE (64 * 1024 * 1024 + 64 * 1024)
#define DEFAULT_MAX_REQUEST ((size_t)64 * 1024 * 1024)
#define DEFAULT_POLL_WAIT_MS 1000
#define DEFAULT_LOST_RETRIES 8
#define MAX_RESUBMITS 3
#define IPC_PATH_MAX 107 /* sizeof(sun_path) - 1 on Linux */

struct eyc_client {
    int sock;
    eyc_options o;
    pthread_mutex_t mu;
    uint64_t counter;
    uint32_t nonce;
    char err[512];
};

static _Thread_local char g_last_error[512];

const char *eyc_strerror(int code)
{
    switch (code) {
    case EYC_OK: return "ok";
    case EYRIE__ERROR_CODE__ERR_MALFORMED: return "ERR_MALFORMED";
    case EYRIE__ERROR_CODE__ERR_BAD_VERSION: return "ERR_BAD_VERSION";
    case EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT: return "ERR_INVALID_ARGUMENT";
    case EYRIE__ERROR_CODE__ERR_TOO_LARGE: return "ERR_TOO_LARGE";
    case EYRIE__ERROR_CODE__ERR_BUSY: return "ERR_BUSY";
    case EYRIE__ERROR_CODE__ERR_NOT_FOUND: return "ERR_NOT_FOUND";
    case EYRIE__ERROR_CODE__ERR_DUPLICATE_ID: return "ERR_DUPLICATE_ID";
    case EYRIE__ERROR_CODE__ERR_SHUTTING_DOWN: return "ERR_SHUTTING_DOWN";
    case EYRIE__ERROR_CODE__ERR_DEADLINE_EXCEEDED: return "ERR_DEADLINE_EXCEEDED";
    case EYRIE__ERROR_CODE__ERR_CANCELLED: return "ERR_CANCELLED";
    case EYRIE__ERROR_CODE__ERR_CAPACITY: return "ERR_CAPACITY";
    case EYRIE__ERROR_CODE__ERR_UNSUPPORTED: return "ERR_UNSUPPORTED";
    case EYRIE__ERROR_CODE__ERR_MEDIA: return "ERR_MEDIA";
    case EYRIE__ERROR_CODE__ERR_INTERNAL: return "ERR_INTERNAL";
    case EYC_ERR_INVALID: return "invalid argument";
    case EYC_ERR_NOMEM: return "out of memory";
    case EYC_ERR_TRANSPORT: return "transport error";
    case EYC_ERR_TIMEOUT: return "timeout";
    case EYC_ERR_BAD_RESPONSE: return "bad response";
    case EYC_ERR_INTERRUPTED: return "interrupted";
    case EYC_ERR_LOST: return "job lost";
    default: return code > 0 && code < 100 ? "unknown daemon error" : "unknown error";
    }
}

static int seterr(eyc_client *c, int code, const char *fmt, ...)
{
    char *dst = c ? c->err : g_last_error;
    size_t cap = c ? sizeof c->err : sizeof g_last_error;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return code;
}

const char *eyc_errmsg(const eyc_client *c) { return c ? c->err : g_last_error; }
const char *eyc_last_error(void) { return g_last_error; }

/* ------------------------------------------------------------ connect */

static bool url_ok(const char *u, size_t n, char *why, size_t whylen)
{
    if (n >= NN_SOCKADDR_MAX) {
        snprintf(why, whylen, "URL longer than %d bytes", NN_SOCKADDR_MAX - 1);
        return false;
    }
    if (n > 6 && !strncmp(u, "ipc://", 6)) {
        if (n - 6 > IPC_PATH_MAX) {
            snprintf(why, whylen, "ipc path longer than %d bytes", IPC_PATH_MAX);
            return false;
        }
        return true;
    }
    if ((n > 6 && !strncmp(u, "tcp://", 6)) || (n > 9 && !strncmp(u, "inproc://", 9)) ||
        (n > 5 && !strncmp(u, "ws://", 5)))
        return true;
    snprintf(why, whylen, "not an ipc://, tcp://, ws:// or inproc:// URL");
    return false;
}

static uint32_t random32(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v) return v;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint32_t)ts.tv_nsec ^ ((uint32_t)ts.tv_sec << 7) ^ ((uint32_t)getpid() << 16);
}

int eyc_connect(const char *urls, const eyc_options *opts, eyc_client **out)
{
    if (!out) return seterr(NULL, EYC_ERR_INVALID, "eyc_connect: out is NULL");
    *out = NULL;
    if (!urls || !*urls) return seterr(NULL, EYC_ERR_INVALID, "no URL given");
    eyc_options o = opts ? *opts : (eyc_options){0};
    if (o.timeout_ms == 0) o.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (o.timeout_ms < -1) return seterr(NULL, EYC_ERR_INVALID, "timeout_ms < -1");
    if (o.resend_ivl_ms == 0) o.resend_ivl_ms = DEFAULT_RESEND_MS;
    /* never negative: nanomsg asserts timeout >= 0 and aborts */
    if (o.resend_ivl_ms < 0) return seterr(NULL, EYC_ERR_INVALID, "resend_ivl_ms < 0");
    if (o.reconnect_ivl_ms < 0) return seterr(NULL, EYC_ERR_INVALID, "reconnect_ivl_ms < 0");
    if (o.max_response_bytes == 0) o.max_response_bytes = DEFAULT_MAX_RESPONSE;
    /* never -1 (unlimited): a bogus length would make nanomsg abort */
    if (o.max_response_bytes < 0)
        return seterr(NULL, EYC_ERR_INVALID, "max_response_bytes must be > 0");
    if (o.max_request_bytes == 0) o.max_request_bytes = DEFAULT_MAX_REQUEST;
    if (o.poll_wait_ms == 0) o.poll_wait_ms = DEFAULT_POLL_WAIT_MS;
    if (o.poll_wait_ms < 0 || o.poll_wait_ms > 30000)
        return seterr(NULL, EYC_ERR_INVALID, "poll_wait_ms out of 1..30000");
    if (o.lost_retries == 0) o.lost_retries = DEFAULT_LOST_RETRIES;
    if (o.lost_retries < 0) o.lost_retries = 0;

    /* validate every URL before creating the socket */
    char why[128];
    for (const char *p = urls;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (!n) return seterr(NULL, EYC_ERR_INVALID, "empty URL in '%s'", urls);
        if (!url_ok(p, n, why, sizeof why))
            return seterr(NULL, EYC_ERR_INVALID, "bad URL '%.*s': %s", (int)n, p, why);
        if (!e) break;
        p = e + 1;
    }

    eyc_client *c = calloc(1, sizeof *c);
    if (!c) return seterr(NULL, EYC_ERR_NOMEM, "no memory");
    c->o = o;
    c->nonce = random32();
    pthread_mutex_init(&c->mu, NULL);
    c->sock = nn_socket(AF_SP, NN_REQ);
    if (c->sock < 0) {
        seterr(NULL, EYC_ERR_TRANSPORT, "nn_socket: %s", nn_strerror(nn_errno()));
        free(c);
        return EYC_ERR_TRANSPORT;
    }
    int rc = 0;
    if (nn_setsockopt(c->sock, NN_REQ, NN_REQ_RESEND_IVL, &o.resend_ivl_ms, sizeof(int)) < 0 ||
        nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &o.max_response_bytes,
                      sizeof(int)) < 0 ||
        (o.reconnect_ivl_ms > 0 && nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RECONNECT_IVL,
                                                 &o.reconnect_ivl_ms, sizeof(int)) < 0)) {
        rc = seterr(NULL, EYC_ERR_TRANSPORT, "nn_setsockopt: %s", nn_strerror(nn_errno()));
        goto fail;
    }
    int one = 1;
    /* token streaming: do not let Nagle hold small answers back (tcp only;
     * the option is ignored by other transports) */
    nn_setsockopt(c->sock, NN_TCP, NN_TCP_NODELAY, &one, sizeof one);
    for (const char *p = urls;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char u[NN_SOCKADDR_MAX];
        memcpy(u, p, n);
        u[n] = 0;
        if (nn_connect(c->sock, u) < 0) {
            rc = seterr(NULL, EYC_ERR_TRANSPORT, "nn_connect %s: %s", u, nn_strerror(nn_errno()));
            goto fail;
        }
        if (!e) break;
        p = e + 1;
    }
    g_last_error[0] = 0;
    *out = c;
    return EYC_OK;
fail:
    nn_close(c->sock);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return rc;
}

void eyc_close(eyc_client *c)
{
    if (!c) return;
    nn_close(c->sock);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void eyc_new_id(eyc_client *c, char *buf)
{
    uint64_t n = __atomic_fetch_add(&c->counter, 1, __ATOMIC_RELAXED);
    snprintf(buf, EYC_ID_MAX + 1, "c-%lx-%08x-%08x-%llx", (unsigned long)getpid(), c->nonce,
             random32(), (unsigned long long)n);
}

static bool id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > EYC_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '-'))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ calls */

void eyc_response_free(Eyrie__Response *r)
{
    if (r) eyrie__response__free_unpacked(r, NULL);
}

static int set_timeouts(eyc_client *c, int timeout_ms)
{
    int t = timeout_ms == 0 ? c->o.timeout_ms : timeout_ms;
    if (t < -1) t = -1;
    if (nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &t, sizeof t) < 0 ||
        nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &t, sizeof t) < 0)
        return seterr(c, EYC_ERR_TRANSPORT, "nn_setsockopt: %s", nn_strerror(nn_errno()));
    return EYC_OK;
}

static int nn_fail(eyc_client *c, const char *what)
{
    int e = nn_errno();
    if (e == ETIMEDOUT || e == EAGAIN) return seterr(c, EYC_ERR_TIMEOUT, "%s: no answer in time", what);
    if (e == EINTR) return seterr(c, EYC_ERR_INTERRUPTED, "%s: interrupted", what);
    return seterr(c, EYC_ERR_TRANSPORT, "%s: %s", what, nn_strerror(e));
}

static int expected_body(const Eyrie__Request *req)
{
    switch (req->body_case) {
    case EYRIE__REQUEST__BODY_GENERATE:
        return req->generate->has_stream && req->generate->stream
                   ? EYRIE__RESPONSE__BODY_ACCEPTED
                   : EYRIE__RESPONSE__BODY_RESULT;
    case EYRIE__REQUEST__BODY_POLL: return EYRIE__RESPONSE__BODY_POLL;
    case EYRIE__REQUEST__BODY_CANCEL: return EYRIE__RESPONSE__BODY_CANCEL;
    case EYRIE__REQUEST__BODY_HEALTH: return EYRIE__RESPONSE__BODY_HEALTH;
    case EYRIE__REQUEST__BODY_STATS: return EYRIE__RESPONSE__BODY_STATS;
    case EYRIE__REQUEST__BODY_LIST_MODELS: return EYRIE__RESPONSE__BODY_MODELS;
    default: return -1;
    }
}

static int call_locked(eyc_client *c, const Eyrie__Request *req0, Eyrie__Response **out,
                       int timeout_ms)
{
    Eyrie__Request req = *req0;
    char idbuf[EYC_ID_MAX + 1];
    if (!req.version) req.version = EYRIE__PROTOCOL_VERSION__PROTOCOL_VERSION;
    if (!req.id || !*req.id) {
        eyc_new_id(c, idbuf);
        req.id = idbuf;
    } else if (!id_ok(req.id)) {
        return seterr(c, EYC_ERR_INVALID, "bad request id (1..64 bytes of [A-Za-z0-9._:-])");
    }
    int want = expected_body(&req);
    if (want < 0) return seterr(c, EYC_ERR_INVALID, "request without a body");

    size_t n = eyrie__request__get_packed_size(&req);
    /* Enforce the size limit here: an oversize request would make the daemon
     * drop the connection and the REQ socket resend it forever. */
    if (n > c->o.max_request_bytes)
        return seterr(c, EYRIE__ERROR_CODE__ERR_TOO_LARGE,
                      "request is %zu bytes, over the limit of %zu", n, c->o.max_request_bytes);
    void *buf = nn_allocmsg(n ? n : 1, 0);
    if (!buf) return seterr(c, EYC_ERR_NOMEM, "no memory for a %zu-byte request", n);
    eyrie__request__pack(&req, buf);
    int rc = set_timeouts(c, timeout_ms);
    if (rc) {
        nn_freemsg(buf);
        return rc;
    }
    if (nn_send(c->sock, &buf, NN_MSG, 0) < 0) {
        nn_freemsg(buf); /* still ours when the send failed */
        return nn_fail(c, "send");
    }
    void *rbuf = NULL;
    int rn = nn_recv(c->sock, &rbuf, NN_MSG, 0);
    if (rn < 0) return nn_fail(c, "receive");
    Eyrie__Response *r = eyrie__response__unpack(NULL, (size_t)rn, rbuf);
    nn_freemsg(rbuf);
    if (!r) return seterr(c, EYC_ERR_BAD_RESPONSE, "answer is not a Response (%d bytes)", rn);
    if (r->version != EYRIE__PROTOCOL_VERSION__PROTOCOL_VERSION) {
        rc = seterr(c, EYC_ERR_BAD_RESPONSE, "answer has protocol version %u", r->version);
        goto bad;
    }
    if (r->error && r->error->code != EYRIE__ERROR_CODE__ERR_NONE) {
        int code = (int)r->error->code;
        rc = seterr(c, code, "%s%s%s", eyc_strerror(code),
                    r->error->message && *r->error->message ? ": " : "",
                    r->error->message ? r->error->message : "");
        goto bad;
    }
    if (r->id && *r->id && strcmp(r->id, req.id)) {
        rc = seterr(c, EYC_ERR_BAD_RESPONSE, "answer for id '%s', sent '%s'", r->id, req.id);
        goto bad;
    }
    if ((int)r->body_case != want) {
        rc = seterr(c, EYC_ERR_BAD_RESPONSE, "answer has the wrong body (%d, expected %d)",
                    (int)r->body_case, want);
        goto bad;
    }
    c->err[0] = 0;
    *out = r;
    return EYC_OK;
bad:
    eyrie__response__free_unpacked(r, NULL);
    return rc;
}

int eyc_call(eyc_client *c, const Eyrie__Request *req, Eyrie__Response **out, int timeout_ms)
{
    if (!out) return c ? seterr(c, EYC_ERR_INVALID, "out is NULL") : EYC_ERR_INVALID;
    *out = NULL;
    if (!c || !req) return c ? seterr(c, EYC_ERR_INVALID, "request is NULL") : EYC_ERR_INVALID;
    pthread_mutex_lock(&c->mu);
    int rc = call_locked(c, req, out, timeout_ms);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int eyc_generate(eyc_client *c, const Eyrie__Generate *g0, const char *id, int timeout_ms,
                 Eyrie__Response **out)
{
    if (!c || !g0 || !out) return c ? seterr(c, EYC_ERR_INVALID, "NULL argument") : EYC_ERR_INVALID;
    Eyrie__Generate g = *g0;
    g.has_stream = true;
    g.stream = false;
    Eyrie__Request req = EYRIE__REQUEST__INIT;
    req.id = (char *)id;
    req.body_case = EYRIE__REQUEST__BODY_GENERATE;
    req.generate = &g;
    return eyc_call(c, &req, out, timeout_ms);
}

int eyc_submit(eyc_client *c, const Eyrie__Generate *g0, const char *id, char **job_id)
{
    if (!c || !g0 || !job_id) return c ? seterr(c, EYC_ERR_INVALID, "NULL argument") : EYC_ERR_INVALID;
    *job_id = NULL;
    Eyrie__Generate g = *g0;
    g.has_stream = true;
    g.stream = true;
    Eyrie__Request req = EYRIE__REQUEST__INIT;
    req.id = (char *)id;
    req.body_case = EYRIE__REQUEST__BODY_GENERATE;
    req.generate = &g;
    Eyrie__Response *r;
    int rc = eyc_call(c, &req, &r, 0);
    if (rc) return rc;
    if (!r->accepted->job_id || !*r->accepted->job_id) {
        eyc_response_free(r);
        return seterr(c, EYC_ERR_BAD_RESPONSE, "accepted without a job id");
    }
    *job_id = strdup(r->accepted->job_id);
    eyc_response_free(r);
    return *job_id ? EYC_OK : seterr(c, EYC_ERR_NOMEM, "no memory");
}

int eyc_poll(eyc_client *c, const char *job_id, uint64_t after, uint32_t wait_ms,
             Eyrie__Response **out)
{
    if (!c || !job_id || !out) return c ? seterr(c, EYC_ERR_INVALID, "NULL argument") : EYC_ERR_INVALID;
    Eyrie__Poll p = EYRIE__POLL__INIT;
    p.job_id = (char *)job_id;
    p.has_after = true;
    p.after = after;
    if (wait_ms) {
        p.has_wait_ms = true;
        p.wait_ms = wait_ms;
    }
    Eyrie__Request req = EYRIE__REQUEST__INIT;
    req.body_case = EYRIE__REQUEST__BODY_POLL;
    req.poll = &p;
    /* the daemon holds the poll up to wait_ms (default 1000, at most 30000) */
    int t = c->o.timeout_ms;
    if (t > 0) t += (int)(wait_ms ? (wait_ms > 30000 ? 30000 : wait_ms) : 1000);
    return eyc_call(c, &req, out, t);
}

int eyc_cancel(eyc_client *c, const char *job_id, bool *found, bool *was_running)
{
    if (!c || !job_id) return c ? seterr(c, EYC_ERR_INVALID, "NULL argument") : EYC_ERR_INVALID;
    Eyrie__Cancel k = EYRIE__CANCEL__INIT;
    k.job_id = (char *)job_id;
    Eyrie__Request req = EYRIE__REQUEST__INIT;
    req.body_case = EYRIE__REQUEST__BODY_CANCEL;
    req.cancel = &k;
    Eyrie__Response *r;
    int rc = eyc_call(c, &req, &r, 0);
    if (rc) return rc;
    if (found) *found = r->cancel->found;
    if (was_running) *was_running = r->cancel->was_running;
    eyc_response_free(r);
    return EYC_OK;
}

static int simple_call(eyc_client *c, int which, int timeout_ms, Eyrie__Response **out)
{
    if (!c || !out) return c ? seterr(c, EYC_ERR_INVALID, "NULL argument") : EYC_ERR_INVALID;
    Eyrie__Health h = EYRIE__HEALTH__INIT;
    Eyrie__StatsRequest s = EYRIE__STATS_REQUEST__INIT;
    Eyrie__ListModels l = EYRIE__LIST_MODELS__INIT;
    Eyrie__Request req = EYRIE__REQUEST__INIT;
    req.body_case = which;
    if (which == EYRIE__REQUEST__BODY_HEALTH) req.health = &h;
    else if (which == EYRIE__REQUEST__BODY_STATS) req.stats = &s;
    else req.list_models = &l;
    return eyc_call(c, &req, out, timeout_ms);
}

int eyc_health(eyc_client *c, int timeout_ms, Eyrie__Response **out)
{
    return simple_call(c, EYRIE__REQUEST__BODY_HEALTH, timeout_ms, out);
}

int eyc_stats(eyc_client *c, int timeout_ms, Eyrie__Response **out)
{
    return simple_call(c, EYRIE__REQUEST__BODY_STATS, timeout_ms, out);
}

int eyc_list_models(eyc_client *c, int timeout_ms, Eyrie__Response **out)
{
    return simple_call(c, EYRIE__REQUEST__BODY_LIST_MODELS, timeout_ms, out);
}

/* ------------------------------------------------------------ streaming */

int eyc_stream(eyc_client *c, const char *job_id0, const Eyrie__Generate *g, const char *id,
               eyc_text_cb cb, void *ud, Eyrie__Response **out)
{
    if (out) *out = NULL;
    if (!c || !job_id0) return c ? seterr(c, EYC_ERR_INVALID, "NULL argument") : EYC_ERR_INVALID;
    char *job_id = strdup(job_id0);
    if (!job_id) return seterr(c, EYC_ERR_NOMEM, "no memory");
    uint64_t after = 0;
    int misses = 0, resubmits = 0, rc;
    for (;;) {
        Eyrie__Response *r;
        rc = eyc_poll(c, job_id, after, (uint32_t)c->o.poll_wait_ms, &r);
        if (rc == EYRIE__ERROR_CODE__ERR_NOT_FOUND) {
            /* Behind several daemons (one REQ socket connected to many, or a
             * broker) a Poll can land on a daemon that does not hold the job:
             * nanomsg's round robin brings the next one elsewhere. */
            if (misses++ < c->o.lost_retries) continue;
            if (!g || !id || c->o.no_resume || resubmits >= MAX_RESUBMITS) {
                if (after) rc = seterr(c, EYC_ERR_LOST, "job %s lost after %llu bytes: %s",
                                       job_id, (unsigned long long)after, c->err);
                break;
            }
            /* its daemon is gone: run it again elsewhere, same id, and go on
             * from the bytes already delivered */
            resubmits++;
            misses = 0;
            char *nj = NULL;
            if ((rc = eyc_submit(c, g, id, &nj))) break;
            free(job_id);
            job_id = nj;
            continue;
        }
        if (rc) break;
        misses = 0;
        Eyrie__PollResult *p = r->poll;
        uint64_t next = p->has_next ? p->next : after + (p->has_text ? p->text.len : 0);
        if (p->has_text && p->text.len) {
            /* the daemon answers bytes [after, next) */
            if (next != after + p->text.len) {
                eyc_response_free(r);
                rc = seterr(c, EYC_ERR_BAD_RESPONSE, "poll answered %zu bytes for [%llu, %llu)",
                            p->text.len, (unsigned long long)after, (unsigned long long)next);
                break;
            }
            if (cb && cb(ud, (const char *)p->text.data, p->text.len)) {
                eyc_response_free(r);
                bool f, w;
                eyc_cancel(c, job_id, &f, &w);
                rc = seterr(c, EYRIE__ERROR_CODE__ERR_CANCELLED, "stopped by the caller");
                break;
            }
        }
        after = next;
        if (p->done) {
            if (!p->result) {
                eyc_response_free(r);
                rc = seterr(c, EYC_ERR_BAD_RESPONSE, "last poll answer without a result");
                break;
            }
            if (out) *out = r;
            else eyc_response_free(r);
            rc = EYC_OK;
            break;
        }
        eyc_response_free(r);
    }
    free(job_id);
    return rc;
}

int eyc_generate_stream(eyc_client *c, const Eyrie__Generate *g, const char *id0, eyc_text_cb cb,
                        void *ud, Eyrie__Response **out)
{
    if (out) *out = NULL;
    if (!c || !g) return c ? seterr(c, EYC_ERR_INVALID, "NULL argument") : EYC_ERR_INVALID;
    char idbuf[EYC_ID_MAX + 1];
    const char *id = id0;
    if (!id || !*id) {
        eyc_new_id(c, idbuf);
        id = idbuf;
    }
    char *job = NULL;
    int rc = eyc_submit(c, g, id, &job);
    if (rc) return rc;
    rc = eyc_stream(c, job, g, id, cb, ud, out);
    free(job);
    return rc;
}
