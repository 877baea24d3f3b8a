/* eyrie — a whole conversation as target tokens with a loss mask over the
 * assistant spans (drafter training, eagle3.md §1.4 and §3.1).
 *
 * The conversation is rendered with the model's chat template (BOS as
 * ey_prompt_chat adds it, no generation prompt at the end) and tokenized.
 * The mask is 1 exactly on the tokens of each assistant message (its
 * content, plus any reasoning block the template renders inside the turn)
 * and on the end-of-turn token that closes it (`<|im_end|>` for ChatML,
 * `<|eot_id|>` for Llama-3): what the model must learn to emit. Role
 * headers, system/user/tool text and template boilerplate are 0.
 *
 * Token boundaries come from tokenizing rendered prefixes: for assistant
 * message i, the template over messages [0, i) with the generation prompt
 * (where the turn's text starts) and over [0, i] without it (where it ends).
 * Both tokenizations must be prefixes of the whole conversation's; when
 * they are not (a template that renders earlier messages differently once
 * later ones follow, or a merge across a boundary) the call fails with
 * EY_ERR_UNSUPPORTED rather than guess a mask. */
#ifndef EY_CONVO_H
#define EY_CONVO_H

#include <stdint.h>

#include "../common/ey_err.h"
#include "chat.h"
#include "model.h"

/* *ids and *mask are malloc'ed ([*n_ids] each); the caller frees them. */
ey_err ey_convo_tokens(const ey_model *m, const ey_chat_msg *msgs, int n, int32_t **ids,
                       uint8_t **mask, int *n_ids);

/* The prompt a model answering after msgs[0, n) sees: the template with the
 * generation prompt, tokenized, BOS first as for ey_convo_tokens (*ids
 * malloc'ed). */
ey_err ey_convo_prompt(const ey_model *m, const ey_chat_msg *msgs, int n, int32_t **ids,
                       int *n_ids);

#endif
