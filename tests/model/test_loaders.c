/* Hostile-input tests for the GGUF and safetensors readers and the model
 * loader: every truncation, bit flips, oversized counts and headers must
 * give an error (never a crash, hang or oversize allocation).
 *
 *   test_loaders GGUF_FILE SAFETENSORS_DIR */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/gguf.h"
#include "../../core/model.h"
#include "../../core/safetensors.h"
#include "test.h"

static void *slurp(const char *path, size_t *n)
{
    char *buf;
    if (ey_read_file(path, 64u << 20, &buf, n)) return NULL;
    return buf;
}

static void test_gguf_truncations(const uint8_t *img, size_t n)
{
    ey_gguf *g;
    TEST_CHECK(ey_gguf_parse(img, n, &g) == EY_OK);
    size_t data_off = g ? g->data_off : n, end = data_off;
    for (int64_t t = 0; g && t < g->n_tensors; t++) {
        size_t e = (size_t)((const uint8_t *)g->tensors[t].data - img) + g->tensors[t].bytes;
        if (e > end) end = e;
    }
    ey_gguf_close(g);
    /* every prefix: header truncations must fail; any prefix shorter than the
     * last tensor's end must fail too */
    int bad_ok = 0;
    for (size_t len = 0; len < end; len += (len < data_off + 64 ? 1 : 97)) {
        ey_err e = ey_gguf_parse(img, len, &g);
        if (e == EY_OK) {
            bad_ok++;
            ey_gguf_close(g);
        } else {
            TEST_CHECK(*ey_err_detail() != 0);
        }
    }
    TEST_CHECK_MSG(bad_ok == 0, "%d truncated images parsed as valid", bad_ok);
}

static void test_gguf_bitflips(const uint8_t *img, size_t n, size_t hdr)
{
    uint8_t *c = malloc(n);
    srand(1234);
    int parsed = 0;
    for (int i = 0; i < 4000; i++) {
        memcpy(c, img, n);
        size_t pos = (size_t)rand() % hdr;
        c[pos] ^= (uint8_t)(1u << (rand() % 8));
        if (i % 3 == 0) c[(size_t)rand() % hdr] = 0xff;
        ey_gguf *g;
        if (ey_gguf_parse(c, n, &g) == EY_OK) {
            parsed++;
            /* whatever parsed must be internally consistent */
            for (int64_t t = 0; t < g->n_tensors; t++) {
                const ey_gguf_tensor *ti = &g->tensors[t];
                TEST_CHECK((const uint8_t *)ti->data >= c &&
                           (const uint8_t *)ti->data + ti->bytes <= c + n);
            }
            ey_gguf_close(g);
        }
    }
    fprintf(stderr, "gguf bit flips: %d of 4000 still parse (consistently)\n", parsed);
    free(c);
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void test_gguf_limits(void)
{
    uint8_t h[64] = {0};
    ey_gguf *g;
    put_u32(h, 0x46554747u);
    put_u32(h + 4, 3);
    put_u64(h + 8, UINT64_MAX); /* tensor count */
    put_u64(h + 16, 0);
    TEST_CHECK(ey_gguf_parse(h, sizeof h, &g) == EY_ERR_LIMIT);
    put_u64(h + 8, 0);
    put_u64(h + 16, (uint64_t)1 << 40); /* kv count */
    TEST_CHECK(ey_gguf_parse(h, sizeof h, &g) == EY_ERR_LIMIT);
    put_u32(h + 4, 1);
    TEST_CHECK(ey_gguf_parse(h, sizeof h, &g) == EY_ERR_UNSUPPORTED);
    put_u32(h, 0x12345678u);
    TEST_CHECK(ey_gguf_parse(h, sizeof h, &g) == EY_ERR_FORMAT);
    /* one kv whose string length is huge */
    put_u32(h, 0x46554747u);
    put_u32(h + 4, 3);
    put_u64(h + 16, 1);
    put_u64(h + 24, (uint64_t)1 << 62);
    TEST_CHECK(ey_gguf_parse(h, sizeof h, &g) == EY_ERR_FORMAT);
    TEST_CHECK(ey_gguf_parse(h, 0, &g) == EY_ERR_FORMAT);
}

static void test_safetensors(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t n;
    uint8_t *img = slurp(path, &n);
    TEST_CHECK_MSG(img != NULL, "read %s", path);
    if (!img) return;
    ey_safetensors st = {0};
    TEST_CHECK(ey_st_parse_into(&st, img, n, "ok") == EY_OK);
    int64_t hlen;
    memcpy(&hlen, img, 8);
    for (int64_t i = 0; i < st.n_tensors; i++) free(st.tensors[i].name);
    free(st.tensors);
    int bad_ok = 0;
    for (size_t len = 0; len < n; len += (len < (size_t)hlen + 16 ? 1 : 101)) {
        ey_safetensors s2 = {0};
        if (ey_st_parse_into(&s2, img, len, "trunc") == EY_OK) bad_ok++;
        for (int64_t i = 0; i < s2.n_tensors; i++) free(s2.tensors[i].name);
        free(s2.tensors);
    }
    TEST_CHECK_MSG(bad_ok == 0, "%d truncated safetensors parsed as valid", bad_ok);
    /* oversized header length */
    uint64_t big = (uint64_t)1 << 40;
    uint8_t *c = malloc(n);
    memcpy(c, img, n);
    memcpy(c, &big, 8);
    ey_safetensors s3 = {0};
    TEST_CHECK(ey_st_parse_into(&s3, c, n, "big") == EY_ERR_LIMIT);
    /* header bit flips */
    srand(99);
    for (int i = 0; i < 3000; i++) {
        memcpy(c, img, n);
        size_t pos = 8 + (size_t)rand() % (size_t)hlen;
        c[pos] = (uint8_t)rand();
        ey_safetensors s4 = {0};
        ey_st_parse_into(&s4, c, n, "flip");
        for (int64_t k = 0; k < s4.n_tensors; k++) {
            TEST_CHECK((const uint8_t *)s4.tensors[k].data + s4.tensors[k].bytes <= c + n);
            free(s4.tensors[k].name);
        }
        free(s4.tensors);
    }
    free(c);
    free(img);
}

static void test_model_errors(const uint8_t *img, size_t n)
{
    ey_backend *be;
    TEST_CHECK(ey_backend_cpu_create(1, &be) == EY_OK);
    char tmp[] = "/tmp/eyrie-test-XXXXXX";
    int fd = mkstemp(tmp);
    TEST_CHECK(fd >= 0);
    /* truncated in the middle of the tensor data */
    TEST_CHECK(write(fd, img, n * 3 / 4) == (ssize_t)(n * 3 / 4));
    close(fd);
    ey_model *m;
    ey_err e = ey_model_load(tmp, be, &m);
    TEST_CHECK(e == EY_ERR_FORMAT);
    TEST_CHECK_MSG(strstr(ey_err_detail(), "past the end") != NULL, "detail: %s",
                   ey_err_detail());
    unlink(tmp);
    TEST_CHECK(ey_model_load("/nonexistent/model.gguf", be, &m) == EY_ERR_IO);
    ey_backend_destroy(be);
}

/* A transformers-5 style config with only rope_parameters (no top-level
 * rope_theta / rope_scaling) loads with the same RoPE settings. */
static void test_rope_parameters(const char *dir)
{
    char tmpl[] = "/tmp/eyrie-rope-XXXXXX", path[512], cmd[1200];
    if (!mkdtemp(tmpl)) return;
    snprintf(cmd, sizeof cmd, "cp -r '%s'/. '%s'/", dir, tmpl);
    TEST_CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/config.json", tmpl);
    size_t n;
    char *txt = slurp(path, &n);
    cJSON *j = txt ? cJSON_ParseWithLength(txt, n) : NULL;
    TEST_CHECK(j != NULL);
    free(txt);
    if (!j) return;
    TEST_CHECK(cJSON_GetObjectItemCaseSensitive(j, "rope_parameters") != NULL);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "rope_theta");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "rope_scaling");
    char *out = cJSON_Print(j);
    cJSON_Delete(j);
    FILE *f = fopen(path, "wb");
    TEST_CHECK(f && fwrite(out, 1, strlen(out), f) == strlen(out));
    if (f) fclose(f);
    free(out);
    ey_backend *be;
    TEST_CHECK(ey_backend_cpu_create(1, &be) == EY_OK);
    ey_model *a = NULL, *b = NULL;
    TEST_CHECK_MSG(ey_model_load(dir, be, &a) == EY_OK, "%s", ey_err_detail());
    TEST_CHECK_MSG(ey_model_load(tmpl, be, &b) == EY_OK, "%s", ey_err_detail());
    if (a && b) {
        TEST_CHECK(a->cfg.rope_theta == b->cfg.rope_theta);
        TEST_CHECK_MSG(!strcmp(a->cfg.rope_scaling, b->cfg.rope_scaling) &&
                           a->cfg.rope_factor == b->cfg.rope_factor,
                       "rope_parameters: scaling %s vs %s", b->cfg.rope_scaling,
                       a->cfg.rope_scaling);
    }
    ey_model_free(a);
    ey_model_free(b);
    ey_backend_destroy(be);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    TEST_CHECK(system(cmd) == 0);
}

/* The CPU backend repacks quantized matmul weights (R8): with and without
 * (EYRIE_REPACK=0) the model reads back the same rows, through
 * ey_weight_rows_f32 and through the embedding lookup of a forward. */
static void test_repacked_rows(const char *path)
{
    ey_backend *be = NULL;
    ey_model *m[2] = {0};
    TEST_CHECK(ey_backend_cpu_create(1, &be) == EY_OK);
    if (!be) return;
    for (int i = 0; i < 2; i++) {
        if (i) setenv("EYRIE_REPACK", "0", 1);
        TEST_CHECK_MSG(ey_model_load(path, be, &m[i]) == EY_OK, "%s: %s", path, ey_err_detail());
        unsetenv("EYRIE_REPACK");
    }
    if (m[0] && m[1]) {
        const ey_model_config *c = &m[0]->cfg;
        TEST_CHECK(ey_dtype_is_r8(m[0]->layers[0].wq.type) && !ey_dtype_is_r8(m[1]->layers[0].wq.type));
        TEST_CHECK(ey_dtype_r8_base(m[0]->layers[0].wq.type) == m[1]->layers[0].wq.type);
        TEST_CHECK(c->tied_embeddings && ey_dtype_is_r8(m[0]->tok_embd.type));
        const int32_t rows[] = {0, 1, 7, 8, 9, 100, c->n_vocab - 1, c->n_vocab - 8};
        const int nr = (int)(sizeof rows / sizeof *rows), H = c->n_embd;
        float *a = malloc(sizeof(float) * (size_t)nr * H), *b = malloc(sizeof(float) * (size_t)nr * H);
        TEST_CHECK(!ey_weight_rows_f32(be, &m[0]->tok_embd, H, rows, nr, a));
        TEST_CHECK(!ey_weight_rows_f32(be, &m[1]->tok_embd, H, rows, nr, b));
        TEST_CHECK(!memcmp(a, b, sizeof(float) * (size_t)nr * H));
        /* a whole layer matrix, row by row */
        const ey_weight *w0 = &m[0]->layers[0].w_gate, *w1 = &m[1]->layers[0].w_gate;
        float *ra = malloc(sizeof(float) * (size_t)w0->N * w0->K), *rb = malloc(sizeof(float) * (size_t)w0->N * w0->K);
        TEST_CHECK(!ey_weight_rows_f32(be, w0, w0->K, NULL, (int)w0->N, ra));
        TEST_CHECK(!ey_weight_rows_f32(be, w1, w1->K, NULL, (int)w1->N, rb));
        TEST_CHECK(!memcmp(ra, rb, sizeof(float) * (size_t)w0->N * w0->K));
        free(ra);
        free(rb);
        free(a);
        free(b);
    }
    ey_model_free(m[0]);
    ey_model_free(m[1]);
    be->iface.destroy(be);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s GGUF SAFETENSORS_DIR [Q4_1_GGUF]\n", argv[0]);
        return 2;
    }
    size_t n;
    uint8_t *img = slurp(argv[1], &n);
    TEST_CHECK_MSG(img != NULL, "read %s", argv[1]);
    if (!img) return test_result();
    ey_gguf *g;
    TEST_CHECK(ey_gguf_parse(img, n, &g) == EY_OK);
    size_t hdr = g ? g->data_off : 64;
    ey_gguf_close(g);
    test_gguf_limits();
    test_gguf_truncations(img, n);
    test_gguf_bitflips(img, n, hdr);
    test_model_errors(img, n);
    test_safetensors(argv[2]);
    test_rope_parameters(argv[2]);
    if (argc > 3) test_repacked_rows(argv[3]);
    free(img);
    return test_result();
}
