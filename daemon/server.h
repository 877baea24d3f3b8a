/* eyried — shared state of the daemon: jobs, the id table, the queue, the
 * engine thread (continuous batching) and the metrics.
 *
 * Threads: the main thread receives on the raw REP socket, validates,
 * tokenizes and queues jobs, answers Poll/Cancel/Health/Stats/ListModels
 * and times out long polls; the engine thread admits queued jobs, runs one
 * batched forward per step over every running sequence and finishes jobs.
 * Replies are sent by whichever thread completes them (nanomsg sockets are
 * thread-safe). Everything below `mu` is guarded by it; the engine alone
 * touches a job's ey_spec_seq, the KV pool and the model. */
#ifndef EYD_SERVER_H
#define EYD_SERVER_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "../core/spec.h"
#include "dconfig.h"
#include "eyrie.pb-c.h"

typedef enum { W_UNARY = 0, W_POLL } eyd_wait_kind;

typedef struct eyd_waiter {
    void *hdr;           /* nanomsg routing header of the request */
    eyd_wait_kind kind;
    uint64_t after;      /* W_POLL */
    double until;        /* W_POLL: answer empty by then (ms) */
    char req_id[65];
    struct eyd_waiter *next;
} eyd_waiter;

typedef enum { J_QUEUED = 0, J_RUNNING, J_DONE } eyd_job_state;

typedef struct eyd_job {
    char id[65];
    uint64_t hash;           /* of the Generate bytes: resends are identical */
    eyd_job_state state;
    /* the request, immutable once queued */
    int32_t *prompt;
    int n_prompt;
    ey_gen_params gp;
    char *stops[EY_MAX_STOP];
    ey_spec_opts so;
    bool stream, return_tokens;
    int task;
    double t_arrive, t_start, deadline; /* ms; deadline 0 = none */
    /* engine only */
    ey_spec_seq *q;
    int rows_reserved;
    size_t published;        /* text bytes copied to `text` */
    /* public, under mu */
    char *text;
    size_t text_len, text_cap;
    bool cancel;
    int err_code;            /* EYRIE__ERROR_CODE__*, 0 = none */
    char *err_msg;
    bool have_result;
    Eyrie__GenerateResult result;
    eyd_waiter *waiters;
    double done_at;
    struct eyd_job *hnext;   /* id table chain */
    struct eyd_job *next;    /* queue / done list */
} eyd_job;

#define EYD_HBUCKETS 8192
#define EYD_LAT_BUCKETS 12

typedef struct eyd_metrics {
    uint64_t requests[8];    /* by body kind */
    uint64_t errors[16];     /* by ErrorCode */
    uint64_t finished[5];    /* by FinishReason */
    uint64_t prompt_tokens, gen_tokens;
    uint64_t spec_drafts, spec_draft_tokens, spec_accepted;
    uint64_t spec_accepted_pos[EY_SPEC_MAX_DEPTH];
    uint64_t steps, step_rows;
    uint64_t spec_dropped;   /* jobs that stopped drafting (low acceptance) */
    uint64_t spec_skipped;   /* jobs that did not draft (the drafter kept failing) */
    uint64_t lat_count, lat_bucket[EYD_LAT_BUCKETS];
    double lat_sum;
    /* tokens in the last 10 one-second slots */
    uint64_t tps_slot[10];
    long tps_sec[10];
} eyd_metrics;

typedef struct eyd_server {
    eyd_config cfg;
    ey_backend *be;
    ey_model *m;
    ey_eagle3 *d;
    ey_ctx *ctx;
    int sock;
    char model_name[256];

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t engine;
    eyd_job *table[EYD_HBUCKETS];
    eyd_job *q_head, *q_tail;
    int n_queued, n_running, n_jobs, n_polls;
    eyd_job *done_head, *done_tail;
    int n_done;
    int rows_reserved;       /* KV rows promised to running jobs */
    int rows_total;
    bool engine_stop;        /* engine: exit when idle */
    bool abort_all;          /* engine: fail running jobs with SHUTTING_DOWN */
    bool draining;
    double t_start;
    int spec_fail_streak;    /* consecutive probes that found the drafter useless */
    unsigned spec_jobs;      /* engine: jobs considered while the streak is on */
    int last_code;           /* error code of the last answer (tests, fuzzing) */
    eyd_metrics met;
} eyd_server;

/* engine.c */
int eyd_engine_start(eyd_server *s);
void eyd_engine_join(eyd_server *s);
/* How many KV rows a job is promised at admission. */
int eyd_job_rows(const eyd_server *s, const eyd_job *j);

/* eyried.c: replies and job completion (call with mu held) */
void eyd_send(eyd_server *s, void *hdr, Eyrie__Response *r);
void eyd_send_error(eyd_server *s, void *hdr, const char *req_id, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void eyd_job_finished(eyd_server *s, eyd_job *j);
void eyd_job_publish(eyd_server *s, eyd_job *j);
void eyd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double eyd_now_ms(void);

#endif
