/* eyrie — `eyrie dump-hidden` (see dump_hidden.h).
 *
 * One pass over the input: every line is parsed (convo_jsonl.h), rendered
 * with the chat template and tokenized with its assistant loss mask
 * (ey_convo_tokens), cut to its first --max-len tokens, and, when an
 * assistant token is left (at position >= 1: row 0 has nothing before it),
 * run through the target in one fresh sequence (ey_tfeat_compute); the
 * record is appended to DIR/records.bin and flushed. Lines that do not
 * parse, conversations the template/tokenizer refuses and conversations
 * without assistant tokens are reported and skipped; the conversations that
 * get a record are numbered 0, 1, ... in input order (the record's
 * conversation index), so a rerun over the same input resumes after the
 * last complete record (the writer cuts a torn last record). */
#include "../common/ey_args.h"
#include "dump_hidden.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "../core/forward.h"
#include "../core/generate.h"
#include "../core/model.h"
#include "../daemon/convo_jsonl.h"
#include "../kernels/ey_backend.h"
#include "hidden_io.h"
#include "target_feats.h"

#define DH_ROWS 256 /* rows of one forward chunk (the ctx's max_batch and logit rows) */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: eyrie dump-hidden [--model PATH] --data CONVS.jsonl --out DIR [options]\n"
        "\n"
        "Runs the target over every conversation of CONVS (rendered with its chat\n"
        "template) and writes, per conversation, the tokens, the assistant loss mask,\n"
        "the aux hidden states (f16), the target's argmax and its top-k logits of every\n"
        "position to DIR (meta.json + records.bin), the offline input of drafter\n"
        "training. One conversation a line: {\"messages\": [{\"role\", \"content\"}]} or\n"
        "{\"conversations\": [{\"from\": \"human\"|\"gpt\"|\"system\", \"value\"}]}.\n"
        "Resumable: rerunning with the same --out continues after the last complete\n"
        "record.\n"
        "\n"
        "  --model PATH       GGUF file or Hugging Face directory (default: the default\n"
        "                     model, as for eyrie generate)\n"
        "  --data FILE        input conversations (JSONL)\n"
        "  --out DIR          output directory (created if missing)\n"
        "  --topk K           teacher logits kept per position (default 32)\n"
        "  --max-len N        keep the first N tokens of each conversation (default 2048,\n"
        "                     capped at the model's training context)\n"
        "  --aux-layers A,B,C captured layers, as input-of-layer ids in [0, n_layer]\n"
        "                     (default 2, n_layer/2, n_layer-3: the drafter default)\n"
        "  --limit N          only the first N usable conversations of FILE\n"
        "  --threads N        CPU threads (default: all cores)\n"
        "  --device DEV       cpu (default) | cuda[:N]\n"
        "\n"
        "Exit 0 when the input was processed (bad lines, conversations the chat\n"
        "template refuses and conversations without assistant tokens are reported\n"
        "and skipped); 1 runtime error; 2 bad arguments; 130 interrupted (rerun the\n"
        "same command to resume).\n");
}

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct dh {
    long total;       /* estimated conversations (non-blank lines, capped by --limit) */
    long seen;        /* conversations consumed (records + skipped, incl. resumed ones) */
    long seen0;       /* seen when this run's work started */
    long records, tokens;
    double t0, last_report;
    bool tty, bar_drawn;
} dh;

static void fmt_dur(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

static void progress(dh *g, bool force)
{
    double now = ey_now_ms();
    if (!force && now - g->last_report < (g->tty ? 200 : 5000)) return;
    g->last_report = now;
    double el = (now - g->t0) / 1e3;
    double tps = el > 0 ? g->tokens / el : 0;
    long run = g->seen - g->seen0, left = g->total > g->seen ? g->total - g->seen : 0;
    char eta[32] = "?";
    if (!left) snprintf(eta, sizeof eta, "0s");
    else if (run > 0) fmt_dur(el / run * left, eta, sizeof eta);
    if (g->tty) {
        enum { BW = 28 };
        int fill = g->total ? (int)(BW * (g->seen < g->total ? g->seen : g->total) / g->total)
                            : BW;
        char bar[BW + 1];
        for (int i = 0; i < BW; i++) bar[i] = i < fill ? '#' : '.';
        bar[BW] = 0;
        fprintf(stderr, "\r[%s] %ld/~%ld conversations | %ld records | %.1f tok/s | ETA %s\033[K",
                bar, g->seen, g->total, g->records, tps, eta);
        g->bar_drawn = true;
    } else {
        fprintf(stderr, "dump-hidden: %ld/~%ld conversations, %ld records, %ld tokens, "
                        "%.1f tok/s, ETA %s\n", g->seen, g->total, g->records, g->tokens, tps,
                eta);
    }
    fflush(stderr);
}

static void note(dh *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(dh *g, const char *fmt, ...)
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

/* "a,b,c" -> up to EY_HID_MAX_AUX ids >= 0 */
static bool parse_aux(const char *s, int *ids, int *n)
{
    *n = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf) return false;
    strcpy(buf, s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == EY_HID_MAX_AUX || !ey_arg_int(tok, 0, EY_HID_MAX_LAYER, &ids[*n])) return false;
        (*n)++;
    }
    return *n > 0;
}

int ey_cmd_dump_hidden(int argc, char **argv)
{
    enum { O_MODEL = 256, O_DATA, O_OUT, O_TOPK, O_MAXLEN, O_AUX, O_LIMIT, O_THREADS, O_DEVICE,
           O_HELP };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"data", required_argument, 0, O_DATA},
        {"out", required_argument, 0, O_OUT}, {"topk", required_argument, 0, O_TOPK},
        {"max-len", required_argument, 0, O_MAXLEN},
        {"aux-layers", required_argument, 0, O_AUX}, {"limit", required_argument, 0, O_LIMIT},
        {"threads", required_argument, 0, O_THREADS}, {"device", required_argument, 0, O_DEVICE},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *model = NULL, *in_path = NULL, *out_dir = NULL, *device = "cpu";
    int topk = 32, max_len = 2048, limit = 0, threads = 0, n_aux = 0;
    int aux[EY_HID_MAX_AUX];
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (o) {
        case O_MODEL: model = optarg; break;
        case O_DATA: in_path = optarg; break;
        case O_OUT: out_dir = optarg; break;
        case O_TOPK: ok = ey_arg_int(optarg, 1, EY_HID_MAX_K, &topk); break;
        case O_MAXLEN: ok = ey_arg_int(optarg, EY_HID_MIN_T, EY_HID_MAX_T, &max_len); break;
        case O_AUX: ok = parse_aux(optarg, aux, &n_aux); break;
        case O_LIMIT: ok = ey_arg_int(optarg, 1, INT_MAX, &limit); break;
        case O_THREADS: ok = ey_arg_int(optarg, 1, 1024, &threads); break;
        case O_DEVICE: device = optarg; break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "eyrie dump-hidden: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "eyrie dump-hidden: bad value '%s' for --%s\n", optarg,
                    opts[o - O_MODEL].name);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eyrie dump-hidden: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!in_path || !out_dir) {
        fprintf(stderr, "eyrie dump-hidden: --data FILE and --out DIR are required\n");
        usage(stderr);
        return 2;
    }
    int dev = 0;
    bool cuda = false;
    if (!ey_arg_device(device, &cuda, &dev)) {
        fprintf(stderr, "eyrie dump-hidden: bad device '%s' (cpu, cuda[:N])\n", device);
        return 2;
    }

    int rc = 1;
    char *mpath = model ? strdup(model) : ey_default_model_path();
    char *name = mpath ? ey_path_base(mpath) : NULL;
    char *line = NULL;
    size_t lcap = 0;
    FILE *in = NULL;
    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_ctx *ctx = NULL;
    ey_hid_writer *w = NULL;
    ey_tfeat tf = {0};
    dh g = {.tty = isatty(2) == 1};
    long n_done = 0, n_bad = 0, n_refused = 0, n_noasst = 0, n_cut = 0;
    bool sig_set = false;
    struct sigaction old_int, old_term;
    ey_err e;
    if (!mpath || !name) {
        fprintf(stderr, "eyrie dump-hidden: no memory\n");
        goto out;
    }
    if (!(in = fopen(in_path, "r"))) {
        fprintf(stderr, "eyrie dump-hidden: %s: %s\n", in_path, strerror(errno));
        goto out;
    }
    { /* the conversation count for the ETA: non-blank lines */
        ssize_t len;
        while ((len = getline(&line, &lcap, in)) > 0)
            if (!ey_jsonl_blank(line, &len)) g.total++;
        if (ferror(in)) {
            fprintf(stderr, "eyrie dump-hidden: %s: read error\n", in_path);
            goto out;
        }
        if (limit && g.total > limit) g.total = limit;
        rewind(in);
    }

    /* ---- the model */
    e = cuda ? ey_backend_cuda_create(dev, &be) : ey_backend_cpu_create(threads, &be);
    if (e) {
        fprintf(stderr, "eyrie dump-hidden: backend: %s: %s\n", ey_strerror(e), ey_err_detail());
        goto out;
    }
    if ((e = ey_model_load(mpath, be, &m))) {
        if (!model && e == EY_ERR_IO)
            fprintf(stderr, "eyrie: the default model is not fetched yet; run "
                            "scripts/fetch-model.sh (or scripts/setup.sh)\n");
        fprintf(stderr, "eyrie dump-hidden: %s: %s: %s\n", mpath, ey_strerror(e),
                ey_err_detail());
        goto out;
    }
    if (!m->tok) {
        fprintf(stderr, "eyrie dump-hidden: %s: the model has no tokenizer\n", mpath);
        goto out;
    }
    const ey_model_config *cf = &m->cfg;
    if (topk > cf->n_vocab) {
        fprintf(stderr, "eyrie dump-hidden: --topk %d exceeds the vocabulary (%d)\n", topk,
                cf->n_vocab);
        rc = 2;
        goto out;
    }
    if (n_aux == 0) n_aux = ey_tfeat_default_aux(cf->n_layer, aux);
    for (int i = 0; i < n_aux; i++)
        if (aux[i] > cf->n_layer) {
            fprintf(stderr, "eyrie dump-hidden: --aux-layers: %d outside [0, %d] (input-of-layer "
                            "ids; %d = the final pre-norm output)\n", aux[i], cf->n_layer,
                    cf->n_layer);
            rc = 2;
            goto out;
        }
    if (cf->n_ctx_train >= EY_HID_MIN_T && max_len > cf->n_ctx_train) {
        fprintf(stderr, "eyrie dump-hidden: --max-len %d capped at the model's training context "
                        "%d\n", max_len, cf->n_ctx_train);
        max_len = cf->n_ctx_train;
    }
    const int rows = max_len < DH_ROWS ? max_len : DH_ROWS;
    if ((e = ey_ctx_create(m, max_len, rows, rows, &ctx)) ||
        (e = ey_ctx_set_capture(ctx, aux, n_aux))) {
        fprintf(stderr, "eyrie dump-hidden: context: %s: %s\n", ey_strerror(e), ey_err_detail());
        goto out;
    }

    /* ---- the output (resumed when it holds records) */
    ey_hid_meta meta = {.n_layer = cf->n_layer, .Ht = cf->n_embd, .V = cf->n_vocab,
                        .n_aux = n_aux, .k = topk};
    if (strlen(name) >= sizeof meta.model) {
        fprintf(stderr, "eyrie dump-hidden: model file name longer than %zu bytes\n",
                sizeof meta.model - 1);
        goto out;
    }
    strcpy(meta.model, name);
    memcpy(meta.aux_layers, aux, (size_t)n_aux * sizeof *aux);
    if ((e = ey_hid_writer_open(out_dir, &meta, true, &w, &n_done))) {
        fprintf(stderr, "eyrie dump-hidden: %s: %s\n", ey_strerror(e), ey_err_detail());
        goto out;
    }
    if (ey_hid_writer_cut_bytes(w))
        fprintf(stderr, "eyrie dump-hidden: %s: cut a torn last record (%llu bytes; an "
                        "interrupted run); it is computed again\n", out_dir,
                (unsigned long long)ey_hid_writer_cut_bytes(w));
    char auxs[96] = "";
    for (int i = 0; i < n_aux; i++)
        snprintf(auxs + strlen(auxs), sizeof auxs - strlen(auxs), "%s%d", i ? "," : "", aux[i]);
    fprintf(stderr, "eyrie dump-hidden: %s -> %s with %s (aux layers %s, top-%d, max-len %d)\n",
            in_path, out_dir, name, auxs, topk, max_len);
    if (n_done)
        fprintf(stderr, "eyrie dump-hidden: resuming after %ld records already in %s\n", n_done,
                out_dir);

    /* ---- the pass */
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sig_set = true;
    g.t0 = g.last_report = ey_now_ms();
    long valid = 0; /* conversations with a record (done or to do): the record index */
    int line_no = 0;
    ssize_t len;
    rc = 0;
    while (!g_stop && (!limit || valid < limit) && (len = getline(&line, &lcap, in)) > 0) {
        line_no++;
        if (ey_jsonl_blank(line, &len)) continue;
        const bool quiet = valid < n_done; /* before the resume point: already reported */
        if (valid >= n_done) g.seen++;
        else g.seen0 = ++g.seen;
        char err[256];
        int32_t *ids = NULL;
        uint8_t *mask = NULL;
        int n_ids = 0;
        bool bad_line;
        e = ey_jsonl_convo_tokens(m, line, &ids, &mask, &n_ids, &bad_line, err, sizeof err);
        if (e == EY_ERR_NOMEM) {
            note(&g, "eyrie dump-hidden: no memory\n");
            rc = 1;
            break;
        }
        if (e) {
            if (!quiet) note(&g, "eyrie dump-hidden: %s:%d: %s; skipped\n", in_path, line_no, err);
            if (bad_line) n_bad++;
            else n_refused++;
            continue;
        }
        int T = n_ids < max_len ? n_ids : max_len;
        bool cut = n_ids > max_len, any = false;
        for (int t = 1; t < T && !any; t++) any = mask[t] != 0;
        if (!any || T < EY_HID_MIN_T) {
            if (!quiet)
                note(&g, "eyrie dump-hidden: %s:%d: no assistant token%s; skipped\n", in_path,
                     line_no, cut ? " in the first --max-len tokens" : "");
            n_noasst++;
            free(ids);
            free(mask);
            continue;
        }
        long idx = valid++;
        if (idx < n_done) {
            free(ids);
            free(mask);
            continue;
        }
        if (cut) n_cut++;
        e = ey_tfeat_compute(ctx, ids, T, topk, NULL, 0, &tf);
        if (!e) {
            ey_hid_rec r = {.conv = (uint64_t)idx, .T = T, .k = topk, .ids = ids, .mask = mask,
                            .top1 = tf.top1, .n_teach = tf.n_teach, .teach_ids = tf.teach_ids,
                            .teach_logits = tf.teach_logits, .aux = tf.aux};
            e = ey_hid_append(w, &r);
        }
        free(ids);
        free(mask);
        if (e) {
            note(&g, "eyrie dump-hidden: %s:%d: %s: %s\n", in_path, line_no, ey_strerror(e),
                 ey_err_detail());
            rc = 1;
            break;
        }
        g.records++;
        g.tokens += T;
        progress(&g, false);
    }
    if (!rc && ferror(in)) {
        note(&g, "eyrie dump-hidden: %s: read error\n", in_path);
        rc = 1;
    }
    if (!rc && g_stop) rc = 130;
    progress(&g, true);
    if (g.bar_drawn) fputc('\n', stderr);
    {
        double el = (ey_now_ms() - g.t0) / 1e3;
        fprintf(stderr, "eyrie dump-hidden: %s%ld records written to %s (%ld tokens in %.1f s, "
                        "%.1f tok/s); %ld already there; skipped: %ld bad lines, %ld refused by "
                        "the chat template, %ld without assistant tokens; %ld cut to --max-len "
                        "%d\n", rc == 130 ? "interrupted (rerun to resume): " : "", g.records,
                out_dir, g.tokens, el, el > 0 ? g.tokens / el : 0, n_done, n_bad, n_refused,
                n_noasst, n_cut, max_len);
    }
out:
    if (sig_set) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (w && (e = ey_hid_writer_close(w))) {
        fprintf(stderr, "eyrie dump-hidden: %s: %s\n", ey_strerror(e), ey_err_detail());
        if (rc == 0) rc = 1;
    }
    ey_tfeat_free(&tf);
    if (in) fclose(in);
    free(line);
    ey_ctx_free(ctx);
    ey_model_free(m);
    if (be) ey_backend_destroy(be);
    free(name);
    free(mpath);
    return rc;
}
