/* eyried — the eyrie daemon: a raw nanomsg REP socket in front of one
 * shared target model (and EAGLE-3 drafter), continuous batching in an
 * engine thread. Protocol: proto/eyrie.proto, docs/protocol.md; operations:
 * docs/operations.md.
 *
 * Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the model,
 * drafter or sockets cannot be set up, 2 bad usage. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "../core/generate.h"
#include "../core/spec_cli.h"
#include "../core/tokenizer.h"
#include "result_pb.h"
#include "server.h"


static volatile sig_atomic_t g_term, g_hup;
static const char *g_log_path;
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_term(int sig)
{
    (void)sig;
    g_term++;
}

static void on_hup(int sig)
{
    (void)sig;
    g_hup = 1;
}

double eyd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* logfmt lines: ts=... msg... */
void eyd_log(const char *fmt, ...)
{
    char ts[64];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&g_log_mu);
    fprintf(stderr, "ts=%s.%03ldZ ", ts, now.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&g_log_mu);
}

static void reopen_log(void)
{
    if (!g_log_path || !*g_log_path) return;
    pthread_mutex_lock(&g_log_mu);
    FILE *f = freopen(g_log_path, "a", stderr);
    pthread_mutex_unlock(&g_log_mu);
    if (!f) exit(1); /* stderr is gone: nothing left to report with */
}

/* ------------------------------------------------------------ protobuf */

/* Unpacking allocates through this: at most `left` bytes per message, so a
 * hostile message cannot make the daemon allocate more than a small
 * multiple of its own size. */
typedef struct budget {
    size_t left;
    bool refused; /* an allocation was over budget */
} budget;

static void *b_alloc(void *ud, size_t n)
{
    budget *b = ud;
    if (n > b->left) {
        b->refused = true;
        return NULL;
    }
    b->left -= n;
    return malloc(n);
}

static void b_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

void eyd_send(eyd_server *s, void *hdr, Eyrie__Response *r)
{
    if (s->sock < 0) { /* no socket (the fuzz harness): pack, count, drop */
        s->last_code = r->error ? (int)r->error->code : 0;
        size_t n = eyrie__response__get_packed_size(r);
        uint8_t *b = malloc(n ? n : 1);
        if (b) eyrie__response__pack(r, b);
        free(b);
        if (hdr) nn_freemsg(hdr);
        return;
    }
    size_t n = eyrie__response__get_packed_size(r);
    void *msg = nn_allocmsg(n ? n : 1, 0);
    if (!msg) {
        nn_freemsg(hdr);
        return;
    }
    eyrie__response__pack(r, msg);
    struct nn_iovec iov = {&msg, NN_MSG};
    void *ctl = hdr;
    struct nn_msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                          .msg_controllen = NN_MSG};
    if (nn_sendmsg(s->sock, &h, NN_DONTWAIT) < 0) {
        /* only on a closing socket (raw REP drops replies to gone peers and
         * full pipes itself). nanomsg 1.1 may already have taken the header
         * chunk at this point, so only the body is freed here: at worst a
         * header leaks, never a double free. */
        nn_freemsg(msg);
    }
}

static Eyrie__Response response(const char *req_id)
{
    Eyrie__Response r = EYRIE__RESPONSE__INIT;
    r.version = EYRIE__PROTOCOL_VERSION__PROTOCOL_VERSION;
    r.id = (char *)(req_id ? req_id : "");
    return r;
}

void eyd_send_error(eyd_server *s, void *hdr, const char *req_id, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Eyrie__Error err = EYRIE__ERROR__INIT;
    err.code = code;
    err.message = msg;
    Eyrie__Response r = response(req_id);
    r.error = &err;
    if (code >= 0 && code < 16) s->met.errors[code]++;
    eyd_send(s, hdr, &r);
}

/* ------------------------------------------------------------ job table */

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static eyd_job *find_job(eyd_server *s, const char *id)
{
    uint64_t h = fnv(id, strlen(id), 1469598103934665603ull);
    for (eyd_job *j = s->table[h % EYD_HBUCKETS]; j; j = j->hnext)
        if (!strcmp(j->id, id)) return j;
    return NULL;
}

static void insert_job(eyd_server *s, eyd_job *j)
{
    uint64_t h = fnv(j->id, strlen(j->id), 1469598103934665603ull);
    j->hnext = s->table[h % EYD_HBUCKETS];
    s->table[h % EYD_HBUCKETS] = j;
    s->n_jobs++;
}

static void free_job(eyd_job *j)
{
    for (eyd_waiter *w = j->waiters, *nx; w; w = nx) {
        nx = w->next;
        if (w->hdr) nn_freemsg(w->hdr);
        free(w);
    }
    if (j->have_result) ey_result_pb_free(&j->result);
    free(j->prompt);
    for (int i = 0; i < EY_MAX_STOP; i++) free(j->stops[i]);
    free(j->text);
    free(j->err_msg);
    free(j);
}

static void remove_job(eyd_server *s, eyd_job *j)
{
    uint64_t h = fnv(j->id, strlen(j->id), 1469598103934665603ull);
    for (eyd_job **p = &s->table[h % EYD_HBUCKETS]; *p; p = &(*p)->hnext)
        if (*p == j) {
            *p = j->hnext;
            break;
        }
    s->n_jobs--;
    free_job(j);
}

/* ------------------------------------------------------------ answers */

static void send_result(eyd_server *s, eyd_job *j, void *hdr, const char *req_id)
{
    if (j->err_code) {
        eyd_send_error(s, hdr, req_id, j->err_code, "%s", j->err_msg ? j->err_msg : "error");
        return;
    }
    Eyrie__Response r = response(req_id);
    r.body_case = EYRIE__RESPONSE__BODY_RESULT;
    r.result = &j->result;
    eyd_send(s, hdr, &r);
}

static void send_poll(eyd_server *s, eyd_job *j, void *hdr, const char *req_id, uint64_t after)
{
    if (j->state == J_DONE && j->err_code) {
        send_result(s, j, hdr, req_id);
        return;
    }
    Eyrie__PollResult p = EYRIE__POLL_RESULT__INIT;
    size_t from = after < j->text_len ? (size_t)after : j->text_len;
    p.has_text = true;
    p.text.data = (uint8_t *)(j->text ? j->text + from : "");
    p.text.len = j->text_len - from;
    p.has_next = true;
    p.next = after > j->text_len ? after : j->text_len; /* never backwards */
    p.has_done = true;
    p.done = j->state == J_DONE;
    if (p.done) p.result = &j->result;
    Eyrie__Response r = response(req_id);
    r.body_case = EYRIE__RESPONSE__BODY_POLL;
    r.poll = &p;
    eyd_send(s, hdr, &r);
}

#define EYD_MAX_WAITERS_PER_JOB 64
#define EYD_MAX_POLLS 65536

static void add_waiter(eyd_server *s, eyd_job *j, void *hdr, const char *req_id,
                       eyd_wait_kind kind, uint64_t after, double until)
{
    int nw = 0;
    for (const eyd_waiter *x = j->waiters; x; x = x->next) nw++;
    if (nw >= EYD_MAX_WAITERS_PER_JOB || (kind == W_POLL && s->n_polls >= EYD_MAX_POLLS)) {
        eyd_send_error(s, hdr, req_id, EYRIE__ERROR_CODE__ERR_BUSY,
                       "too many requests waiting on job '%s'", j->id);
        return;
    }
    eyd_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        eyd_send_error(s, hdr, req_id, EYRIE__ERROR_CODE__ERR_BUSY, "no memory");
        return;
    }
    w->hdr = hdr;
    w->kind = kind;
    w->after = after;
    w->until = until;
    snprintf(w->req_id, sizeof w->req_id, "%s", req_id);
    w->next = j->waiters;
    j->waiters = w;
    if (kind == W_POLL) s->n_polls++;
}

/* mu held: the job has an outcome; answer everybody waiting on it. */
void eyd_job_finished(eyd_server *s, eyd_job *j)
{
    j->state = J_DONE;
    j->done_at = eyd_now_ms();
    for (eyd_waiter *w = j->waiters, *nx; w; w = nx) {
        nx = w->next;
        if (w->kind == W_POLL) {
            s->n_polls--;
            send_poll(s, j, w->hdr, w->req_id, w->after);
        } else {
            send_result(s, j, w->hdr, w->req_id);
        }
        free(w);
    }
    j->waiters = NULL;
    eyd_metrics *m = &s->met;
    if (j->have_result && j->result.has_finish_reason && j->result.finish_reason < 5)
        m->finished[j->result.finish_reason]++;
    double lat = (j->done_at - j->t_arrive) / 1000.0;
    static const double le[EYD_LAT_BUCKETS - 1] = {0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                                   5,    10,  30,   60,  120};
    for (int i = 0; i < EYD_LAT_BUCKETS; i++) /* per-bucket counts: Stats sums them */
        if (i == EYD_LAT_BUCKETS - 1 || lat <= le[i]) {
            m->lat_bucket[i]++;
            break;
        }
    m->lat_count++;
    m->lat_sum += lat;
    /* prompt and stop strings are no longer needed */
    free(j->prompt);
    j->prompt = NULL;
    j->next = NULL;
    if (s->done_tail) s->done_tail->next = j;
    else s->done_head = j;
    s->done_tail = j;
    s->n_done++;
    pthread_cond_broadcast(&s->cv);
}

/* mu held: new text; answer polls waiting past their offset. */
void eyd_job_publish(eyd_server *s, eyd_job *j)
{
    for (eyd_waiter **p = &j->waiters; *p;) {
        eyd_waiter *w = *p;
        if (w->kind == W_POLL && w->after < j->text_len) {
            *p = w->next;
            s->n_polls--;
            send_poll(s, j, w->hdr, w->req_id, w->after);
            free(w);
        } else {
            p = &w->next;
        }
    }
}

/* ------------------------------------------------------------ requests */

static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

static bool valid_utf8(const char *s, size_t n)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0 || cp < 0) return false;
        i += (size_t)k;
    }
    return true;
}

typedef struct verr {
    int code;
    char msg[256];
} verr;

static bool fail(verr *v, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(verr *v, int code, const char *fmt, ...)
{
    v->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    return false;
}

static bool check_media(const eyd_server *s, const Eyrie__Media *md, const char *what, verr *v)
{
    if (!md) return fail(v, EYRIE__ERROR_CODE__ERR_MALFORMED, "%s part without media", what);
    if (md->data.len > (size_t)s->cfg.max_media_bytes)
        return fail(v, EYRIE__ERROR_CODE__ERR_TOO_LARGE, "%s of %zu bytes exceeds %d", what,
                    md->data.len, s->cfg.max_media_bytes);
    if (md->mime_type && (strlen(md->mime_type) > 100 || !valid_utf8(md->mime_type,
                                                                     strlen(md->mime_type))))
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "bad %s mime_type", what);
    return true;
}

/* Validate a Generate and build the job's prompt and parameters. */
static bool build_job(eyd_server *s, const Eyrie__Generate *g, eyd_job *j, verr *v)
{
    const eyd_config *cf = &s->cfg;
    int task = g->has_task ? (int)g->task : EYRIE__TASK__TASK_CHAT;
    if (task < 0 || task > 3)
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "unknown task %d", task);
    j->task = task;
    /* sizes first: part counts, text and media bytes */
    if (g->n_messages > (size_t)cf->max_messages)
        return fail(v, EYRIE__ERROR_CODE__ERR_TOO_LARGE, "%zu messages exceed %d", g->n_messages,
                    cf->max_messages);
    size_t parts = 0, text_bytes = g->prompt ? strlen(g->prompt) : 0;
    bool media = false;
    for (size_t i = 0; i < g->n_messages; i++) {
        const Eyrie__Message *m = g->messages[i];
        parts += m->n_parts;
        if (parts > (size_t)cf->max_parts)
            return fail(v, EYRIE__ERROR_CODE__ERR_TOO_LARGE, "more than %d content parts",
                        cf->max_parts);
        if ((int)m->role < 0 || (int)m->role > 2)
            return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "unknown role %d",
                        (int)m->role);
        for (size_t k = 0; k < m->n_parts; k++) {
            const Eyrie__Part *p = m->parts[k];
            switch (p->kind_case) {
            case EYRIE__PART__KIND_TEXT:
                text_bytes += strlen(p->text);
                if (!valid_utf8(p->text, strlen(p->text)))
                    return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT,
                                "message %zu part %zu is not valid UTF-8", i, k);
                break;
            case EYRIE__PART__KIND_IMAGE:
                if (!check_media(s, p->image, "image", v)) return false;
                media = true;
                break;
            case EYRIE__PART__KIND_AUDIO:
                if (!check_media(s, p->audio, "audio", v)) return false;
                media = true;
                break;
            default:
                return fail(v, EYRIE__ERROR_CODE__ERR_MALFORMED, "message %zu part %zu is empty",
                            i, k);
            }
        }
    }
    if (text_bytes > (size_t)cf->max_prompt_bytes)
        return fail(v, EYRIE__ERROR_CODE__ERR_TOO_LARGE, "%zu text bytes exceed %d", text_bytes,
                    cf->max_prompt_bytes);
    if (g->prompt && !valid_utf8(g->prompt, strlen(g->prompt)))
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "prompt is not valid UTF-8");
    /* options */
    j->gp.max_tokens = g->has_max_tokens ? g->max_tokens : 256;
    if (j->gp.max_tokens < 1 || j->gp.max_tokens > cf->max_tokens_limit)
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "max_tokens must be in [1, %d]",
                    cf->max_tokens_limit);
    if (g->n_stop > EY_MAX_STOP)
        return fail(v, EYRIE__ERROR_CODE__ERR_TOO_LARGE, "at most %d stop strings", EY_MAX_STOP);
    for (size_t i = 0; i < g->n_stop; i++) {
        size_t n = strlen(g->stop[i]);
        if (n < 1 || n > EY_MAX_STOP_LEN || !valid_utf8(g->stop[i], n))
            return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT,
                        "stop strings must be 1..%d bytes of UTF-8", EY_MAX_STOP_LEN);
        if (!(j->stops[i] = strdup(g->stop[i])))
            return fail(v, EYRIE__ERROR_CODE__ERR_BUSY, "no memory");
        j->gp.stop[i] = j->stops[i];
    }
    j->gp.n_stop = (int)g->n_stop;
    j->gp.ignore_eos = g->has_ignore_eos && g->ignore_eos;
    j->gp.max_ctx = cf->seq_ctx; /* also sizes the job's draft KV */
    ey_sampling *sp = &j->gp.sampling;
    *sp = ey_sampling_default();
    const Eyrie__Sampling *sm = g->sampling;
    if (sm) {
        if (sm->has_temperature) sp->temperature = sm->temperature;
        if (sm->has_top_k) sp->top_k = sm->top_k;
        if (sm->has_top_p) sp->top_p = sm->top_p;
        if (sm->has_min_p) sp->min_p = sm->min_p;
        if (sm->has_repeat_penalty) sp->repeat_penalty = sm->repeat_penalty;
        if (sm->has_repeat_last_n) sp->repeat_last_n = sm->repeat_last_n;
        if (sm->has_seed) sp->seed = sm->seed;
    }
    if (ey_sampling_check(sp))
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "sampling: %s", ey_err_detail());
    /* speculation: the daemon's defaults, then the request's */
    ey_spec_opts so = ey_spec_opts_default();
    ey_spec_method_parse(cf->spec_method, &so.method);
    so.k = cf->spec_k;
    so.top_k = cf->spec_topk;
    so.depth = cf->spec_depth;
    so.total_tokens = cf->spec_tokens;
    const Eyrie__Speculative *sq = g->spec;
    if (sq) {
        if (sq->has_method) {
            switch ((int)sq->method) {
            case EYRIE__SPEC_METHOD__SPEC_DEFAULT: break;
            case EYRIE__SPEC_METHOD__SPEC_NONE: so.method = EY_SPEC_NONE; break;
            case EYRIE__SPEC_METHOD__SPEC_CHAIN: so.method = EY_SPEC_CHAIN; break;
            case EYRIE__SPEC_METHOD__SPEC_TREE: so.method = EY_SPEC_TREE; break;
            default:
                return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "unknown spec method %d",
                            (int)sq->method);
            }
        }
        if (sq->has_num_draft_tokens) so.k = sq->num_draft_tokens;
        if (sq->has_top_k) so.top_k = sq->top_k;
        if (sq->has_depth) so.depth = sq->depth;
        if (sq->has_total_tokens) so.total_tokens = sq->total_tokens;
    }
    if (!s->d) so.method = EY_SPEC_NONE; /* no drafter: plain decoding */
    if (ey_spec_opts_check(&so))
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "%s", ey_err_detail());
    if (ey_spec_ctx_rows(&so) > cf->batch_rows)
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT,
                    "a draft tree of %d nodes exceeds batch-rows %d", ey_spec_ctx_rows(&so),
                    cf->batch_rows);
    j->so = so;
    j->stream = g->has_stream && g->stream;
    j->return_tokens = g->has_return_tokens && g->return_tokens;
    if (g->has_deadline_ms && g->deadline_ms > 86400000u)
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "deadline_ms above one day");
    uint32_t dl = g->has_deadline_ms && g->deadline_ms ? g->deadline_ms : (uint32_t)cf->deadline_ms;
    j->deadline = dl ? j->t_arrive + dl : 0;
    /* the task */
    if (task == EYRIE__TASK__TASK_TRANSCRIBE || task == EYRIE__TASK__TASK_SPEAK)
        return fail(v, EYRIE__ERROR_CODE__ERR_UNSUPPORTED, "model %s is a text model: it cannot %s",
                    s->model_name, task == EYRIE__TASK__TASK_SPEAK ? "speak" : "transcribe");
    if (media)
        return fail(v, EYRIE__ERROR_CODE__ERR_UNSUPPORTED,
                    "model %s is a text model: image and audio parts are not accepted",
                    s->model_name);
    ey_err e;
    if (task == EYRIE__TASK__TASK_COMPLETE) {
        if (!g->prompt || !*g->prompt)
            return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "complete needs a prompt");
        e = ey_prompt_text(s->m, g->prompt, &j->prompt, &j->n_prompt);
    } else {
        if (g->prompt)
            return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT,
                        "chat takes messages, not a prompt");
        ey_chat_msg *msgs = calloc(g->n_messages + 1, sizeof *msgs);
        char **txt = calloc(g->n_messages + 1, sizeof *txt);
        bool any = false;
        e = msgs && txt ? EY_OK : EY_ERR_NOMEM;
        static const char *roles[] = {"system", "user", "assistant"};
        for (size_t i = 0; !e && i < g->n_messages; i++) {
            const Eyrie__Message *m = g->messages[i];
            size_t n = 0;
            for (size_t k = 0; k < m->n_parts; k++) n += strlen(m->parts[k]->text);
            txt[i] = malloc(n + 1);
            if (!txt[i]) {
                e = EY_ERR_NOMEM;
                break;
            }
            n = 0;
            for (size_t k = 0; k < m->n_parts; k++) {
                size_t l = strlen(m->parts[k]->text);
                memcpy(txt[i] + n, m->parts[k]->text, l);
                n += l;
            }
            txt[i][n] = 0;
            any |= m->role != EYRIE__ROLE__ROLE_SYSTEM && n > 0;
            msgs[i] = (ey_chat_msg){roles[m->role], txt[i]};
        }
        char *rendered = NULL;
        if (!e && !any) {
            for (size_t i = 0; i < g->n_messages; i++) free(txt[i]);
            free(txt);
            free(msgs);
            return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT,
                        "empty chat: no user or assistant text");
        }
        if (!e) e = ey_chat_render(&s->m->chat, msgs, (int)g->n_messages, true, &rendered);
        if (!e) {
            bool bos = s->m->tok && ey_tokenizer_add_bos(s->m->tok) && !s->m->chat.bos_in_template;
            int32_t *t = NULL;
            int nt = 0;
            e = ey_tokenize(s->m->tok, rendered, strlen(rendered), true, &t, &nt);
            if (!e) {
                int32_t b = ey_tokenizer_bos(s->m->tok);
                bool add = bos && b >= 0;
                j->prompt = malloc(((size_t)nt + 1) * sizeof *j->prompt);
                if (!j->prompt) e = ey_err_set(EY_ERR_NOMEM, "no memory");
                else {
                    if (add) j->prompt[0] = b;
                    memcpy(j->prompt + add, t, (size_t)nt * sizeof *t);
                    j->n_prompt = nt + add;
                }
            }
            free(t);
        }
        free(rendered);
        for (size_t i = 0; txt && i < g->n_messages; i++) free(txt[i]);
        free(txt);
        free(msgs);
    }
    if (e)
        return fail(v, e == EY_ERR_NOMEM ? EYRIE__ERROR_CODE__ERR_BUSY
                                         : EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT,
                    "prompt: %s", ey_err_detail());
    if (j->n_prompt < 1)
        return fail(v, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT, "the prompt has no tokens");
    if (j->n_prompt + 1 > cf->seq_ctx)
        return fail(v, EYRIE__ERROR_CODE__ERR_CAPACITY,
                    "prompt of %d tokens does not fit the context of %d", j->n_prompt, cf->seq_ctx);
    if (eyd_job_rows(s, j) > s->rows_total)
        return fail(v, EYRIE__ERROR_CODE__ERR_CAPACITY, "job needs %d KV rows, the cache has %d",
                    eyd_job_rows(s, j), s->rows_total);
    return true;
}

static void handle_generate(eyd_server *s, void *hdr, const Eyrie__Request *rq, uint64_t hash)
{
    eyd_job *old = find_job(s, rq->id);
    if (old) {
        if (old->hash != hash) {
            eyd_send_error(s, hdr, rq->id, EYRIE__ERROR_CODE__ERR_DUPLICATE_ID,
                           "id '%s' is in use by a different request", rq->id);
            return;
        }
        /* a resend: the same job's answer, never a second run */
        if (old->state == J_DONE) {
            if (old->stream && !old->err_code) {
                Eyrie__Accepted a = EYRIE__ACCEPTED__INIT;
                a.job_id = old->id;
                Eyrie__Response r = response(rq->id);
                r.body_case = EYRIE__RESPONSE__BODY_ACCEPTED;
                r.accepted = &a;
                eyd_send(s, hdr, &r);
            } else {
                send_result(s, old, hdr, rq->id);
            }
        } else if (old->stream) {
            Eyrie__Accepted a = EYRIE__ACCEPTED__INIT;
            a.job_id = old->id;
            Eyrie__Response r = response(rq->id);
            r.body_case = EYRIE__RESPONSE__BODY_ACCEPTED;
            r.accepted = &a;
            eyd_send(s, hdr, &r);
        } else {
            add_waiter(s, old, hdr, rq->id, W_UNARY, 0, 0);
        }
        return;
    }
    if (s->draining) {
        eyd_send_error(s, hdr, rq->id, EYRIE__ERROR_CODE__ERR_SHUTTING_DOWN,
                       "the daemon is shutting down");
        return;
    }
    /* free sequence slots count as queue room (the engine admits soon) */
    int room = s->cfg.max_queued + (s->cfg.max_running > s->n_running
                                        ? s->cfg.max_running - s->n_running : 0);
    if (s->n_queued >= room) {
        eyd_send_error(s, hdr, rq->id, EYRIE__ERROR_CODE__ERR_BUSY,
                       "%d jobs queued (max-queued): retry later", s->n_queued);
        return;
    }
    eyd_job *j = calloc(1, sizeof *j);
    if (!j) {
        eyd_send_error(s, hdr, rq->id, EYRIE__ERROR_CODE__ERR_BUSY, "no memory");
        return;
    }
    snprintf(j->id, sizeof j->id, "%s", rq->id);
    j->hash = hash;
    j->t_arrive = eyd_now_ms();
    verr v = {0};
    /* tokenizing a long prompt must not hold the lock the engine needs */
    pthread_mutex_unlock(&s->mu);
    bool ok = build_job(s, rq->generate, j, &v);
    pthread_mutex_lock(&s->mu);
    if (!ok) {
        eyd_send_error(s, hdr, rq->id, v.code, "%s", v.msg);
        free_job(j);
        return;
    }
    if (find_job(s, rq->id)) { /* cannot happen: one receiving thread */
        eyd_send_error(s, hdr, rq->id, EYRIE__ERROR_CODE__ERR_INTERNAL, "id raced");
        free_job(j);
        return;
    }
    insert_job(s, j);
    j->state = J_QUEUED;
    if (s->q_tail) s->q_tail->next = j;
    else s->q_head = j;
    s->q_tail = j;
    s->n_queued++;
    if (j->stream) {
        Eyrie__Accepted a = EYRIE__ACCEPTED__INIT;
        a.job_id = j->id;
        Eyrie__Response r = response(rq->id);
        r.body_case = EYRIE__RESPONSE__BODY_ACCEPTED;
        r.accepted = &a;
        eyd_send(s, hdr, &r);
    } else {
        add_waiter(s, j, hdr, rq->id, W_UNARY, 0, 0);
    }
    pthread_cond_broadcast(&s->cv);
}

static void handle_poll(eyd_server *s, void *hdr, const Eyrie__Request *rq)
{
    const Eyrie__Poll *p = rq->poll;
    eyd_job *j = find_job(s, p->job_id);
    if (!j) {
        eyd_send_error(s, hdr, rq->id, EYRIE__ERROR_CODE__ERR_NOT_FOUND, "no job '%.64s'",
                       p->job_id);
        return;
    }
    uint64_t after = p->has_after ? p->after : 0;
    /* past the text of a job still running: wait for it (libeyrie resumes a
     * stream whose daemon died by resubmitting it elsewhere and polling on
     * from the bytes it already holds); past the final text: an error */
    if (after > j->text_len && j->state == J_DONE && !j->err_code) {
        eyd_send_error(s, hdr, rq->id, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT,
                       "after %llu is past the %zu bytes produced", (unsigned long long)after,
                       j->text_len);
        return;
    }
    uint32_t wait = p->has_wait_ms ? p->wait_ms : 1000;
    if (wait > (uint32_t)s->cfg.poll_max_ms) wait = (uint32_t)s->cfg.poll_max_ms;
    if (j->state == J_DONE || after < j->text_len || wait == 0)
        send_poll(s, j, hdr, rq->id, after);
    else
        add_waiter(s, j, hdr, rq->id, W_POLL, after, eyd_now_ms() + wait);
}

static void handle_cancel(eyd_server *s, void *hdr, const Eyrie__Request *rq)
{
    eyd_job *j = find_job(s, rq->cancel->job_id);
    if (!j) {
        eyd_send_error(s, hdr, rq->id, EYRIE__ERROR_CODE__ERR_NOT_FOUND, "no job '%.64s'",
                       rq->cancel->job_id);
        return;
    }
    Eyrie__CancelResult c = EYRIE__CANCEL_RESULT__INIT;
    c.has_found = c.has_was_running = true;
    c.found = j != NULL;
    if (j && j->state == J_QUEUED) {
        /* never started: out of the queue, an error for its waiters */
        for (eyd_job **q = &s->q_head, *prev = NULL; *q; prev = *q, q = &(*q)->next)
            if (*q == j) {
                *q = j->next;
                if (s->q_tail == j) s->q_tail = prev;
                break;
            }
        s->n_queued--;
        j->err_code = EYRIE__ERROR_CODE__ERR_CANCELLED;
        j->err_msg = strdup("cancelled before it started");
        eyd_job_finished(s, j);
    } else if (j && j->state == J_RUNNING) {
        j->cancel = true;
        c.was_running = true;
    }
    Eyrie__Response r = response(rq->id);
    r.body_case = EYRIE__RESPONSE__BODY_CANCEL;
    r.cancel = &c;
    eyd_send(s, hdr, &r);
}

static void handle_health(eyd_server *s, void *hdr, const Eyrie__Request *rq)
{
    Eyrie__HealthResult h = EYRIE__HEALTH_RESULT__INIT;
    h.status = (char *)(s->draining ? "draining" : "ok");
    h.has_uptime_s = h.has_running = h.has_queued = true;
    h.uptime_s = (eyd_now_ms() - s->t_start) / 1000.0;
    h.running = (uint32_t)s->n_running;
    h.queued = (uint32_t)s->n_queued;
    Eyrie__Response r = response(rq->id);
    r.body_case = EYRIE__RESPONSE__BODY_HEALTH;
    r.health = &h;
    eyd_send(s, hdr, &r);
}

/* ---- Stats: the metric set (docs/operations.md lists it) */

typedef struct mset {
    Eyrie__Metric m[96];
    Eyrie__Metric *p[96];
    Eyrie__Label lab[96];
    Eyrie__Label *lp[96];
    Eyrie__Bucket b[EYD_LAT_BUCKETS];
    Eyrie__Bucket *bp[EYD_LAT_BUCKETS];
    char val[96][24];
    int n;
} mset;

static Eyrie__Metric *metric(mset *ms, const char *name, const char *help, int type, double v,
                            const char *lname, const char *lval)
{
    if (ms->n == 96) return NULL;
    int i = ms->n++;
    Eyrie__Metric *m = &ms->m[i];
    eyrie__metric__init(m);
    m->name = (char *)name;
    m->help = (char *)help;
    m->has_type = true;
    m->type = type;
    m->has_value = true;
    m->value = v;
    if (lname) {
        eyrie__label__init(&ms->lab[i]);
        ms->lab[i].name = (char *)lname;
        snprintf(ms->val[i], sizeof ms->val[i], "%s", lval);
        ms->lab[i].value = ms->val[i];
        ms->lp[i] = &ms->lab[i];
        m->n_labels = 1;
        m->labels = &ms->lp[i];
    }
    ms->p[i] = m;
    return m;
}

static void handle_stats(eyd_server *s, void *hdr, const Eyrie__Request *rq)
{
    static mset ms; /* main thread only */
    memset(&ms, 0, sizeof ms);
    const eyd_metrics *t = &s->met;
    const int C = EYRIE__METRIC_TYPE__METRIC_COUNTER, G = EYRIE__METRIC_TYPE__METRIC_GAUGE;
    static const char *kinds[] = {"generate", "poll", "cancel", "health", "stats", "list_models",
                                  "invalid", "other"};
    for (int i = 0; i < 7; i++)
        metric(&ms, "requests_total", "requests received, by kind", C, (double)t->requests[i],
               "kind", kinds[i]);
    static const char *codes[] = {"none", "malformed", "bad_version", "invalid_argument",
                                  "too_large", "busy", "not_found", "duplicate_id",
                                  "shutting_down", "deadline_exceeded", "cancelled", "capacity",
                                  "unsupported", "media", "internal"};
    for (int i = 1; i < 15; i++)
        metric(&ms, "errors_total", "error replies, by code", C, (double)t->errors[i], "code",
               codes[i]);
    static const char *fin[] = {"none", "stop", "length", "cancelled", "deadline"};
    for (int i = 1; i < 5; i++)
        metric(&ms, "jobs_finished_total", "jobs with a result, by finish reason", C,
               (double)t->finished[i], "reason", fin[i]);
    metric(&ms, "prompt_tokens_total", "prompt tokens of finished jobs", C,
           (double)t->prompt_tokens, NULL, NULL);
    metric(&ms, "generation_tokens_total", "tokens generated", C, (double)t->gen_tokens, NULL,
           NULL);
    metric(&ms, "spec_decode_num_drafts", "speculative rounds (verify passes)", C,
           (double)t->spec_drafts, NULL, NULL);
    metric(&ms, "spec_decode_num_draft_tokens", "draft tokens sent to verification", C,
           (double)t->spec_draft_tokens, NULL, NULL);
    metric(&ms, "spec_decode_num_accepted_tokens", "draft tokens accepted", C,
           (double)t->spec_accepted, NULL, NULL);
    int npos = s->d ? (s->cfg.spec_depth > s->cfg.spec_k ? s->cfg.spec_depth : s->cfg.spec_k) : 0;
    if (npos > EY_SPEC_MAX_DEPTH) npos = EY_SPEC_MAX_DEPTH;
    for (int i = 0; i < npos; i++) {
        char pos[8];
        snprintf(pos, sizeof pos, "%d", i);
        metric(&ms, "spec_decode_num_accepted_tokens_per_pos",
               "accepted draft tokens by position in the draft", C,
               (double)t->spec_accepted_pos[i], "position", pos);
    }
    metric(&ms, "spec_decode_jobs_stopped_drafting", "jobs whose acceptance was too low to draft",
           C, (double)t->spec_dropped, NULL, NULL);
    metric(&ms, "spec_decode_jobs_not_drafting",
           "jobs decoded without drafts because the drafter kept failing its probes", C,
           (double)t->spec_skipped, NULL, NULL);
    metric(&ms, "engine_steps_total", "batched forward passes", C, (double)t->steps, NULL, NULL);
    metric(&ms, "engine_rows_total", "rows run in batched forwards", C, (double)t->step_rows,
           NULL, NULL);
    metric(&ms, "queue_depth", "jobs waiting for a slot", G, s->n_queued, NULL, NULL);
    metric(&ms, "running_sequences", "sequences being decoded", G, s->n_running, NULL, NULL);
    metric(&ms, "kv_rows_reserved", "KV rows promised to running jobs", G, s->rows_reserved, NULL,
           NULL);
    metric(&ms, "kv_usage_ratio", "reserved / total KV rows", G,
           s->rows_total ? (double)s->rows_reserved / s->rows_total : 0, NULL, NULL);
    long now = (long)(eyd_now_ms() / 1000);
    uint64_t recent = 0;
    for (int i = 0; i < 10; i++)
        if (t->tps_sec[i] > now - 10 && t->tps_sec[i] < now) recent += t->tps_slot[i];
    metric(&ms, "generation_tokens_per_second", "tokens generated per second, last 10 s", G,
           (double)recent / 10.0, NULL, NULL);
    metric(&ms, "uptime_seconds", "seconds since start", G, (eyd_now_ms() - s->t_start) / 1000,
           NULL, NULL);
    Eyrie__Metric *h = metric(&ms, "request_latency_seconds",
                              "arrival to answer of generate jobs",
                              EYRIE__METRIC_TYPE__METRIC_HISTOGRAM, 0, NULL, NULL);
    if (h) {
        static const double le[EYD_LAT_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                                   5,    10,  30,   60,  120, INFINITY};
        uint64_t cum = 0;
        for (int i = 0; i < EYD_LAT_BUCKETS; i++) {
            eyrie__bucket__init(&ms.b[i]);
            cum += t->lat_bucket[i];
            ms.b[i].le = le[i];
            ms.b[i].count = cum;
            ms.bp[i] = &ms.b[i];
        }
        h->has_value = false;
        h->n_buckets = EYD_LAT_BUCKETS;
        h->buckets = ms.bp;
        h->has_sum = h->has_count = true;
        h->sum = t->lat_sum;
        h->count = t->lat_count;
    }
    Eyrie__StatsResult sr = EYRIE__STATS_RESULT__INIT;
    sr.n_metrics = (size_t)ms.n;
    sr.metrics = ms.p;
    Eyrie__Response r = response(rq->id);
    r.body_case = EYRIE__RESPONSE__BODY_STATS;
    r.stats = &sr;
    eyd_send(s, hdr, &r);
}

static void handle_models(eyd_server *s, void *hdr, const Eyrie__Request *rq)
{
    Eyrie__ModelInfo mi = EYRIE__MODEL_INFO__INIT;
    mi.name = s->model_name;
    mi.path = s->cfg.model;
    mi.arch = (char *)ey_arch_name(s->m->cfg.arch);
    mi.has_n_ctx = mi.has_n_vocab = true;
    mi.n_ctx = (uint32_t)s->cfg.seq_ctx;
    mi.n_vocab = (uint32_t)s->m->cfg.n_vocab;
    mi.drafter = (char *)(s->d ? s->cfg.drafter : "");
    Eyrie__Task tasks[2] = {EYRIE__TASK__TASK_CHAT, EYRIE__TASK__TASK_COMPLETE};
    mi.n_tasks = 2;
    mi.tasks = tasks;
    Eyrie__ModelInfo *mp = &mi;
    Eyrie__ModelList ml = EYRIE__MODEL_LIST__INIT;
    ml.n_models = 1;
    ml.models = &mp;
    Eyrie__Response r = response(rq->id);
    r.body_case = EYRIE__RESPONSE__BODY_MODELS;
    r.models = &ml;
    eyd_send(s, hdr, &r);
}

/* One received message (mu held). Takes ownership of hdr. */
static void handle(eyd_server *s, void *hdr, const uint8_t *buf, size_t n)
{
    if (n > (size_t)s->cfg.max_msg_bytes) {
        s->met.requests[6]++;
        eyd_send_error(s, hdr, NULL, EYRIE__ERROR_CODE__ERR_TOO_LARGE,
                       "request of %zu bytes exceeds max-msg-bytes %d", n, s->cfg.max_msg_bytes);
        return;
    }
    budget b = {.left = 8 * n + 65536};
    ProtobufCAllocator al = {.alloc = b_alloc, .free = b_free, .allocator_data = &b};
    Eyrie__Request *rq = eyrie__request__unpack(&al, n, buf);
    if (!rq) {
        s->met.requests[6]++;
        /* many tiny elements (10 000 empty parts) unpack to far more memory
         * than their bytes: over the budget is a size limit, not bad bytes */
        if (b.refused)
            eyd_send_error(s, hdr, NULL, EYRIE__ERROR_CODE__ERR_TOO_LARGE,
                           "request of %zu bytes unpacks to more than %zu bytes", n,
                           8 * n + 65536);
        else
            eyd_send_error(s, hdr, NULL, EYRIE__ERROR_CODE__ERR_MALFORMED,
                           "not an eyrie Request (protobuf did not parse)");
        return;
    }
    const char *rid = rq->id;
    if (rq->version != EYRIE__PROTOCOL_VERSION__PROTOCOL_VERSION) {
        s->met.requests[6]++;
        eyd_send_error(s, hdr, valid_id(rid) ? rid : NULL, EYRIE__ERROR_CODE__ERR_BAD_VERSION,
                       "protocol version %u (this daemon speaks 1)", rq->version);
    } else if (!valid_id(rid)) {
        s->met.requests[6]++;
        eyd_send_error(s, hdr, NULL, EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT,
                       "request id must be 1..64 bytes of [A-Za-z0-9._:-]");
    } else {
        switch (rq->body_case) {
        case EYRIE__REQUEST__BODY_GENERATE:
            s->met.requests[0]++;
            handle_generate(s, hdr, rq, fnv(buf, n, 1469598103934665603ull));
            break;
        case EYRIE__REQUEST__BODY_POLL:
            s->met.requests[1]++;
            handle_poll(s, hdr, rq);
            break;
        case EYRIE__REQUEST__BODY_CANCEL:
            s->met.requests[2]++;
            handle_cancel(s, hdr, rq);
            break;
        case EYRIE__REQUEST__BODY_HEALTH:
            s->met.requests[3]++;
            handle_health(s, hdr, rq);
            break;
        case EYRIE__REQUEST__BODY_STATS:
            s->met.requests[4]++;
            handle_stats(s, hdr, rq);
            break;
        case EYRIE__REQUEST__BODY_LIST_MODELS:
            s->met.requests[5]++;
            handle_models(s, hdr, rq);
            break;
        default:
            s->met.requests[6]++;
            eyd_send_error(s, hdr, rid, EYRIE__ERROR_CODE__ERR_MALFORMED, "request has no body");
        }
    }
    eyrie__request__free_unpacked(rq, &al);
}

/* Timers (mu held): expired long polls, deadlines of queued jobs, result
 * expiry. */
static void sweep(eyd_server *s)
{
    double now = eyd_now_ms();
    if (s->n_polls > 0)
        for (int b = 0; b < EYD_HBUCKETS; b++)
            for (eyd_job *j = s->table[b]; j; j = j->hnext)
                for (eyd_waiter **p = &j->waiters; *p;) {
                    eyd_waiter *w = *p;
                    if (w->kind == W_POLL && now >= w->until) {
                        *p = w->next;
                        s->n_polls--;
                        send_poll(s, j, w->hdr, w->req_id, w->after);
                        free(w);
                    } else {
                        p = &w->next;
                    }
                }
    for (eyd_job **q = &s->q_head, *prev = NULL; *q;) {
        eyd_job *j = *q;
        if (j->deadline > 0 && now > j->deadline) {
            *q = j->next;
            if (s->q_tail == j) s->q_tail = prev;
            s->n_queued--;
            j->err_code = EYRIE__ERROR_CODE__ERR_DEADLINE_EXCEEDED;
            j->err_msg = strdup("deadline passed while queued");
            eyd_job_finished(s, j);
        } else {
            prev = j;
            q = &j->next;
        }
    }
    double ttl = s->cfg.result_ttl_s * 1000.0;
    while (s->done_head && (now - s->done_head->done_at > ttl || s->n_done > s->cfg.max_results)) {
        eyd_job *j = s->done_head;
        if (j->waiters) break; /* still answering (cannot happen once DONE) */
        s->done_head = j->next;
        if (!s->done_head) s->done_tail = NULL;
        s->n_done--;
        remove_job(s, j);
    }
}

/* Fail every queued job with SHUTTING_DOWN (mu held). */
static void fail_queued(eyd_server *s)
{
    while (s->q_head) {
        eyd_job *j = s->q_head;
        s->q_head = j->next;
        s->n_queued--;
        j->err_code = EYRIE__ERROR_CODE__ERR_SHUTTING_DOWN;
        j->err_msg = strdup("the daemon shut down before the job started");
        eyd_job_finished(s, j);
    }
    s->q_tail = NULL;
}

/* ------------------------------------------------------------ main */

/* Receive one message (waits up to the 50 ms receive timeout), answer it,
 * run the timers. True if a message came. */
static bool serve_one(eyd_server *s)
{
    void *body = NULL, *ctl = NULL;
    struct nn_iovec iov = {&body, NN_MSG};
    struct nn_msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                          .msg_controllen = NN_MSG};
    int n = nn_recvmsg(s->sock, &h, 0);
    pthread_mutex_lock(&s->mu);
    if (n >= 0) {
        if (ctl) handle(s, ctl, body, (size_t)n);
        nn_freemsg(body);
    } else if (nn_errno() != ETIMEDOUT && nn_errno() != EAGAIN && nn_errno() != EINTR) {
        eyd_log("msg=\"receive failed\" error=\"%s\"", nn_strerror(nn_errno()));
    }
    sweep(s);
    pthread_mutex_unlock(&s->mu);
    return n >= 0;
}

static int setup(eyd_server *s)
{
    eyd_config *c = &s->cfg;
    if (!c->model || !*c->model) {
        free(c->model);
        if (!(c->model = ey_default_model_path())) {
            fprintf(stderr, "eyried: no memory\n");
            return 1;
        }
    }
    const char *base = strrchr(c->model, '/');
    snprintf(s->model_name, sizeof s->model_name, "%s", base ? base + 1 : c->model);
    if (c->max_running > c->batch_rows) {
        fprintf(stderr, "eyried: max-running %d exceeds batch-rows %d\n", c->max_running,
                c->batch_rows);
        return 2;
    }
    ey_err e;
    if (!strncmp(c->device, "cuda", 4)) {
        int dev = c->device[4] == ':' ? atoi(c->device + 5) : 0;
        e = ey_backend_cuda_create(dev, &s->be);
    } else if (!strcmp(c->device, "cpu")) {
        e = ey_backend_cpu_create(c->threads, &s->be);
    } else {
        fprintf(stderr, "eyried: unknown device '%s' (cpu | cuda[:N])\n", c->device);
        return 2;
    }
    if (e) {
        fprintf(stderr, "eyried: backend %s: %s\n", c->device, ey_err_detail());
        return 1;
    }
    if ((e = ey_model_load(c->model, s->be, &s->m))) {
        fprintf(stderr, "eyried: model %s: %s\n", c->model, ey_err_detail());
        return 1;
    }
    if (!s->m->tok) {
        fprintf(stderr, "eyried: model %s has no tokenizer\n", c->model);
        return 1;
    }
    ey_spec_method dm;
    if (!ey_spec_method_parse(c->spec_method, &dm)) {
        fprintf(stderr, "eyried: --spec-method must be none, chain or tree\n");
        return 2;
    }
    ey_eagle3_opts eo = {0};
    if (!ey_e3_quant_parse(c->drafter_quant, &eo.quant)) {
        fprintf(stderr, "eyried: --drafter-quant must be none, q8_0 or q4_1\n");
        return 2;
    }
    if (c->drafter && *c->drafter) {
        if ((e = ey_eagle3_load(c->drafter, s->m, &eo, &s->d))) {
            fprintf(stderr, "eyried: drafter %s: %s\n", c->drafter, ey_err_detail());
            return 1;
        }
    }
    if ((e = ey_ctx_create(s->m, c->ctx, c->batch_rows, c->batch_rows, &s->ctx))) {
        fprintf(stderr, "eyried: context: %s\n", ey_err_detail());
        return 1;
    }
    if (s->d && (e = ey_spec_ctx_capture(s->ctx, s->d))) {
        fprintf(stderr, "eyried: capture: %s\n", ey_err_detail());
        return 1;
    }
    s->rows_total = s->ctx->kv.n_blocks * s->ctx->kv.block_size;
    /* the socket: raw REP, explicit receive limit, several endpoints */
    s->sock = nn_socket(AF_SP_RAW, NN_REP);
    if (s->sock < 0) {
        fprintf(stderr, "eyried: nn_socket: %s\n", nn_strerror(nn_errno()));
        return 1;
    }
    /* nanomsg drops anything over this; up to it we answer ERR_TOO_LARGE */
    int maxsz = c->max_msg_bytes + (c->max_msg_bytes < (1 << 29) ? c->max_msg_bytes : 0) / 16 +
                65536;
    int tmo = 50;
    if (nn_setsockopt(s->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof maxsz) < 0 ||
        nn_setsockopt(s->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &tmo, sizeof tmo) < 0) {
        fprintf(stderr, "eyried: setsockopt: %s\n", nn_strerror(nn_errno()));
        return 1;
    }
    for (int i = 0; i < c->n_listen; i++) {
        const char *u = c->listen[i];
        if (!strncmp(u, "ipc://", 6) && strlen(u) >= 6 + 108) {
            fprintf(stderr, "eyried: ipc path of %s is longer than 107 bytes\n", u);
            return 2;
        }
        if (strncmp(u, "ipc://", 6) && strncmp(u, "tcp://", 6)) {
            fprintf(stderr, "eyried: --listen %s: ipc:// or tcp:// only\n", u);
            return 2;
        }
        if (nn_bind(s->sock, u) < 0) {
            fprintf(stderr, "eyried: bind %s: %s\n", u, nn_strerror(nn_errno()));
            return 1;
        }
    }
    return 0;
}

static void teardown(eyd_server *s)
{
    for (int b = 0; b < EYD_HBUCKETS; b++)
        for (eyd_job *j = s->table[b], *nx; j; j = nx) {
            nx = j->hnext;
            free_job(j);
        }
    if (s->sock >= 0) nn_close(s->sock);
    ey_ctx_free(s->ctx);
    ey_eagle3_free(s->d);
    ey_model_free(s->m);
    ey_backend_destroy(s->be);
    eyd_config_free(&s->cfg);
}

int main(int argc, char **argv)
{
    static eyd_server srv;
    eyd_server *s = &srv;
    s->sock = -1;
    int rc = eyd_config_load(&s->cfg, argc, argv);
    if (rc) {
        eyd_config_free(&s->cfg);
        return rc == 1 ? 0 : 2;
    }
    g_log_path = s->cfg.log_file;
    reopen_log();
    if ((rc = setup(s))) {
        teardown(s);
        return rc;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->t_start = eyd_now_ms();
    if (eyd_engine_start(s)) {
        fprintf(stderr, "eyried: cannot start the engine thread\n");
        teardown(s);
        return 1;
    }
    eyd_log("msg=ready model=%s drafter=%s drafter_quant=%s ctx=%d seq_ctx=%d max_running=%d "
            "batch_rows=%d listen=%s%s", s->model_name, s->d ? s->cfg.drafter : "none",
            s->d ? s->cfg.drafter_quant : "none", s->cfg.ctx,
            s->cfg.seq_ctx, s->cfg.max_running, s->cfg.batch_rows, s->cfg.listen[0],
            s->cfg.n_listen > 1 ? ",..." : "");
    double drain_until = 0;
    int seen_term = 0;
    for (;;) {
        if (g_hup) {
            g_hup = 0;
            reopen_log();
            eyd_log("msg=\"log reopened\"");
        }
        if (g_term != seen_term) {
            seen_term = g_term;
            pthread_mutex_lock(&s->mu);
            if (!s->draining) {
                s->draining = true;
                drain_until = eyd_now_ms() + s->cfg.grace_s * 1000.0;
                eyd_log("msg=draining running=%d queued=%d grace_s=%d", s->n_running,
                        s->n_queued, s->cfg.grace_s);
            } else {
                drain_until = 0; /* a second signal: stop now */
            }
            pthread_mutex_unlock(&s->mu);
        }
        if (s->draining) {
            pthread_mutex_lock(&s->mu);
            bool idle = s->n_queued == 0 && s->n_running == 0;
            if (!idle && eyd_now_ms() >= drain_until) {
                fail_queued(s);
                s->abort_all = true;
                pthread_cond_broadcast(&s->cv);
            }
            pthread_mutex_unlock(&s->mu);
            if (idle) break;
        }
        serve_one(s);
    }
    /* Answers are queued in nanomsg: give them time to leave, and go on
     * answering meanwhile: Polls already in flight when the last job ended
     * (every streaming client re-polls after each piece) get the job's end,
     * a new Generate ERR_SHUTTING_DOWN. Until 300 ms pass quietly, 2 s at
     * most. */
    for (double t = eyd_now_ms(), quiet = t + 300, hard = t + 2000;
         (t = eyd_now_ms()) < quiet && t < hard;)
        if (serve_one(s)) quiet = eyd_now_ms() + 300;
    eyd_engine_join(s);
    eyd_log("msg=stopped");
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    teardown(s);
    return 0;
}
