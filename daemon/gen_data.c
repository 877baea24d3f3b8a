/* eyrie — `eyrie gen-data`: regenerate the assistant turns of conversations
 * with the target model itself, so that a drafter trained on the output
 * learns the target's own distribution.
 *
 * Input: JSONL, one conversation a line, OpenAI `messages` ([{role, content}])
 * or ShareGPT `conversations` ([{from, value}]), optional "id" (default: the
 * line number). Every assistant turn is regenerated in order, each prompt
 * being the chat template over all earlier messages (earlier assistant turns
 * already regenerated) plus the generation prompt; a conversation that ends
 * with a user (or tool) message gets a final assistant turn as well.
 *
 * Two passes over the input: the first validates every line (bad lines are
 * reported with their line number and skipped), collects the ids and drops
 * those already in --out (resume); the second reads the remaining lines one
 * at a time as they are admitted. Up to --batch conversations are in flight;
 * each step runs one ey_forward_batch over their current turns (decode rows
 * first, then prefill chunks in the rows left), each sequence being an
 * ey_spec_seq stepper without a drafter, so a turn's tokens are those of
 * ey_generate over the same prompt (greedy, or sampled with the same seed).
 * A finished conversation is appended to --out as one line and flushed;
 * a newly read one takes its place (continuous batching). */
#include "../common/ey_args.h"
#include "gen_data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "../core/chat.h"
#include "../core/convo.h"
#include "../core/generate.h"
#include "../core/model.h"
#include "../core/spec.h"
#include "../kernels/ey_backend.h"
#include "convo_jsonl.h"

#define GD_ROWS 512 /* rows of one batched forward (the ctx's max_batch) */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: eyrie gen-data [--model PATH] --prompts IN.jsonl --out OUT.jsonl [options]\n"
        "\n"
        "Regenerates the assistant turns of each conversation in IN with the model\n"
        "itself and appends one line per conversation to OUT. Input lines: {\"id\": ...,\n"
        "\"messages\": [{\"role\", \"content\"}]} or {\"id\": ..., \"conversations\":\n"
        "[{\"from\": \"human\"|\"gpt\"|\"system\", \"value\"}]}. Resumable: conversations\n"
        "whose id is already in OUT are skipped.\n"
        "\n"
        "  --model PATH         GGUF file or Hugging Face directory (default: the default\n"
        "                       model, as for eyrie generate)\n"
        "  --prompts FILE       input conversations (JSONL)\n"
        "  --out FILE           output (JSONL; appended to, created if missing)\n"
        "  --max-tokens N       completion tokens per assistant turn at most (default 512)\n"
        "  --temperature T      0 = greedy (default 0)\n"
        "  --top-k K            with T > 0; 0 = off (default 40)\n"
        "  --top-p P            with T > 0; 1 = off (default 0.95)\n"
        "  --min-p P            with T > 0; 0 = off (default 0.05)\n"
        "  --repeat-penalty R   1 = off (default 1)\n"
        "  --repeat-last-n N    penalty window, -1 = all (default 64)\n"
        "  --seed S             the conversation on line L samples with seed S + L - 1\n"
        "                       (default 0)\n"
        "  --batch N            conversations decoded together (default 8)\n"
        "  --ctx N              context of one sequence in tokens (default 4096, capped at\n"
        "                       the model's training context); the KV cache holds N x batch\n"
        "  --limit N            only the first N valid conversations of IN\n"
        "  --threads N          CPU threads (default: all cores)\n"
        "  --device DEV         cpu (default) | cuda[:N]\n"
        "\n"
        "Exit 0 when every conversation was processed (bad input lines and conversations\n"
        "that do not fit --ctx are reported and counted, not written); 1 runtime error;\n"
        "2 bad arguments; 130 interrupted (rerun the same command to resume).\n");
}

/* ------------------------------------------------------------ utilities */

/* Set of strings (ids) with an int each (a line number). */
typedef struct strset {
    char **keys;
    int *vals;
    size_t cap, n;
} strset;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int *strset_find(const strset *t, const char *k)
{
    if (!t->cap) return NULL;
    for (size_t i = str_hash(k) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->keys[i]) return NULL;
        if (!strcmp(t->keys[i], k)) return &t->vals[i];
    }
}

static bool strset_add(strset *t, const char *k, int v)
{
    if ((t->n + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        char **keys = calloc(cap, sizeof *keys);
        int *vals = calloc(cap, sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return false;
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->keys[i]) continue;
            size_t j = str_hash(t->keys[i]) & (cap - 1);
            while (keys[j]) j = (j + 1) & (cap - 1);
            keys[j] = t->keys[i];
            vals[j] = t->vals[i];
        }
        free(t->keys);
        free(t->vals);
        t->keys = keys;
        t->vals = vals;
        t->cap = cap;
    }
    size_t i = str_hash(k) & (t->cap - 1);
    while (t->keys[i]) {
        if (!strcmp(t->keys[i], k)) {
            t->vals[i] = v;
            return true;
        }
        i = (i + 1) & (t->cap - 1);
    }
    if (!(t->keys[i] = strdup(k))) return false;
    t->vals[i] = v;
    t->n++;
    return true;
}

static void strset_free(strset *t)
{
    for (size_t i = 0; i < t->cap; i++) free(t->keys[i]);
    free(t->keys);
    free(t->vals);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------ conversations */

typedef struct conv {
    int line_no;           /* 1-based line of the input */
    cJSON *id;             /* the id written out */
    char *id_key;          /* its canonical JSON text */
    int n_msg;
    const char **role;     /* static strings */
    char **content;        /* malloc'ed; NULL for the final turn not yet generated */
    int *turn;             /* indices of the messages to generate, in order */
    int n_turn, cur;
    int *t_prompt, *t_completion;
    const char **t_finish;
    int32_t *prompt;       /* the current turn's prompt ids */
    int n_prompt;
    ey_gen_params gp;
    ey_spec_seq *q;
} conv;

static void conv_free(conv *c)
{
    if (!c) return;
    ey_spec_seq_free(c->q);
    cJSON_Delete(c->id);
    free(c->id_key);
    for (int i = 0; c->content && i < c->n_msg; i++) free(c->content[i]);
    free(c->content);
    free(c->role);
    free(c->turn);
    free(c->t_prompt);
    free(c->t_completion);
    free(c->t_finish);
    free(c->prompt);
    free(c);
}

/* Parse one input line; NULL with err set when it is not a usable
 * conversation (or on no memory: err says so). */
static conv *conv_parse(const char *line, int line_no, char *err, size_t en)
{
    ey_jsonl_conv jc;
    /* one more slot: a final assistant turn */
    if (!ey_jsonl_conv_parse(line, 1, &jc, err, en)) return NULL;
    const int n = jc.n_msg;
    conv *c = calloc(1, sizeof *c);
    if (!c) {
        ey_jsonl_conv_free(&jc, n + 1);
        snprintf(err, en, "no memory");
        return NULL;
    }
    c->line_no = line_no;
    c->n_msg = n + 1; /* every content slot, until the turns are known */
    c->role = jc.role;
    c->content = jc.content;
    c->id = jc.id ? jc.id : cJSON_CreateNumber(line_no);
    if (!c->id || !(c->id_key = cJSON_PrintUnformatted(c->id))) goto nomem;
    if (!(c->turn = calloc((size_t)n + 1, sizeof *c->turn))) goto nomem;
    for (int i = 0; i < n; i++)
        if (!strcmp(c->role[i], "assistant")) c->turn[c->n_turn++] = i;
    c->n_msg = n;
    const char *last = c->role[n - 1];
    if (!strcmp(last, "user") || !strcmp(last, "tool")) {
        c->role[n] = "assistant";
        c->turn[c->n_turn++] = n;
        c->n_msg = n + 1;
    }
    if (c->n_turn == 0) {
        snprintf(err, en, "nothing to generate (no assistant turn, and the last message is "
                          "not from the user)");
        goto bad;
    }
    c->t_prompt = calloc((size_t)c->n_turn, sizeof *c->t_prompt);
    c->t_completion = calloc((size_t)c->n_turn, sizeof *c->t_completion);
    c->t_finish = calloc((size_t)c->n_turn, sizeof *c->t_finish);
    if (!c->t_prompt || !c->t_completion || !c->t_finish) goto nomem;
    return c;
nomem:
    snprintf(err, en, "no memory");
bad:
    c->n_msg = n + 1; /* free every content slot */
    conv_free(c);
    return NULL;
}

/* ------------------------------------------------------------ the run */

typedef struct todo {
    int line_no;
    off_t off;
} todo;

typedef struct gd {
    const char *in_path, *out_path, *model_name;
    ey_model *m;
    ey_ctx *ctx;
    ey_spec_opts so;
    ey_gen_params gp;
    FILE *out;
    int n_ctx;
    /* counters */
    long total, done, no_fit, tokens;
    double t0, last_report;
    bool tty, bar_drawn;
} gd;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void fmt_dur(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

static void progress(gd *g, bool force)
{
    double now = ey_now_ms();
    if (!force && now - g->last_report < (g->tty ? 200 : 5000)) return;
    g->last_report = now;
    double el = (now - g->t0) / 1e3;
    double tps = el > 0 ? g->tokens / el : 0;
    long fin = g->done + g->no_fit;
    char eta[32] = "?";
    if (fin > 0 && g->total > fin) fmt_dur(el / fin * (g->total - fin), eta, sizeof eta);
    else if (g->total <= fin) snprintf(eta, sizeof eta, "0s");
    if (g->tty) {
        enum { W = 28 };
        int fill = g->total ? (int)(W * fin / g->total) : W;
        char bar[W + 1];
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
        bar[W] = 0;
        fprintf(stderr, "\r[%s] %ld/%ld conversations | %.1f tok/s | ETA %s\033[K", bar, fin,
                g->total, tps, eta);
        g->bar_drawn = true;
    } else {
        fprintf(stderr, "gen-data: %ld/%ld conversations, %ld tokens, %.1f tok/s, ETA %s\n",
                fin, g->total, g->tokens, tps, eta);
    }
    fflush(stderr);
}

/* A message line while the bar may be on screen. */
static void note(gd *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(gd *g, const char *fmt, ...)
{
    if (g && g->bar_drawn) {
        fputs("\r\033[K", stderr);
        g->bar_drawn = false;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* Prompt ids of the turn at message `upto`: the template over messages
 * [0, upto) with the generation prompt (ey_convo_prompt). */
static ey_err build_prompt(const ey_model *m, const conv *c, int upto, int32_t **ids, int *n)
{
    ey_chat_msg *msgs = malloc(((size_t)upto + 1) * sizeof *msgs);
    if (!msgs) return ey_err_set(EY_ERR_NOMEM, "no memory");
    for (int i = 0; i < upto; i++) msgs[i] = (ey_chat_msg){c->role[i], c->content[i]};
    ey_err e = ey_convo_prompt(m, msgs, upto, ids, n);
    free(msgs);
    return e;
}

/* Start the current turn. EY_ERR_NOMEM is fatal; any other error means the
 * conversation cannot be finished (it is reported and dropped). */
static ey_err start_turn(gd *g, conv *c)
{
    free(c->prompt);
    c->prompt = NULL;
    ey_err e = build_prompt(g->m, c, c->turn[c->cur], &c->prompt, &c->n_prompt);
    if (!e)
        e = ey_spec_seq_create(g->ctx, NULL, &g->so, c->prompt, c->n_prompt, &c->gp, NULL, NULL,
                               &c->q);
    if (e && e != EY_ERR_NOMEM) {
        note(g, "eyrie gen-data: %s:%d: turn %d: %s; conversation skipped\n", g->in_path,
             c->line_no, c->cur + 1, ey_err_detail());
        g->no_fit++;
    }
    return e;
}

/* The current turn is done: its text replaces the message content. */
static ey_err finish_turn(conv *c)
{
    ey_gen_result res = {0};
    ey_err e = ey_spec_seq_finish(c->q, &res, NULL);
    ey_spec_seq_free(c->q);
    c->q = NULL;
    if (e) return e;
    int mi = c->turn[c->cur];
    char *t = ey_utf8_clean(res.text, res.text_len);
    if (!t) {
        ey_gen_result_free(&res);
        return ey_err_set(EY_ERR_NOMEM, "no memory");
    }
    free(c->content[mi]);
    c->content[mi] = t;
    c->t_prompt[c->cur] = res.prompt_tokens;
    c->t_completion[c->cur] = res.n_ids;
    c->t_finish[c->cur] = res.finish_reason; /* a string literal */
    ey_gen_result_free(&res);
    c->cur++;
    return EY_OK;
}

static ey_err write_conv(gd *g, const conv *c)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    ok = ok && cJSON_AddItemToObject(o, "id", cJSON_Duplicate(c->id, true));
    cJSON *ms = ok ? cJSON_AddArrayToObject(o, "messages") : NULL;
    ok = ok && ms;
    for (int i = 0; ok && i < c->n_msg; i++) {
        cJSON *x = cJSON_CreateObject();
        ok = x && cJSON_AddItemToArray(ms, x) && cJSON_AddStringToObject(x, "role", c->role[i]) &&
             cJSON_AddStringToObject(x, "content", c->content[i] ? c->content[i] : "");
    }
    ok = ok && cJSON_AddStringToObject(o, "model", g->model_name);
    cJSON *ts = ok ? cJSON_AddArrayToObject(o, "turns") : NULL;
    ok = ok && ts;
    for (int i = 0; ok && i < c->n_turn; i++) {
        cJSON *x = cJSON_CreateObject();
        ok = x && cJSON_AddItemToArray(ts, x) &&
             cJSON_AddNumberToObject(x, "message", c->turn[i]) &&
             cJSON_AddNumberToObject(x, "prompt_tokens", c->t_prompt[i]) &&
             cJSON_AddNumberToObject(x, "completion_tokens", c->t_completion[i]) &&
             cJSON_AddStringToObject(x, "finish_reason", c->t_finish[i]);
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return ey_err_set(EY_ERR_NOMEM, "no memory for an output line");
    size_t len = strlen(s);
    s[len] = '\n'; /* the line and its newline in one write */
    bool wok = fwrite(s, 1, len + 1, g->out) == len + 1 && fflush(g->out) == 0;
    free(s);
    if (!wok) return ey_err_set(EY_ERR_IO, "%s: write failed: %s", g->out_path, strerror(errno));
    return EY_OK;
}

/* Read --out: the ids already there; a truncated last line (an interrupted
 * write) is cut off, a complete last line without its newline gets one.
 * Returns 0, or 1 after printing why the file cannot be resumed. */
static int scan_out(const char *path, const char *model_name, strset *done)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) return 0;
        fprintf(stderr, "eyrie gen-data: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    off_t off = 0, good_end = 0;
    int line_no = 0, rc = 0;
    bool truncated = false, need_nl = false, warned = false;
    while ((len = getline(&line, &cap, f)) > 0) {
        line_no++;
        bool has_nl = line[len - 1] == '\n';
        off_t next = off + len;
        ssize_t l = len;
        if (ey_jsonl_blank(line, &l)) {
            off = good_end = next;
            continue;
        }
        cJSON *o = cJSON_ParseWithOpts(line, NULL, true);
        const cJSON *id = o ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
        if (!cJSON_IsString(id) && !cJSON_IsNumber(id)) {
            cJSON_Delete(o);
            if (!has_nl) { /* only an interrupted write leaves a line without its end */
                truncated = true;
                break;
            }
            fprintf(stderr, "eyrie gen-data: %s:%d: not a line written by gen-data; fix or "
                            "remove it before resuming\n", path, line_no);
            rc = 1;
            break;
        }
        char *key = cJSON_PrintUnformatted(id);
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(o, "model");
        if (!warned && cJSON_IsString(mn) && strcmp(mn->valuestring, model_name)) {
            fprintf(stderr, "eyrie gen-data: warning: %s has lines from model %s; new lines "
                            "come from %s\n", path, mn->valuestring, model_name);
            warned = true;
        }
        cJSON_Delete(o);
        if (!key || !strset_add(done, key, line_no)) {
            free(key);
            fprintf(stderr, "eyrie gen-data: no memory\n");
            rc = 1;
            break;
        }
        free(key);
        need_nl = !has_nl;
        off = good_end = next;
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "eyrie gen-data: %s: read error\n", path);
        rc = 1;
    }
    free(line);
    fclose(f);
    if (rc) return rc;
    if (truncated) {
        if (truncate(path, good_end)) {
            fprintf(stderr, "eyrie gen-data: %s: cannot cut the truncated last line: %s\n", path,
                    strerror(errno));
            return 1;
        }
        fprintf(stderr, "eyrie gen-data: %s:%d: dropped a truncated last line (an interrupted "
                        "run); that conversation is generated again\n", path, line_no);
    } else if (need_nl) {
        FILE *a = fopen(path, "a");
        if (!a || fputc('\n', a) == EOF || fclose(a)) {
            fprintf(stderr, "eyrie gen-data: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    return 0;
}

/* Read the line of the input at `off` and parse it (it parsed in pass 1). */
static conv *read_conv(FILE *in, const todo *t, char **line, size_t *cap)
{
    if (fseeko(in, t->off, SEEK_SET)) return NULL;
    ssize_t len = getline(line, cap, in);
    if (len <= 0) return NULL;
    ey_jsonl_blank(*line, &len);
    char err[256];
    return conv_parse(*line, t->line_no, err, sizeof err);
}

static int run(gd *g, FILE *in, const todo *todos, long n_todo, int batch)
{
    conv **live = calloc((size_t)batch, sizeof *live);
    ey_fwd_item *items = calloc((size_t)batch, sizeof *items);
    int *owner = calloc((size_t)batch, sizeof *owner), *gen0 = calloc((size_t)batch, sizeof *gen0);
    char *line = NULL;
    size_t cap = 0;
    int rc = 0, n_live = 0;
    long next = 0;
    ey_err e = EY_OK;
    if (!live || !items || !owner || !gen0) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory");
        goto fatal;
    }
    const int B = g->ctx->max_batch;
    while (n_live > 0 || next < n_todo) {
        if (g_stop) break;
        /* admission: new conversations take free slots */
        while (n_live < batch && next < n_todo) {
            const todo *t = &todos[next++];
            conv *c = read_conv(in, t, &line, &cap);
            if (!c) {
                e = ey_err_set(EY_ERR_IO, "%s:%d: cannot read the line again (did the file "
                               "change?)", g->in_path, t->line_no);
                goto fatal;
            }
            c->gp = g->gp;
            c->gp.sampling.seed = g->gp.sampling.seed + (uint64_t)(t->line_no - 1);
            if ((e = start_turn(g, c))) {
                conv_free(c);
                if (e == EY_ERR_NOMEM) goto fatal;
                e = EY_OK;
                continue;
            }
            live[n_live++] = c;
        }
        if (n_live == 0) break;
        /* plan: decoding turns first (one row each), then prefill chunks */
        int n = 0, used = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < n_live; i++) {
                bool dec = ey_spec_seq_generated(live[i]->q) > 0;
                if ((pass == 0) != dec) continue;
                int budget = dec ? 1 : B - used;
                if (budget < 1) continue;
                gen0[n] = ey_spec_seq_generated(live[i]->q);
                if ((e = ey_spec_seq_plan(live[i]->q, budget, &items[n]))) goto fatal;
                used += items[n].T;
                owner[n++] = i;
            }
        /* one forward for all, then each commits */
        if ((e = ey_forward_batch(g->ctx, items, n))) goto fatal;
        bool gone_any = false;
        for (int k = 0; k < n; k++) {
            conv *c = live[owner[k]];
            if ((e = ey_spec_seq_commit(c->q))) goto fatal;
            g->tokens += ey_spec_seq_generated(c->q) - gen0[k];
            if (!ey_spec_seq_done(c->q)) continue;
            if ((e = finish_turn(c))) goto fatal;
            if (c->cur < c->n_turn) {
                if (!(e = start_turn(g, c))) continue;
                if (e == EY_ERR_NOMEM) goto fatal;
                e = EY_OK;
            } else {
                if ((e = write_conv(g, c))) goto fatal;
                g->done++;
            }
            conv_free(c);
            live[owner[k]] = NULL;
            gone_any = true;
        }
        if (gone_any) {
            int w = 0;
            for (int i = 0; i < n_live; i++)
                if (live[i]) live[w++] = live[i];
            n_live = w;
        }
        progress(g, false);
    }
    if (g_stop) rc = 130;
    goto out;
fatal:
    note(g, "eyrie gen-data: %s: %s\n", ey_strerror(e), ey_err_detail());
    rc = 1;
out:
    for (int i = 0; live && i < n_live; i++) conv_free(live[i]);
    free(live);
    free(items);
    free(owner);
    free(gen0);
    free(line);
    return rc;
}

int ey_cli_gen_data(int argc, char **argv, const char *default_model)
{
    enum { O_MODEL = 256, O_PROMPTS, O_OUT, O_MAXTOK, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_REP,
           O_REPN, O_SEED, O_BATCH, O_CTX, O_LIMIT, O_THREADS, O_DEVICE, O_HELP };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"prompts", required_argument, 0, O_PROMPTS},
        {"out", required_argument, 0, O_OUT}, {"max-tokens", required_argument, 0, O_MAXTOK},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP}, {"min-p", required_argument, 0, O_MINP},
        {"repeat-penalty", required_argument, 0, O_REP},
        {"repeat-last-n", required_argument, 0, O_REPN}, {"seed", required_argument, 0, O_SEED},
        {"batch", required_argument, 0, O_BATCH}, {"ctx", required_argument, 0, O_CTX},
        {"limit", required_argument, 0, O_LIMIT}, {"threads", required_argument, 0, O_THREADS},
        {"device", required_argument, 0, O_DEVICE}, {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    const char *model = NULL, *in_path = NULL, *out_path = NULL, *device = "cpu";
    ey_gen_params gp = {.max_tokens = 512, .sampling = ey_sampling_default()};
    gp.sampling.temperature = 0;
    int batch = 8, n_ctx = 4096, limit = 0, threads = 0;
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (o) {
        case O_MODEL: model = optarg; break;
        case O_PROMPTS: in_path = optarg; break;
        case O_OUT: out_path = optarg; break;
        case O_MAXTOK: ok = ey_arg_int(optarg, 1, 1 << 20, &gp.max_tokens); break;
        case O_TEMP: ok = ey_arg_float(optarg, &gp.sampling.temperature); break;
        case O_TOPK: ok = ey_arg_int(optarg, 0, INT_MAX, &gp.sampling.top_k); break;
        case O_TOPP: ok = ey_arg_float(optarg, &gp.sampling.top_p); break;
        case O_MINP: ok = ey_arg_float(optarg, &gp.sampling.min_p); break;
        case O_REP: ok = ey_arg_float(optarg, &gp.sampling.repeat_penalty); break;
        case O_REPN: ok = ey_arg_int(optarg, -1, INT_MAX, &gp.sampling.repeat_last_n); break;
        case O_SEED: ok = ey_arg_u64(optarg, &gp.sampling.seed); break;
        case O_BATCH: ok = ey_arg_int(optarg, 1, GD_ROWS, &batch); break;
        case O_CTX: ok = ey_arg_int(optarg, 16, 1 << 20, &n_ctx); break;
        case O_LIMIT: ok = ey_arg_int(optarg, 1, INT_MAX, &limit); break;
        case O_THREADS: ok = ey_arg_int(optarg, 1, 1024, &threads); break;
        case O_DEVICE: device = optarg; break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "eyrie gen-data: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "eyrie gen-data: bad value '%s' for --%s\n", optarg,
                    opts[o - O_MODEL].name);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eyrie gen-data: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!in_path || !out_path) {
        fprintf(stderr, "eyrie gen-data: --prompts FILE and --out FILE are required\n");
        usage(stderr);
        return 2;
    }
    if (ey_sampling_check(&gp.sampling)) {
        fprintf(stderr, "eyrie gen-data: %s\n", ey_err_detail());
        return 2;
    }
    int dev = 0;
    bool cuda = false;
    if (!ey_arg_device(device, &cuda, &dev)) {
        fprintf(stderr, "eyrie gen-data: bad device '%s' (cpu, cuda[:N])\n", device);
        return 2;
    }

    const char *mpath = model ? model : default_model;
    gd g = {.in_path = in_path, .out_path = out_path, .gp = gp, .tty = isatty(2) == 1};
    strset done = {0}, seen = {0};
    todo *todos = NULL;
    long n_todo = 0, cap_todo = 0, n_bad = 0, n_had = 0, n_good = 0;
    FILE *in = NULL;
    ey_backend *be = NULL;
    char *line = NULL, *name = ey_path_base(mpath);
    size_t lcap = 0;
    int rc = 1;
    if (!name) goto out;
    g.model_name = name;

    /* ---- resume: what --out already holds */
    if (scan_out(out_path, name, &done)) goto out;

    /* ---- pass 1: validate the input, collect what is left to do */
    if (!(in = fopen(in_path, "r"))) {
        fprintf(stderr, "eyrie gen-data: %s: %s\n", in_path, strerror(errno));
        goto out;
    }
    {
        ssize_t len;
        int line_no = 0;
        off_t off = 0;
        char err[256];
        while ((!limit || n_good < limit) && (len = getline(&line, &lcap, in)) > 0) {
            off_t here = off;
            off += len;
            line_no++;
            if (ey_jsonl_blank(line, &len)) continue;
            conv *c = conv_parse(line, line_no, err, sizeof err);
            const int *first = c ? strset_find(&seen, c->id_key) : NULL;
            if (first) snprintf(err, sizeof err, "duplicate id %.64s (first on line %d)",
                                c->id_key, *first);
            if (!c || first) {
                fprintf(stderr, "eyrie gen-data: %s:%d: %s; skipped\n", in_path, line_no, err);
                n_bad++;
                conv_free(c);
                continue;
            }
            n_good++;
            bool ok = strset_add(&seen, c->id_key, line_no);
            bool had = strset_find(&done, c->id_key) != NULL;
            conv_free(c);
            if (!ok) {
                fprintf(stderr, "eyrie gen-data: no memory\n");
                goto out;
            }
            if (had) {
                n_had++;
                continue;
            }
            if (n_todo == cap_todo) {
                cap_todo = cap_todo ? cap_todo * 2 : 1024;
                todo *t = realloc(todos, (size_t)cap_todo * sizeof *t);
                if (!t) {
                    fprintf(stderr, "eyrie gen-data: no memory\n");
                    goto out;
                }
                todos = t;
            }
            todos[n_todo++] = (todo){line_no, here};
        }
        if (ferror(in)) {
            fprintf(stderr, "eyrie gen-data: %s: read error\n", in_path);
            goto out;
        }
    }
    strset_free(&seen);
    strset_free(&done);
    if (n_todo == 0) {
        fprintf(stderr, "eyrie gen-data: nothing to do: %ld conversations, %ld already in %s, "
                        "%ld bad lines skipped\n", n_good, n_had, out_path, n_bad);
        rc = 0;
        goto out;
    }

    /* ---- the model, a context for `batch` sequences of n_ctx rows */
    ey_err e = cuda ? ey_backend_cuda_create(dev, &be) : ey_backend_cpu_create(threads, &be);
    if (e) {
        fprintf(stderr, "eyrie gen-data: backend: %s: %s\n", ey_strerror(e), ey_err_detail());
        goto out;
    }
    if ((e = ey_model_load(mpath, be, &g.m))) {
        if (!model && e == EY_ERR_IO)
            fprintf(stderr, "eyrie: the default model is not fetched yet; run "
                            "scripts/fetch-model.sh (or scripts/setup.sh)\n");
        fprintf(stderr, "eyrie gen-data: %s: %s: %s\n", mpath, ey_strerror(e), ey_err_detail());
        goto out;
    }
    if (!g.m->tok) {
        fprintf(stderr, "eyrie gen-data: %s: the model has no tokenizer\n", mpath);
        goto out;
    }
    if (n_ctx > g.m->cfg.n_ctx_train) n_ctx = g.m->cfg.n_ctx_train;
    g.n_ctx = n_ctx;
    long pool = (long)batch * ((n_ctx + 15) / 16 * 16); /* whole KV blocks per sequence */
    if (pool > (1 << 24)) {
        fprintf(stderr, "eyrie gen-data: --batch x --ctx = %ld KV rows, more than %d\n", pool,
                1 << 24);
        goto out;
    }
    g.so = ey_spec_opts_default();
    g.so.method = EY_SPEC_NONE;
    g.gp.max_ctx = n_ctx;
    if ((e = ey_ctx_create(g.m, (int)pool, GD_ROWS, batch, &g.ctx))) {
        fprintf(stderr, "eyrie gen-data: context: %s: %s\n", ey_strerror(e), ey_err_detail());
        goto out;
    }
    if (!(g.out = fopen(out_path, "a"))) {
        fprintf(stderr, "eyrie gen-data: %s: %s\n", out_path, strerror(errno));
        goto out;
    }

    /* ---- pass 2: generate */
    fprintf(stderr, "eyrie gen-data: %ld conversations to generate with %s (%ld already in "
                    "%s, %ld bad lines skipped)\n", n_todo, name, n_had, out_path, n_bad);
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    g.total = n_todo;
    g.t0 = g.last_report = ey_now_ms();
    rc = run(&g, in, todos, n_todo, batch);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    progress(&g, true);
    if (g.bar_drawn) fputc('\n', stderr);
    double el = (ey_now_ms() - g.t0) / 1e3;
    fprintf(stderr, "eyrie gen-data: %s%ld conversations written to %s (%ld tokens in %.1f s, "
                    "%.1f tok/s); %ld already there, %ld bad lines skipped, %ld did not fit "
                    "the context\n", rc == 130 ? "interrupted (rerun to resume): " : "",
            g.done, out_path, g.tokens, el, el > 0 ? g.tokens / el : 0, n_had, n_bad, g.no_fit);
out:
    if (g.out && fclose(g.out) && !rc) {
        fprintf(stderr, "eyrie gen-data: %s: %s\n", out_path, strerror(errno));
        rc = 1;
    }
    if (in) fclose(in);
    strset_free(&seen);
    strset_free(&done);
    free(todos);
    free(line);
    ey_ctx_free(g.ctx);
    ey_model_free(g.m);
    if (be) ey_backend_destroy(be);
    free(name);
    return rc;
}
