/* Hostile inputs: malformed tokenizer.json (truncated, wrong types, huge
 * numbers, random corruption), bad specs, huge/odd texts, concurrent use.
 * Everything must come back as an error or a result, never a crash (run it
 * under -Db_sanitize=address,undefined too).
 * usage: test_tok_hostile FIXTURES_DIR */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "core/tokenizer.h"
#include "test.h"
#include "tok_test_util.h"

static const char *const k_bad_json[] = {
    "",
    "{",
    "[]",
    "null",
    "42",
    "{\"model\": 5}",
    "{\"model\": {}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": []}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"0\"}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1e300}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 5000000}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": NaN}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": \"a b\"}, "
    "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}, "
    "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", /* "ab" not in vocab */
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"ab\"]}, "
    "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\"]]}, "
    "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[1, 2]]}, "
    "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b c\"]}, "
    "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
    "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"dropout\": 0.1}, \"pre_tokenizer\": {\"type\": "
    "\"ByteLevel\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"continuing_subword_prefix\": \"##\"}, "
    "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", /* no ByteLevel: not byte-level BPE */
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Split\", "
    "\"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Split\", "
    "\"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Split\", "
    "\"pattern\": 7, \"behavior\": \"Isolated\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
    "\"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Digits\"}]}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
    "\"pretokenizers\": 3}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
    "\"normalizer\": {\"type\": \"Lowercase\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
    "\"normalizer\": {\"nottype\": 1}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
    "\"decoder\": {\"type\": \"WordPiece\"}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
    "\"added_tokens\": {}}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
    "\"added_tokens\": [{\"id\": 1e20, \"content\": \"x\"}]}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
    "\"added_tokens\": [{\"id\": 1, \"content\": 5}]}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
    "\"added_tokens\": [{\"id\": 1, \"content\": \"\"}]}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
    "\"added_tokens\": [7]}",
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"unk_token\": \"<unk>\"}, \"pre_tokenizer\": "
    "{\"type\": \"ByteLevel\"}}",
};

static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 64);
    int o = sprintf(s, "{\"model\": ");
    for (int i = 0; i < depth; i++) s[o++] = '[';
    for (int i = 0; i < depth; i++) s[o++] = ']';
    s[o++] = '}';
    s[o] = 0;
    return s;
}

static void check_bad_json(void)
{
    for (size_t i = 0; i < sizeof k_bad_json / sizeof k_bad_json[0]; i++) {
        ey_tokenizer *t = (ey_tokenizer *)1;
        ey_err_clear();
        ey_err e = ey_tokenizer_from_json_buffer(k_bad_json[i], strlen(k_bad_json[i]), &t);
        TEST_CHECK_MSG(e != EY_OK && t == NULL, "bad json %zu accepted", i);
        TEST_CHECK_MSG(strlen(ey_err_detail()) > 0, "bad json %zu: no error detail", i);
    }
    char *d = nested(100000);
    ey_tokenizer *t = NULL;
    TEST_CHECK(ey_tokenizer_from_json_buffer(d, strlen(d), &t) != EY_OK && !t);
    free(d);
    /* a lone valid minimal tokenizer is accepted (sanity for the list above) */
    static const char ok[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
                             "\"merges\": [\"a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
                             "\"add_prefix_space\": false}}";
    TEST_CHECK(ey_tokenizer_from_json_buffer(ok, strlen(ok), &t) == EY_OK);
    int32_t *ids = NULL;
    int n = 0;
    TEST_CHECK(ey_tokenize(t, "abba", 4, true, &ids, &n) == EY_OK && n == 3 && ids[0] == 2 && ids[1] == 1 &&
               ids[2] == 0);
    free(ids);
    ey_tokenizer_free(t);
}

static void exercise(const ey_tokenizer *t)
{
    static const char *const texts[] = {"Hello world 123", "<|im_end|> x \xff\xfe", "日本語 😀", "", "\n\n\t  a"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *ids = NULL;
        int n = 0;
        if (ey_tokenize(t, texts[i], strlen(texts[i]), i & 1, &ids, &n) == EY_OK) {
            char *out = NULL;
            if (ey_detokenize(t, ids, n, false, &out) == EY_OK) free(out);
        }
        free(ids);
    }
}

static void check_truncations_and_mutations(const char *dir)
{
    static const char *const files[] = {"qwen2_tiny.tokenizer.json", "bytefb_tiny.tokenizer.json"};
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int f = 0; f < 2; f++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        size_t n;
        char *buf = tt_read_file(path, &n);
        TEST_CHECK_MSG(buf != NULL, "cannot read %s", path);
        if (!buf) continue;
        ey_tokenizer *t = NULL;
        TEST_CHECK(ey_tokenizer_from_json_buffer(buf, n, &t) == EY_OK);
        ey_tokenizer_free(t);
        /* every truncation is malformed JSON -> error */
        size_t step = n > 20000 ? 397 : 7, bad_ok = 0;
        for (size_t cut = 0; cut + 1 < n; cut += (cut < 256 ? 1 : step)) {
            t = NULL;
            ey_err e = ey_tokenizer_from_json_buffer(buf, cut, &t);
            if (e == EY_OK) {
                bad_ok++;
                ey_tokenizer_free(t);
            }
        }
        TEST_CHECK_MSG(bad_ok == 0, "%s: %zu truncations accepted", files[f], bad_ok);
        /* random corruption: error or a working tokenizer */
        int iters = f == 0 ? 150 : 2000, accepted = 0;
        char *m = malloc(n);
        for (int it = 0; it < iters; it++) {
            memcpy(m, buf, n);
            int flips = 1 + (int)(rng % 8);
            bool keep_structure = it % 2; /* odd iterations: letters/digits only */
            for (int k = 0; k < flips; k++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                size_t pos = (size_t)(rng >> 33) % n;
                static const char pool[] = "{}[]\",:0123456789eE-+.\\ntfa \x01\xff";
                static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                if (keep_structure) {
                    bool is_alnum = (m[pos] >= 'a' && m[pos] <= 'z') || (m[pos] >= 'A' && m[pos] <= 'Z') ||
                                    (m[pos] >= '0' && m[pos] <= '9');
                    if (is_alnum) m[pos] = alnum[(rng >> 13) % (sizeof alnum - 1)];
                } else
                    m[pos] = pool[(rng >> 13) % (sizeof pool - 1)];
            }
            t = NULL;
            if (ey_tokenizer_from_json_buffer(m, n, &t) == EY_OK) {
                accepted++;
                exercise(t);
                ey_tokenizer_free(t);
            }
        }
        fprintf(stderr, "%s: %d/%d corrupted copies still loaded (and were exercised)\n", files[f], accepted, iters);
        free(m);
        free(buf);
    }
}

static void check_specs(void)
{
    ey_tokenizer *t = NULL;
    TEST_CHECK(ey_tokenizer_from_spec(NULL, &t) == EY_ERR_ARG);
    const char *toks[] = {"a", "b", "ab", "<|im_end|>"};
    int32_t types[] = {1, 1, 1, 3};
    const char *merges[] = {"a b"};
    ey_tok_spec s = {.n_vocab = 4, .tokens = toks, .types = types, .n_merges = 1, .merges = merges,
                     .pre = "smollm", .bos_id = -1, .eos_id = 3, .pad_id = -1};
    TEST_CHECK(ey_tokenizer_from_spec(&s, &t) == EY_OK);
    TEST_CHECK(ey_tokenizer_is_eog(t, 3) && ey_tokenizer_is_special(t, 3) && !ey_tokenizer_is_special(t, 2));
    int32_t *ids = NULL;
    int n = 0;
    TEST_CHECK(ey_tokenize(t, "ab<|im_end|>", 12, true, &ids, &n) == EY_OK && n == 2 && ids[0] == 2 && ids[1] == 3);
    free(ids);
    ey_tokenizer_free(t);

    ey_tok_spec b = s;
    b.pre = "no-such-pre";
    t = NULL;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) == EY_ERR_UNSUPPORTED && !t);
    TEST_CHECK(strstr(ey_err_detail(), "no-such-pre") != NULL);
    b = s;
    b.n_vocab = 0;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) != EY_OK);
    b.n_vocab = -5;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) != EY_OK);
    b.n_vocab = 1 << 30;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) == EY_ERR_LIMIT);
    b = s;
    const char *toks_null[] = {"a", NULL, "ab", "x"};
    b.tokens = toks_null;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) != EY_OK);
    b = s;
    b.merges = NULL;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) != EY_OK);
    b = s;
    const char *bad_merge[] = {"ab"};
    b.merges = bad_merge;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) != EY_OK);
    b = s;
    b.n_merges = -1;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) != EY_OK);
    b = s;
    b.eos_id = 4;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) != EY_OK);
    /* a merge whose parts are unknown is skipped (as llama.cpp ignores it) */
    b = s;
    const char *odd_merge[] = {"x y"};
    b.merges = odd_merge;
    TEST_CHECK(ey_tokenizer_from_spec(&b, &t) == EY_OK);
    ey_tokenizer_free(t);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check_texts(const ey_tokenizer *t)
{
    /* argument checks */
    int32_t *ids = NULL;
    int n = 0;
    TEST_CHECK(ey_tokenize(NULL, "a", 1, true, &ids, &n) == EY_ERR_ARG);
    TEST_CHECK(ey_tokenize(t, NULL, 5, true, &ids, &n) == EY_ERR_ARG);
    TEST_CHECK(ey_tokenize(t, "a", (size_t)1 << 40, true, &ids, &n) == EY_ERR_LIMIT);
    TEST_CHECK(ey_tokenize(t, NULL, 0, true, &ids, &n) == EY_OK && n == 0);
    free(ids);

    /* big inputs: linear-ish time, exact byte round trip */
    const size_t big = (size_t)1 << 20;
    char *s = malloc(big + 1);
    uint64_t rng = 12345;
    for (int kind = 0; kind < 7; kind++) {
        for (size_t i = 0; i < big; i++) {
            switch (kind) {
            case 0: s[i] = 'a'; break;
            case 1: s[i] = ' '; break;
            case 2: s[i] = (char)('0' + i % 10); break;
            case 3: s[i] = "\n\t \r"[i % 4]; break;
            case 4: s[i] = "<|im_end|>"[i % 10]; break;
            case 5: s[i] = (i % 2) ? 'b' : 'a'; break;
            default:
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                s[i] = (char)(rng >> 56);
                break;
            }
        }
        double t0 = now_s();
        ids = NULL;
        ey_err e = ey_tokenize(t, s, big, kind != 4, &ids, &n);
        double dt = now_s() - t0;
        TEST_CHECK_MSG(e == EY_OK, "big input %d: %s", kind, ey_err_detail());
        fprintf(stderr, "1 MiB input kind %d: %d tokens in %.3f s\n", kind, n, dt);
        if (!e && kind != 6) {
            size_t len = 0;
            bool same = true;
            for (int i = 0; i < n && same; i++) {
                size_t l;
                const char *b = ey_token_bytes(t, ids[i], &l);
                if (!b || len + l > big || memcmp(s + len, b, l) != 0) same = false;
                len += l;
            }
            TEST_CHECK_MSG(same && len == big, "big input %d does not round-trip", kind);
        }
        free(ids);
    }
    free(s);

    /* streaming: a too-small buffer is refused without losing state */
    ey_detok d = {0};
    int32_t e_id = ey_tokenizer_find(t, "<|im_end|>");
    char buf[64];
    TEST_CHECK(ey_detok_push(&d, t, e_id, buf, 3) == -1 && d.n_pending == 0);
    TEST_CHECK(ey_detok_push(&d, t, e_id, buf, sizeof buf) == 10);
    d.skip_special = true;
    TEST_CHECK(ey_detok_push(&d, t, e_id, buf, sizeof buf) == 0);
    TEST_CHECK(ey_detok_push(&d, t, -7, buf, sizeof buf) == 0);
    /* "é" split over two pushes of raw-byte tokens */
    int32_t *ei = NULL;
    int en = 0;
    TEST_CHECK(ey_tokenize(t, "\xc3\xa9\xe2\x82", 4, false, &ei, &en) == EY_OK);
    size_t tot = 0;
    for (int i = 0; i < en; i++) {
        int w = ey_detok_push(&d, t, ei[i], buf + tot, sizeof buf - tot);
        TEST_CHECK(w >= 0);
        if (w > 0) tot += (size_t)w;
    }
    int w = ey_detok_flush(&d, buf + tot, sizeof buf - tot);
    TEST_CHECK(w == 3);
    tot += (size_t)(w > 0 ? w : 0);
    TEST_CHECK(tot == 5 && memcmp(buf, "\xc3\xa9\xef\xbf\xbd", 5) == 0);
    free(ei);
}

typedef struct thr_arg {
    const ey_tokenizer *t;
    const char *text;
    size_t len;
    const int32_t *want;
    int nwant;
    int ok;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    a->ok = 1;
    for (int r = 0; r < 30; r++) {
        int32_t *ids = NULL;
        int n = 0;
        if (ey_tokenize(a->t, a->text, a->len, true, &ids, &n) != EY_OK || n != a->nwant ||
            memcmp(ids, a->want, (size_t)n * sizeof *ids) != 0)
            a->ok = 0;
        free(ids);
    }
    return NULL;
}

static void check_threads(const ey_tokenizer *t)
{
    const char *text = "The quick brown fox 12345 日本語 <|im_end|> it's 😀\n\n  trailing  ";
    size_t len = strlen(text);
    int32_t *want = NULL;
    int nwant = 0;
    TEST_CHECK(ey_tokenize(t, text, len, true, &want, &nwant) == EY_OK);
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){t, text, len, want, nwant, 0};
        pthread_create(&th[i], NULL, thr_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        TEST_CHECK_MSG(args[i].ok, "thread %d got different ids", i);
    }
    free(want);
}

static void check_files(const char *dir)
{
    ey_tokenizer *t = NULL;
    TEST_CHECK(ey_tokenizer_from_json_file("/nonexistent/tokenizer.json", &t) == EY_ERR_IO && !t);
    TEST_CHECK(ey_tokenizer_from_json_file(dir, &t) != EY_OK && !t);
    char path[] = "/tmp/ey_tok_big_XXXXXX";
    int fd = mkstemp(path);
    TEST_CHECK(fd >= 0);
    if (fd >= 0) {
        TEST_CHECK(ftruncate(fd, ((off_t)64 << 20) + 1) == 0); /* sparse: no disk used */
        close(fd);
        TEST_CHECK(ey_tokenizer_from_json_file(path, &t) == EY_ERR_LIMIT && !t);
        unlink(path);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    check_bad_json();
    check_truncations_and_mutations(dir);
    check_specs();
    check_files(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/qwen2_tiny.tokenizer.json", dir);
    ey_tokenizer *t = NULL;
    ey_err e = ey_tokenizer_from_json_file(path, &t);
    TEST_CHECK_MSG(e == EY_OK, "%s", ey_err_detail());
    if (!e) {
        TEST_CHECK(ey_tokenizer_bos(t) == -1 && !ey_tokenizer_add_bos(t));
        TEST_CHECK(ey_tokenizer_eos(t) == ey_tokenizer_find(t, "<|im_end|>") && ey_tokenizer_eos(t) >= 0);
        TEST_CHECK(ey_tokenizer_is_eog(t, ey_tokenizer_find(t, "<|endoftext|>")));
        TEST_CHECK(ey_tokenizer_is_special(t, ey_tokenizer_find(t, "<|im_start|>")));
        TEST_CHECK(!ey_tokenizer_is_special(t, ey_tokenizer_find(t, "<tool_call>")));
        check_texts(t);
        check_threads(t);
        ey_tokenizer_free(t);
    }
    /* Llama-3 style: BOS from the TemplateProcessing post-processor */
    snprintf(path, sizeof path, "%s/llama3_tiny.tokenizer.json", dir);
    t = NULL;
    TEST_CHECK(ey_tokenizer_from_json_file(path, &t) == EY_OK);
    if (t) {
        TEST_CHECK(ey_tokenizer_add_bos(t) && ey_tokenizer_bos(t) == ey_tokenizer_find(t, "<|begin_of_text|>"));
        TEST_CHECK(ey_tokenizer_is_eog(t, ey_tokenizer_find(t, "<|eot_id|>")) &&
                   ey_tokenizer_is_eog(t, ey_tokenizer_find(t, "<|eom_id|>")) &&
                   ey_tokenizer_is_eog(t, ey_tokenizer_find(t, "<|end_of_text|>")));
        TEST_CHECK(!ey_tokenizer_is_eog(t, ey_tokenizer_find(t, "<|start_header_id|>")));
        ey_tokenizer_free(t);
    }
    return test_result();
}
