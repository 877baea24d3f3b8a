/* Loss masks over assistant spans (core/convo.h) and `eyrie token-freq`,
 * checked against chat-tiny's ChatML template; then `eyrie drafter-init
 * --freq` over the counts and its d2t.
 *
 *   test_convo CHAT_TINY_DIR EYRIE_EXE */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../core/chat.h"
#include "../../core/convo.h"
#include "../../core/eagle3.h"
#include "../../core/model.h"
#include "../../core/safetensors.h"
#include "../../core/tokenizer.h"
#include "../../kernels/ey_backend.h"
#include "test.h"

static ey_model *g_m;

/* Masked runs, detokenized (special tokens kept), must be exactly the
 * assistant contents each followed by "<|im_end|>". */
static void check_mask(const char *what, const ey_chat_msg *msgs, int n)
{
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int nt = 0;
    ey_err e = ey_convo_tokens(g_m, msgs, n, &ids, &mask, &nt);
    TEST_CHECK_MSG(e == EY_OK, "%s: %s", what, ey_err_detail());
    if (e) return;
    /* the whole rendering, tokenized, without the generation prompt */
    char *txt = NULL;
    TEST_CHECK(ey_chat_render(&g_m->chat, msgs, n, false, &txt) == EY_OK);
    int32_t *ref = NULL;
    int nr = 0;
    TEST_CHECK(ey_tokenize(g_m->tok, txt, strlen(txt), true, &ref, &nr) == EY_OK);
    TEST_CHECK_MSG(nr == nt && !memcmp(ref, ids, (size_t)nt * sizeof *ids),
                   "%s: ids differ from the rendered conversation's", what);
    free(txt);
    free(ref);
    int a = 0; /* the next assistant message */
    int i = 0, runs = 0;
    while (i < nt) {
        if (!mask[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < nt && mask[j]) j++;
        while (a < n && strcmp(msgs[a].role, "assistant")) a++;
        TEST_CHECK_MSG(a < n, "%s: a masked run with no assistant message left", what);
        if (a >= n) break;
        char *s = NULL;
        TEST_CHECK(ey_detokenize(g_m->tok, ids + i, j - i, false, &s) == EY_OK);
        char want[1024];
        snprintf(want, sizeof want, "%s<|im_end|>", msgs[a].content);
        TEST_CHECK_MSG(s && !strcmp(s, want), "%s: run %d is '%s', want '%s'", what, runs,
                       s ? s : "(null)", want);
        free(s);
        /* the run ends on the end-of-turn token */
        TEST_CHECK(ids[j - 1] == ey_tokenizer_find(g_m->tok, "<|im_end|>"));
        runs++;
        a++;
        i = j;
    }
    int n_asst = 0;
    for (int k = 0; k < n; k++) n_asst += !strcmp(msgs[k].role, "assistant");
    TEST_CHECK_MSG(runs == n_asst, "%s: %d masked runs for %d assistant messages", what, runs,
                   n_asst);
    free(ids);
    free(mask);
}

/* a conversation ending with a user turn: nothing masked after the last
 * assistant turn's end-of-turn token */
static void check_tail_unmasked(void)
{
    ey_chat_msg msgs[] = {{"user", "Hi there"}, {"assistant", "Hello friend"},
                          {"user", "and now a question with no answer"}};
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int nt = 0;
    TEST_CHECK(ey_convo_tokens(g_m, msgs, 3, &ids, &mask, &nt) == EY_OK);
    int last = -1;
    for (int i = 0; i < nt; i++)
        if (mask[i]) last = i;
    TEST_CHECK(last >= 0);
    int32_t end = ey_tokenizer_find(g_m->tok, "<|im_end|>");
    TEST_CHECK(last >= 0 && ids[last] == end);
    /* after it: "\n<|im_start|>user\n...<|im_end|>\n", all unmasked */
    int n_after = nt - last - 1;
    TEST_CHECK_MSG(n_after > 5, "%d tokens after the last masked one", n_after);
    free(ids);
    free(mask);
    /* no assistant message at all: an all-zero mask */
    ey_chat_msg only_user[] = {{"system", "Be brief."}, {"user", "Hi"}};
    TEST_CHECK(ey_convo_tokens(g_m, only_user, 2, &ids, &mask, &nt) == EY_OK);
    int k = 0;
    for (int i = 0; i < nt; i++) k += mask[i];
    TEST_CHECK(nt > 0 && k == 0);
    free(ids);
    free(mask);
}

/* ------------------------------------------------------------ token-freq */

typedef struct tf_conv {
    const char *json;
    int n_asst;
    const char *asst[3];
} tf_conv;

static const tf_conv k_convs[] = {
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"What is two plus two?\"}, "
     "{\"role\": \"assistant\", \"content\": \"Four, of course.\"}]}",
     1, {"Four, of course."}},
    {"{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, "
     "{\"role\": \"user\", \"content\": \"Name a color\"}, "
     "{\"role\": \"assistant\", \"content\": \"Blue is a color of the sky.\"}, "
     "{\"role\": \"user\", \"content\": \"Another one\"}, "
     "{\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"Green, \"}, "
     "{\"type\": \"text\", \"text\": \"like grass.\"}]}]}",
     2, {"Blue is a color of the sky.", "Green, like grass."}},
    {"{\"id\": \"sg\", \"conversations\": [{\"from\": \"human\", \"value\": \"Tell me a story\"}, "
     "{\"from\": \"gpt\", \"value\": \"Once upon a time there was a tiny model.\"}, "
     "{\"from\": \"human\", \"value\": \"More\"}]}",
     1, {"Once upon a time there was a tiny model."}},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"Only a question\"}]}", 0, {0}},
};

static char *slurp(const char *path)
{
    char *b;
    size_t n;
    return ey_read_file(path, 1u << 30, &b, &n) ? NULL : b;
}

static void check_token_freq(const char *model_dir, const char *eyrie)
{
    char dir[] = "/tmp/ey_convo_XXXXXX";
    if (!mkdtemp(dir)) {
        TEST_CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char data[256], freq[256], log[256], drafter[256], cmd[2048];
    snprintf(data, sizeof data, "%s/data.jsonl", dir);
    snprintf(freq, sizeof freq, "%s/freq.txt", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    snprintf(drafter, sizeof drafter, "%s/drafter", dir);
    FILE *f = fopen(data, "w");
    TEST_CHECK(f != NULL);
    if (!f) return;
    int n_conv = (int)(sizeof k_convs / sizeof k_convs[0]);
    for (int i = 0; i < n_conv; i++) {
        fprintf(f, "%s\n", k_convs[i].json);
        if (i == 1) fprintf(f, "{\"messages\": 3}\n\n"); /* a bad line (line 3), a blank one */
    }
    fclose(f);

    /* brute force: each assistant content + "<|im_end|>" tokenized on its own */
    const int V = ey_tokenizer_n_vocab(g_m->tok);
    long long *want = calloc((size_t)V, sizeof *want);
    long long n_want = 0;
    for (int i = 0; i < n_conv; i++)
        for (int a = 0; a < k_convs[i].n_asst; a++) {
            char s[512];
            snprintf(s, sizeof s, "%s<|im_end|>", k_convs[i].asst[a]);
            int32_t *t = NULL;
            int nt = 0;
            TEST_CHECK(ey_tokenize(g_m->tok, s, strlen(s), true, &t, &nt) == EY_OK);
            for (int k = 0; k < nt; k++) want[t[k]]++, n_want++;
            free(t);
        }

    snprintf(cmd, sizeof cmd, "'%s' token-freq --model '%s' --data '%s' --out '%s' 2>'%s'", eyrie,
             model_dir, data, freq, log);
    int rc = system(cmd);
    char *lg = slurp(log);
    fprintf(stderr, "token-freq stderr:\n%s", lg ? lg : "(none)\n");
    TEST_CHECK_MSG(rc == 0, "token-freq exit %d", rc);
    TEST_CHECK(lg && strstr(lg, ":3: ") && strstr(lg, "skipped"));
    char tot[128];
    snprintf(tot, sizeof tot, "%d conversations", n_conv);
    TEST_CHECK(lg && strstr(lg, tot));
    snprintf(tot, sizeof tot, "%lld masked", n_want);
    TEST_CHECK_MSG(lg && strstr(lg, tot), "want '%s'", tot);
    free(lg);

    /* the file: every id with a nonzero count, count descending, id ascending */
    long long *got = calloc((size_t)V, sizeof *got);
    f = fopen(freq, "r");
    TEST_CHECK(f != NULL);
    long long id, c, prev_c = -1, prev_id = -1;
    int lines = 0;
    bool sorted = true, in_range = true;
    while (f && fscanf(f, "%lld %lld", &id, &c) == 2) {
        lines++;
        if (id < 0 || id >= V) {
            in_range = false;
            continue;
        }
        got[id] += c;
        if (prev_c >= 0 && (c > prev_c || (c == prev_c && id <= prev_id))) sorted = false;
        prev_c = c;
        prev_id = id;
    }
    if (f) fclose(f);
    TEST_CHECK(in_range && sorted && lines > 0);
    int distinct = 0;
    bool same = true;
    for (int i = 0; i < V; i++) {
        distinct += want[i] > 0;
        if (got[i] != want[i]) {
            same = false;
            fprintf(stderr, "id %d: token-freq %lld, brute force %lld\n", i, got[i], want[i]);
        }
    }
    TEST_CHECK(same);
    TEST_CHECK_MSG(lines == distinct, "%d lines, %d distinct ids", lines, distinct);

    /* drafter-init picks the 32 most frequent (ties: lower id; padded with
     * the lowest zero-count ids when fewer occur), sorted ascending */
    const int Vd = 32;
    snprintf(cmd, sizeof cmd,
             "'%s' drafter-init --target '%s' --freq '%s' --draft-vocab %d --out '%s' >>'%s' 2>&1",
             eyrie, model_dir, freq, Vd, drafter, log);
    rc = system(cmd);
    TEST_CHECK_MSG(rc == 0, "drafter-init exit %d", rc);
    int32_t sel[32];
    {
        bool *taken = calloc((size_t)V, sizeof *taken);
        for (int k = 0; k < Vd; k++) {
            int best = -1;
            for (int i = 0; i < V; i++)
                if (!taken[i] && (best < 0 || want[i] > want[best])) best = i;
            taken[best] = true;
        }
        int k = 0;
        for (int i = 0; i < V; i++)
            if (taken[i]) sel[k++] = i;
        free(taken);
    }
    ey_eagle3 *d = NULL;
    ey_err e = rc == 0 ? ey_eagle3_load(drafter, g_m, NULL, &d) : EY_ERR_IO;
    TEST_CHECK_MSG(e == EY_OK, "drafter load: %s", ey_err_detail());
    if (d) {
        TEST_CHECK(d->cfg.Vd == Vd);
        bool ok = true;
        for (int i = 0; i < Vd; i++)
            if (d->d2t[i] != sel[i]) {
                ok = false;
                fprintf(stderr, "d2t[%d] = %d, want %d\n", i, d->d2t[i], sel[i]);
            }
        TEST_CHECK(ok);
        ey_eagle3_free(d);
    }
    /* --limit 1: the first valid conversation only */
    snprintf(cmd, sizeof cmd, "'%s' token-freq --model '%s' --data '%s' --out '%s' --limit 1 2>'%s'",
             eyrie, model_dir, data, freq, log);
    rc = system(cmd);
    TEST_CHECK_MSG(rc == 0, "token-freq --limit 1 exit %d", rc);
    lg = slurp(log);
    TEST_CHECK(lg && strstr(lg, " 1 conversations"));
    free(lg);
    long long n1 = 0;
    f = fopen(freq, "r");
    while (f && fscanf(f, "%lld %lld", &id, &c) == 2) n1 += c;
    if (f) fclose(f);
    {
        char s[512];
        snprintf(s, sizeof s, "%s<|im_end|>", k_convs[0].asst[0]);
        int32_t *t = NULL;
        int nt = 0;
        TEST_CHECK(ey_tokenize(g_m->tok, s, strlen(s), true, &t, &nt) == EY_OK);
        TEST_CHECK_MSG(n1 == nt, "--limit 1: %lld counted, want %d", n1, nt);
        free(t);
    }
    /* bad arguments */
    snprintf(cmd, sizeof cmd, "'%s' token-freq --model '%s' --out '%s' 2>/dev/null", eyrie,
             model_dir, freq);
    rc = system(cmd);
    TEST_CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    free(want);
    free(got);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_convo CHAT_TINY_DIR EYRIE_EXE\n");
        return 2;
    }
    ey_backend *be = NULL;
    if (ey_backend_cpu_create(1, &be) || ey_model_load(argv[1], be, &g_m)) {
        fprintf(stderr, "load %s: %s\n", argv[1], ey_err_detail());
        return 1;
    }
    TEST_CHECK(g_m->tok && g_m->chat.kind == EY_CHAT_CHATML);

    ey_chat_msg one[] = {{"user", "Hi there"}, {"assistant", "Hello! How can I help you today?"}};
    check_mask("single turn", one, 2);
    ey_chat_msg multi[] = {{"system", "You are a helpful assistant."},
                           {"user", "What is the capital of France?"},
                           {"assistant", "The capital of France is Paris."},
                           {"user", "And of Italy?"},
                           {"assistant", "Rome.\nIt has been the capital since 1871."}};
    check_mask("multi turn", multi, 5);
    ey_chat_msg empty_asst[] = {{"user", "Say nothing"}, {"assistant", ""}};
    check_mask("empty assistant", empty_asst, 2);
    check_tail_unmasked();
    check_token_freq(argv[1], argv[2]);

    ey_model_free(g_m);
    ey_backend_destroy(be);
    return test_result();
}
