/* libeyrie — C client of the eyrie daemon (wire protocol v1, proto/eyrie.proto).
 *
 *   eyc_client *c;
 *   if (eyc_connect("ipc:///run/eyrie/eyrie.sock", NULL, &c)) ...error...
 *   Eyrie__Generate g = EYRIE__GENERATE__INIT;  ... fill it ...
 *   Eyrie__Response *r;
 *   int rc = eyc_generate(c, &g, NULL, 0, &r);   // unary: waits for the result
 *   if (rc) fprintf(stderr, "%s\n", eyc_errmsg(c));
 *   else { puts(r->result->text); eyc_response_free(r); }
 *   eyc_close(c);
 *
 * Transport: one nanomsg REQ socket connected to every URL given. nanomsg
 * load-balances requests over the connected daemons and resends a request
 * whose daemon went away (or that got no answer within the resend interval);
 * the daemon deduplicates by request id, so a resend never runs a job twice on
 * one daemon. See docs/protocol.md.
 *
 * Errors: every function returns an int code: EYC_OK (0), a protocol
 * ErrorCode value (1..99, EYRIE__ERROR_CODE__*) the daemon answered with, or
 * one of the client-side EYC_ERR_* codes (>= 100). eyc_errmsg() gives the
 * message of the last failure on that client.
 *
 * Threads: a client serialises its calls (one request in flight per REQ
 * socket); use one client per thread for concurrent requests. */
#ifndef EYRIE_CLIENT_H
#define EYRIE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "eyrie.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ error codes */

enum {
    EYC_OK = 0,
    /* 1..99: the protocol's ErrorCode values (EYRIE__ERROR_CODE__ERR_*),
     * as answered by the daemon. EYRIE__ERROR_CODE__ERR_TOO_LARGE also comes
     * from the client itself for a request over its max_request_bytes. */
    EYC_ERR_INVALID = 100,     /* bad argument to a libeyrie function (NULL, bad URL, ...) */
    EYC_ERR_NOMEM = 101,       /* out of memory */
    EYC_ERR_TRANSPORT = 102,   /* nanomsg socket/connect/send/receive failure */
    EYC_ERR_TIMEOUT = 103,     /* no answer within the call's timeout */
    EYC_ERR_BAD_RESPONSE = 104,/* answer is not a valid v1 Response, wrong id, wrong body */
    EYC_ERR_INTERRUPTED = 105, /* a signal interrupted the wait (EINTR) */
    EYC_ERR_LOST = 106,        /* streaming: the job vanished and could not be resumed */
};

/* Static text for a code ("ERR_BUSY", "timeout", ...). */
const char *eyc_strerror(int code);

/* ------------------------------------------------------------ connection */

typedef struct eyc_options {
    int timeout_ms;          /* default call timeout (send + receive); 0: 300000;
                                -1: wait forever */
    int resend_ivl_ms;       /* NN_REQ_RESEND_IVL; 0: 60000. Must be > 0 */
    int reconnect_ivl_ms;    /* NN_RECONNECT_IVL; 0: nanomsg's 100 */
    int max_response_bytes;  /* NN_RCVMAXSIZE; 0: 64 MiB + 64 KiB. Must be > 0 */
    size_t max_request_bytes;/* requests larger than this are refused locally with
                                ERR_TOO_LARGE; 0: 64 MiB (the daemon's default limit) */
    int poll_wait_ms;        /* streaming: Poll.wait_ms; 0: 1000 */
    int lost_retries;        /* streaming: extra Polls after ERR_NOT_FOUND before the job
                                counts as lost (another daemon of a pool answered);
                                0: 8; -1: none */
    bool no_resume;          /* streaming: do not resubmit a lost job (see eyc_stream) */
} eyc_options;

typedef struct eyc_client eyc_client;

/* urls: one URL ("ipc:///path", "tcp://host:port") or several separated by
 * commas; the REQ socket connects to every one. ipc paths must be at most 107
 * bytes (checked here: nanomsg aborts on longer ones). opts may be NULL.
 * Connecting does not wait for a daemon: nanomsg connects in the background,
 * so a wrong URL shows as a timeout on the first call. On failure *out is
 * NULL and the message is in eyc_last_error(). */
int eyc_connect(const char *urls, const eyc_options *opts, eyc_client **out);
void eyc_close(eyc_client *c);

/* Message of the last failure on c (never NULL; "" after success). */
const char *eyc_errmsg(const eyc_client *c);
/* Message of the last eyc_connect failure in this thread. */
const char *eyc_last_error(void);

/* A fresh request id: "<prefix>-<pid>-<random>-<counter>", unique per
 * process and, with overwhelming probability, across processes and hosts.
 * buf needs at least EYC_ID_MAX + 1 bytes. */
#define EYC_ID_MAX 64
void eyc_new_id(eyc_client *c, char *buf);

/* ------------------------------------------------------------ calls */

/* Low level: send req (version 1 is filled in when 0; an empty id gets a
 * fresh one), wait for the Response. timeout_ms: > 0 a bound, 0 the client's
 * default, -1 forever. On EYC_OK *out is a Response with a body and no error
 * (free with eyc_response_free); otherwise *out is NULL and the code is the
 * daemon's ErrorCode or a client code. */
int eyc_call(eyc_client *c, const Eyrie__Request *req, Eyrie__Response **out, int timeout_ms);

void eyc_response_free(Eyrie__Response *r);

/* Unary generation: waits for the job (g->stream is ignored and sent
 * false). id: the request id (idempotency key), NULL for a fresh one.
 * On EYC_OK (*out)->result is the GenerateResult. */
int eyc_generate(eyc_client *c, const Eyrie__Generate *g, const char *id, int timeout_ms,
                 Eyrie__Response **out);

/* Streaming submit (g->stream forced true): on EYC_OK *job_id is the job id
 * (malloc'ed; free()). */
int eyc_submit(eyc_client *c, const Eyrie__Generate *g, const char *id, char **job_id);

/* One Poll: text bytes past `after`, waiting up to wait_ms (0: the daemon's
 * default) for some. On EYC_OK (*out)->poll is the PollResult. */
int eyc_poll(eyc_client *c, const char *job_id, uint64_t after, uint32_t wait_ms,
             Eyrie__Response **out);

/* Called with each new piece of text, in order; the pieces concatenate to the
 * unary text. Return nonzero to stop (the job is then cancelled). */
typedef int (*eyc_text_cb)(void *ud, const char *text, size_t len);

/* Poll loop for a submitted job until it is done: text goes to cb; on EYC_OK
 * *out (may be NULL if unwanted) is the final Response whose poll->result is
 * the GenerateResult. If the job vanishes (ERR_NOT_FOUND after lost_retries
 * more Polls, e.g. its daemon was killed and the REQ socket resent the Poll to
 * another one) and g is not NULL and no_resume is off, the Generate is
 * resubmitted with the same id (at most 3 times) and polling goes on from
 * the bytes already delivered: this continues the text exactly when the
 * daemons serve the same model with deterministic settings (greedy, or a
 * fixed seed), which is the default. id/g may be NULL (no resume). */
int eyc_stream(eyc_client *c, const char *job_id, const Eyrie__Generate *g, const char *id,
               eyc_text_cb cb, void *ud, Eyrie__Response **out);

/* eyc_submit + eyc_stream. */
int eyc_generate_stream(eyc_client *c, const Eyrie__Generate *g, const char *id, eyc_text_cb cb,
                        void *ud, Eyrie__Response **out);

/* Cancel a job. found/was_running may be NULL. Per the protocol an unknown
 * job is ERR_NOT_FOUND (or found = false, depending on the daemon). */
int eyc_cancel(eyc_client *c, const char *job_id, bool *found, bool *was_running);

/* On EYC_OK (*out)->health / ->stats / ->models is set. */
int eyc_health(eyc_client *c, int timeout_ms, Eyrie__Response **out);
int eyc_stats(eyc_client *c, int timeout_ms, Eyrie__Response **out);
int eyc_list_models(eyc_client *c, int timeout_ms, Eyrie__Response **out);

/* ------------------------------------------------------------ rendering */

/* Prometheus text exposition format (version 0.0.4): every metric name gets
 * the eyrie_ prefix; one HELP and TYPE line per family (metrics of one name
 * are grouped in first-appearance order); label values and HELP escaped;
 * histograms as _bucket{le=".."} (cumulative, with a +Inf bucket), _sum and
 * _count. Returns 0, or -1 on a write error. */
int eyc_stats_prometheus(const Eyrie__StatsResult *s, FILE *f);

/* The object `eyrie generate --json` prints (docs/cli.md):
 *   {text, token_ids[], finish_reason, usage{prompt_tokens, completion_tokens},
 *    timing{prefill_ms, decode_ms, decode_tokens_per_s},
 *    spec{method, rounds, drafted, accepted, mean_accept_len, accept_rate,
 *         per_position[], draft_ms, verify_ms}  -- only when r->spec is set}
 * NULL on no memory. Free with cJSON_Delete. */
cJSON *eyc_result_json(const Eyrie__GenerateResult *r);

/* "stop", "length", "cancelled", "deadline" ("none" for FINISH_NONE). */
const char *eyc_finish_reason_name(Eyrie__FinishReason f);

#ifdef __cplusplus
}
#endif

#endif
