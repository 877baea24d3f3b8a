/* eyrie — ey_gen_result -> Eyrie__GenerateResult. See result_pb.h. */
#include "result_pb.h"

#include <stdlib.h>
#include <string.h>

Eyrie__FinishReason ey_finish_reason_pb(const char *s)
{
    if (!s) return EYRIE__FINISH_REASON__FINISH_NONE;
    if (!strcmp(s, "stop")) return EYRIE__FINISH_REASON__FINISH_STOP;
    if (!strcmp(s, "length")) return EYRIE__FINISH_REASON__FINISH_LENGTH;
    if (!strcmp(s, "cancelled")) return EYRIE__FINISH_REASON__FINISH_CANCELLED;
    if (!strcmp(s, "deadline")) return EYRIE__FINISH_REASON__FINISH_DEADLINE;
    return EYRIE__FINISH_REASON__FINISH_NONE;
}

bool ey_result_to_pb(const ey_gen_result *r, const ey_spec_stats *st, double queue_ms,
                     bool with_tokens, Eyrie__GenerateResult *out)
{
    eyrie__generate_result__init(out);
    Eyrie__Usage *u = malloc(sizeof *u);
    Eyrie__Timings *t = malloc(sizeof *t);
    out->usage = u;
    out->timings = t;
    /* text: NUL-terminated copy (protobuf-c strings end at the first NUL) */
    size_t tl = r->text ? r->text_len : 0;
    out->text = malloc(tl + 1);
    if (!u || !t || !out->text) goto nomem;
    if (tl) memcpy(out->text, r->text, tl);
    out->text[tl] = 0;

    if (with_tokens && r->n_ids > 0) {
        out->token_ids = malloc((size_t)r->n_ids * sizeof *out->token_ids);
        if (!out->token_ids) goto nomem;
        memcpy(out->token_ids, r->ids, (size_t)r->n_ids * sizeof *out->token_ids);
        out->n_token_ids = (size_t)r->n_ids;
    }
    out->has_finish_reason = true;
    out->finish_reason = ey_finish_reason_pb(r->finish_reason);

    eyrie__usage__init(u);
    u->prompt_tokens = r->prompt_tokens > 0 ? (uint32_t)r->prompt_tokens : 0;
    u->completion_tokens = r->n_ids > 0 ? (uint32_t)r->n_ids : 0;

    eyrie__timings__init(t);
    if (queue_ms >= 0) {
        t->has_queue_ms = true;
        t->queue_ms = queue_ms;
    }
    t->has_prefill_ms = true;
    t->prefill_ms = r->prefill_ms;
    t->has_decode_ms = true;
    t->decode_ms = r->decode_ms;
    t->has_decode_steps = true;
    t->decode_steps = r->decode_steps > 0 ? (uint32_t)r->decode_steps : 0;

    if (st) {
        Eyrie__SpecStats *s = malloc(sizeof *s);
        if (!s) goto nomem;
        eyrie__spec_stats__init(s);
        out->spec = s;
        s->method = strdup(st->method ? st->method : "none");
        if (!s->method) goto nomem;
        s->has_rounds = true;
        s->rounds = st->rounds > 0 ? (uint32_t)st->rounds : 0;
        s->has_drafted = true;
        s->drafted = st->drafted > 0 ? (uint64_t)st->drafted : 0;
        s->has_accepted = true;
        s->accepted = st->accepted > 0 ? (uint64_t)st->accepted : 0;
        s->has_mean_accept_len = true;
        s->mean_accept_len = st->mean_accept_len;
        if (st->n_pos > 0) {
            s->per_position = malloc((size_t)st->n_pos * sizeof *s->per_position);
            if (!s->per_position) goto nomem;
            memcpy(s->per_position, st->per_position, (size_t)st->n_pos * sizeof(double));
            s->n_per_position = (size_t)st->n_pos;
        }
        s->has_accept_rate = true;
        s->accept_rate = st->accept_rate;
        s->has_draft_ms = true;
        s->draft_ms = st->draft_ms;
        s->has_verify_ms = true;
        s->verify_ms = st->verify_ms;
    }
    return true;
nomem:
    ey_result_pb_free(out);
    return false;
}

void ey_result_pb_free(Eyrie__GenerateResult *out)
{
    if (!out) return;
    free(out->text);
    free(out->token_ids);
    free(out->usage);
    free(out->timings);
    if (out->spec) {
        free(out->spec->method);
        free(out->spec->per_position);
        free(out->spec);
    }
    eyrie__generate_result__init(out);
}
