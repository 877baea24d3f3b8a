/* Verify-step cost: the time of one tree-masked target forward over N new
 * rows (the speculative verify step, core/spec.c round_once) after a prompt
 * of L rows, for N = 1..max_nodes, at a given thread count.
 *
 *   ey_bench_verify [--model PATH] [--threads N] [--ctx L] [--reps R]
 *                   [--max-nodes N] [--seed S] [--no-chain] [--capture] [--json]
 *
 * The context is L random token ids, prefilled once. Shapes:
 *   tree   a random tree (node i > 0 has parent uniform in [0, i); tree N is
 *          the first N nodes of one 64-node tree), mask = ancestor-or-self,
 *          positions L + depth: what verification sends;
 *   chain  a causal mask, positions L..L+N-1 (chain drafting; same rows).
 * Each forward returns the logits of all N rows (as verification does) and
 * appends N K/V rows, which ey_seq_truncate removes before the next call.
 * --capture turns on the EAGLE-3 hidden-state capture of 3 layers (what a
 * drafter needs; the default drafter layers {2, n/2, n-3}).
 *
 * One warm-up pass, then R passes; each pass visits every (shape, N) once in
 * a shuffled order so that load changes on a shared machine spread over all
 * sizes. Reported per (shape, N): median and min ms, median / median(N = 1)
 * and median / N. CSV by default, one JSON object with --json. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/forward.h"
#include "../../core/generate.h"

#define MAX_NODES 256

static uint64_t g_rs = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    g_rs ^= g_rs << 13;
    g_rs ^= g_rs >> 7;
    g_rs ^= g_rs << 17;
    return (uint32_t)(g_rs >> 11);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ey_bench_verify [--model PATH] [--threads N] [--ctx L] [--reps R]\n"
               "                       [--max-nodes N] [--seed S] [--no-chain] [--capture] "
               "[--json]\n");
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    int threads = 1, L = 256, reps = 15, max_nodes = 64;
    bool chain = true, capture = false, json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--model") && has) model = argv[++i];
        else if (!strcmp(a, "--threads") && has) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--ctx") && has) L = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && has) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--max-nodes") && has) max_nodes = atoi(argv[++i]);
        else if (!strcmp(a, "--seed") && has) g_rs ^= strtoull(argv[++i], NULL, 10) * 2654435761u;
        else if (!strcmp(a, "--no-chain")) chain = false;
        else if (!strcmp(a, "--capture")) capture = true;
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (threads < 1 || L < 1 || reps < 1 || max_nodes < 1 || max_nodes > MAX_NODES) {
        usage(stderr);
        return 2;
    }
    if (!g_rs) g_rs = 1;

    ey_backend *be = NULL;
    ey_model *m = NULL;
    ey_ctx *c = NULL;
    char *mpath = model ? strdup(model) : ey_default_model_path();
    ey_err e;
    if ((e = ey_backend_cpu_create(threads, &be)) || (e = ey_model_load(mpath, be, &m))) {
        fprintf(stderr, "ey_bench_verify: %s: %s\n", mpath, ey_err_detail());
        return 1;
    }
    const int V = m->cfg.n_vocab;
    int batch = L > max_nodes ? L : max_nodes;
    if (batch > 512) batch = 512;
    if ((e = ey_ctx_create(m, L + max_nodes + 16, batch, max_nodes, &c))) {
        fprintf(stderr, "ey_bench_verify: context: %s\n", ey_err_detail());
        return 1;
    }
    if (capture) {
        int nl = m->cfg.n_layer, layers[3] = {2, nl / 2, nl - 3};
        if ((e = ey_ctx_set_capture(c, layers, 3))) {
            fprintf(stderr, "ey_bench_verify: capture: %s\n", ey_err_detail());
            return 1;
        }
    }

    /* the shared random tree and its masks */
    int par[MAX_NODES], dep[MAX_NODES];
    par[0] = -1;
    dep[0] = 0;
    for (int i = 1; i < max_nodes; i++) {
        par[i] = (int)(rnd() % (uint32_t)i);
        dep[i] = dep[par[i]] + 1;
    }
    int32_t *tok = malloc(sizeof *tok * (size_t)(L > max_nodes ? L : max_nodes));
    int32_t *pos_tree = malloc(sizeof(int32_t) * (size_t)max_nodes);
    int32_t *pos_chain = malloc(sizeof(int32_t) * (size_t)max_nodes);
    uint8_t **mask_tree = calloc((size_t)max_nodes + 1, sizeof *mask_tree);
    uint8_t **mask_chain = calloc((size_t)max_nodes + 1, sizeof *mask_chain);
    float *logits = malloc(sizeof(float) * (size_t)max_nodes * (size_t)V);
    if (!tok || !pos_tree || !pos_chain || !mask_tree || !mask_chain || !logits) return 1;
    for (int i = 0; i < max_nodes; i++) {
        pos_tree[i] = L + dep[i];
        pos_chain[i] = L + i;
    }
    int max_depth = 0, tree_depth[MAX_NODES + 1] = {0}; /* depth of tree N */
    for (int n = 1; n <= max_nodes; n++) {
        uint8_t *mt = calloc((size_t)n * n, 1), *mc = calloc((size_t)n * n, 1);
        if (!mt || !mc) return 1;
        for (int j = 0; j < n; j++) {
            if (j) memcpy(mt + (size_t)j * n, mt + (size_t)par[j] * n, (size_t)j);
            mt[(size_t)j * n + j] = 1;
            for (int k = 0; k <= j; k++) mc[(size_t)j * n + k] = 1;
        }
        mask_tree[n] = mt;
        mask_chain[n] = mc;
        if (dep[n - 1] > max_depth) max_depth = dep[n - 1];
        tree_depth[n] = max_depth;
    }

    /* prefill L random ids */
    ey_seq s;
    if ((e = ey_seq_init(&s, L + max_nodes + 16))) return 1;
    for (int i = 0; i < L; i++) tok[i] = (int32_t)(rnd() % (uint32_t)V);
    double tp0 = ey_now_ms();
    if ((e = ey_forward(c, &s, tok, L, NULL, NULL, 1, logits))) {
        fprintf(stderr, "ey_bench_verify: prefill: %s\n", ey_err_detail());
        return 1;
    }
    double prefill_ms = ey_now_ms() - tp0;
    for (int i = 0; i < max_nodes; i++) tok[i] = (int32_t)(rnd() % (uint32_t)V);

    const int n_shape = chain ? 2 : 1;
    const int n_job = n_shape * max_nodes;
    double *t = malloc(sizeof(double) * (size_t)n_job * (size_t)reps);
    int *order = malloc(sizeof(int) * (size_t)n_job);
    if (!t || !order) return 1;
    for (int j = 0; j < n_job; j++) order[j] = j;
    for (int pass = -1; pass < reps; pass++) {
        for (int j = n_job - 1; j > 0; j--) { /* Fisher-Yates */
            int k = (int)(rnd() % (uint32_t)(j + 1)), x = order[j];
            order[j] = order[k];
            order[k] = x;
        }
        for (int q = 0; q < n_job; q++) {
            int job = order[q], sh = job / max_nodes, n = job % max_nodes + 1;
            const int32_t *pos = sh ? pos_chain : pos_tree;
            const uint8_t *mask = n > 1 ? (sh ? mask_chain[n] : mask_tree[n]) : NULL;
            double t0 = ey_now_ms();
            e = ey_forward(c, &s, tok, n, pos, mask, n, logits);
            double dt = ey_now_ms() - t0;
            if (e || (e = ey_seq_truncate(&c->kv, &s, L))) {
                fprintf(stderr, "ey_bench_verify: forward N=%d: %s\n", n, ey_err_detail());
                return 1;
            }
            if (pass >= 0) t[(size_t)job * reps + pass] = dt;
        }
    }

    double *med = malloc(sizeof(double) * (size_t)n_job), *mn = malloc(sizeof(double) * (size_t)n_job);
    if (!med || !mn) return 1;
    for (int j = 0; j < n_job; j++) {
        double *v = t + (size_t)j * reps;
        med[j] = median(v, reps); /* sorts v */
        mn[j] = v[0];
    }
    if (json) {
        const char *base = strrchr(mpath, '/');
        base = base ? base + 1 : mpath;
        printf("{\"model\":\"");
        for (const char *p = base; *p; p++) /* a JSON string: drop what would need escaping */
            if (*p >= 0x20 && *p != '"' && *p != '\\') putchar(*p);
        printf("\",\"threads\":%d,\"ctx\":%d,\"reps\":%d,\"capture\":%s,\"prefill_ms\":%.3f,"
               "\"rows\":[",
               threads, L, reps, capture ? "true" : "false", prefill_ms);
        for (int j = 0; j < n_job; j++) {
            int sh = j / max_nodes, n = j % max_nodes + 1;
            double b1 = med[sh * max_nodes];
            printf("%s{\"shape\":\"%s\",\"nodes\":%d,\"depth\":%d,\"median_ms\":%.4f,"
                   "\"min_ms\":%.4f,\"ratio\":%.4f,\"ms_per_node\":%.4f}",
                   j ? "," : "", sh ? "chain" : "tree", n, sh ? n - 1 : tree_depth[n],
                   med[j], mn[j], med[j] / b1, med[j] / n);
        }
        printf("]}\n");
    } else {
        printf("# model %s, threads %d, context %d, %d reps (median), capture %s, prefill %.1f ms\n",
               mpath, threads, L, reps, capture ? "on" : "off", prefill_ms);
        printf("shape,nodes,depth,median_ms,min_ms,ratio_to_1,ms_per_node\n");
        for (int j = 0; j < n_job; j++) {
            int sh = j / max_nodes, n = j % max_nodes + 1;
            double base = med[sh * max_nodes];
            printf("%s,%d,%d,%.4f,%.4f,%.4f,%.4f\n", sh ? "chain" : "tree", n,
                   sh ? n - 1 : tree_depth[n], med[j], mn[j],
                   med[j] / base, med[j] / n);
        }
    }

    for (int n = 1; n <= max_nodes; n++) {
        free(mask_tree[n]);
        free(mask_chain[n]);
    }
    free(mask_tree);
    free(mask_chain);
    free(med);
    free(mn);
    free(t);
    free(order);
    free(tok);
    free(pos_tree);
    free(pos_chain);
    free(logits);
    ey_seq_release(&c->kv, &s);
    ey_ctx_free(c);
    ey_model_free(m);
    ey_backend_destroy(be);
    free(mpath);
    return 0;
}
