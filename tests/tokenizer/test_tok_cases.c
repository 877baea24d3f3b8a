/* Exactness test against Hugging Face `tokenizers` expectations.
 *
 * usage: test_tok_cases FIXTURES_DIR CASES_FILE SOURCE [roundtrip]
 *   SOURCE = json              tokenizer.json named in the cases file
 *            spec:PRE          the same vocabulary handed over as a GGUF-style
 *                              spec with tokenizer.ggml.pre = PRE
 *            gguf:PATH         the vocabulary read from a GGUF file (exit 77
 *                              when PATH does not exist)
 *   roundtrip: invalid-UTF-8 inputs must come back byte-exact from the tokens
 *
 * Cases come from scripts/make_tokenizer_fixtures.py. */
#include <inttypes.h>
#include <sys/stat.h>

#include "core/tokenizer.h"
#include "test.h"
#include "tok_test_util.h"

static int g_shown;
#define SHOW_MAX 12

/* ------------------------------------------------------------------------ */
/* spec from a tokenizer.json (as a GGUF converter would store it) */

typedef struct owned_spec {
    ey_tok_spec spec;
    char **tokens;
    int32_t *types;
    char **merges;
    char *pre;
} owned_spec;

static void owned_spec_free(owned_spec *o)
{
    if (o->tokens)
        for (int i = 0; i < o->spec.n_vocab; i++) free(o->tokens[i]);
    if (o->merges)
        for (int i = 0; i < o->spec.n_merges; i++) free(o->merges[i]);
    free(o->tokens);
    free(o->types);
    free(o->merges);
    free(o->pre);
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static bool spec_from_json(const char *dir, const char *file, const char *pre, owned_spec *o)
{
    memset(o, 0, sizeof *o);
    cJSON *j = tt_load_json(dir, file);
    if (!j) return false;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) if ((int)it->valuedouble + 1 > n) n = (int)it->valuedouble + 1;
    cJSON_ArrayForEach(it, added)
    {
        int id = (int)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        if (id + 1 > n) n = id + 1;
    }
    o->spec.n_vocab = n;
    o->tokens = calloc((size_t)n, sizeof *o->tokens);
    o->types = calloc((size_t)n, sizeof *o->types);
    cJSON_ArrayForEach(it, vocab)
    {
        int id = (int)it->valuedouble;
        o->tokens[id] = dupstr(it->string);
        o->types[id] = EY_TOKTYPE_NORMAL;
    }
    cJSON_ArrayForEach(it, added)
    {
        int id = (int)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        free(o->tokens[id]);
        o->tokens[id] = dupstr(cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring);
        o->types[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) ? EY_TOKTYPE_CONTROL
                                                                                      : EY_TOKTYPE_USER_DEFINED;
    }
    for (int i = 0; i < n; i++)
        if (!o->tokens[i]) o->tokens[i] = dupstr("");
    o->spec.n_merges = cJSON_GetArraySize(merges);
    o->merges = calloc((size_t)o->spec.n_merges + 1, sizeof *o->merges);
    int k = 0;
    cJSON_ArrayForEach(it, merges)
    {
        if (cJSON_IsString(it)) {
            o->merges[k++] = dupstr(it->valuestring);
        } else {
            const char *a = cJSON_GetArrayItem(it, 0)->valuestring, *b = cJSON_GetArrayItem(it, 1)->valuestring;
            char *m = malloc(strlen(a) + strlen(b) + 2);
            sprintf(m, "%s %s", a, b);
            o->merges[k++] = m;
        }
    }
    o->pre = dupstr(pre);
    o->spec.tokens = (const char *const *)o->tokens;
    o->spec.types = o->types;
    o->spec.merges = (const char *const *)o->merges;
    o->spec.pre = o->pre;
    o->spec.bos_id = o->spec.eos_id = o->spec.pad_id = -1;
    cJSON_Delete(j);
    return true;
}

/* ------------------------------------------------------------------------ */
/* minimal GGUF metadata reader (test-only; the runtime has core/gguf.c) */

typedef struct gguf_rd {
    FILE *f;
    bool bad;
} gguf_rd;

static void rd(gguf_rd *r, void *p, size_t n)
{
    if (r->bad || fread(p, 1, n, r->f) != n) {
        r->bad = true;
        memset(p, 0, n);
    }
}
static uint64_t rd_u64(gguf_rd *r)
{
    uint64_t v;
    rd(r, &v, 8);
    return v;
}
static uint32_t rd_u32(gguf_rd *r)
{
    uint32_t v;
    rd(r, &v, 4);
    return v;
}
static char *rd_str(gguf_rd *r)
{
    uint64_t n = rd_u64(r);
    if (r->bad || n > (1u << 20)) {
        r->bad = true;
        return NULL;
    }
    char *s = malloc(n + 1);
    rd(r, s, n);
    s[n] = 0;
    return s;
}
static size_t gguf_scalar_size(uint32_t ty)
{
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return ty < 13 ? sz[ty] : 0;
}
static int64_t rd_int_of(gguf_rd *r, uint32_t ty)
{
    unsigned char b[8] = {0};
    size_t n = gguf_scalar_size(ty);
    if (!n) {
        r->bad = true;
        return 0;
    }
    rd(r, b, n);
    switch (ty) {
    case 0: return b[0];
    case 1: return (int8_t)b[0];
    case 2: { uint16_t v; memcpy(&v, b, 2); return v; }
    case 3: { int16_t v; memcpy(&v, b, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, b, 4); return v; }
    case 5: { int32_t v; memcpy(&v, b, 4); return v; }
    case 7: return b[0];
    case 10: { uint64_t v; memcpy(&v, b, 8); return (int64_t)v; }
    case 11: { int64_t v; memcpy(&v, b, 8); return v; }
    default: return 0;
    }
}
static void skip_value(gguf_rd *r, uint32_t ty)
{
    if (ty == 8) {
        free(rd_str(r));
    } else if (ty == 9) {
        uint32_t et = rd_u32(r);
        uint64_t n = rd_u64(r);
        for (uint64_t i = 0; i < n && !r->bad; i++) skip_value(r, et);
    } else {
        size_t n = gguf_scalar_size(ty);
        if (!n) r->bad = true;
        else fseek(r->f, (long)n, SEEK_CUR);
    }
}

static bool spec_from_gguf(const char *path, owned_spec *o, char **chat_template)
{
    memset(o, 0, sizeof *o);
    o->spec.bos_id = o->spec.eos_id = o->spec.pad_id = -1;
    gguf_rd r = {.f = fopen(path, "rb")};
    if (!r.f) return false;
    char magic[4];
    rd(&r, magic, 4);
    uint32_t ver = rd_u32(&r);
    if (memcmp(magic, "GGUF", 4) != 0 || ver < 2) {
        fclose(r.f);
        return false;
    }
    (void)rd_u64(&r); /* n_tensors */
    uint64_t n_kv = rd_u64(&r);
    for (uint64_t k = 0; k < n_kv && !r.bad; k++) {
        char *key = rd_str(&r);
        uint32_t ty = rd_u32(&r);
        if (!key) break;
        if (!strcmp(key, "tokenizer.ggml.tokens") || !strcmp(key, "tokenizer.ggml.merges")) {
            uint32_t et = rd_u32(&r);
            uint64_t n = rd_u64(&r);
            if (ty != 9 || et != 8 || n > (1u << 22)) r.bad = true;
            char **arr = r.bad ? NULL : calloc(n + 1, sizeof *arr);
            for (uint64_t i = 0; i < n && !r.bad; i++) arr[i] = rd_str(&r);
            if (!strcmp(key, "tokenizer.ggml.tokens")) {
                o->tokens = arr;
                o->spec.n_vocab = (int)n;
            } else {
                o->merges = arr;
                o->spec.n_merges = (int)n;
            }
        } else if (!strcmp(key, "tokenizer.ggml.token_type") && ty == 9) {
            uint32_t et = rd_u32(&r);
            uint64_t n = rd_u64(&r);
            o->types = calloc(n + 1, sizeof *o->types);
            for (uint64_t i = 0; i < n && !r.bad; i++) o->types[i] = (int32_t)rd_int_of(&r, et);
        } else if (!strcmp(key, "tokenizer.ggml.pre") && ty == 8) {
            o->pre = rd_str(&r);
        } else if (!strcmp(key, "tokenizer.chat_template") && ty == 8) {
            char *s = rd_str(&r);
            if (chat_template) *chat_template = s;
            else free(s);
        } else if (!strcmp(key, "tokenizer.ggml.bos_token_id")) {
            o->spec.bos_id = (int32_t)rd_int_of(&r, ty);
        } else if (!strcmp(key, "tokenizer.ggml.eos_token_id")) {
            o->spec.eos_id = (int32_t)rd_int_of(&r, ty);
        } else if (!strcmp(key, "tokenizer.ggml.padding_token_id")) {
            o->spec.pad_id = (int32_t)rd_int_of(&r, ty);
        } else if (!strcmp(key, "tokenizer.ggml.add_bos_token")) {
            o->spec.add_bos = rd_int_of(&r, ty) != 0;
        } else {
            skip_value(&r, ty);
        }
        free(key);
    }
    fclose(r.f);
    if (r.bad || !o->tokens) return false;
    o->spec.tokens = (const char *const *)o->tokens;
    o->spec.types = o->types;
    o->spec.merges = (const char *const *)o->merges;
    o->spec.pre = o->pre;
    return true;
}

/* ------------------------------------------------------------------------ */

static bool bytes_eq(const char *a, size_t an, const unsigned char *b, size_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

static void check_case(const ey_tokenizer *tok, const cJSON *c, int idx)
{
    size_t n = 0;
    char *text = tt_case_text(c, &n);
    TEST_CHECK(text != NULL);
    if (!text) return;
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "ids");
    const cJSON *exp_raw = cJSON_GetObjectItemCaseSensitive(c, "ids_raw");
    if (!exp_raw) exp_raw = exp;

    int32_t *ids = NULL, *ids_raw = NULL;
    int nid = 0, nraw = 0;
    ey_err e = ey_tokenize(tok, text, n, true, &ids, &nid);
    TEST_CHECK_MSG(e == EY_OK, "case %d: %s", idx, ey_err_detail());
    ey_err e2 = ey_tokenize(tok, text, n, false, &ids_raw, &nraw);
    TEST_CHECK_MSG(e2 == EY_OK, "case %d: %s", idx, ey_err_detail());
    if (e || e2) {
        free(text);
        free(ids);
        free(ids_raw);
        return;
    }
    bool ok = tt_ids_equal(exp, ids, nid);
    TEST_CHECK_MSG(ok, "case %d (parse_special) ids differ", idx);
    if (!ok && g_shown++ < SHOW_MAX) {
        fprintf(stderr, "  text: %.*s\n", (int)(n > 200 ? 200 : n), text);
        tt_print_json_ids("expected", exp);
        tt_print_ids("got     ", ids, nid);
    }
    ok = tt_ids_equal(exp_raw, ids_raw, nraw);
    TEST_CHECK_MSG(ok, "case %d (no parse_special) ids differ", idx);
    if (!ok && g_shown++ < SHOW_MAX) {
        fprintf(stderr, "  text: %.*s\n", (int)(n > 200 ? 200 : n), text);
        tt_print_json_ids("expected", exp_raw);
        tt_print_ids("got     ", ids_raw, nraw);
    }

    /* decode == tokenizers' decode() */
    unsigned char *dec = NULL, *dec_skip = NULL;
    size_t dn = n, dsn = 0;
    const cJSON *dh = cJSON_GetObjectItemCaseSensitive(c, "dec_hex");
    const cJSON *dsh = cJSON_GetObjectItemCaseSensitive(c, "dec_skip_hex");
    if (cJSON_IsString(dh)) dec = tt_unhex(dh->valuestring, &dn);
    else {
        dec = malloc(n + 1);
        memcpy(dec, text, n);
    }
    if (cJSON_IsString(dsh)) dec_skip = tt_unhex(dsh->valuestring, &dsn);
    else {
        dsn = dn;
        dec_skip = malloc(dn + 1);
        memcpy(dec_skip, dec, dn);
    }
    char *out = NULL;
    size_t outn = 0;
    if (ey_detokenize_len(tok, ids, nid, false, &out, &outn) == EY_OK) {
        ok = bytes_eq(out, outn, dec, dn);
        TEST_CHECK_MSG(ok, "case %d: decode differs: got '%.80s'", idx, out);
    } else
        TEST_CHECK_MSG(0, "case %d: decode failed: %s", idx, ey_err_detail());
    /* streaming decode gives the same text */
    {
        ey_detok d = {0};
        size_t cap = 64 + dn * 3 + (size_t)nid * 64, len = 0;
        char *sbuf = malloc(cap);
        bool sok = true;
        for (int i = 0; i < nid && sok; i++) {
            int w = ey_detok_push(&d, tok, ids[i], sbuf + len, cap - len);
            if (w < 0) sok = false;
            else len += (size_t)w;
        }
        int w = ey_detok_flush(&d, sbuf + len, cap - len);
        if (w < 0) sok = false;
        else len += (size_t)w;
        TEST_CHECK_MSG(sok && out && bytes_eq(sbuf, len, (const unsigned char *)out, outn),
                       "case %d: streaming decode differs", idx);
        free(sbuf);
    }
    free(out);
    out = NULL;
    if (ey_detokenize_len(tok, ids, nid, true, &out, &outn) == EY_OK) {
        ok = bytes_eq(out, outn, dec_skip, dsn);
        TEST_CHECK_MSG(ok, "case %d: decode(skip_special) differs: got '%.80s'", idx, out);
    }
    free(out);
    free(dec);
    free(dec_skip);
    free(text);
    free(ids);
    free(ids_raw);
}

static void check_singles(const ey_tokenizer *tok, const cJSON *singles)
{
    int bad = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, singles)
    {
        int32_t id = (int32_t)cJSON_GetArrayItem(it, 0)->valuedouble;
        const char *str = cJSON_GetArrayItem(it, 1)->valuestring;
        size_t dn = 0;
        unsigned char *dec = tt_unhex(cJSON_GetArrayItem(it, 2)->valuestring, &dn);
        char *out = NULL;
        size_t outn = 0;
        ey_err e = ey_detokenize_len(tok, &id, 1, false, &out, &outn);
        bool ok = e == EY_OK && bytes_eq(out, outn, dec, dn);
        int32_t f = ey_tokenizer_find(tok, str);
        ok = ok && f == (int32_t)cJSON_GetArrayItem(it, 3)->valuedouble;
        if (!ok && bad++ < SHOW_MAX) fprintf(stderr, "  single %d '%s': find=%d decode='%s'\n", id, str, f, out);
        TEST_CHECK_MSG(ok, "token %d", id);
        free(out);
        free(dec);
    }
}

/* does the vocabulary hold the ByteLevel symbol of byte b? (tokenizers drops
 * bytes whose symbol is missing when there is no unk / byte fallback) */
static bool has_byte_symbol(const ey_tokenizer *tok, unsigned b)
{
    int extra = 0;
    unsigned cp = 0;
    for (unsigned x = 0; x <= b; x++) {
        bool direct = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
        cp = direct ? x : 256u + (unsigned)extra++;
    }
    char u[3] = {0};
    if (cp < 0x80) u[0] = (char)cp;
    else {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
    }
    return ey_tokenizer_find(tok, u) >= 0;
}

static void check_invalid(const ey_tokenizer *tok, const cJSON *inv, bool roundtrip)
{
    const cJSON *it;
    int k = 0;
    cJSON_ArrayForEach(it, inv)
    {
        size_t n = 0;
        unsigned char *b = tt_unhex(it->valuestring, &n);
        for (int ps = 0; ps < 2; ps++) {
            int32_t *ids = NULL;
            int nid = 0;
            ey_err e = ey_tokenize(tok, (const char *)b, n, ps, &ids, &nid);
            TEST_CHECK_MSG(e == EY_OK, "invalid %d: %s", k, ey_err_detail());
            if (!e && roundtrip) {
                size_t len = 0;
                char *cat = malloc(n * 8 + 64);
                bool fit = true;
                for (int i = 0; i < nid; i++) {
                    size_t l;
                    const char *tb = ey_token_bytes(tok, ids[i], &l);
                    if (!tb || len + l > n * 8 + 64) {
                        fit = false;
                        break;
                    }
                    memcpy(cat + len, tb, l);
                    len += l;
                }
                /* expected: the input less the bytes the vocabulary cannot spell */
                unsigned char *want = malloc(n + 1);
                size_t wn = 0;
                for (size_t i = 0; i < n; i++)
                    if (has_byte_symbol(tok, b[i])) want[wn++] = b[i];
                TEST_CHECK_MSG(fit && len == wn && memcmp(cat, want, wn) == 0, "invalid %d (%s) does not round-trip",
                               k, it->valuestring);
                free(want);
                free(cat);
            }
            /* decode never produces invalid UTF-8 and never fails */
            char *out = NULL;
            TEST_CHECK(ey_detokenize(tok, ids, nid, false, &out) == EY_OK);
            free(out);
            free(ids);
        }
        free(b);
        k++;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s FIXTURES_DIR CASES_FILE SOURCE [roundtrip]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1], *cases_file = argv[2], *source = argv[3];
    bool roundtrip = argc > 4 && !strcmp(argv[4], "roundtrip");
    char model_path[1024];
    if (!strcmp(source, "gguf:default")) {
        /* the default model, where scripts/fetch-model.sh puts it */
        const char *m = getenv("EYRIE_MODEL"), *cache = getenv("EYRIE_CACHE"), *home = getenv("HOME");
        if (m && *m) snprintf(model_path, sizeof model_path, "gguf:%s", m);
        else if (cache && *cache)
            snprintf(model_path, sizeof model_path, "gguf:%s/models/smollm2-135m-instruct-q4_1.gguf", cache);
        else
            snprintf(model_path, sizeof model_path, "gguf:%s/.cache/eyrie/models/smollm2-135m-instruct-q4_1.gguf",
                     home ? home : "");
        source = model_path;
    }
    if (!strncmp(source, "gguf:", 5)) {
        struct stat st;
        if (stat(source + 5, &st) != 0)
            TEST_SKIP("model file %s not found (run scripts/fetch-model.sh)", source + 5);
    }
    cJSON *doc = tt_load_json(dir, cases_file);
    TEST_CHECK(doc != NULL);
    if (!doc) return test_result();
    const char *tjson = cJSON_GetObjectItemCaseSensitive(doc, "tokenizer")->valuestring;

    ey_tokenizer *tok = NULL;
    ey_err e;
    owned_spec os = {0};
    if (!strcmp(source, "json")) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, tjson);
        e = ey_tokenizer_from_json_file(path, &tok);
    } else if (!strcmp(source, "json-strmerges")) {
        /* the older tokenizer.json form: merges as "a b" strings */
        cJSON *tj = tt_load_json(dir, tjson);
        cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "merges");
        cJSON *strs = cJSON_CreateArray();
        const cJSON *m;
        cJSON_ArrayForEach(m, merges)
        {
            const char *a = cJSON_GetArrayItem(m, 0)->valuestring, *b = cJSON_GetArrayItem(m, 1)->valuestring;
            char *ms = malloc(strlen(a) + strlen(b) + 2);
            sprintf(ms, "%s %s", a, b);
            cJSON_AddItemToArray(strs, cJSON_CreateString(ms));
            free(ms);
        }
        cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "merges", strs);
        char *txt = cJSON_PrintUnformatted(tj);
        TEST_CHECK(txt && strstr(txt, "\"merges\":[\"") != NULL);
        e = ey_tokenizer_from_json_buffer(txt, strlen(txt), &tok);
        free(txt);
        cJSON_Delete(tj);
    } else if (!strncmp(source, "spec:", 5)) {
        TEST_CHECK(spec_from_json(dir, tjson, source + 5, &os));
        e = ey_tokenizer_from_spec(&os.spec, &tok);
    } else if (!strncmp(source, "gguf:", 5)) {
        bool ok = spec_from_gguf(source + 5, &os, NULL);
        TEST_CHECK_MSG(ok, "cannot read the tokenizer from %s", source + 5);
        if (!ok) return test_result();
        e = ey_tokenizer_from_spec(&os.spec, &tok);
    } else {
        fprintf(stderr, "unknown source %s\n", source);
        return 2;
    }
    TEST_CHECK_MSG(e == EY_OK, "load: %s: %s", ey_strerror(e), ey_err_detail());
    if (e) {
        owned_spec_free(&os);
        cJSON_Delete(doc);
        return test_result();
    }
    int nv = (int)cJSON_GetObjectItemCaseSensitive(doc, "n_vocab")->valuedouble;
    TEST_CHECK_MSG(ey_tokenizer_n_vocab(tok) == nv, "n_vocab %d != %d", ey_tokenizer_n_vocab(tok), nv);

    int failures_before = g_test_failures, k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "cases")) check_case(tok, c, k++);
    int case_failures = g_test_failures - failures_before;
    check_singles(tok, cJSON_GetObjectItemCaseSensitive(doc, "singles"));
    check_invalid(tok, cJSON_GetObjectItemCaseSensitive(doc, "invalid"), roundtrip);

    /* EOG: every family end token present in the vocab, and eos */
    static const char *const eog[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"};
    for (size_t i = 0; i < sizeof eog / sizeof eog[0]; i++) {
        int32_t id = ey_tokenizer_find(tok, eog[i]);
        if (id >= 0) TEST_CHECK_MSG(ey_tokenizer_is_eog(tok, id), "%s not EOG", eog[i]);
    }
    if (ey_tokenizer_eos(tok) >= 0) TEST_CHECK(ey_tokenizer_is_eog(tok, ey_tokenizer_eos(tok)));
    TEST_CHECK(!ey_tokenizer_is_eog(tok, -1) && !ey_tokenizer_is_eog(tok, ey_tokenizer_n_vocab(tok)));
    TEST_CHECK(ey_token_bytes(tok, -1, NULL) == NULL && ey_token_bytes(tok, ey_tokenizer_n_vocab(tok), NULL) == NULL);

    fprintf(stderr, "%s [%s]: %d cases, %d with mismatches\n", cases_file, source, k, case_failures);
    ey_tokenizer_free(tok);
    owned_spec_free(&os);
    cJSON_Delete(doc);
    return test_result();
}
