/* eyried — the option table, config file and flags. */
#include "dconfig.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../core/eagle3.h"

typedef enum { T_STR, T_INT, T_LIST } opt_type;

typedef struct opt_desc {
    const char *name;
    opt_type type;
    size_t off;
    const char *def;
    long lo, hi;
    const char *help;
} opt_desc;

#define O(f) offsetof(eyd_config, f)
static const opt_desc k_opts[] = {
    {"model", T_STR, O(model), "", 0, 0,
     "GGUF file or Hugging Face directory (default: the default model)"},
    {"drafter", T_STR, O(drafter), "", 0, 0, "EAGLE-3 drafter directory (speculative decoding)"},
    {"drafter-quant", T_STR, O(drafter_quant), EY_E3_QUANT_DEFAULT, 0, 0,
     "drafter matrices: none (as stored) | q8_0 | q4_1 (quantized at load)"},
    {"listen", T_LIST, O(listen), "ipc:///tmp/eyrie.sock", 0, 0,
     "endpoint to serve, ipc://PATH or tcp://HOST:PORT (repeatable, up to 8)"},
    {"config", T_STR, O(config), "", 0, 0, "read 'key = value' lines with these names first"},
    {"log-file", T_STR, O(log_file), "", 0, 0, "append logs here instead of stderr (SIGHUP reopens)"},
    {"device", T_STR, O(device), "cpu", 0, 0, "cpu | cuda[:N]"},
    {"threads", T_INT, O(threads), "0", 0, 1024, "CPU threads (0: all cores)"},
    {"ctx", T_INT, O(ctx), "16384", 64, 1 << 22, "KV-cache rows shared by all sequences"},
    {"seq-ctx", T_INT, O(seq_ctx), "4096", 16, 1 << 22, "context limit of one sequence (tokens)"},
    {"max-running", T_INT, O(max_running), "16", 1, 1024, "sequences decoded together"},
    {"max-queued", T_INT, O(max_queued), "256", 0, 1 << 20,
     "jobs waiting for a slot; beyond: ERR_BUSY"},
    {"batch-rows", T_INT, O(batch_rows), "256", 16, 8192, "rows in one batched forward"},
    {"prefill-chunk", T_INT, O(prefill_chunk), "128", 1, 8192,
     "prompt rows of one sequence per step (long prompts never stall decoding)"},
    {"deadline-ms", T_INT, O(deadline_ms), "0", 0, INT_MAX, "default job deadline (0: none)"},
    {"max-msg-bytes", T_INT, O(max_msg_bytes), "67108864", 1024, 1 << 30,
     "largest request accepted; larger ones get ERR_TOO_LARGE"},
    {"max-prompt-bytes", T_INT, O(max_prompt_bytes), "1048576", 16, 1 << 30,
     "text bytes in one request"},
    {"max-media-bytes", T_INT, O(max_media_bytes), "33554432", 0, 1 << 30, "bytes of one media part"},
    {"max-parts", T_INT, O(max_parts), "64", 1, 1 << 16, "content parts in one request"},
    {"max-messages", T_INT, O(max_messages), "256", 1, 1 << 16, "chat messages in one request"},
    {"max-tokens-limit", T_INT, O(max_tokens_limit), "8192", 1, 1 << 22,
     "largest max_tokens a request may ask"},
    {"result-ttl-s", T_INT, O(result_ttl_s), "300", 1, 86400 * 7,
     "how long finished results answer repeated ids and polls"},
    {"max-results", T_INT, O(max_results), "4096", 16, 1 << 22, "finished results kept at most"},
    {"grace-s", T_INT, O(grace_s), "30", 0, 3600,
     "SIGTERM: seconds to finish in-flight jobs before they get ERR_SHUTTING_DOWN"},
    {"poll-max-ms", T_INT, O(poll_max_ms), "30000", 1, 600000, "longest long-poll wait"},
    {"spec-method", T_STR, O(spec_method), "chain", 0, 0,
     "default method with a drafter: none | chain | tree"},
    {"spec-k", T_INT, O(spec_k), "4", 1, 32, "chain: drafts per round"},
    {"spec-topk", T_INT, O(spec_topk), "4", 1, 16, "tree: children per node"},
    {"spec-depth", T_INT, O(spec_depth), "5", 1, 32, "tree: draft levels"},
    {"spec-tokens", T_INT, O(spec_tokens), "16", 2, 256, "tree: nodes incl. the root"},
    {"spec-max-batch", T_INT, O(spec_max_batch), "4", 0, 1024,
     "decoding sequences above which drafting is turned off for the step"},
    {"spec-probe-rounds", T_INT, O(spec_probe_rounds), "4", 1, 1 << 20,
     "rounds with drafts after which a job's acceptance is judged"},
    {"spec-min-accept-pct", T_INT, O(spec_min_accept_pct), "30", 0, 3200,
     "a job accepting fewer than this many drafts per 100 rounds (tau - 1 in %) stops drafting"},
    {"spec-probe-jobs", T_INT, O(spec_probe_jobs), "3", 1, 1 << 20,
     "jobs in a row that stop drafting before drafting is rationed"},
    {"spec-probe-every", T_INT, O(spec_probe_every), "16", 0, 1 << 20,
     "while rationed, one job in this many drafts (0: never ration)"},
};
#undef O
enum { N_OPTS = sizeof k_opts / sizeof *k_opts };

void eyd_config_help(FILE *f)
{
    fprintf(f, "usage: eyried [--model PATH] [--drafter DIR] [--listen URL ...] [options]\n\n"
               "Every option is also a config-file key (--config FILE, 'key = value' lines,\n"
               "'#' comments); flags override the file.\n\n");
    for (int i = 0; i < N_OPTS; i++) {
        const opt_desc *o = &k_opts[i];
        char lhs[48];
        snprintf(lhs, sizeof lhs, "--%s %s", o->name,
                 o->type == T_INT ? "N" : o->type == T_LIST ? "URL" : "VALUE");
        fprintf(f, "  %-24s %s", lhs, o->help);
        if (*o->def) fprintf(f, " [%s]", o->def);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-24s %s\n", "--help", "this text");
}

static const opt_desc *find(const char *name)
{
    for (int i = 0; i < N_OPTS; i++)
        if (!strcmp(k_opts[i].name, name)) return &k_opts[i];
    return NULL;
}

static int set(eyd_config *c, const opt_desc *o, const char *val, bool from_file, bool *list_reset)
{
    char *base = (char *)c;
    switch (o->type) {
    case T_STR: {
        char **p = (char **)(base + o->off);
        free(*p);
        *p = strdup(val);
        return *p ? 0 : 2;
    }
    case T_INT: {
        char *end;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < o->lo || v > o->hi) {
            fprintf(stderr, "eyried: bad value '%s' for %s (an integer in [%ld, %ld])\n", val,
                    o->name, o->lo, o->hi);
            return 2;
        }
        *(int *)(base + o->off) = (int)v;
        return 0;
    }
    case T_LIST:
        /* flags replace what the file (or the default) listed */
        if (list_reset && !*list_reset) {
            for (int i = 0; i < c->n_listen; i++) free(c->listen[i]);
            c->n_listen = 0;
            *list_reset = true;
        }
        if (c->n_listen == EYD_MAX_LISTEN) {
            fprintf(stderr, "eyried: at most %d --listen endpoints\n", EYD_MAX_LISTEN);
            return 2;
        }
        if (!(c->listen[c->n_listen++] = strdup(val))) return 2;
        return 0;
    }
    (void)from_file;
    return 2;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static int load_file(eyd_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "eyried: cannot open config %s: %s\n", path, strerror(errno));
        return 2;
    }
    char line[4096];
    int ln = 0, rc = 0;
    bool reset = false;
    while (!rc && fgets(line, sizeof line, f)) {
        ln++;
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(stderr, "eyried: %s:%d: line too long\n", path, ln);
            rc = 2;
            break;
        }
        char *h = strchr(line, '#');
        if (h) *h = 0;
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(stderr, "eyried: %s:%d: expected 'key = value'\n", path, ln);
            rc = 2;
            break;
        }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        const opt_desc *o = find(k);
        if (!o || !strcmp(k, "config")) {
            fprintf(stderr, "eyried: %s:%d: unknown key '%s'\n", path, ln, k);
            rc = 2;
            break;
        }
        rc = set(c, o, v, true, &reset);
    }
    fclose(f);
    return rc;
}

int eyd_config_load(eyd_config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_OPTS; i++)
        if (set(c, &k_opts[i], k_opts[i].def, false, NULL)) return 2;
    /* --config first, so that flags override the file */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            eyd_config_help(stdout);
            return 1;
        }
        const char *a = argv[i];
        if (!strncmp(a, "--config=", 9) || (!strcmp(a, "--config") && i + 1 < argc)) {
            const char *p = a[8] == '=' ? a + 9 : argv[++i];
            int rc = load_file(c, p);
            if (rc) return rc;
        }
    }
    bool reset = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2)) {
            fprintf(stderr, "eyried: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        char name[64];
        const char *val = NULL, *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, a + 2, nl);
        name[nl] = 0;
        const opt_desc *o = find(name);
        if (!o) {
            fprintf(stderr, "eyried: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
            fprintf(stderr, "eyried: option --%s needs a value\n", name);
            return 2;
        }
        if (o->off == offsetof(eyd_config, config)) continue; /* read above */
        int rc = set(c, o, val, false, &reset);
        if (rc) return rc;
    }
    if (c->seq_ctx > c->ctx) c->seq_ctx = c->ctx;
    return 0;
}

void eyd_config_free(eyd_config *c)
{
    for (int i = 0; i < N_OPTS; i++)
        if (k_opts[i].type == T_STR) free(*(char **)((char *)c + k_opts[i].off));
    for (int i = 0; i < c->n_listen; i++) free(c->listen[i]);
    memset(c, 0, sizeof *c);
}
