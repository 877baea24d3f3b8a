#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double ey_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void ey_gen_result_free(ey_gen_result *r)
{
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

ey_err ey_textbuf_append(ey_textbuf *t, const char *p, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *g = realloc(t->s, cap);
        if (!g) return ey_err_set(EY_ERR_NOMEM, "no memory for output text");
        t->s = g;
        t->cap = cap;
    }
    memcpy(t->s + t->len, p, n);
    t->len += n;
    t->s[t->len] = 0;
    return EY_OK;
}

bool ey_textbuf_check_stop(ey_textbuf *t, const ey_gen_params *gp, size_t *safe)
{
    *safe = t->len;
    /* the earliest match of any stop string wins; a match can only start in
     * the not-yet-emitted tail */
    const char *first = NULL;
    for (int i = 0; i < gp->n_stop; i++) {
        size_t sl = strlen(gp->stop[i]);
        const char *hit = sl && t->len >= sl
                              ? memmem(t->s + t->emitted, t->len - t->emitted, gp->stop[i], sl)
                              : NULL;
        if (hit && (!first || hit < first)) first = hit;
    }
    if (first) {
        t->len = (size_t)(first - t->s);
        t->s[t->len] = 0;
        *safe = t->len;
        return true;
    }
    for (int i = 0; i < gp->n_stop; i++) {
        const char *st = gp->stop[i];
        size_t sl = strlen(st);
        if (!sl) continue;
        /* hold back a suffix that may grow into this stop string */
        for (size_t k = sl - 1; k > 0; k--) {
            if (k <= t->len - t->emitted && !memcmp(t->s + t->len - k, st, k)) {
                if (t->len - k < *safe) *safe = t->len - k;
                break;
            }
        }
    }
    return false;
}

void ey_textbuf_emit(ey_textbuf *t, size_t upto, ey_text_cb cb, void *ud)
{
    if (upto > t->emitted) {
        if (cb) cb(ud, t->s + t->emitted, upto - t->emitted);
        t->emitted = upto;
    }
}

ey_err ey_generate(ey_ctx *c, const int32_t *prompt, int n_prompt, const ey_gen_params *gp,
                   ey_text_cb cb, void *ud, ey_gen_result *res)
{
    memset(res, 0, sizeof *res);
    const ey_model *m = c->m;
    const int V = m->cfg.n_vocab;
    if (n_prompt < 1) return ey_err_set(EY_ERR_ARG, "empty prompt");
    if (gp->max_tokens < 1) return ey_err_set(EY_ERR_ARG, "max_tokens must be >= 1");
    if (gp->n_stop < 0 || gp->n_stop > EY_MAX_STOP)
        return ey_err_set(EY_ERR_ARG, "at most %d stop strings", EY_MAX_STOP);
    for (int i = 0; i < gp->n_stop; i++)
        if (!gp->stop[i] || strlen(gp->stop[i]) > EY_MAX_STOP_LEN)
            return ey_err_set(EY_ERR_ARG, "stop string longer than %d bytes", EY_MAX_STOP_LEN);
    int max_rows = c->kv.n_rows;
    if (n_prompt > max_rows)
        return ey_err_set(EY_ERR_CAPACITY, "prompt of %d tokens does not fit the context of %d",
                          n_prompt, max_rows);
    ey_sampler smp;
    ey_err e = ey_sampler_init(&smp, &gp->sampling, V);
    if (e) return e;
    ey_seq seq;
    ey_seq_init(&seq, max_rows);
    float *logits = malloc((size_t)V * sizeof *logits);
    /* at most max_rows - n_prompt + 1 tokens can be generated */
    int cap = n_prompt + (gp->max_tokens < max_rows - n_prompt + 1 ? gp->max_tokens
                                                                  : max_rows - n_prompt + 1);
    int32_t *hist = malloc((size_t)cap * sizeof *hist);
    ey_textbuf tb = {0};
    ey_detok dt = {.skip_special = true};
    if (!logits || !hist) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory");
        goto out;
    }
    memcpy(hist, prompt, (size_t)n_prompt * sizeof *hist);
    int n_hist = n_prompt;
    res->prompt_tokens = n_prompt;
    res->finish_reason = "length";

    double t0 = ey_now_ms();
    if ((e = ey_forward(c, &seq, prompt, n_prompt, NULL, NULL, 1, logits))) goto out;
    double t1 = ey_now_ms();
    res->prefill_ms = t1 - t0;
    char piece[256];
    for (int step = 0; step < gp->max_tokens; step++) {
        int32_t tok = ey_sample(&smp, logits, hist, n_hist);
        hist[n_hist++] = tok;
        bool eog = !gp->ignore_eos && m->tok && ey_tokenizer_is_eog(m->tok, tok);
        if (!eog && m->tok) {
            int n = ey_detok_push(&dt, m->tok, tok, piece, sizeof piece);
            if (n > 0 && (e = ey_textbuf_append(&tb, piece, (size_t)n))) goto out;
        }
        size_t safe;
        if (ey_textbuf_check_stop(&tb, gp, &safe)) {
            res->finish_reason = "stop";
            ey_textbuf_emit(&tb, tb.len, cb, ud);
            break;
        }
        ey_textbuf_emit(&tb, safe, cb, ud);
        if (eog) {
            res->finish_reason = "stop";
            break;
        }
        if (step + 1 == gp->max_tokens) break;
        if (seq.n_past + 1 > max_rows) break; /* context full: "length" */
        if ((e = ey_forward(c, &seq, &tok, 1, NULL, NULL, 1, logits))) goto out;
        res->decode_steps++;
    }
    if (m->tok && strcmp(res->finish_reason, "stop")) {
        int n = ey_detok_flush(&dt, piece, sizeof piece);
        if (n > 0 && (e = ey_textbuf_append(&tb, piece, (size_t)n))) goto out;
        size_t safe;
        ey_textbuf_check_stop(&tb, gp, &safe);
    }
    ey_textbuf_emit(&tb, tb.len, cb, ud);
    res->decode_ms = ey_now_ms() - t1;
    res->n_ids = n_hist - n_prompt;
    res->ids = malloc((size_t)(res->n_ids ? res->n_ids : 1) * sizeof *res->ids);
    if (!res->ids) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory");
        goto out;
    }
    memcpy(res->ids, hist + n_prompt, (size_t)res->n_ids * sizeof *res->ids);
    if (!tb.s && (e = ey_textbuf_append(&tb, "", 0))) goto out;
    res->text = tb.s;
    res->text_len = tb.len;
    tb.s = NULL;
out:
    if (e) ey_gen_result_free(res);
    free(tb.s);
    free(hist);
    free(logits);
    ey_seq_release(&c->kv, &seq);
    ey_sampler_free(&smp);
    return e;
}

static ey_err append_ids(int32_t **ids, int *n, int *cap, const int32_t *add, int k)
{
    if (*n + k > *cap) {
        int c = *cap ? *cap : 64;
        while (c < *n + k) c *= 2;
        int32_t *g = realloc(*ids, (size_t)c * sizeof *g);
        if (!g) return ey_err_set(EY_ERR_NOMEM, "no memory");
        *ids = g;
        *cap = c;
    }
    memcpy(*ids + *n, add, (size_t)k * sizeof *add);
    *n += k;
    return EY_OK;
}

static ey_err encode_with_bos(const ey_model *m, const char *text, bool add_bos, int32_t **ids,
                              int *n)
{
    *ids = NULL;
    *n = 0;
    if (!m->tok) return ey_err_set(EY_ERR_UNSUPPORTED, "model has no tokenizer");
    int32_t *t;
    int nt, cap = 0;
    ey_err e = ey_tokenize(m->tok, text, strlen(text), true, &t, &nt);
    if (e) return e;
    int32_t bos = ey_tokenizer_bos(m->tok);
    if (add_bos && bos >= 0 && (e = append_ids(ids, n, &cap, &bos, 1))) goto out;
    e = append_ids(ids, n, &cap, t, nt);
out:
    free(t);
    if (e) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return e;
}

ey_err ey_prompt_chat(const ey_model *m, const char *system, const char *user, int32_t **ids,
                      int *n)
{
    ey_chat_msg msgs[2];
    int k = 0;
    if (system) msgs[k++] = (ey_chat_msg){"system", system};
    msgs[k++] = (ey_chat_msg){"user", user};
    char *txt;
    ey_err e = ey_chat_render(&m->chat, msgs, k, true, &txt);
    if (e) return e;
    /* the template carries BOS text itself where the family wants it */
    bool add_bos = m->tok && ey_tokenizer_add_bos(m->tok) && !m->chat.bos_in_template;
    e = encode_with_bos(m, txt, add_bos, ids, n);
    free(txt);
    return e;
}

ey_err ey_prompt_text(const ey_model *m, const char *text, int32_t **ids, int *n)
{
    return encode_with_bos(m, text, m->tok && ey_tokenizer_add_bos(m->tok), ids, n);
}
