/* Request specs of the daemon tests, their Generate messages, and the
 * in-process reference answers (the prompt built exactly as eyried's
 * build_job builds it, then ey_generate). */
#ifndef EY_DREF_H
#define EY_DREF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chat.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "eyrie_client.h"

#define DR_MAX_MSG 4
#define DR_MAX_PART 3

typedef struct dr_spec {
    int task;                 /* EYRIE__TASK__TASK_CHAT or _COMPLETE */
    int n_msg;
    int role[DR_MAX_MSG];     /* EYRIE__ROLE__* */
    int n_part[DR_MAX_MSG];   /* parts per message (the text is split) */
    const char *text[DR_MAX_MSG];
    const char *prompt;       /* complete */
    int max_tokens;
    float temperature;
    uint64_t seed;
    int top_k;                /* 0: the daemon default (not sent) */
    float repeat_penalty;     /* 0: not sent */
    const char *stop[2];
    int n_stop;
    bool ignore_eos;
} dr_spec;

/* A Generate built from a spec, owning its storage. */
typedef struct dr_gen {
    Eyrie__Generate g;
    Eyrie__Message msg[DR_MAX_MSG];
    Eyrie__Message *msgp[DR_MAX_MSG];
    Eyrie__Part part[DR_MAX_MSG][DR_MAX_PART];
    Eyrie__Part *partp[DR_MAX_MSG][DR_MAX_PART];
    char *piece[DR_MAX_MSG][DR_MAX_PART];
    Eyrie__Sampling s;
    char *stops[2];
} dr_gen;

static inline void dr_gen_build(dr_gen *d, const dr_spec *sp, bool return_tokens)
{
    memset(d, 0, sizeof *d);
    eyrie__generate__init(&d->g);
    d->g.has_task = true;
    d->g.task = sp->task;
    if (sp->task == EYRIE__TASK__TASK_COMPLETE) {
        d->g.prompt = (char *)sp->prompt;
    } else {
        for (int i = 0; i < sp->n_msg; i++) {
            eyrie__message__init(&d->msg[i]);
            d->msg[i].role = sp->role[i];
            int np = sp->n_part[i] > 0 ? sp->n_part[i] : 1;
            size_t len = strlen(sp->text[i]), at = 0;
            for (int k = 0; k < np; k++) {
                /* split at byte positions (ASCII texts): the daemon concatenates */
                size_t n = k == np - 1 ? len - at : len / (size_t)np;
                d->piece[i][k] = strndup(sp->text[i] + at, n);
                at += n;
                eyrie__part__init(&d->part[i][k]);
                d->part[i][k].kind_case = EYRIE__PART__KIND_TEXT;
                d->part[i][k].text = d->piece[i][k];
                d->partp[i][k] = &d->part[i][k];
            }
            d->msg[i].n_parts = (size_t)np;
            d->msg[i].parts = d->partp[i];
            d->msgp[i] = &d->msg[i];
        }
        d->g.n_messages = (size_t)sp->n_msg;
        d->g.messages = d->msgp;
    }
    eyrie__sampling__init(&d->s);
    d->s.has_temperature = true;
    d->s.temperature = sp->temperature;
    d->s.has_seed = true;
    d->s.seed = sp->seed;
    if (sp->top_k) {
        d->s.has_top_k = true;
        d->s.top_k = sp->top_k;
    }
    if (sp->repeat_penalty > 0) {
        d->s.has_repeat_penalty = true;
        d->s.repeat_penalty = sp->repeat_penalty;
    }
    d->g.sampling = &d->s;
    d->g.has_max_tokens = true;
    d->g.max_tokens = sp->max_tokens;
    for (int i = 0; i < sp->n_stop; i++) d->stops[i] = (char *)sp->stop[i];
    d->g.n_stop = (size_t)sp->n_stop;
    d->g.stop = d->stops;
    if (sp->ignore_eos) {
        d->g.has_ignore_eos = true;
        d->g.ignore_eos = true;
    }
    if (return_tokens) {
        d->g.has_return_tokens = true;
        d->g.return_tokens = true;
    }
}

static inline void dr_gen_free(dr_gen *d)
{
    for (int i = 0; i < DR_MAX_MSG; i++)
        for (int k = 0; k < DR_MAX_PART; k++) free(d->piece[i][k]);
}

/* The reference answer of one spec. */
typedef struct dr_ref {
    char *text;
    int32_t *ids;
    int n_ids;
    int finish; /* Eyrie__FinishReason */
} dr_ref;

/* The prompt exactly as eyried's build_job makes it. */
static inline ey_err dr_prompt(const ey_model *m, const dr_spec *sp, int32_t **ids, int *n)
{
    if (sp->task == EYRIE__TASK__TASK_COMPLETE) return ey_prompt_text(m, sp->prompt, ids, n);
    static const char *roles[] = {"system", "user", "assistant"};
    ey_chat_msg msgs[DR_MAX_MSG];
    for (int i = 0; i < sp->n_msg; i++) msgs[i] = (ey_chat_msg){roles[sp->role[i]], sp->text[i]};
    char *rendered = NULL;
    ey_err e = ey_chat_render(&m->chat, msgs, sp->n_msg, true, &rendered);
    if (e) return e;
    bool bos = m->tok && ey_tokenizer_add_bos(m->tok) && !m->chat.bos_in_template;
    int32_t *t = NULL;
    int nt = 0;
    e = ey_tokenize(m->tok, rendered, strlen(rendered), true, &t, &nt);
    free(rendered);
    if (e) return e;
    int32_t b = ey_tokenizer_bos(m->tok);
    bool add = bos && b >= 0;
    *ids = malloc(((size_t)nt + 1) * sizeof **ids);
    if (add) (*ids)[0] = b;
    memcpy(*ids + add, t, (size_t)nt * sizeof *t);
    *n = nt + add;
    free(t);
    return EY_OK;
}

static inline bool dr_reference(ey_ctx *ctx, const dr_spec *sp, dr_ref *out)
{
    memset(out, 0, sizeof *out);
    int32_t *ids = NULL;
    int n = 0;
    ey_err e = dr_prompt(ctx->m, sp, &ids, &n);
    if (e) {
        fprintf(stderr, "reference prompt: %s\n", ey_err_detail());
        return false;
    }
    ey_gen_params gp = {0};
    gp.max_tokens = sp->max_tokens;
    gp.sampling = ey_sampling_default();
    gp.sampling.temperature = sp->temperature;
    gp.sampling.seed = sp->seed;
    if (sp->top_k) gp.sampling.top_k = sp->top_k;
    if (sp->repeat_penalty > 0) gp.sampling.repeat_penalty = sp->repeat_penalty;
    for (int i = 0; i < sp->n_stop; i++) gp.stop[i] = sp->stop[i];
    gp.n_stop = sp->n_stop;
    gp.ignore_eos = sp->ignore_eos;
    ey_gen_result res;
    e = ey_generate(ctx, ids, n, &gp, NULL, NULL, &res);
    free(ids);
    if (e) {
        fprintf(stderr, "reference generate: %s\n", ey_err_detail());
        return false;
    }
    out->text = strdup(res.text ? res.text : "");
    out->n_ids = res.n_ids;
    out->ids = malloc(((size_t)res.n_ids + 1) * sizeof *out->ids);
    memcpy(out->ids, res.ids, (size_t)res.n_ids * sizeof *out->ids);
    out->finish = !strcmp(res.finish_reason, "stop") ? EYRIE__FINISH_REASON__FINISH_STOP
                                                     : EYRIE__FINISH_REASON__FINISH_LENGTH;
    ey_gen_result_free(&res);
    return true;
}

static inline void dr_ref_free(dr_ref *r)
{
    free(r->text);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* Does a daemon result equal the reference? (why: a short reason) */
static inline bool dr_match(const dr_ref *ref, const Eyrie__GenerateResult *r, bool tokens,
                     const char **why)
{
    *why = "";
    if (!r) return *why = "no result", false;
    if (strcmp(r->text ? r->text : "", ref->text)) return *why = "text differs", false;
    if (tokens) {
        if ((int)r->n_token_ids != ref->n_ids) return *why = "token count differs", false;
        for (int i = 0; i < ref->n_ids; i++)
            if (r->token_ids[i] != ref->ids[i]) return *why = "token ids differ", false;
    }
    if (!r->has_finish_reason || (int)r->finish_reason != ref->finish)
        return *why = "finish reason differs", false;
    return true;
}

/* A deterministic family of varied specs: chat (system or not, multi-turn,
 * split parts) and complete; greedy and seeded sampling; max_tokens 1..40;
 * some with stop strings. */
static const char *const k_dr_users[] = {
    "hi", "tell me a story about a dragon", "what is 2+2?", "Write a haiku about the sea.",
    "List three colours", "Explain recursion in one sentence.", "bonjour, ça va ?",
    "How do I sort a list in Python?", "Why is the sky blue", "count to five",
    "Summarise: the quick brown fox jumps over the lazy dog.", "What's the capital of France",
};
static const char *const k_dr_prompts[] = {
    "Once upon a time", "The quick brown fox", "def fibonacci(n):", "In 1969, the first",
    "Dear Sir or Madam,", "1, 2, 3, 4,", "The meaning of life is", "import numpy as np\n",
};

static inline void dr_make_spec(int i, dr_spec *sp)
{
    memset(sp, 0, sizeof *sp);
    const int nu = (int)(sizeof k_dr_users / sizeof *k_dr_users);
    const int np = (int)(sizeof k_dr_prompts / sizeof *k_dr_prompts);
    sp->max_tokens = 1 + (i * 13) % 40;
    if (i % 4 == 3) {
        sp->task = EYRIE__TASK__TASK_COMPLETE;
        sp->prompt = k_dr_prompts[i % np];
    } else {
        sp->task = EYRIE__TASK__TASK_CHAT;
        int k = 0;
        if (i % 3 == 1) {
            sp->role[k] = EYRIE__ROLE__ROLE_SYSTEM;
            sp->text[k++] = i % 2 ? "You are terse." : "You are a helpful assistant.";
        }
        if (i % 5 == 2) { /* multi-turn */
            sp->role[k] = EYRIE__ROLE__ROLE_USER;
            sp->text[k++] = k_dr_users[(i + 3) % nu];
            sp->role[k] = EYRIE__ROLE__ROLE_ASSISTANT;
            sp->text[k++] = "Sure.";
        }
        sp->role[k] = EYRIE__ROLE__ROLE_USER;
        sp->n_part[k] = 1 + i % 3;
        sp->text[k++] = k_dr_users[i % nu];
        sp->n_msg = k;
    }
    if (i % 3 == 2) {
        sp->temperature = 0.9f;
        sp->seed = 1000 + (uint64_t)i;
        if (i % 2) sp->top_k = 20;
    }
    if (i % 7 == 5) sp->repeat_penalty = 1.3f;
    if (i % 6 == 4) {
        sp->stop[0] = "e";
        sp->stop[1] = "th";
        sp->n_stop = 2;
    }
    if (i % 11 == 7) sp->ignore_eos = true;
}

#endif
