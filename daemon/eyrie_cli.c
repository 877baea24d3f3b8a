/* eyrie — command-line front end.
 *
 *   eyrie generate [--model PATH | --url URL[,URL...]] (--prompt TEXT | --chat TEXT) [options]
 *   eyrie stats|health|models --url URL [...]   eyrie cancel --url URL JOB_ID
 *
 * With --model (or the default model) generation runs in this process; with
 * --url the same request goes to eyried daemons through libeyrie. --json
 * prints the same object both ways: the in-process result is converted to
 * the protocol's GenerateResult and rendered by eyc_result_json.
 *
 * Exit codes: 0 ok, 1 runtime error (bad model file, daemon error, ...), 2 bad
 * arguments. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/ey_args.h"
#include "../core/generate.h"
#include "../core/model.h"
#include "../core/spec_cli.h"
#include "../kernels/ey_backend.h"
#include "../modalities/media_cli.h"
#include "eyrie_client.h"
#include "gen_data.h"
#include "token_freq.h"
#include "../train/dump_hidden.h"
#include "../train/train_cli.h"
#include "result_pb.h"


static void usage_generate(FILE *f)
{
    fprintf(f,
        "usage: eyrie generate [--model PATH | --url URL[,URL...]] (--prompt TEXT | --chat TEXT)\n"
        "                      [options]\n"
        "\n"
        "  --model PATH         GGUF file or Hugging Face directory (default: the model\n"
        "                       fetched by scripts/fetch-model.sh, or $EYRIE_MODEL)\n"
        "  --url URL[,URL...]   send the job to eyried daemon(s) instead of loading a model\n"
        "                       (ipc:///path or tcp://host:port; several: load-balanced)\n"
        "  --prompt TEXT        raw completion of TEXT\n"
        "  --chat TEXT          one user turn through the model's chat template\n"
        "  --system TEXT        system prompt for --chat (default: the template's own)\n"
        "  --max-tokens N       completion tokens at most (default 256)\n"
        "  --temperature T      0 = greedy (default 0.8)\n"
        "  --top-k K            0 = off (default 40)\n"
        "  --top-p P            1 = off (default 0.95)\n"
        "  --min-p P            0 = off (default 0.05)\n"
        "  --repeat-penalty R   1 = off (default 1)\n"
        "  --repeat-last-n N    penalty window, -1 = all (default 64)\n"
        "  --seed S             sampling seed (default 0)\n"
        "  --stop TEXT          stop string (repeatable, up to %d)\n"
        "  --ignore-eos         keep generating past end-of-generation tokens\n"
        "  --threads N          CPU threads (default: all cores)\n"
        "  --ctx N              context size in tokens (default 4096)\n"
        "  --device DEV         cpu (default) | cuda[:N]\n"
        "  --json               print one JSON object instead of streaming text\n"
        "  --drafter DIR        EAGLE-3 drafter (speculative decoding; greedy output unchanged)\n"
        "  --drafter-quant Q    drafter matrices: none (as stored) | q8_0 | q4_1 (default "
        EY_E3_QUANT_DEFAULT ")\n"
        "  --spec-method M      none | chain (default with --drafter) | tree\n"
        "  --spec-k N           chain: drafts per round (default 4)\n"
        "  --spec-topk K        tree: children per node (default 4)\n"
        "  --spec-depth D       tree: draft levels (default 5)\n"
        "  --spec-tokens N      tree: nodes incl. root (default 16)\n"
        "\n"
        "with --url (unset options take the daemon's defaults, which are the ones above;\n"
        "--threads, --ctx, --device and --drafter are daemon settings):\n"
        "  --timeout MS         give up when the daemon has not answered (default 300000)\n"
        "  --deadline MS        the job's deadline, from its arrival (default: the daemon's)\n"
        "  --id ID              request id (idempotency key; default: a fresh one)\n",
        EY_MAX_STOP);
}

static void usage_main(FILE *f)
{
    fprintf(f, "usage: eyrie <command> [options]\n\n"
               "commands:\n"
               "  generate       generate text with a model, in process or through a daemon\n"
               "                 (eyrie generate --help)\n"
               "  stats          stats --url URL [--prometheus | --json]: a daemon's metrics\n"
               "  health         health --url URL [--json]: exit 0 when the daemon serves\n"
               "  models         models --url URL [--json]: the daemon's models\n"
               "  cancel         cancel --url URL JOB_ID: stop a daemon job\n"
               "  drafter-init   write a random EAGLE-3 drafter (eyrie drafter-init --help)\n"
               "  gen-data       regenerate the assistant turns of a JSONL conversation file\n"
               "                 with the model (drafter training data; eyrie gen-data --help)\n"
               "  token-freq     target-token frequencies over the assistant tokens of a JSONL\n"
               "                 conversation file (drafter-init --freq; eyrie token-freq --help)\n"
               "  dump-hidden    target hidden states and top-k logits of a JSONL conversation\n"
               "                 file for offline drafter training (eyrie dump-hidden --help)\n"
               "  train-drafter  train an EAGLE-3 drafter (eyrie train-drafter --help)\n"
               "  probe          decode an image or audio file and print what was found\n"
               "                 probe FILE [--json] [--vision qwen2vl|qwen3vl] [--max-pixels N]\n"
               "                       [--n-mels 80|128]\n"
               "  convert-audio  convert-audio IN OUT.{wav,flac,opus,ogg,mp3} [--rate HZ]\n"
               "                       [--bitrate BPS]\n");
}

static void stream_cb(void *ud, const char *text, size_t len)
{
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static int fail(const char *what, ey_err e)
{
    const char *d = ey_err_detail();
    fprintf(stderr, "eyrie: %s: %s%s%s\n", what, ey_strerror(e), *d ? ": " : "", d);
    return 1;
}

/* ------------------------------------------------------------ daemon mode */

typedef struct remote_args {
    const char *url, *id, *prompt, *chat, *system;
    int timeout_ms, deadline_ms;
    bool json, method_set;
    unsigned set; /* options given (bits of cmd_generate's enum) */
    const ey_gen_params *gp;
    const ey_spec_opts *so;
} remote_args;

static int print_json(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "eyrie: no memory\n");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

static int print_result_json(const Eyrie__GenerateResult *r) { return print_json(eyc_result_json(r)); }

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* SIGINT/SIGTERM interrupt the wait (no SA_RESTART): the job is cancelled. */
static void catch_interrupts(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int remote_fail(eyc_client *c, int code)
{
    fprintf(stderr, "eyrie: daemon: %s\n", eyc_errmsg(c));
    (void)code;
    return 1;
}

static eyc_client *remote_connect(const char *url, int timeout_ms)
{
    eyc_options o = {.timeout_ms = timeout_ms};
    eyc_client *c = NULL;
    if (eyc_connect(url, &o, &c)) {
        fprintf(stderr, "eyrie: %s\n", eyc_last_error());
        return NULL;
    }
    return c;
}

static int stream_out(void *ud, const char *text, size_t len)
{
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return g_interrupted;
}

static void print_spec_line(const Eyrie__SpecStats *s)
{
    double tau = s->has_mean_accept_len ? s->mean_accept_len : 0;
    fprintf(stderr, "spec %s: tau %.2f, %ld/%ld drafts accepted in %d rounds\n",
            s->method ? s->method : "none", tau, (long)s->accepted, (long)s->drafted,
            (int)s->rounds);
}

#define OPT_SET(ra, bit) (((ra)->set >> (bit)) & 1u)

static int generate_remote(const remote_args *ra, int o_model, const int bits[14])
{
    /* bits: option bit numbers of temperature, top-k, top-p, min-p,
     * repeat-penalty, repeat-last-n, seed, max-tokens, ignore-eos, spec-k,
     * spec-topk, spec-depth, spec-tokens, spec-method */
    (void)o_model;
    const ey_gen_params *gp = ra->gp;
    Eyrie__Generate g = EYRIE__GENERATE__INIT;
    Eyrie__Sampling sm = EYRIE__SAMPLING__INIT;
    Eyrie__Speculative sp = EYRIE__SPECULATIVE__INIT;
    Eyrie__Message msg[2] = {EYRIE__MESSAGE__INIT, EYRIE__MESSAGE__INIT};
    Eyrie__Message *msgs[2] = {&msg[0], &msg[1]};
    Eyrie__Part part[2] = {EYRIE__PART__INIT, EYRIE__PART__INIT};
    Eyrie__Part *parts[2] = {&part[0], &part[1]};
    g.has_task = true;
    if (ra->chat) {
        g.task = EYRIE__TASK__TASK_CHAT;
        size_t n = 0;
        if (ra->system) {
            msg[n].role = EYRIE__ROLE__ROLE_SYSTEM;
            part[n].kind_case = EYRIE__PART__KIND_TEXT;
            part[n].text = (char *)ra->system;
            msg[n].n_parts = 1;
            msg[n].parts = &parts[n];
            n++;
        }
        msg[n].role = EYRIE__ROLE__ROLE_USER;
        part[n].kind_case = EYRIE__PART__KIND_TEXT;
        part[n].text = (char *)ra->chat;
        msg[n].n_parts = 1;
        msg[n].parts = &parts[n];
        n++;
        g.n_messages = n;
        g.messages = msgs;
    } else {
        g.task = EYRIE__TASK__TASK_COMPLETE;
        g.prompt = (char *)ra->prompt;
    }
    bool any_sampling = false;
#define SAMPLING(bit, field, value)                                                               \
    if (OPT_SET(ra, bits[bit])) {                                                                 \
        sm.has_##field = true;                                                                    \
        sm.field = value;                                                                         \
        any_sampling = true;                                                                      \
    }
    SAMPLING(0, temperature, gp->sampling.temperature)
    SAMPLING(1, top_k, gp->sampling.top_k)
    SAMPLING(2, top_p, gp->sampling.top_p)
    SAMPLING(3, min_p, gp->sampling.min_p)
    SAMPLING(4, repeat_penalty, gp->sampling.repeat_penalty)
    SAMPLING(5, repeat_last_n, gp->sampling.repeat_last_n)
    SAMPLING(6, seed, gp->sampling.seed)
#undef SAMPLING
    if (any_sampling) g.sampling = &sm;
    if (OPT_SET(ra, bits[7])) {
        g.has_max_tokens = true;
        g.max_tokens = gp->max_tokens;
    }
    if (OPT_SET(ra, bits[8])) {
        g.has_ignore_eos = true;
        g.ignore_eos = gp->ignore_eos;
    }
    bool any_spec = false;
    if (ra->method_set) {
        sp.has_method = true;
        sp.method = ra->so->method == EY_SPEC_NONE    ? EYRIE__SPEC_METHOD__SPEC_NONE
                    : ra->so->method == EY_SPEC_CHAIN ? EYRIE__SPEC_METHOD__SPEC_CHAIN
                                                      : EYRIE__SPEC_METHOD__SPEC_TREE;
        any_spec = true;
    }
#define SPEC(bit, field, value)                                                                   \
    if (OPT_SET(ra, bits[bit])) {                                                                 \
        sp.has_##field = true;                                                                    \
        sp.field = value;                                                                         \
        any_spec = true;                                                                          \
    }
    SPEC(9, num_draft_tokens, ra->so->k)
    SPEC(10, top_k, ra->so->top_k)
    SPEC(11, depth, ra->so->depth)
    SPEC(12, total_tokens, ra->so->total_tokens)
#undef SPEC
    if (any_spec) g.spec = &sp;
    g.n_stop = (size_t)gp->n_stop;
    g.stop = (char **)gp->stop;
    if (ra->deadline_ms) {
        g.has_deadline_ms = true;
        g.deadline_ms = (uint32_t)ra->deadline_ms;
    }
    /* --json prints token_ids, as the in-process run does */
    g.has_return_tokens = true;
    g.return_tokens = ra->json;

    eyc_client *c = remote_connect(ra->url, ra->timeout_ms);
    if (!c) return 1;
    char id[EYC_ID_MAX + 1];
    if (ra->id) snprintf(id, sizeof id, "%s", ra->id);
    else eyc_new_id(c, id);
    catch_interrupts();
    Eyrie__Response *r = NULL;
    int rc = 1, code;
    if (ra->json) {
        code = eyc_generate(c, &g, id, 0, &r);
        if (code == EYC_ERR_INTERRUPTED) {
            eyc_cancel(c, id, NULL, NULL); /* best effort: a unary job's id is its request id */
            fprintf(stderr, "eyrie: interrupted; job %s cancelled\n", id);
            rc = 130;
        } else if (code) {
            rc = remote_fail(c, code);
        } else {
            rc = print_result_json(r->result);
        }
    } else {
        char *job = NULL;
        code = eyc_submit(c, &g, id, &job);
        if (code == EYC_ERR_INTERRUPTED) {
            fprintf(stderr, "eyrie: interrupted\n");
            rc = 130;
        } else if (code) {
            rc = remote_fail(c, code);
        } else {
            code = eyc_stream(c, job, &g, id, stream_out, NULL, &r);
            if (code == EYC_ERR_INTERRUPTED || g_interrupted) {
                if (code == EYC_ERR_INTERRUPTED) eyc_cancel(c, job, NULL, NULL);
                fprintf(stderr, "\neyrie: interrupted; job %s cancelled\n", job);
                rc = 130;
            } else if (code) {
                putchar('\n');
                rc = remote_fail(c, code);
            } else {
                putchar('\n');
                fflush(stdout);
                if (r->poll->result->spec) print_spec_line(r->poll->result->spec);
                rc = 0;
            }
        }
        free(job);
    }
    eyc_response_free(r);
    eyc_close(c);
    return rc;
}

/* --url URL [--timeout MS] [--json] [--prometheus] [--help] [ARG] */
typedef struct simple_args {
    const char *url, *arg;
    int timeout_ms;
    bool json, prometheus;
} simple_args;

static int parse_simple(int argc, char **argv, const char *usage, bool allow_prom, bool want_arg,
                        bool allow_json, simple_args *a)
{
    enum { S_URL = 256, S_TIMEOUT, S_JSON, S_PROM, S_HELP };
    static const struct option opts[] = {{"url", required_argument, 0, S_URL},
                                         {"timeout", required_argument, 0, S_TIMEOUT},
                                         {"json", no_argument, 0, S_JSON},
                                         {"prometheus", no_argument, 0, S_PROM},
                                         {"help", no_argument, 0, S_HELP},
                                         {0, 0, 0, 0}};
    *a = (simple_args){0};
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case S_URL: a->url = optarg; break;
        case S_TIMEOUT:
            if (!ey_arg_int(optarg, 1, INT_MAX, &a->timeout_ms)) {
                fprintf(stderr, "eyrie %s: bad value '%s' for --timeout\n%s", argv[0], optarg,
                        usage);
                return 2;
            }
            break;
        case S_JSON:
            if (!allow_json) goto bad;
            a->json = true;
            break;
        case S_PROM:
            if (!allow_prom) goto bad;
            a->prometheus = true;
            break;
        case S_HELP: fputs(usage, stdout); return 0;
        default:
        bad:
            fprintf(stderr, "eyrie %s: unknown or incomplete option '%s'\n%s", argv[0],
                    argv[optind - 1], usage);
            return 2;
        }
    }
    if (want_arg && optind < argc) a->arg = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "eyrie %s: unexpected argument '%s'\n%s", argv[0], argv[optind], usage);
        return 2;
    }
    if (!a->url || !*a->url) {
        fprintf(stderr, "eyrie %s: --url is required\n%s", argv[0], usage);
        return 2;
    }
    if (want_arg && (!a->arg || !*a->arg)) {
        fprintf(stderr, "eyrie %s: missing argument\n%s", argv[0], usage);
        return 2;
    }
    if (a->json && a->prometheus) {
        fprintf(stderr, "eyrie %s: give at most one of --json and --prometheus\n%s", argv[0], usage);
        return 2;
    }
    return -1;
}

static const char *metric_type_name(const Eyrie__Metric *m)
{
    if (!m->has_type) return "counter";
    return m->type == EYRIE__METRIC_TYPE__METRIC_GAUGE       ? "gauge"
           : m->type == EYRIE__METRIC_TYPE__METRIC_HISTOGRAM ? "histogram"
                                                             : "counter";
}

static cJSON *num_or_inf(double v)
{
    if (isinf(v)) return cJSON_CreateString(v > 0 ? "+Inf" : "-Inf");
    if (isnan(v)) return cJSON_CreateString("NaN");
    return cJSON_CreateNumber(v);
}

static cJSON *stats_json(const Eyrie__StatsResult *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "metrics");
    for (size_t i = 0; i < s->n_metrics; i++) {
        const Eyrie__Metric *m = s->metrics[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, j);
        cJSON_AddStringToObject(j, "name", m->name ? m->name : "");
        cJSON_AddStringToObject(j, "type", metric_type_name(m));
        if (m->help) cJSON_AddStringToObject(j, "help", m->help);
        cJSON *l = cJSON_AddObjectToObject(j, "labels");
        for (size_t k = 0; k < m->n_labels; k++)
            cJSON_AddStringToObject(l, m->labels[k]->name, m->labels[k]->value);
        if (m->has_type && m->type == EYRIE__METRIC_TYPE__METRIC_HISTOGRAM) {
            cJSON *b = cJSON_AddArrayToObject(j, "buckets");
            for (size_t k = 0; k < m->n_buckets; k++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddItemToObject(e, "le", num_or_inf(m->buckets[k]->le));
                cJSON_AddNumberToObject(e, "count", (double)m->buckets[k]->count);
                cJSON_AddItemToArray(b, e);
            }
            cJSON_AddItemToObject(j, "sum", num_or_inf(m->has_sum ? m->sum : 0));
            cJSON_AddNumberToObject(j, "count", (double)m->count);
        } else {
            cJSON_AddItemToObject(j, "value", num_or_inf(m->has_value ? m->value : 0));
        }
    }
    return o;
}

static const char k_usage_stats[] =
    "usage: eyrie stats --url URL[,URL...] [--prometheus | --json] [--timeout MS]\n"
    "  default: one `name{labels} value` line per series; --prometheus: the Prometheus\n"
    "  text exposition format (metric names prefixed eyrie_); --json: one object\n";

static int cmd_stats(int argc, char **argv)
{
    simple_args a;
    int prc = parse_simple(argc, argv, k_usage_stats, true, false, true, &a);
    if (prc >= 0) return prc;
    eyc_client *c = remote_connect(a.url, a.timeout_ms);
    if (!c) return 1;
    Eyrie__Response *r;
    int code = eyc_stats(c, 0, &r), rc = 0;
    if (code) {
        rc = remote_fail(c, code);
    } else if (a.json) {
        rc = print_json(stats_json(r->stats));
    } else if (a.prometheus) {
        rc = eyc_stats_prometheus(r->stats, stdout) ? 1 : 0;
    } else {
        /* the exposition without its comment lines */
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        if (!f || eyc_stats_prometheus(r->stats, f)) rc = 1;
        if (f) fclose(f);
        for (char *line = buf, *nl; !rc && line && *line; line = nl + 1) {
            nl = strchr(line, '\n');
            if (!nl) nl = line + strlen(line) - 1;
            if (*line != '#') fwrite(line, 1, (size_t)(nl - line) + 1, stdout);
        }
        free(buf);
    }
    eyc_response_free(r);
    eyc_close(c);
    return rc;
}

static const char k_usage_health[] =
    "usage: eyrie health --url URL[,URL...] [--json] [--timeout MS]\n"
    "  exit 0 when the daemon answers \"ok\", 1 when it drains or does not answer\n";

static int cmd_health(int argc, char **argv)
{
    simple_args a;
    int prc = parse_simple(argc, argv, k_usage_health, false, false, true, &a);
    if (prc >= 0) return prc;
    eyc_client *c = remote_connect(a.url, a.timeout_ms ? a.timeout_ms : 10000);
    if (!c) return 1;
    Eyrie__Response *r;
    int code = eyc_health(c, 0, &r), rc;
    if (code) {
        rc = remote_fail(c, code);
    } else {
        const Eyrie__HealthResult *h = r->health;
        const char *st = h->status ? h->status : "";
        if (a.json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "status", st);
            cJSON_AddNumberToObject(o, "uptime_s", h->uptime_s);
            cJSON_AddNumberToObject(o, "running", h->running);
            cJSON_AddNumberToObject(o, "queued", h->queued);
            print_json(o);
        } else {
            printf("%s: up %.1f s, %u running, %u queued\n", *st ? st : "?", h->uptime_s,
                   h->running, h->queued);
        }
        rc = strcmp(st, "ok") ? 1 : 0;
    }
    eyc_response_free(r);
    eyc_close(c);
    return rc;
}

static const char *task_name(Eyrie__Task t)
{
    switch (t) {
    case EYRIE__TASK__TASK_CHAT: return "chat";
    case EYRIE__TASK__TASK_COMPLETE: return "complete";
    case EYRIE__TASK__TASK_TRANSCRIBE: return "transcribe";
    case EYRIE__TASK__TASK_SPEAK: return "speak";
    default: return "?";
    }
}

static const char k_usage_models[] =
    "usage: eyrie models --url URL[,URL...] [--json] [--timeout MS]\n";

static int cmd_models(int argc, char **argv)
{
    simple_args a;
    int prc = parse_simple(argc, argv, k_usage_models, false, false, true, &a);
    if (prc >= 0) return prc;
    eyc_client *c = remote_connect(a.url, a.timeout_ms);
    if (!c) return 1;
    Eyrie__Response *r;
    int code = eyc_list_models(c, 0, &r), rc = 0;
    if (code) {
        rc = remote_fail(c, code);
    } else if (a.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "models");
        for (size_t i = 0; i < r->models->n_models; i++) {
            const Eyrie__ModelInfo *m = r->models->models[i];
            cJSON *j = cJSON_CreateObject();
            cJSON_AddItemToArray(arr, j);
            cJSON_AddStringToObject(j, "name", m->name ? m->name : "");
            cJSON_AddStringToObject(j, "path", m->path ? m->path : "");
            cJSON_AddStringToObject(j, "arch", m->arch ? m->arch : "");
            cJSON_AddNumberToObject(j, "n_ctx", m->n_ctx);
            cJSON_AddNumberToObject(j, "n_vocab", m->n_vocab);
            cJSON_AddStringToObject(j, "drafter", m->drafter ? m->drafter : "");
            cJSON *t = cJSON_AddArrayToObject(j, "tasks");
            for (size_t k = 0; k < m->n_tasks; k++)
                cJSON_AddItemToArray(t, cJSON_CreateString(task_name(m->tasks[k])));
        }
        rc = print_json(o);
    } else {
        for (size_t i = 0; i < r->models->n_models; i++) {
            const Eyrie__ModelInfo *m = r->models->models[i];
            printf("%s: %s, n_ctx %u, n_vocab %u, drafter %s, tasks", m->name ? m->name : "?",
                   m->arch && *m->arch ? m->arch : "?", m->n_ctx, m->n_vocab,
                   m->drafter && *m->drafter ? m->drafter : "none");
            for (size_t k = 0; k < m->n_tasks; k++)
                printf("%s%s", k ? "," : " ", task_name(m->tasks[k]));
            printf("%s\n  %s\n", m->n_tasks ? "" : " none", m->path ? m->path : "");
        }
    }
    eyc_response_free(r);
    eyc_close(c);
    return rc;
}

static const char k_usage_cancel[] =
    "usage: eyrie cancel --url URL[,URL...] [--json] [--timeout MS] JOB_ID\n"
    "  exit 0 when the job was found (and is now cancelled), 1 otherwise\n";

static int cmd_cancel(int argc, char **argv)
{
    simple_args a;
    int prc = parse_simple(argc, argv, k_usage_cancel, false, true, true, &a);
    if (prc >= 0) return prc;
    eyc_client *c = remote_connect(a.url, a.timeout_ms);
    if (!c) return 1;
    bool found = false, running = false;
    int code = eyc_cancel(c, a.arg, &found, &running), rc;
    if (code && code != EYRIE__ERROR_CODE__ERR_NOT_FOUND) {
        rc = remote_fail(c, code);
    } else {
        if (a.json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddBoolToObject(o, "found", found);
            cJSON_AddBoolToObject(o, "was_running", running);
            print_json(o);
        } else if (found) {
            printf("%s: cancelled%s\n", a.arg, running ? " (was running)" : "");
        } else {
            fprintf(stderr, "eyrie: %s: no such job\n", a.arg);
        }
        rc = found ? 0 : 1;
    }
    eyc_close(c);
    return rc;
}

static int cmd_generate(int argc, char **argv)
{
    enum { O_MODEL = 256, O_PROMPT, O_CHAT, O_SYSTEM, O_MAXTOK, O_TEMP, O_TOPK, O_TOPP, O_MINP,
           O_REP, O_REPN, O_SEED, O_STOP, O_IGNEOS, O_THREADS, O_CTX, O_DEVICE, O_JSON, O_HELP,
           O_DRAFTER, O_SPEC_METHOD, O_SPEC_K, O_SPEC_TOPK, O_SPEC_DEPTH, O_SPEC_TOKENS, O_URL,
           O_TIMEOUT, O_DEADLINE, O_ID, O_DRAFTER_QUANT };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"prompt", required_argument, 0, O_PROMPT},
        {"chat", required_argument, 0, O_CHAT}, {"system", required_argument, 0, O_SYSTEM},
        {"max-tokens", required_argument, 0, O_MAXTOK},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP}, {"min-p", required_argument, 0, O_MINP},
        {"repeat-penalty", required_argument, 0, O_REP},
        {"repeat-last-n", required_argument, 0, O_REPN}, {"seed", required_argument, 0, O_SEED},
        {"stop", required_argument, 0, O_STOP}, {"ignore-eos", no_argument, 0, O_IGNEOS},
        {"threads", required_argument, 0, O_THREADS}, {"ctx", required_argument, 0, O_CTX},
        {"device", required_argument, 0, O_DEVICE}, {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, O_HELP},
        {"drafter", required_argument, 0, O_DRAFTER},
        {"spec-method", required_argument, 0, O_SPEC_METHOD},
        {"spec-k", required_argument, 0, O_SPEC_K}, {"spec-topk", required_argument, 0, O_SPEC_TOPK},
        {"spec-depth", required_argument, 0, O_SPEC_DEPTH},
        {"spec-tokens", required_argument, 0, O_SPEC_TOKENS}, {"url", required_argument, 0, O_URL},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"deadline", required_argument, 0, O_DEADLINE},
        {"id", required_argument, 0, O_ID},
        {"drafter-quant", required_argument, 0, O_DRAFTER_QUANT}, {0, 0, 0, 0}};
    const char *model = NULL, *prompt = NULL, *chat = NULL, *system = NULL, *device = "cpu";
    ey_gen_params gp = {.max_tokens = 256, .sampling = ey_sampling_default()};
    int threads = 0, n_ctx = 4096;
    bool json = false;
    const char *drafter = NULL;
    ey_eagle3_opts eo = {0};
    if (!ey_e3_quant_parse(EY_E3_QUANT_DEFAULT, &eo.quant)) EY_ASSERT(0);
    ey_spec_opts so = ey_spec_opts_default();
    bool method_set = false;
    ey_eagle3 *dm = NULL;
    ey_spec_stats sst = {0};
    remote_args ra = {.timeout_ms = 0};
    unsigned set = 0; /* options given, bit (o - O_MODEL) */
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        if (o >= O_MODEL && o <= O_DRAFTER_QUANT) set |= 1u << (o - O_MODEL);
        switch (o) {
        case O_MODEL: model = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_CHAT: chat = optarg; break;
        case O_SYSTEM: system = optarg; break;
        case O_MAXTOK: ok = ey_arg_int(optarg, 1, 1 << 20, &gp.max_tokens); break;
        case O_TEMP: ok = ey_arg_float(optarg, &gp.sampling.temperature); break;
        case O_TOPK: ok = ey_arg_int(optarg, 0, INT_MAX, &gp.sampling.top_k); break;
        case O_TOPP: ok = ey_arg_float(optarg, &gp.sampling.top_p); break;
        case O_MINP: ok = ey_arg_float(optarg, &gp.sampling.min_p); break;
        case O_REP: ok = ey_arg_float(optarg, &gp.sampling.repeat_penalty); break;
        case O_REPN: ok = ey_arg_int(optarg, -1, INT_MAX, &gp.sampling.repeat_last_n); break;
        case O_SEED: ok = ey_arg_u64(optarg, &gp.sampling.seed); break;
        case O_STOP:
            ok = gp.n_stop < EY_MAX_STOP && *optarg && strlen(optarg) <= EY_MAX_STOP_LEN;
            if (ok) gp.stop[gp.n_stop++] = optarg;
            break;
        case O_IGNEOS: gp.ignore_eos = true; break;
        case O_THREADS: ok = ey_arg_int(optarg, 1, 1024, &threads); break;
        case O_CTX: ok = ey_arg_int(optarg, 16, 1 << 20, &n_ctx); break;
        case O_DEVICE: device = optarg; break;
        case O_JSON: json = true; break;
        case O_HELP: usage_generate(stdout); return 0;
        case O_DRAFTER: drafter = optarg; break;
        case O_DRAFTER_QUANT: ok = ey_e3_quant_parse(optarg, &eo.quant); break;
        case O_SPEC_METHOD:
            ok = ey_spec_method_parse(optarg, &so.method);
            method_set = true;
            break;
        case O_SPEC_K: ok = ey_arg_int(optarg, 1, EY_SPEC_MAX_DEPTH, &so.k); break;
        case O_SPEC_TOPK: ok = ey_arg_int(optarg, 1, EY_SPEC_MAX_TOPK, &so.top_k); break;
        case O_SPEC_DEPTH: ok = ey_arg_int(optarg, 1, EY_SPEC_MAX_DEPTH, &so.depth); break;
        case O_SPEC_TOKENS: ok = ey_arg_int(optarg, 2, EY_SPEC_MAX_NODES, &so.total_tokens); break;
        case O_URL: ra.url = optarg; ok = *optarg != 0; break;
        case O_TIMEOUT: ok = ey_arg_int(optarg, 1, INT_MAX, &ra.timeout_ms); break;
        case O_DEADLINE: ok = ey_arg_int(optarg, 1, INT_MAX, &ra.deadline_ms); break;
        case O_ID: ra.id = optarg; ok = *optarg && strlen(optarg) <= EYC_ID_MAX; break;
        default:
            fprintf(stderr, "eyrie generate: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage_generate(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "eyrie generate: bad value '%s' for --%s\n", optarg,
                    opts[o - O_MODEL].name);
            usage_generate(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eyrie generate: unexpected argument '%s'\n", argv[optind]);
        usage_generate(stderr);
        return 2;
    }
    if (!!prompt == !!chat) {
        fprintf(stderr, "eyrie generate: give exactly one of --prompt or --chat\n");
        usage_generate(stderr);
        return 2;
    }
    if (system && !chat) {
        fprintf(stderr, "eyrie generate: --system needs --chat\n");
        return 2;
    }
    ey_err e = ey_sampling_check(&gp.sampling);
    if (e) {
        fprintf(stderr, "eyrie generate: %s\n", ey_err_detail());
        return 2;
    }
    if (ra.url) {
        static const int daemon_side[] = {O_MODEL, O_THREADS, O_CTX, O_DEVICE, O_DRAFTER,
                                          O_DRAFTER_QUANT};
        for (size_t i = 0; i < sizeof daemon_side / sizeof *daemon_side; i++)
            if (set & (1u << (daemon_side[i] - O_MODEL))) {
                fprintf(stderr, "eyrie generate: --%s is a daemon setting; not with --url\n",
                        opts[daemon_side[i] - O_MODEL].name);
                return 2;
            }
        if (method_set && (e = ey_spec_opts_check(&so))) {
            fprintf(stderr, "eyrie generate: %s\n", ey_err_detail());
            return 2;
        }
        ra.prompt = prompt;
        ra.chat = chat;
        ra.system = system;
        ra.json = json;
        ra.set = set;
        ra.gp = &gp;
        ra.so = &so;
        ra.method_set = method_set;
        static const int bits[14] = {
            O_TEMP - O_MODEL,   O_TOPK - O_MODEL,   O_TOPP - O_MODEL,      O_MINP - O_MODEL,
            O_REP - O_MODEL,    O_REPN - O_MODEL,   O_SEED - O_MODEL,      O_MAXTOK - O_MODEL,
            O_IGNEOS - O_MODEL, O_SPEC_K - O_MODEL, O_SPEC_TOPK - O_MODEL, O_SPEC_DEPTH - O_MODEL,
            O_SPEC_TOKENS - O_MODEL, O_SPEC_METHOD - O_MODEL};
        return generate_remote(&ra, O_MODEL, bits);
    }
    if (set & ((1u << (O_TIMEOUT - O_MODEL)) | (1u << (O_DEADLINE - O_MODEL)) |
               (1u << (O_ID - O_MODEL)))) {
        fprintf(stderr, "eyrie generate: --timeout, --deadline and --id need --url\n");
        return 2;
    }
    if (method_set && so.method != EY_SPEC_NONE && !drafter) {
        fprintf(stderr, "eyrie generate: --spec-method needs --drafter\n");
        return 2;
    }
    if (!drafter) so.method = EY_SPEC_NONE;
    if ((e = ey_spec_opts_check(&so))) {
        fprintf(stderr, "eyrie generate: %s\n", ey_err_detail());
        return 2;
    }

    ey_backend *be = NULL;
    bool cuda;
    int dev;
    if (!ey_arg_device(device, &cuda, &dev)) {
        fprintf(stderr, "eyrie generate: bad device '%s' (cpu, cuda[:N])\n", device);
        return 2;
    }
    e = cuda ? ey_backend_cuda_create(dev, &be) : ey_backend_cpu_create(threads, &be);
    if (e) return fail("backend", e);

    char *mpath = model ? strdup(model) : ey_default_model_path();
    ey_model *m = NULL;
    ey_ctx *ctx = NULL;
    int32_t *ids = NULL;
    int n_ids = 0, rc = 1;
    ey_gen_result res = {0};
    if ((e = ey_model_load(mpath, be, &m))) {
        if (!model && e == EY_ERR_IO)
            fprintf(stderr, "eyrie: the default model is not fetched yet; run "
                            "scripts/fetch-model.sh (or scripts/setup.sh)\n");
        rc = fail(mpath, e);
        goto out;
    }
    if (n_ctx > m->cfg.n_ctx_train) n_ctx = m->cfg.n_ctx_train;
    int rows = ey_spec_ctx_rows(&so);
    if ((e = ey_ctx_create(m, n_ctx, rows > 512 ? rows : 512, rows, &ctx))) {
        rc = fail("context", e);
        goto out;
    }
    if (so.method != EY_SPEC_NONE && (e = ey_eagle3_load(drafter, m, &eo, &dm))) {
        rc = fail(drafter, e);
        goto out;
    }
    e = chat ? ey_prompt_chat(m, system, chat, &ids, &n_ids) : ey_prompt_text(m, prompt, &ids, &n_ids);
    if (e) {
        rc = fail("prompt", e);
        goto out;
    }
    e = dm ? ey_spec_generate(ctx, dm, &so, ids, n_ids, &gp, json ? NULL : stream_cb, NULL, &res,
                              &sst)
           : ey_generate(ctx, ids, n_ids, &gp, json ? NULL : stream_cb, NULL, &res);
    if (e) {
        rc = fail("generate", e);
        goto out;
    }
    if (json) {
        /* the protocol's GenerateResult, rendered as a daemon's answer is */
        Eyrie__GenerateResult pb;
        if (!ey_result_to_pb(&res, dm ? &sst : NULL, -1, true, &pb)) {
            fprintf(stderr, "eyrie: no memory\n");
            goto out;
        }
        cJSON *jo = eyc_result_json(&pb);
        ey_result_pb_free(&pb);
        /* protocol v1 has no draft_ms/verify_ms (proposed): keep the
         * in-process values meanwhile */
        cJSON *js = jo ? cJSON_GetObjectItemCaseSensitive(jo, "spec") : NULL;
        if (js) {
            cJSON_ReplaceItemInObjectCaseSensitive(js, "draft_ms", cJSON_CreateNumber(sst.draft_ms));
            cJSON_ReplaceItemInObjectCaseSensitive(js, "verify_ms",
                                                   cJSON_CreateNumber(sst.verify_ms));
        }
        int prc = print_json(jo);
        if (prc) goto out;
    } else {
        putchar('\n');
        fflush(stdout); /* the text, then the stats line on stderr */
        if (dm)
            fprintf(stderr, "spec %s: tau %.2f, %ld/%ld drafts accepted in %d rounds\n",
                    sst.method, sst.mean_accept_len, (long)sst.accepted, (long)sst.drafted,
                    sst.rounds);
    }
    rc = 0;
out:
    ey_gen_result_free(&res);
    ey_eagle3_free(dm);
    free(ids);
    ey_ctx_free(ctx);
    ey_model_free(m);
    free(mpath);
    ey_backend_destroy(be);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "drafter-init")) return ey_cli_drafter_init(argc - 1, argv + 1);
    if (!strcmp(cmd, "gen-data")) {
        char *def = ey_default_model_path();
        int rc = ey_cli_gen_data(argc - 1, argv + 1, def);
        free(def);
        return rc;
    }
    if (!strcmp(cmd, "token-freq")) {
        char *def = ey_default_model_path();
        int rc = ey_cli_token_freq(argc - 1, argv + 1, def);
        free(def);
        return rc;
    }
    if (!strcmp(cmd, "dump-hidden")) return ey_cmd_dump_hidden(argc - 1, argv + 1);
    if (!strcmp(cmd, "train-drafter")) {
        char *def = ey_default_model_path();
        int rc = ey_cli_train_drafter(argc - 1, argv + 1, def);
        free(def);
        return rc;
    }
    if (!strcmp(cmd, "probe")) return ey_cli_probe(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert-audio")) return ey_cli_convert_audio(argc - 1, argv + 1);
    if (!strcmp(cmd, "stats")) return cmd_stats(argc - 1, argv + 1);
    if (!strcmp(cmd, "health")) return cmd_health(argc - 1, argv + 1);
    if (!strcmp(cmd, "models")) return cmd_models(argc - 1, argv + 1);
    if (!strcmp(cmd, "cancel")) return cmd_cancel(argc - 1, argv + 1);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage_main(stdout);
        return 0;
    }
    fprintf(stderr, "eyrie: unknown command '%s'\n", cmd);
    usage_main(stderr);
    return 2;
}
