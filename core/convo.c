/* eyrie — conversation tokens and the assistant loss mask (see convo.h). */
#include "convo.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* The template over msgs[0, n) (with or without the generation prompt),
 * tokenized with special tokens parsed, BOS first when ey_prompt_chat adds
 * it. */
static ey_err render_ids(const ey_model *m, const ey_chat_msg *msgs, int n, bool gen, int32_t **ids,
                         int *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    char *txt = NULL;
    ey_err e = ey_chat_render(&m->chat, msgs, n, gen, &txt);
    if (e) return e;
    int32_t *t = NULL;
    int nt = 0;
    e = ey_tokenize(m->tok, txt, strlen(txt), true, &t, &nt);
    free(txt);
    if (e) return e;
    int32_t bos = ey_tokenizer_bos(m->tok);
    int k = ey_tokenizer_add_bos(m->tok) && !m->chat.bos_in_template && bos >= 0 ? 1 : 0;
    int32_t *o = malloc(((size_t)nt + (size_t)k + 1) * sizeof *o);
    if (!o) {
        free(t);
        return ey_err_set(EY_ERR_NOMEM, "no memory");
    }
    if (k) o[0] = bos;
    if (nt) memcpy(o + k, t, (size_t)nt * sizeof *t);
    free(t);
    *ids = o;
    *n_ids = nt + k;
    return EY_OK;
}

ey_err ey_convo_prompt(const ey_model *m, const ey_chat_msg *msgs, int n, int32_t **ids,
                       int *n_ids)
{
    return render_ids(m, msgs, n, true, ids, n_ids);
}

static bool is_prefix(const int32_t *p, int np, const int32_t *full, int nf)
{
    return np <= nf && (np == 0 || memcmp(p, full, (size_t)np * sizeof *p) == 0);
}

ey_err ey_convo_tokens(const ey_model *m, const ey_chat_msg *msgs, int n, int32_t **ids,
                       uint8_t **mask, int *n_ids)
{
    if (!ids || !mask || !n_ids) return ey_err_set(EY_ERR_ARG, "convo: bad argument");
    *ids = NULL;
    *mask = NULL;
    *n_ids = 0;
    if (!m || n < 0 || (n > 0 && !msgs)) return ey_err_set(EY_ERR_ARG, "convo: bad argument");
    if (!m->tok) return ey_err_set(EY_ERR_UNSUPPORTED, "convo: model has no tokenizer");
    for (int i = 0; i < n; i++)
        if (!msgs[i].role) return ey_err_set(EY_ERR_ARG, "convo: message %d has no role", i);
    int32_t *full = NULL, *a = NULL, *b = NULL;
    int nf = 0, na = 0, nb = 0;
    uint8_t *mk = NULL;
    ey_err e = render_ids(m, msgs, n, false, &full, &nf);
    if (e) return e;
    if (!(mk = calloc((size_t)nf + 1, 1))) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(msgs[i].role, "assistant") != 0) continue;
        /* the turn's text starts after the generation prompt over [0, i) and
         * ends with message i */
        if ((e = render_ids(m, msgs, i, true, &a, &na))) goto out;
        if ((e = render_ids(m, msgs, i + 1, false, &b, &nb))) goto out;
        if (!is_prefix(a, na, full, nf) || !is_prefix(b, nb, full, nf) || na > nb) {
            e = ey_err_set(EY_ERR_UNSUPPORTED,
                           "convo: the tokens before assistant message %d are not a prefix of the "
                           "whole conversation's tokens (the chat template renders earlier "
                           "messages differently once later ones follow, or a token spans the "
                           "turn boundary); no loss mask for this conversation",
                           i);
            goto out;
        }
        /* the turn ends with its end-of-turn token; trailing template text
         * after it (ChatML's "\n") is not the model's to emit */
        int end = nb;
        for (int j = nb - 1; j >= na; j--)
            if (ey_tokenizer_is_eog(m->tok, full[j])) {
                end = j + 1;
                break;
            }
        for (int j = na; j < end; j++) mk[j] = 1;
        free(a);
        free(b);
        a = b = NULL;
    }
out:
    free(a);
    free(b);
    if (e) {
        free(full);
        free(mk);
        return e;
    }
    *ids = full;
    *mask = mk;
    *n_ids = nf;
    return EY_OK;
}
