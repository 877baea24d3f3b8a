/* Multimodal drafter inputs (issue 3 item 7): input embeddings instead of
 * token ids, and 3-row M-RoPE positions, on tiny random drafters.
 *   test_e3_mm TARGET_DIR
 *
 * What is checked:
 *  - embeds == the drafter's own token embeddings gives bit-identical
 *    logits and features to the token path; other embeddings change them;
 *  - M-RoPE with t = h = w equals the 1-D drafter bit for bit (sections
 *    partition the frequencies; angle 0 is an exact identity);
 *  - all pairs in one section = 1-D RoPE driven by that row;
 *  - interleaved and contiguous layouts differ, and the section maps match
 *    Qwen3-VL [24,20,20] / Qwen2.5-VL [16,24,24] by hand-counted tables;
 *  - a 1-D drafter given pos3 uses the temporal row (vLLM);
 *  - bad mrope_section is refused at load with a message. */
#include "spec_util.h"

static ey_model *g_m;
static const char *g_base; /* random drafter in the original layout */

static void patch_mrope(const char *dir, const char *section_json, int interleaved)
{
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", g_base);
    FILE *f = fopen(path, "rb");
    TEST_CHECK(f != NULL);
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    TEST_CHECK(root != NULL);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "rope_scaling");
    cJSON *rs = cJSON_AddObjectToObject(root, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "default");
    cJSON_AddItemToObject(rs, "mrope_section", cJSON_Parse(section_json));
    if (interleaved >= 0) cJSON_AddBoolToObject(rs, "mrope_interleaved", interleaved);
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp '%s/model.safetensors' '%s/'", g_base, dir);
    TEST_CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "wb");
    TEST_CHECK(f && fwrite(txt, 1, strlen(txt), f) == strlen(txt));
    if (f) fclose(f);
    free(txt);
}

static ey_eagle3 *load(const char *dir, const ey_eagle3_opts *o)
{
    ey_eagle3 *d = NULL;
    ey_err e = ey_eagle3_load(dir, g_m, o, &d);
    TEST_CHECK_MSG(!e, "%s: %s", dir, ey_err_detail());
    if (e) exit(1);
    return d;
}

enum { T = 7 };

typedef struct run_out {
    float *logits, *feat;
} run_out;

/* One fresh draft forward over T rows (features fixed by seed). */
static run_out run(ey_eagle3 *d, const int32_t *tok, const float *embeds, const int32_t *pos,
                   const int32_t *pos3)
{
    ey_eagle3_ctx *c = NULL;
    ey_err e = ey_eagle3_ctx_create(d, 64, 16, T, &c);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    ey_seq s;
    ey_seq_init(&s, 64);
    const int FW = ey_eagle3_feat_width(d), H = d->cfg.H, Vd = d->cfg.Vd;
    float *feat = malloc((size_t)T * FW * sizeof *feat);
    uint64_t st = 12345;
    for (int i = 0; i < T * FW; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        feat[i] = (float)((int)(st >> 40) % 2001 - 1000) / 500.0f;
    }
    run_out o = {malloc((size_t)T * Vd * sizeof(float)), malloc((size_t)T * H * sizeof(float))};
    ey_draft_in in = {.T = T, .tokens = tok, .feat = feat, .fused = true, .pos = pos,
                      .pos3 = pos3, .embeds = embeds, .n_out = T, .logits = o.logits,
                      .feat_out = o.feat};
    e = ey_eagle3_forward(c, &s, &in);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    ey_seq_release(&c->kv, &s);
    ey_eagle3_ctx_free(c);
    free(feat);
    return o;
}

static bool same(const ey_eagle3 *d, run_out a, run_out b)
{
    return !memcmp(a.logits, b.logits, (size_t)T * d->cfg.Vd * sizeof(float)) &&
           !memcmp(a.feat, b.feat, (size_t)T * d->cfg.H * sizeof(float));
}

static void drop(run_out o)
{
    free(o.logits);
    free(o.feat);
}

static const int32_t k_tok[T] = {5, 17, 3, 44, 9, 28, 11};
static const int32_t k_pos[T] = {0, 1, 2, 3, 4, 5, 6};
/* an image grid: t stays, h/w sweep, then text continues */
static const int32_t k_pos3[3 * T] = {0, 1, 1, 1, 1, 5, 6, /* t */
                                      0, 1, 1, 2, 2, 5, 6, /* h */
                                      0, 1, 2, 1, 2, 5, 6}; /* w */

static void test_embeds(void)
{
    ey_eagle3 *d = load(g_base, NULL);
    ey_eagle3_ctx *c = NULL;
    TEST_CHECK(!ey_eagle3_ctx_create(d, 64, 16, 4, &c));
    const int H = d->cfg.H;
    float *emb = malloc((size_t)T * H * sizeof *emb);
    ey_err e = ey_eagle3_embed_rows(c, k_tok, T, emb);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    int32_t bad = d->cfg.V;
    TEST_CHECK(ey_eagle3_embed_rows(c, &bad, 1, emb + 0) == EY_ERR_ARG);
    TEST_CHECK(ey_eagle3_embed_rows(c, k_tok, 17, emb) == EY_ERR_ARG);
    ey_eagle3_ctx_free(c);

    run_out a = run(d, k_tok, NULL, k_pos, NULL);
    run_out b = run(d, k_tok, emb, k_pos, NULL);
    run_out b2 = run(d, NULL, emb, k_pos, NULL); /* no ids at all (TTS) */
    TEST_CHECK_MSG(same(d, a, b), "embeds == own embeddings must equal the token path");
    TEST_CHECK_MSG(same(d, a, b2), "embeds without tokens must equal the token path");
    for (int i = 0; i < H; i++) emb[3 * H + i] *= -0.5f; /* a "speech embedding" on row 3 */
    run_out x = run(d, k_tok, emb, k_pos, NULL);
    TEST_CHECK_MSG(!memcmp(a.logits, x.logits, 3 * (size_t)d->cfg.Vd * sizeof(float)),
                   "rows before the changed embedding must not move (causal)");
    TEST_CHECK_MSG(memcmp(a.logits + 3 * (size_t)d->cfg.Vd, x.logits + 3 * (size_t)d->cfg.Vd,
                          (size_t)d->cfg.Vd * sizeof(float)),
                   "the changed embedding must change its row");
    drop(a), drop(b), drop(b2), drop(x);
    free(emb);
    ey_eagle3_free(d);
}

static void test_mrope_maps(void)
{
    /* Qwen3-VL: [24,20,20] interleaved on 64 pairs: t at i%3==0 (0..63) and
     * 60..63; h at 1,4,..,58; w at 2,5,..,59 */
    int sec3[3] = {24, 20, 20}, cnt[3] = {0};
    for (int i = 0; i < 64; i++) {
        int r = ey_eagle3_mrope_row(sec3, true, i);
        cnt[r]++;
        int want = i >= 60 ? 0 : i % 3;
        TEST_CHECK_MSG(r == want, "interleaved pair %d: row %d, want %d", i, r, want);
    }
    TEST_CHECK(cnt[0] == 24 && cnt[1] == 20 && cnt[2] == 20);
    /* Qwen2.5-VL contiguous [16,24,24]: 0..15 t, 16..39 h, 40..63 w */
    int sec25[3] = {16, 24, 24};
    for (int i = 0; i < 64; i++) {
        int want = i < 16 ? 0 : i < 40 ? 1 : 2;
        TEST_CHECK(ey_eagle3_mrope_row(sec25, false, i) == want);
    }
}

static void test_mrope(void)
{
    ey_eagle3 *plain = load(g_base, NULL);
    const int hp = plain->cfg.head_dim / 2; /* 8 pairs on the tiny target */
    TEST_CHECK_MSG(hp == 8, "fixture head_dim changed (%d pairs)", hp);
    char sec[64];

    /* (1) t = h = w: the M-RoPE drafter equals the 1-D one, both layouts */
    snprintf(sec, sizeof sec, "[2, 3, 3]");
    const char *dm = tmp_dir("mrope-233");
    patch_mrope(dm, sec, 1);
    ey_eagle3 *mi = load(dm, NULL);
    TEST_CHECK(mi->cfg.mrope && mi->cfg.mrope_interleaved);
    int32_t eq3[3 * T];
    for (int r = 0; r < 3; r++) memcpy(eq3 + r * T, k_pos, sizeof k_pos);
    run_out a = run(plain, k_tok, NULL, k_pos, NULL);
    run_out b = run(mi, k_tok, NULL, NULL, eq3);
    run_out b1 = run(mi, k_tok, NULL, k_pos, NULL); /* pos only: t = h = w */
    TEST_CHECK_MSG(same(plain, a, b), "M-RoPE with t=h=w must equal 1-D RoPE");
    TEST_CHECK_MSG(same(plain, a, b1), "M-RoPE given 1-D positions must equal 1-D RoPE");
    /* (2) distinct rows: interleaved vs contiguous differ, and both differ
     * from the 1-D drafter */
    run_out ci = run(mi, k_tok, NULL, NULL, k_pos3);
    ey_eagle3_opts oc = {.mrope_layout = EY_E3_MROPE_CONTIGUOUS};
    ey_eagle3 *mc = load(dm, &oc);
    TEST_CHECK(mc->cfg.mrope && !mc->cfg.mrope_interleaved);
    run_out cc = run(mc, k_tok, NULL, NULL, k_pos3);
    TEST_CHECK_MSG(!same(plain, ci, cc), "interleaved and contiguous layouts must differ");
    TEST_CHECK_MSG(!same(plain, a, ci), "distinct h/w rows must change the output");
    /* rows 0 and 5, 6 have t = h = w and no earlier row differs for row 0 */
    TEST_CHECK(!memcmp(a.logits, ci.logits, (size_t)plain->cfg.Vd * sizeof(float)));
    drop(b), drop(b1), drop(ci), drop(cc);
    ey_eagle3_free(mi);
    ey_eagle3_free(mc);

    /* (3) every pair in one section = 1-D RoPE driven by that row */
    const char *secs[3] = {"[8, 0, 0]", "[0, 8, 0]", "[0, 0, 8]"};
    for (int r = 0; r < 3; r++) {
        char name[32];
        snprintf(name, sizeof name, "mrope-one-%d", r);
        const char *dir = tmp_dir(name);
        patch_mrope(dir, secs[r], 0);
        ey_eagle3 *m1 = load(dir, NULL);
        run_out got = run(m1, k_tok, NULL, NULL, k_pos3);
        run_out want = run(plain, k_tok, NULL, k_pos3 + r * T, NULL);
        TEST_CHECK_MSG(same(plain, got, want), "section only in row %d must equal 1-D RoPE on it",
                       r);
        drop(got), drop(want);
        ey_eagle3_free(m1);
    }

    /* (4) a 1-D drafter given pos3 uses the temporal row */
    run_out p3 = run(plain, k_tok, NULL, NULL, k_pos3);
    run_out p0 = run(plain, k_tok, NULL, k_pos3, NULL);
    TEST_CHECK_MSG(same(plain, p3, p0), "1-D drafter must use row 0 of pos3");
    drop(p3), drop(p0), drop(a);

    /* (5) refusals */
    const char *bad[] = {"[2, 3, 2]", "[2, 3]", "[2, -1, 7]", "[2.5, 2.5, 3]", "\"x\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char name[32];
        snprintf(name, sizeof name, "mrope-bad-%zu", i);
        const char *dir = tmp_dir(name);
        patch_mrope(dir, bad[i], -1);
        ey_eagle3 *x = NULL;
        ey_err_clear();
        ey_err e = ey_eagle3_load(dir, g_m, NULL, &x);
        TEST_CHECK_MSG(e == EY_ERR_FORMAT && strstr(ey_err_detail(), "mrope_section"),
                       "%s: got %s (%s)", bad[i], ey_strerror(e), ey_err_detail());
        TEST_CHECK(x == NULL);
    }
    ey_eagle3_free(plain);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TARGET_DIR\n", argv[0]);
        return 2;
    }
    ey_backend *be = cpu_backend(1);
    g_m = load_model(be, argv[1]);
    g_base = strdup(tmp_dir("base"));
    ey_eagle3_init_opts o = {.layout = EY_E3_LAYOUT_EAGLE, .draft_vocab = g_m->cfg.n_vocab / 2,
                             .seed = 7, .random_vocab = true};
    if (ey_eagle3_write_random(g_m, g_base, &o)) {
        fprintf(stderr, "write drafter: %s\n", ey_err_detail());
        return 1;
    }
    test_embeds();
    test_mrope_maps();
    test_mrope();
    free((void *)g_base);
    ey_model_free(g_m);
    ey_backend_destroy(be);
    tmp_cleanup();
    return test_result();
}
