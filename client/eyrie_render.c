/* libeyrie — renderers: Prometheus text exposition of a StatsResult, and the
 * `eyrie generate --json` object of a GenerateResult. */
#include "eyrie_client.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ Prometheus */

/* Shortest text that reads back as the same double; Prometheus spellings
 * for the special values. */
static void fmt_double(char *buf, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*, label names without ':'; anything
 * else becomes '_' (the daemon's names are valid; this only keeps a bad one
 * from breaking the whole exposition). */
static int put_name(FILE *f, const char *s, bool label)
{
    if (!s || !*s) return fputc('_', f) == EOF ? -1 : 0;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (!label && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (fputc(ok ? c : '_', f) == EOF) return -1;
    }
    return 0;
}

/* HELP text: backslash and newline escaped; label values also '"'. */
static int put_escaped(FILE *f, const char *s, bool quote)
{
    for (; s && *s; s++) {
        int r;
        if (*s == '\\') r = fputs("\\\\", f);
        else if (*s == '\n') r = fputs("\\n", f);
        else if (quote && *s == '"') r = fputs("\\\"", f);
        else r = fputc(*s, f);
        if (r == EOF) return -1;
    }
    return 0;
}

/* name{labels[,le="x"]} */
static int put_series(FILE *f, const Eyrie__Metric *m, const char *suffix, const char *le)
{
    if (fputs("eyrie_", f) == EOF || put_name(f, m->name, false) ||
        (suffix && fputs(suffix, f) == EOF))
        return -1;
    if (!m->n_labels && !le) return 0;
    if (fputc('{', f) == EOF) return -1;
    for (size_t i = 0; i < m->n_labels; i++) {
        const Eyrie__Label *l = m->labels[i];
        if ((i && fputc(',', f) == EOF) || put_name(f, l->name, true) ||
            fputs("=\"", f) == EOF || put_escaped(f, l->value, true) || fputc('"', f) == EOF)
            return -1;
    }
    if (le && fprintf(f, "%sle=\"%s\"", m->n_labels ? "," : "", le) < 0) return -1;
    return fputc('}', f) == EOF ? -1 : 0;
}

static const char *type_name(const Eyrie__Metric *m)
{
    switch (m->has_type ? m->type : EYRIE__METRIC_TYPE__METRIC_COUNTER) {
    case EYRIE__METRIC_TYPE__METRIC_GAUGE: return "gauge";
    case EYRIE__METRIC_TYPE__METRIC_HISTOGRAM: return "histogram";
    default: return "counter";
    }
}

static int put_metric(FILE *f, const Eyrie__Metric *m)
{
    char v[64], le[64];
    bool hist = m->has_type && m->type == EYRIE__METRIC_TYPE__METRIC_HISTOGRAM;
    if (!hist) {
        fmt_double(v, sizeof v, m->has_value ? m->value : 0);
        if (put_series(f, m, NULL, NULL) || fprintf(f, " %s\n", v) < 0) return -1;
        return 0;
    }
    bool have_inf = false;
    uint64_t last = 0;
    for (size_t i = 0; i < m->n_buckets; i++) {
        const Eyrie__Bucket *b = m->buckets[i];
        fmt_double(le, sizeof le, b->le);
        if (isinf(b->le) && b->le > 0) have_inf = true;
        last = b->count;
        if (put_series(f, m, "_bucket", le) || fprintf(f, " %llu\n", (unsigned long long)b->count) < 0)
            return -1;
    }
    uint64_t count = m->has_count ? m->count : last;
    if (!have_inf &&
        (put_series(f, m, "_bucket", "+Inf") || fprintf(f, " %llu\n", (unsigned long long)count) < 0))
        return -1;
    fmt_double(v, sizeof v, m->has_sum ? m->sum : 0);
    if (put_series(f, m, "_sum", NULL) || fprintf(f, " %s\n", v) < 0) return -1;
    if (put_series(f, m, "_count", NULL) || fprintf(f, " %llu\n", (unsigned long long)count) < 0)
        return -1;
    return 0;
}

static bool same_name(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }

int eyc_stats_prometheus(const Eyrie__StatsResult *s, FILE *f)
{
    if (!s || !f) return -1;
    for (size_t i = 0; i < s->n_metrics; i++) {
        const Eyrie__Metric *m = s->metrics[i];
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = same_name(s->metrics[j]->name, m->name);
        if (seen) continue; /* its family was written with the first one */
        if (m->help && *m->help) {
            if (fputs("# HELP eyrie_", f) == EOF || put_name(f, m->name, false) ||
                fputc(' ', f) == EOF || put_escaped(f, m->help, false) || fputc('\n', f) == EOF)
                return -1;
        }
        if (fputs("# TYPE eyrie_", f) == EOF || put_name(f, m->name, false) ||
            fprintf(f, " %s\n", type_name(m)) < 0)
            return -1;
        for (size_t j = i; j < s->n_metrics; j++)
            if (same_name(s->metrics[j]->name, m->name) && put_metric(f, s->metrics[j])) return -1;
    }
    return fflush(f) == EOF ? -1 : 0;
}

/* ------------------------------------------------------------ --json */

const char *eyc_finish_reason_name(Eyrie__FinishReason r)
{
    switch (r) {
    case EYRIE__FINISH_REASON__FINISH_STOP: return "stop";
    case EYRIE__FINISH_REASON__FINISH_LENGTH: return "length";
    case EYRIE__FINISH_REASON__FINISH_CANCELLED: return "cancelled";
    case EYRIE__FINISH_REASON__FINISH_DEADLINE: return "deadline";
    default: return "none";
    }
}

/* Mirrors core/spec_cli.c ey_spec_stats_json (same keys, same order). */
static cJSON *spec_json(const Eyrie__SpecStats *st)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    double drafted = st->has_drafted ? (double)st->drafted : 0;
    double accepted = st->has_accepted ? (double)st->accepted : 0;
    cJSON_AddStringToObject(o, "method", st->method && *st->method ? st->method : "none");
    cJSON_AddNumberToObject(o, "rounds", st->has_rounds ? st->rounds : 0);
    cJSON_AddNumberToObject(o, "drafted", drafted);
    cJSON_AddNumberToObject(o, "accepted", accepted);
    cJSON_AddNumberToObject(o, "mean_accept_len", st->has_mean_accept_len ? st->mean_accept_len : 0);
    double rate = st->has_accept_rate ? st->accept_rate
                                      : (st->drafted ? (double)st->accepted / (double)st->drafted : 0);
    cJSON_AddNumberToObject(o, "accept_rate", rate);
    cJSON *pp = cJSON_AddArrayToObject(o, "per_position");
    for (size_t i = 0; pp && i < st->n_per_position; i++)
        cJSON_AddItemToArray(pp, cJSON_CreateNumber(st->per_position[i]));
    cJSON_AddNumberToObject(o, "draft_ms", st->has_draft_ms ? st->draft_ms : 0);
    cJSON_AddNumberToObject(o, "verify_ms", st->has_verify_ms ? st->verify_ms : 0);
    return o;
}

cJSON *eyc_result_json(const Eyrie__GenerateResult *r)
{
    if (!r) return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "text", r->text ? r->text : "");
    cJSON *arr = cJSON_AddArrayToObject(o, "token_ids");
    for (size_t i = 0; arr && i < r->n_token_ids; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(r->token_ids[i]));
    cJSON_AddStringToObject(o, "finish_reason",
                            eyc_finish_reason_name(r->has_finish_reason ? r->finish_reason
                                                                        : EYRIE__FINISH_REASON__FINISH_NONE));
    uint32_t pt = r->usage ? r->usage->prompt_tokens : 0;
    uint32_t ct = r->usage ? r->usage->completion_tokens : (uint32_t)r->n_token_ids;
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", pt);
    cJSON_AddNumberToObject(u, "completion_tokens", ct);
    const Eyrie__Timings *tm = r->timings;
    double prefill = tm && tm->has_prefill_ms ? tm->prefill_ms : 0;
    double decode = tm && tm->has_decode_ms ? tm->decode_ms : 0;
    /* decode_tokens_per_s = tokens produced after the prefill (the first
     * one comes from the prefill's logits) per second of decode_ms; with
     * speculation several per verify pass */
    long steps = ct > 0 ? (long)ct - 1 : 0;
    cJSON *t = cJSON_AddObjectToObject(o, "timing");
    cJSON_AddNumberToObject(t, "prefill_ms", prefill);
    cJSON_AddNumberToObject(t, "decode_ms", decode);
    cJSON_AddNumberToObject(t, "decode_tokens_per_s", decode > 0 ? steps * 1000.0 / decode : 0);
    if (r->spec) cJSON_AddItemToObject(o, "spec", spec_json(r->spec));
    return o;
}
