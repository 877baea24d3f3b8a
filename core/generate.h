/* eyrie — single-sequence generation loop (prefill, decode, stop rules).
 *
 * The first driver of ey_forward; the speculative engine and the daemon's
 * continuous-batching scheduler build on the same pieces. */
#ifndef EY_GENERATE_H
#define EY_GENERATE_H

#include <stddef.h>

#include "forward.h"
#include "sample.h"

#define EY_MAX_STOP 16
#define EY_MAX_STOP_LEN 256

typedef struct ey_gen_params {
    int max_tokens;        /* completion tokens at most (> 0) */
    ey_sampling sampling;
    const char *stop[EY_MAX_STOP]; /* stop strings (not included in the text) */
    int n_stop;
    bool ignore_eos;
    int max_ctx;           /* context limit of this sequence; 0: the ctx's KV rows
                            * (the stepper honours it; ey_generate uses the ctx's) */
} ey_gen_params;

/* Streaming callback: called with each newly final piece of text. */
typedef void (*ey_text_cb)(void *ud, const char *text, size_t len);

typedef struct ey_gen_result {
    int32_t *ids;  /* completion token ids (malloc'ed), EOG token included */
    int n_ids;
    char *text;    /* completion text (malloc'ed, NUL-terminated) */
    size_t text_len;
    const char *finish_reason; /* "stop" | "length" */
    int prompt_tokens;
    double prefill_ms, decode_ms;
    int decode_steps; /* forward passes after prefill */
} ey_gen_result;

/* Output text with stop-string handling, shared by the generation loops:
 * `emitted` bytes have been streamed. */
typedef struct ey_textbuf {
    char *s;
    size_t len, cap, emitted;
} ey_textbuf;

ey_err ey_textbuf_append(ey_textbuf *t, const char *p, size_t n);
/* True (and the text cut before it) if a stop string appeared; *safe is how
 * far the text may be streamed (a suffix that may grow into a stop string is
 * held back). */
bool ey_textbuf_check_stop(ey_textbuf *t, const ey_gen_params *gp, size_t *safe);
/* Stream text up to byte `upto` through cb. */
void ey_textbuf_emit(ey_textbuf *t, size_t upto, ey_text_cb cb, void *ud);

ey_err ey_generate(ey_ctx *c, const int32_t *prompt, int n_prompt, const ey_gen_params *gp,
                   ey_text_cb cb, void *ud, ey_gen_result *res);
void ey_gen_result_free(ey_gen_result *r);

/* Build prompt ids for a chat turn (template + tokenizer) or plain text. */
ey_err ey_prompt_chat(const ey_model *m, const char *system, const char *user, int32_t **ids,
                      int *n);
ey_err ey_prompt_text(const ey_model *m, const char *text, int32_t **ids, int *n);

double ey_now_ms(void);

#endif
