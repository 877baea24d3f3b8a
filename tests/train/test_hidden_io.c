/* Tests for the offline hidden-state format (train/hidden_io.h):
 *  1. CRC-32 check value; random records written and read back bit-exact
 *     (aux through f16 rounding, teacher entries past n_teach read as 0);
 *  2. resume: a torn half record (and a partial header) appended to
 *     records.bin is cut by the writer, which then continues; the reader
 *     refuses the torn directory until then; resume=false refuses to
 *     overwrite; meta mismatch on resume is refused;
 *  3. hostile files give errors, never a crash or a giant allocation: bad
 *     magic, huge T, huge k, CRC mismatch, truncated payload, damage before
 *     the last record (not resumable), out-of-range values inside a
 *     CRC-valid record, broken or lying meta.json. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/safetensors.h"
#include "kernels/ey_dtype.h"
#include "test.h"
#include "train/hidden_io.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 8 - 4); }

typedef struct own_rec {
    int T, k;
    int32_t *ids, *top1, *teach_ids;
    uint8_t *mask;
    int *n_teach;
    float *teach_logits, *aux;
} own_rec;

static ey_hid_meta g_meta;
#define W (g_meta.n_aux * g_meta.Ht)

static void make_rec(own_rec *r, int T)
{
    const int k = g_meta.k, V = g_meta.V;
    r->T = T;
    r->k = k;
    r->ids = malloc(sizeof(int32_t) * T);
    r->top1 = malloc(sizeof(int32_t) * T);
    r->mask = malloc((size_t)T);
    r->n_teach = malloc(sizeof(int) * T);
    r->teach_ids = malloc(sizeof(int32_t) * T * k);
    r->teach_logits = malloc(sizeof(float) * T * k);
    r->aux = malloc(sizeof(float) * T * W);
    for (int t = 0; t < T; t++) {
        r->ids[t] = (int32_t)(rnd() % V);
        r->top1[t] = (int32_t)(rnd() % V);
        r->mask[t] = rnd() & 1;
        r->n_teach[t] = t == 0 ? k : (int)(rnd() % (k + 1));
        for (int j = 0; j < k; j++) {
            r->teach_ids[t * k + j] = (int32_t)(rnd() % V);
            r->teach_logits[t * k + j] = rndf() * 10;
        }
    }
    for (int i = 0; i < T * W; i++) r->aux[i] = rndf() * (i % 7 == 0 ? 1000.f : 1.f);
    r->aux[0] = 1e-7f; /* an f16 subnormal */
}

static void free_rec(own_rec *r)
{
    free(r->ids);
    free(r->top1);
    free(r->mask);
    free(r->n_teach);
    free(r->teach_ids);
    free(r->teach_logits);
    free(r->aux);
}

static ey_hid_rec view(const own_rec *o, uint64_t conv)
{
    return (ey_hid_rec){.conv = conv, .T = o->T, .k = o->k, .ids = o->ids, .mask = o->mask,
                        .top1 = o->top1, .n_teach = o->n_teach, .teach_ids = o->teach_ids,
                        .teach_logits = o->teach_logits, .aux = o->aux};
}

static int same_rec(const ey_hid_rec *g, const own_rec *o, uint64_t conv)
{
    if (g->T != o->T || g->k != o->k || g->conv != conv) return 0;
    const int T = o->T, k = o->k;
    if (memcmp(g->ids, o->ids, 4 * T) || memcmp(g->mask, o->mask, T) ||
        memcmp(g->top1, o->top1, 4 * T) || memcmp(g->n_teach, o->n_teach, 4 * T))
        return 0;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int used = j < o->n_teach[t];
            int32_t id = g->teach_ids[t * k + j];
            float lv = g->teach_logits[t * k + j];
            if (used && (id != o->teach_ids[t * k + j] ||
                         memcmp(&lv, &o->teach_logits[t * k + j], 4)))
                return 0;
            if (!used && (id != 0 || lv != 0.f)) return 0;
        }
    for (int i = 0; i < T * W; i++) {
        float want = ey_f16_to_f32(ey_f32_to_f16(o->aux[i]));
        if (memcmp(&want, &g->aux[i], 4)) return 0;
    }
    return 1;
}

static char g_dir[256];

static char *pj(const char *dir, const char *name)
{
    static char buf[4][512];
    static int i;
    i = (i + 1) & 3;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

/* a whole file (NUL-terminated), NULL when it cannot be read */
static void *slurp(const char *path, size_t *n)
{
    char *b;
    return ey_read_file(path, 1u << 30, &b, n) ? NULL : b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

/* Check the directory reads back as recs[0..n) with conv indices 10 + i. */
static void check_dir(const char *dir, own_rec *recs, int n)
{
    ey_hid_file *f = NULL;
    ey_err e = ey_hid_open(dir, &f);
    TEST_CHECK_MSG(e == EY_OK, "%s", ey_err_detail());
    if (e) return;
    TEST_CHECK(ey_hid_count(f) == n);
    const ey_hid_meta *m = ey_hid_meta_of(f);
    long tok = 0;
    for (int i = 0; i < n; i++) tok += recs[i].T;
    TEST_CHECK(m->n_records == n && m->n_tokens == tok);
    TEST_CHECK(!strcmp(m->model, g_meta.model) && m->n_layer == g_meta.n_layer &&
               m->Ht == g_meta.Ht && m->V == g_meta.V && m->k == g_meta.k &&
               m->n_aux == g_meta.n_aux);
    for (int i = 0; i < g_meta.n_aux; i++) TEST_CHECK(m->aux_layers[i] == g_meta.aux_layers[i]);
    float *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < n && i < ey_hid_count(f); i++) {
        ey_hid_rec r;
        e = ey_hid_get(f, i, &r, &buf, &cap);
        TEST_CHECK_MSG(e == EY_OK, "%s", ey_err_detail());
        if (!e) TEST_CHECK_MSG(same_rec(&r, &recs[i], 10 + (uint64_t)i), "record %d differs", i);
    }
    ey_hid_rec r;
    TEST_CHECK(ey_hid_get(f, n, &r, &buf, &cap) == EY_ERR_ARG);
    TEST_CHECK(ey_hid_get(f, -1, &r, &buf, &cap) == EY_ERR_ARG);
    free(buf);
    ey_hid_close(f);
}

/* Expect ey_hid_open to fail with `want`. */
static void expect_open_fails(const char *dir, ey_err want, const char *what)
{
    ey_hid_file *f = NULL;
    ey_err e = ey_hid_open(dir, &f);
    TEST_CHECK_MSG(e == want && !f, "%s: got %s (%s)", what, ey_strerror(e),
                   e ? ey_err_detail() : "");
    if (e && g_test_failures == 0 && getenv("EYRIE_TEST_VERBOSE"))
        fprintf(stderr, "  %s -> %s\n", what, ey_err_detail());
    ey_hid_close(f);
}

static size_t rec_bytes(const own_rec *r)
{
    return EY_HID_HEADER_BYTES + ey_hid_payload_bytes(r->T, r->k, W);
}

/* A copy of the good records.bin with an edit applied, as directory g_dir/x. */
static const char *variant(const uint8_t *recs, size_t n, const char *meta_txt)
{
    static char d[300];
    snprintf(d, sizeof d, "%s/x", g_dir);
    mkdir(d, 0777);
    spit(pj(d, "records.bin"), recs, n);
    if (meta_txt) spit(pj(d, "meta.json"), meta_txt, strlen(meta_txt));
    return d;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void fix_crc(uint8_t *rec, size_t payload)
{
    put_u32(rec + 12, ey_hid_crc32(0, rec + EY_HID_HEADER_BYTES, payload));
}

int main(void)
{
    TEST_CHECK(ey_hid_crc32(0, "123456789", 9) == 0xCBF43926u);
    TEST_CHECK(ey_hid_crc32(ey_hid_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
    TEST_CHECK(ey_hid_payload_bytes(1, 1, 1) == 0 && ey_hid_payload_bytes(65537, 1, 1) == 0 &&
               ey_hid_payload_bytes(2, 0, 1) == 0 && ey_hid_payload_bytes(3, 2, 5) % 8 == 0);

    snprintf(g_dir, sizeof g_dir, "/tmp/eyrie-hid-XXXXXX");
    if (!mkdtemp(g_dir)) TEST_SKIP("mkdtemp: %s", strerror(errno));
    char dir[300];
    snprintf(dir, sizeof dir, "%s/h", g_dir);

    g_meta = (ey_hid_meta){.model = "tiny.gguf", .n_layer = 6, .Ht = 12, .V = 100, .n_aux = 3,
                           .aux_layers = {2, 3, 3}, .k = 5};
    enum { N = 6 };
    own_rec recs[N];
    const int Ts[N] = {2, 17, 40, 3, 64, 5};
    for (int i = 0; i < N; i++) make_rec(&recs[i], Ts[i]);

    /* ---- 1. write 4, read back */
    ey_hid_writer *w = NULL;
    long done = -1;
    ey_err e = ey_hid_writer_open(dir, &g_meta, false, &w, &done);
    TEST_CHECK_MSG(e == EY_OK && done == 0, "%s", ey_err_detail());
    if (e) return test_result();
    for (int i = 0; i < 4; i++) {
        ey_hid_rec v = view(&recs[i], 10 + (uint64_t)i);
        TEST_CHECK_MSG(ey_hid_append(w, &v) == EY_OK, "%s", ey_err_detail());
    }
    { /* bad records are refused */
        ey_hid_rec v = view(&recs[0], 0);
        v.T = 1;
        TEST_CHECK(ey_hid_append(w, &v) == EY_ERR_ARG);
        v = view(&recs[0], 0);
        v.k = 4;
        TEST_CHECK(ey_hid_append(w, &v) == EY_ERR_ARG);
        int32_t bad_ids[2] = {0, 100};
        v = view(&recs[0], 0);
        v.ids = bad_ids;
        TEST_CHECK(ey_hid_append(w, &v) == EY_ERR_ARG);
    }
    TEST_CHECK(ey_hid_writer_tokens(w) == 2 + 17 + 40 + 3);
    TEST_CHECK(ey_hid_writer_close(w) == EY_OK);
    check_dir(dir, recs, 4);

    /* resume=false on a directory with records is refused */
    w = NULL;
    TEST_CHECK(ey_hid_writer_open(dir, &g_meta, false, &w, &done) == EY_ERR_ARG && !w);
    /* meta mismatch on resume */
    ey_hid_meta m2 = g_meta;
    m2.k = 6;
    TEST_CHECK(ey_hid_writer_open(dir, &m2, true, &w, &done) == EY_ERR_ARG && !w);
    m2 = g_meta;
    snprintf(m2.model, sizeof m2.model, "other.gguf");
    TEST_CHECK(ey_hid_writer_open(dir, &m2, true, &w, &done) == EY_ERR_ARG && !w);
    m2 = g_meta;
    m2.aux_layers[1] = 4;
    TEST_CHECK(ey_hid_writer_open(dir, &m2, true, &w, &done) == EY_ERR_ARG && !w);
    m2 = g_meta;
    m2.Ht = 13;
    TEST_CHECK(ey_hid_writer_open(dir, &m2, true, &w, &done) == EY_ERR_ARG && !w);
    check_dir(dir, recs, 4); /* untouched */

    size_t n_good;
    uint8_t *good = slurp(pj(dir, "records.bin"), &n_good);
    size_t off[N + 1] = {0};
    for (int i = 0; i < 4; i++) off[i + 1] = off[i] + rec_bytes(&recs[i]);
    TEST_CHECK(n_good == off[4]);
    size_t n_meta;
    char *meta_txt = slurp(pj(dir, "meta.json"), &n_meta);

    /* ---- 2. torn tail: half of record 3 appended again */
    {
        uint8_t *b = malloc(n_good + rec_bytes(&recs[3]));
        memcpy(b, good, n_good);
        size_t half = rec_bytes(&recs[3]) / 2;
        memcpy(b + n_good, good + off[3], half);
        spit(pj(dir, "records.bin"), b, n_good + half);
        expect_open_fails(dir, EY_ERR_FORMAT, "torn tail");
        w = NULL;
        e = ey_hid_writer_open(dir, &g_meta, true, &w, &done);
        TEST_CHECK_MSG(e == EY_OK && done == 4, "%s", ey_err_detail());
        TEST_CHECK(ey_hid_writer_cut_bytes(w) == half);
        ey_hid_rec v = view(&recs[4], 14);
        TEST_CHECK(ey_hid_append(w, &v) == EY_OK);
        TEST_CHECK(ey_hid_writer_close(w) == EY_OK);
        check_dir(dir, recs, 5);
        /* a partial header, then a zero-filled tail */
        size_t n5;
        uint8_t *b5 = slurp(pj(dir, "records.bin"), &n5);
        b5 = realloc(b5, n5 + 4096);
        memset(b5 + n5, 0, 4096);
        memcpy(b5 + n5, "EYHR", 4);
        spit(pj(dir, "records.bin"), b5, n5 + 10);
        w = NULL;
        e = ey_hid_writer_open(dir, &g_meta, true, &w, &done);
        TEST_CHECK_MSG(e == EY_OK && done == 5 && ey_hid_writer_cut_bytes(w) == 10, "%s",
                       ey_err_detail());
        TEST_CHECK(ey_hid_writer_close(w) == EY_OK);
        memset(b5 + n5, 0, 4); /* zeros: a preallocated tail after a crash */
        spit(pj(dir, "records.bin"), b5, n5 + 4096);
        w = NULL;
        e = ey_hid_writer_open(dir, &g_meta, true, &w, &done);
        TEST_CHECK_MSG(e == EY_OK && done == 5 && ey_hid_writer_cut_bytes(w) == 4096, "%s",
                       ey_err_detail());
        v = view(&recs[5], 15);
        TEST_CHECK(ey_hid_append(w, &v) == EY_OK);
        TEST_CHECK(ey_hid_writer_close(w) == EY_OK);
        check_dir(dir, recs, 6);
        free(b5);
        free(b);
    }

    /* ---- 3. hostile files (variants of the good 4-record directory) */
    uint8_t *b = malloc(n_good);
    const char *d;
#define RESET() memcpy(b, good, n_good)
    RESET();
    memcpy(b + off[1], "EYHX", 4);
    d = variant(b, n_good, meta_txt);
    expect_open_fails(d, EY_ERR_FORMAT, "bad magic");
    w = NULL; /* damage before the last record: not resumable, file untouched */
    TEST_CHECK(ey_hid_writer_open(d, &g_meta, true, &w, &done) == EY_ERR_FORMAT && !w);
    {
        size_t n;
        uint8_t *again = slurp(pj(d, "records.bin"), &n);
        TEST_CHECK(n == n_good && !memcmp(again, b, n));
        free(again);
    }
    RESET();
    put_u32(b + off[1] + 4, 0xFFFFFFFFu);
    expect_open_fails(variant(b, n_good, meta_txt), EY_ERR_FORMAT, "T huge");
    RESET();
    put_u32(b + off[1] + 4, 65536); /* in the limits but past the end of the file */
    expect_open_fails(variant(b, n_good, meta_txt), EY_ERR_FORMAT, "T past the file");
    RESET();
    put_u32(b + off[0] + 8, 0x7FFFFFFFu);
    expect_open_fails(variant(b, n_good, meta_txt), EY_ERR_FORMAT, "k huge");
    RESET();
    b[off[0] + 24] = 1; /* reserved */
    expect_open_fails(variant(b, n_good, meta_txt), EY_ERR_FORMAT, "reserved");
    RESET();
    b[off[2] + EY_HID_HEADER_BYTES + 5] ^= 0x40;
    d = variant(b, n_good, meta_txt);
    expect_open_fails(d, EY_ERR_FORMAT, "crc mismatch");
    w = NULL;
    TEST_CHECK(ey_hid_writer_open(d, &g_meta, true, &w, &done) == EY_ERR_FORMAT && !w);
    RESET();
    expect_open_fails(variant(b, n_good - 9, meta_txt), EY_ERR_FORMAT, "truncated payload");
    expect_open_fails(variant(b, off[3] + 20, meta_txt), EY_ERR_FORMAT, "truncated header");
    /* a complete, CRC-valid directory that lies: values out of range */
    {
        size_t p1 = rec_bytes(&recs[1]) - EY_HID_HEADER_BYTES;
        uint8_t *pl = b + off[1] + EY_HID_HEADER_BYTES;
        put_u32(pl + 4 * 3, 100); /* ids[3] == V */
        fix_crc(b + off[1], p1);
        ey_hid_file *f = NULL;
        e = ey_hid_open(variant(b, n_good, meta_txt), &f);
        TEST_CHECK_MSG(e == EY_OK, "%s", ey_err_detail());
        if (!e) {
            float *buf = NULL;
            size_t cap = 0;
            ey_hid_rec r;
            TEST_CHECK(ey_hid_get(f, 0, &r, &buf, &cap) == EY_OK);
            TEST_CHECK(ey_hid_get(f, 1, &r, &buf, &cap) == EY_ERR_FORMAT);
            free(buf);
            ey_hid_close(f);
        }
        RESET();
        /* n_teach[0] = k + 1 */
        size_t nt = 4 * 17 + 20 + 4 * 17;
        put_u32(pl + nt, 6);
        fix_crc(b + off[1], p1);
        f = NULL;
        e = ey_hid_open(variant(b, n_good, meta_txt), &f);
        if (!e) {
            float *buf = NULL;
            size_t cap = 0;
            ey_hid_rec r;
            TEST_CHECK(ey_hid_get(f, 1, &r, &buf, &cap) == EY_ERR_FORMAT);
            free(buf);
            ey_hid_close(f);
        }
        RESET();
    }
    /* meta.json problems */
    expect_open_fails(variant(b, n_good, "{not json"), EY_ERR_FORMAT, "meta not JSON");
    {
        char *t = malloc(n_meta + 64);
        const char *edits[][2] = {
            {"\"topk\":\t5", "\"topk\":\t1000000000000"},
            {"\"vocab_size\":\t100", "\"vocab_size\":\t-3"},
            {"\"n_records\":\t4", "\"n_records\":\t5"},
            {"\"hidden_size\":\t12", "\"hidden_size\":\t12.5"},
            {"\"eyrie-hidden\"", "\"eyrie-other\""},
            {"\"n_aux\":\t3", "\"n_aux\":\t2"},
            {"\"f16\"", "\"bf16\""},
        };
        for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
            char *at = strstr(meta_txt, edits[i][0]);
            TEST_CHECK_MSG(at != NULL, "meta.json has no '%s'", edits[i][0]);
            if (!at) continue;
            size_t pre = (size_t)(at - meta_txt);
            memcpy(t, meta_txt, pre);
            strcpy(t + pre, edits[i][1]);
            strcat(t, at + strlen(edits[i][0]));
            ey_hid_file *f = NULL;
            e = ey_hid_open(variant(b, n_good, t), &f);
            TEST_CHECK_MSG(e != EY_OK && !f, "meta edit %zu accepted", i);
            ey_hid_close(f);
        }
        free(t);
    }
    {
        char d2[300];
        snprintf(d2, sizeof d2, "%s/none", g_dir);
        expect_open_fails(d2, EY_ERR_MISSING, "no directory");
        /* records.bin without meta.json: not resumable */
        mkdir(d2, 0777);
        spit(pj(d2, "records.bin"), good, n_good);
        w = NULL;
        TEST_CHECK(ey_hid_writer_open(d2, &g_meta, true, &w, &done) == EY_ERR_FORMAT && !w);
        unlink(pj(d2, "records.bin"));
        rmdir(d2);
    }

    free(b);
    free(good);
    free(meta_txt);
    for (int i = 0; i < N; i++) free_rec(&recs[i]);
    char x[300];
    snprintf(x, sizeof x, "%s/x", g_dir);
    unlink(pj(x, "records.bin"));
    unlink(pj(x, "meta.json"));
    rmdir(x);
    unlink(pj(dir, "records.bin"));
    unlink(pj(dir, "meta.json"));
    rmdir(dir);
    rmdir(g_dir);
    return test_result();
}
