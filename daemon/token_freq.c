/* eyrie — `eyrie token-freq` (see token_freq.h).
 *
 * Every line of the input is one conversation (the formats of gen-data,
 * convo_jsonl.h). Each is rendered with the model's chat template and
 * tokenized, with a loss mask over the assistant turns (ey_convo_tokens:
 * the assistant contents and the end-of-turn token closing each); the
 * masked target ids are counted. The output lists every id that occurs,
 * "id count" a line, by count descending and then id ascending: the order
 * in which drafter-init picks the draft vocabulary (which pads with
 * zero-count ids when fewer than --draft-vocab distinct ids occur). */
#include "../common/ey_args.h"
#include "token_freq.h"

#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../core/model.h"
#include "../core/tokenizer.h"
#include "../kernels/ey_backend.h"
#include "convo_jsonl.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: eyrie token-freq [--model M] --data FILE.jsonl --out FREQ.txt [--limit N]\n"
        "\n"
        "Counts the target-token frequencies over the assistant tokens (the loss-masked\n"
        "tokens: assistant contents plus the end-of-turn token closing each turn) of a\n"
        "JSONL conversation file, rendered with the model's chat template. One\n"
        "conversation a line: {\"messages\": [{\"role\", \"content\"}]} or\n"
        "{\"conversations\": [{\"from\": \"human\"|\"gpt\"|\"system\", \"value\"}]}.\n"
        "Writes \"id count\" lines, by count descending (ties: lower id first), the\n"
        "file `eyrie drafter-init --freq` reads to pick the draft vocabulary.\n"
        "\n"
        "  --model M      target model (.gguf or Hugging Face directory)\n"
        "  --data FILE    input conversations (JSONL)\n"
        "  --out FILE     output frequencies\n"
        "  --limit N      only the first N valid conversations\n"
        "\n"
        "Bad lines are reported with their line number and skipped. Totals\n"
        "(conversations, masked tokens, distinct ids) go to stderr.\n");
}

static const int64_t *g_cnt;

/* count descending, then id ascending */
static int by_count(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_cnt[x] != g_cnt[y]) return g_cnt[x] > g_cnt[y] ? -1 : 1;
    return (x > y) - (x < y);
}

int ey_cli_token_freq(int argc, char **argv, const char *default_model)
{
    enum { O_MODEL = 256, O_DATA, O_OUT, O_LIMIT, O_HELP };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"data", required_argument, 0, O_DATA},
        {"out", required_argument, 0, O_OUT}, {"limit", required_argument, 0, O_LIMIT},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *model = NULL, *in_path = NULL, *out_path = NULL;
    int limit = 0;
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_MODEL: model = optarg; break;
        case O_DATA: in_path = optarg; break;
        case O_OUT: out_path = optarg; break;
        case O_LIMIT:
            if (!ey_arg_int(optarg, 1, INT_MAX, &limit)) {
                fprintf(stderr, "eyrie token-freq: bad value '%s' for --limit\n", optarg);
                usage(stderr);
                return 2;
            }
            break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "eyrie token-freq: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eyrie token-freq: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!in_path || !out_path) {
        fprintf(stderr, "eyrie token-freq: --data FILE and --out FILE are required\n");
        usage(stderr);
        return 2;
    }
    const char *mpath = model ? model : default_model;
    if (!mpath) {
        fprintf(stderr, "eyrie token-freq: --model M is required\n");
        return 2;
    }

    int rc = 1;
    FILE *in = NULL, *out = NULL;
    ey_backend *be = NULL;
    ey_model *m = NULL;
    int64_t *cnt = NULL;
    int32_t *ord = NULL;
    char *line = NULL;
    size_t lcap = 0;
    if (!(in = fopen(in_path, "r"))) {
        fprintf(stderr, "eyrie token-freq: cannot open '%s'\n", in_path);
        goto out;
    }
    ey_err e = ey_backend_cpu_create(1, &be);
    if (e) {
        fprintf(stderr, "eyrie token-freq: backend: %s: %s\n", ey_strerror(e), ey_err_detail());
        goto out;
    }
    if ((e = ey_model_load(mpath, be, &m))) {
        if (!model && e == EY_ERR_IO)
            fprintf(stderr, "eyrie: the default model is not fetched yet; run "
                            "scripts/fetch-model.sh (or scripts/setup.sh)\n");
        fprintf(stderr, "eyrie token-freq: %s: %s: %s\n", mpath, ey_strerror(e), ey_err_detail());
        goto out;
    }
    if (!m->tok) {
        fprintf(stderr, "eyrie token-freq: %s: the model has no tokenizer\n", mpath);
        goto out;
    }
    const int V = ey_tokenizer_n_vocab(m->tok);
    cnt = calloc((size_t)V + 1, sizeof *cnt);
    ord = malloc(((size_t)V + 1) * sizeof *ord);
    if (!cnt || !ord) {
        fprintf(stderr, "eyrie token-freq: no memory\n");
        goto out;
    }
    long n_conv = 0, n_bad = 0, n_noasst = 0;
    int64_t n_masked = 0, n_tokens = 0;
    int line_no = 0;
    ssize_t len;
    while ((!limit || n_conv < limit) && (len = getline(&line, &lcap, in)) != -1) {
        line_no++;
        if (ey_jsonl_blank(line, &len)) continue;
        char err[256];
        int32_t *ids = NULL;
        uint8_t *mask = NULL;
        int n_ids = 0;
        bool bad_line;
        e = ey_jsonl_convo_tokens(m, line, &ids, &mask, &n_ids, &bad_line, err, sizeof err);
        if (e == EY_ERR_NOMEM) {
            fprintf(stderr, "eyrie token-freq: no memory\n");
            goto out;
        }
        if (e) {
            fprintf(stderr, "eyrie token-freq: %s:%d: %s; skipped\n", in_path, line_no, err);
            n_bad++;
            continue;
        }
        int64_t k = 0;
        for (int i = 0; i < n_ids; i++)
            if (mask[i] && ids[i] >= 0 && ids[i] < V) {
                cnt[ids[i]]++;
                k++;
            }
        free(ids);
        free(mask);
        if (!k) n_noasst++;
        n_masked += k;
        n_tokens += n_ids;
        n_conv++;
    }
    if (ferror(in)) {
        fprintf(stderr, "eyrie token-freq: error reading '%s'\n", in_path);
        goto out;
    }
    int n_distinct = 0;
    for (int i = 0; i < V; i++)
        if (cnt[i]) ord[n_distinct++] = i;
    g_cnt = cnt;
    qsort(ord, (size_t)n_distinct, sizeof *ord, by_count);
    if (!(out = fopen(out_path, "w"))) {
        fprintf(stderr, "eyrie token-freq: cannot create '%s'\n", out_path);
        goto out;
    }
    for (int i = 0; i < n_distinct; i++) fprintf(out, "%d %lld\n", ord[i], (long long)cnt[ord[i]]);
    if (fclose(out) != 0) {
        out = NULL;
        fprintf(stderr, "eyrie token-freq: error writing '%s'\n", out_path);
        goto out;
    }
    out = NULL;
    fprintf(stderr,
            "eyrie token-freq: %ld conversations (%ld without assistant tokens), %lld tokens, "
            "%lld masked, %d distinct ids of %d; %ld bad lines skipped; wrote %s\n",
            n_conv, n_noasst, (long long)n_tokens, (long long)n_masked, n_distinct, V, n_bad,
            out_path);
    rc = 0;
out:
    if (out) fclose(out);
    if (in) fclose(in);
    free(line);
    free(cnt);
    free(ord);
    ey_model_free(m);
    ey_backend_destroy(be);
    return rc;
}
