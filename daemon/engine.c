/* eyried — the engine thread: continuous batching over one shared target.
 *
 * Each step:
 *  1. admission: queued jobs start (FIFO) while a sequence slot is free and
 *     the KV pool can promise them their worst case (prompt + max_tokens +
 *     one draft tree, capped by the sequence context), so a running job
 *     never meets a full cache;
 *  2. cancels and deadlines end running jobs (result so far);
 *  3. plan: every decoding sequence gets its rows first (a draft tree to
 *     verify, or one token), then prefilling sequences get chunks of at most
 *     prefill-chunk rows from what is left of batch-rows — a long prompt is
 *     spread over steps and never stalls the others;
 *  4. one ey_forward_batch over all planned items (verification of every
 *     speculating sequence shares the pass), then each sequence commits.
 * Speculation backs off where it does not pay: with more than
 * spec-max-batch decoding sequences a step plans no drafts (budget 1), the
 * rows left are split among the decoders, and a job whose drafts are
 * accepted less than spec-min-accept-pct per 100 rounds after
 * spec-probe-rounds rounds with drafts stops drafting (its drafter state is
 * freed); once spec-probe-jobs jobs in a row did so, only one job in
 * spec-probe-every drafts at all until a probe succeeds; and a job that
 * starts while more than spec-max-batch sequences run does not draft. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "result_pb.h"
#include "server.h"

int eyd_job_rows(const eyd_server *s, const eyd_job *j)
{
    int nt = ey_spec_ctx_rows(&j->so);
    long rows = (long)j->n_prompt + j->gp.max_tokens + nt;
    if (rows > s->cfg.seq_ctx) rows = s->cfg.seq_ctx;
    return (int)((rows + 15) / 16 * 16); /* whole KV blocks */
}

static bool append_text(eyd_job *j, const char *p, size_t add);

static void end_job(eyd_server *s, eyd_job *j, const char *reason, int err_code,
                    const char *err_msg)
{
    ey_gen_result res = {0};
    ey_spec_stats st = {0};
    ey_err e = EY_OK;
    if (!err_code && j->q) {
        e = ey_spec_seq_finish(j->q, &res, &st);
        if (e) {
            err_code = EYRIE__ERROR_CODE__ERR_INTERNAL;
            err_msg = ey_err_detail();
        }
    }
    if (j->q) {
        ey_spec_seq_free(j->q); /* gives the KV blocks back */
        j->q = NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->rows_reserved -= j->rows_reserved;
    j->rows_reserved = 0;
    s->n_running--;
    if (err_code) {
        j->err_code = err_code;
        j->err_msg = strdup(err_msg ? err_msg : "error");
    } else {
        if (reason) res.finish_reason = reason;
        bool spec = j->so.method != EY_SPEC_NONE;
        if (!ey_result_to_pb(&res, spec ? &st : NULL, j->t_start - j->t_arrive, j->return_tokens,
                             &j->result)) {
            j->err_code = EYRIE__ERROR_CODE__ERR_INTERNAL;
            j->err_msg = strdup("no memory for the result");
        } else {
            j->have_result = true;
            /* the final text can end with bytes the stepper held back (an
             * incomplete UTF-8 sequence flushed at the end): stream them
             * too, so that the Poll pieces concatenate to the result text */
            if (res.text && res.text_len > j->text_len &&
                !memcmp(res.text, j->text ? j->text : "", j->text_len))
                append_text(j, res.text + j->text_len, res.text_len - j->text_len);
            eyd_metrics *m = &s->met;
            m->prompt_tokens += (uint64_t)res.prompt_tokens;
            if (spec) {
                m->spec_drafts += (uint64_t)st.rounds;
                m->spec_draft_tokens += (uint64_t)st.drafted;
                m->spec_accepted += (uint64_t)st.accepted;
                for (int i = 0; i < st.n_pos && i < EY_SPEC_MAX_DEPTH; i++)
                    m->spec_accepted_pos[i] += (uint64_t)st.accepted_at[i];
            }
            eyd_log("job id=%s state=done finish=%s prompt_tokens=%d tokens=%d method=%s tau=%.2f "
                    "queue_ms=%.1f prefill_ms=%.1f decode_ms=%.1f",
                    j->id, res.finish_reason, res.prompt_tokens, res.n_ids,
                    ey_spec_method_name(j->so.method), spec ? st.mean_accept_len : 1.0,
                    j->t_start - j->t_arrive, res.prefill_ms, res.decode_ms);
        }
    }
    ey_gen_result_free(&res);
    eyd_job_finished(s, j);
    pthread_mutex_unlock(&s->mu);
}

/* Append to the job's public text (mu held); false on no memory. */
static bool append_text(eyd_job *j, const char *p, size_t add)
{
    size_t need = j->text_len + add + 1;
    if (need > j->text_cap) {
        size_t cap = j->text_cap ? j->text_cap : 256;
        while (cap < need) cap *= 2;
        char *g = realloc(j->text, cap);
        if (!g) return false;
        j->text = g;
        j->text_cap = cap;
    }
    memcpy(j->text + j->text_len, p, add);
    j->text_len += add;
    j->text[j->text_len] = 0;
    return true;
}

/* Copy newly final text into the job's public buffer (mu held). */
static void publish(eyd_server *s, eyd_job *j)
{
    size_t emitted;
    const char *t = ey_spec_seq_text(j->q, &emitted);
    if (emitted <= j->published) return;
    if (!append_text(j, t + j->published, emitted - j->published))
        return; /* published again next step */
    j->published = emitted;
    eyd_job_publish(s, j);
}

static void count_tokens(eyd_metrics *m, int n)
{
    long sec = (long)(eyd_now_ms() / 1000);
    int i = (int)(sec % 10);
    if (m->tps_sec[i] != sec) {
        m->tps_sec[i] = sec;
        m->tps_slot[i] = 0;
    }
    m->tps_slot[i] += (uint64_t)n;
    m->gen_tokens += (uint64_t)n;
}

static void *engine_main(void *arg)
{
    eyd_server *s = arg;
    const int cap = s->cfg.max_running;
    eyd_job **run = calloc((size_t)cap, sizeof *run);
    eyd_job **fresh = calloc((size_t)cap, sizeof *fresh);
    ey_fwd_item *items = calloc((size_t)cap, sizeof *items);
    int *owner = calloc((size_t)cap, sizeof *owner), *gen0 = calloc((size_t)cap, sizeof *gen0);
    bool *flags = calloc((size_t)cap, sizeof *flags), *gone = calloc((size_t)cap, sizeof *gone);
    if (!run || !fresh || !items || !owner || !gen0 || !flags || !gone) {
        eyd_log("engine: no memory");
        abort();
    }
    int n_run = 0;
    for (;;) {
        /* ---- 1. admission */
        int n_fresh = 0;
        pthread_mutex_lock(&s->mu);
        while (!s->engine_stop && !s->q_head && n_run == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->engine_stop && !s->q_head && n_run == 0) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        bool abort_all = s->abort_all;
        while (!abort_all && s->q_head && n_run + n_fresh < cap) {
            eyd_job *j = s->q_head;
            int need = eyd_job_rows(s, j);
            if (s->rows_reserved + need > s->rows_total) break; /* FIFO: wait for room */
            s->q_head = j->next;
            if (!s->q_head) s->q_tail = NULL;
            j->next = NULL;
            s->n_queued--;
            s->n_running++;
            s->rows_reserved += need;
            j->rows_reserved = need;
            j->state = J_RUNNING;
            j->t_start = eyd_now_ms();
            fresh[n_fresh++] = j;
        }
        pthread_mutex_unlock(&s->mu);
        const int running_after = n_run + n_fresh;
        for (int i = 0; i < n_fresh; i++) {
            eyd_job *j = fresh[i];
            /* after spec-probe-jobs jobs in a row found the drafter useless,
             * only one job in spec-probe-every probes it again; the others
             * decode plainly (and report no speculation). spec_jobs only
             * counts while rationing is on. */
            bool rationed = j->so.method != EY_SPEC_NONE && s->cfg.spec_probe_every > 0 &&
                            s->spec_fail_streak >= s->cfg.spec_probe_jobs &&
                            s->spec_jobs++ % (unsigned)s->cfg.spec_probe_every != 0;
            /* a job that starts in a batch already too large to draft in
             * would pay for the drafter's state and extends for nothing */
            bool crowded = running_after > s->cfg.spec_max_batch;
            if (j->so.method != EY_SPEC_NONE && (rationed || crowded)) {
                j->so.method = EY_SPEC_NONE;
                pthread_mutex_lock(&s->mu);
                s->met.spec_skipped++;
                pthread_mutex_unlock(&s->mu);
            }
            ey_err e = ey_spec_seq_create(s->ctx, j->so.method == EY_SPEC_NONE ? NULL : s->d,
                                          &j->so, j->prompt, j->n_prompt, &j->gp, NULL, NULL,
                                          &j->q);
            if (e) {
                int code = e == EY_ERR_CAPACITY ? EYRIE__ERROR_CODE__ERR_CAPACITY
                         : e == EY_ERR_ARG ? EYRIE__ERROR_CODE__ERR_INVALID_ARGUMENT
                                           : EYRIE__ERROR_CODE__ERR_INTERNAL;
                end_job(s, j, NULL, code, ey_err_detail());
                continue;
            }
            run[n_run++] = j;
        }

        /* ---- 2. cancels, deadlines, shutdown */
        double now = eyd_now_ms();
        pthread_mutex_lock(&s->mu);
        abort_all = s->abort_all;
        for (int i = 0; i < n_run; i++) flags[i] = run[i]->cancel;
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < n_run;) {
            eyd_job *j = run[i];
            const char *why = NULL;
            int code = 0;
            if (abort_all) code = EYRIE__ERROR_CODE__ERR_SHUTTING_DOWN;
            else if (flags[i]) why = "cancelled";
            else if (j->deadline > 0 && now > j->deadline) why = "deadline";
            if (!why && !code) {
                i++;
                continue;
            }
            end_job(s, j, why, code, code ? "the daemon is shutting down" : NULL);
            run[i] = run[--n_run];
            flags[i] = flags[n_run];
        }
        if (n_run == 0) continue;

        /* ---- 3. plan */
        const int B = s->cfg.batch_rows;
        int n_dec = 0;
        for (int i = 0; i < n_run; i++) n_dec += ey_spec_seq_generated(run[i]->q) > 0;
        bool draft = n_dec <= s->cfg.spec_max_batch;
        int n = 0, used = 0, dec_left = n_dec;
        memset(gone, 0, (size_t)n_run * sizeof *gone);
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < n_run; i++) {
                if (gone[i]) continue; /* its plan failed in pass 0: ended */
                eyd_job *j = run[i];
                bool dec = ey_spec_seq_generated(j->q) > 0;
                if ((pass == 0) != dec) continue;
                int budget;
                if (dec) {
                    dec_left--;
                    budget = draft ? ey_spec_ctx_rows(&j->so) : 1;
                    if (budget > B - used - dec_left) budget = B - used - dec_left;
                } else {
                    budget = s->cfg.prefill_chunk;
                    if (budget > B - used) budget = B - used;
                }
                if (budget < 1) continue;
                gen0[n] = ey_spec_seq_generated(j->q);
                ey_err e = ey_spec_seq_plan(j->q, budget, &items[n]);
                if (e) { /* a bug, never bad input: end the job, keep serving */
                    end_job(s, j, NULL, EYRIE__ERROR_CODE__ERR_INTERNAL, ey_err_detail());
                    gone[i] = true;
                    continue;
                }
                used += items[n].T;
                owner[n++] = i;
            }
        if (n == 0) {
            int w = 0;
            for (int i = 0; i < n_run; i++)
                if (!gone[i]) run[w++] = run[i];
            n_run = w;
            continue;
        }

        /* ---- 4. one forward, then commits */
        ey_err e = ey_forward_batch(s->ctx, items, n);
        int produced = 0;
        for (int k = 0; k < n; k++) {
            eyd_job *j = run[owner[k]];
            ey_err ce = e ? e : ey_spec_seq_commit(j->q);
            if (ce) {
                end_job(s, j, NULL, EYRIE__ERROR_CODE__ERR_INTERNAL, ey_err_detail());
                gone[owner[k]] = true;
                continue;
            }
            produced += ey_spec_seq_generated(j->q) - gen0[k];
            pthread_mutex_lock(&s->mu);
            publish(s, j);
            pthread_mutex_unlock(&s->mu);
            if (ey_spec_seq_done(j->q)) {
                end_job(s, j, NULL, 0, NULL);
                gone[owner[k]] = true;
            } else if (ey_spec_seq_drafting(j->q)) {
                /* a drafter that does not pay off for this job costs more
                 * than it saves: after the probe rounds, plain decoding */
                const ey_spec_stats *st = ey_spec_seq_stats(j->q);
                if (st->draft_rounds == s->cfg.spec_probe_rounds) {
                    bool bad = st->accepted * 100 <
                               (long)s->cfg.spec_min_accept_pct * st->draft_rounds;
                    pthread_mutex_lock(&s->mu);
                    s->spec_fail_streak = bad ? s->spec_fail_streak + 1 : 0;
                    if (bad) s->met.spec_dropped++;
                    pthread_mutex_unlock(&s->mu);
                    if (bad) {
                        eyd_log("job id=%s msg=\"drafting off\" draft_rounds=%d accepted=%ld",
                                j->id, st->draft_rounds, st->accepted);
                        ey_spec_seq_drop_drafter(j->q);
                    }
                }
            }
        }
        pthread_mutex_lock(&s->mu);
        count_tokens(&s->met, produced);
        s->met.steps++;
        s->met.step_rows += (uint64_t)used;
        pthread_mutex_unlock(&s->mu);
        int w = 0;
        for (int i = 0; i < n_run; i++)
            if (!gone[i]) run[w++] = run[i];
        n_run = w;
    }
    free(run);
    free(fresh);
    free(items);
    free(owner);
    free(gen0);
    free(flags);
    free(gone);
    return NULL;
}

int eyd_engine_start(eyd_server *s)
{
    if (s->cfg.max_running > 1024) return -1;
    /* signals belong to the main thread: the engine never sees them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->engine, NULL, engine_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void eyd_engine_join(eyd_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->engine_stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->engine, NULL);
}
