/* Speculative decoding with always-right drafts: the upper bound the verify
 * cost allows. For each chat prompt, a plain greedy ey_generate gives the
 * reference completion; ey_spec_generate then runs with the test oracle
 * (core/spec.h, ey_spec_oracle) built from it, so every draft on the right
 * path is accepted (chain k: tau = k + 1; tree: the oracle's tree puts top_k
 * siblings on each level, one of them right) and no drafter runs (draft cost
 * ~0). Greedy output must equal the reference; the program checks it.
 *
 *   ey_bench_spec_oracle [--model PATH] [--threads N] [--max-tokens N] [--reps R]
 *                        [--shapes LIST] PROMPT...
 *
 * LIST: comma-separated chain:K or tree:TOPK:DEPTH:TOKENS (default
 * chain:1,chain:2,chain:4,chain:7,tree:4:5:16). EOS is ignored so every run
 * makes --max-tokens tokens. Prints one JSON object per line and run:
 *   {"prompt":i,"shape":"plain"|"chain:4"|...,"rep":r,"tokens":n,"decode_ms":x,
 *    "tok_s":(n-1)/decode_s,"rounds":..,"tau":..,"verify_ms":..,"draft_ms":..,"same":true}
 * Each repetition runs plain then every shape, interleaved. Exit status 3 if
 * any output differed from the reference. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/spec.h"

#define MAX_SHAPES 32

static void usage(FILE *f)
{
    fprintf(f, "usage: ey_bench_spec_oracle [--model PATH] [--threads N] [--max-tokens N] "
               "[--reps R]\n"
               "                            [--shapes chain:K,tree:TOPK:DEPTH:TOKENS,...] "
               "PROMPT...\n");
}

static bool parse_shapes(const char *s, ey_spec_opts *o, char names[][32], int *n)
{
    char *dup = strdup(s), *save = NULL;
    if (!dup) return false;
    *n = 0;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_SHAPES) break;
        ey_spec_opts x = ey_spec_opts_default();
        int a, b, c;
        if (sscanf(tok, "chain:%d", &a) == 1) {
            x.method = EY_SPEC_CHAIN;
            x.k = a;
        } else if (sscanf(tok, "tree:%d:%d:%d", &a, &b, &c) == 3) {
            x.method = EY_SPEC_TREE;
            x.top_k = a;
            x.depth = b;
            x.total_tokens = c;
        } else {
            free(dup);
            return false;
        }
        if (ey_spec_opts_check(&x)) {
            fprintf(stderr, "ey_bench_spec_oracle: %s: %s\n", tok, ey_err_detail());
            free(dup);
            return false;
        }
        snprintf(names[*n], 32, "%s", tok);
        o[(*n)++] = x;
    }
    free(dup);
    return *n > 0;
}

static void print_run(int p, const char *shape, int rep, const ey_gen_result *r,
                      const ey_spec_stats *st, bool same)
{
    double tps = r->decode_ms > 0 ? (r->n_ids - 1) * 1000.0 / r->decode_ms : 0;
    printf("{\"prompt\":%d,\"shape\":\"%s\",\"rep\":%d,\"tokens\":%d,\"prompt_tokens\":%d,"
           "\"prefill_ms\":%.3f,\"decode_ms\":%.3f,\"tok_s\":%.3f",
           p, shape, rep, r->n_ids, r->prompt_tokens, r->prefill_ms, r->decode_ms, tps);
    if (st)
        printf(",\"rounds\":%d,\"drafted\":%ld,\"accepted\":%ld,\"tau\":%.4f,\"verify_ms\":%.3f,"
               "\"draft_ms\":%.3f",
               st->rounds, st->drafted, st->accepted, st->mean_accept_len, st->verify_ms,
               st->draft_ms);
    printf(",\"same\":%s}\n", same ? "true" : "false");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *model = NULL, *shapes = "chain:1,chain:2,chain:4,chain:7,tree:4:5:16";
    int threads = 1, max_tokens = 128, reps = 3;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--model") && has) model = argv[++i];
        else if (!strcmp(a, "--threads") && has) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--max-tokens") && has) max_tokens = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && has) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--shapes") && has) shapes = argv[++i];
        else if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] == '-') {
            usage(stderr);
            return 2;
        } else break;
    }
    ey_spec_opts so[MAX_SHAPES];
    char names[MAX_SHAPES][32];
    int n_shapes = 0;
    if (i == argc || threads < 1 || max_tokens < 2 || reps < 1 ||
        !parse_shapes(shapes, so, names, &n_shapes)) {
        usage(stderr);
        return 2;
    }
    int rows = 1;
    for (int s = 0; s < n_shapes; s++)
        if (ey_spec_ctx_rows(&so[s]) > rows) rows = ey_spec_ctx_rows(&so[s]);

    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_ctx *c = NULL;
    char *mpath = model ? strdup(model) : ey_default_model_path();
    ey_err e;
    if ((e = ey_backend_cpu_create(threads, &be)) || (e = ey_model_load(mpath, be, &m))) {
        fprintf(stderr, "ey_bench_spec_oracle: %s: %s\n", mpath, ey_err_detail());
        return 1;
    }
    int n_ctx = 4096 < m->cfg.n_ctx_train ? 4096 : m->cfg.n_ctx_train;
    if ((e = ey_ctx_create(m, n_ctx, rows > 512 ? rows : 512, rows, &c))) {
        fprintf(stderr, "ey_bench_spec_oracle: context: %s\n", ey_err_detail());
        return 1;
    }
    ey_gen_params gp = {.max_tokens = max_tokens, .sampling = ey_sampling_default(),
                        .ignore_eos = true};
    gp.sampling.temperature = 0;
    int rc = 0;
    for (int p = 0; i + p < argc; p++) {
        int32_t *ids = NULL;
        int n_ids = 0;
        if ((e = ey_prompt_chat(m, NULL, argv[i + p], &ids, &n_ids))) {
            fprintf(stderr, "ey_bench_spec_oracle: prompt: %s\n", ey_err_detail());
            return 1;
        }
        for (int rep = 0; rep < reps; rep++) {
            ey_gen_result ref;
            if ((e = ey_generate(c, ids, n_ids, &gp, NULL, NULL, &ref))) {
                fprintf(stderr, "ey_bench_spec_oracle: generate: %s\n", ey_err_detail());
                return 1;
            }
            print_run(p, "plain", rep, &ref, NULL, true);
            ey_spec_oracle orc = {.cont = ref.ids, .n_cont = ref.n_ids};
            for (int s = 0; s < n_shapes; s++) {
                ey_spec_opts o = so[s];
                o.oracle = &orc;
                ey_gen_result r;
                ey_spec_stats st;
                if ((e = ey_spec_generate(c, NULL, &o, ids, n_ids, &gp, NULL, NULL, &r, &st))) {
                    fprintf(stderr, "ey_bench_spec_oracle: spec %s: %s\n", names[s],
                            ey_err_detail());
                    return 1;
                }
                bool same = r.n_ids == ref.n_ids &&
                            !memcmp(r.ids, ref.ids, sizeof *r.ids * (size_t)r.n_ids);
                if (!same) rc = 3;
                print_run(p, names[s], rep, &r, &st, same);
                ey_gen_result_free(&r);
            }
            ey_gen_result_free(&ref);
        }
        free(ids);
    }
    ey_ctx_free(c);
    ey_model_free(m);
    ey_backend_destroy(be);
    free(mpath);
    return rc;
}
