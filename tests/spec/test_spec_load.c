/* Drafter loading: every layout the writer produces round-trips with its
 * flags and aux-id conventions; hostile files give errors, never crashes.
 *   test_spec_load TARGET_DIR */
#include "spec_util.h"
#include "../../core/safetensors.h"
#include "../../core/spec_cli.h"

static ey_model *g_m;

static ey_err write_and_load(const char *name, const ey_eagle3_init_opts *o, ey_eagle3 **d)
{
    const char *dir = tmp_dir(name);
    ey_err e = ey_eagle3_write_random(g_m, dir, o);
    if (e) {
        fprintf(stderr, "write %s: %s\n", name, ey_err_detail());
        return e;
    }
    return ey_eagle3_load(dir, g_m, NULL, d);
}

static void test_layouts(void)
{
    const int N = g_m->cfg.n_layer, V = g_m->cfg.n_vocab, H = g_m->cfg.n_embd;
    /* original layout, default ids, random sorted vocab subset */
    ey_eagle3_init_opts o = {.layout = EY_E3_LAYOUT_EAGLE, .draft_vocab = V / 2, .seed = 1,
                             .random_vocab = true};
    ey_eagle3 *d = NULL;
    ey_err e = write_and_load("eagle", &o, &d);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    if (d) {
        TEST_CHECK(d->cfg.layout == EY_E3_LAYOUT_EAGLE);
        TEST_CHECK(d->cfg.Vd == V / 2 && d->cfg.V == V && d->cfg.H == H && d->cfg.Ht == H);
        TEST_CHECK(!d->own_embed && d->own_head);
        TEST_CHECK(d->cfg.n_aux == 3 && !d->cfg.aux_from_config);
        int def[3] = {2, N / 2, N - 3};
        for (int i = 0; i < 3; i++)
            TEST_CHECK(d->cfg.aux_layers[i] == (def[i] < 0 ? 0 : def[i]));
        bool inc = true;
        for (int i = 1; i < d->cfg.Vd; i++) inc &= d->d2t[i] > d->d2t[i - 1];
        TEST_CHECK(inc && d->d2t[0] >= 0 && d->d2t[d->cfg.Vd - 1] < V);
        TEST_CHECK(!d->cfg.norm_before_residual && !d->cfg.fc_norm && !d->cfg.norm_output);
        ey_eagle3_free(d);
        d = NULL;
    }
    /* SpecForge: embed copied in, output-of-layer ids in eagle_config (+1) */
    int ids[3] = {1, 2, N};
    o = (ey_eagle3_init_opts){.layout = EY_E3_LAYOUT_SPECFORGE, .seed = 2, .write_aux_ids = true,
                              .aux_ids = ids, .fc_norm = true, .dtype = EY_BF16};
    e = write_and_load("specforge", &o, &d);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    if (d) {
        TEST_CHECK(d->cfg.layout == EY_E3_LAYOUT_SPECFORGE && d->own_embed && d->cfg.fc_norm);
        TEST_CHECK(d->cfg.aux_from_config);
        TEST_CHECK(d->cfg.aux_config[0] == 0 && d->cfg.aux_config[2] == N - 1);
        for (int i = 0; i < 3; i++) TEST_CHECK(d->cfg.aux_layers[i] == ids[i]);
        TEST_CHECK(d->cfg.Vd == V && d->d2t[V - 1] == V - 1);
        ey_eagle3_free(d);
        d = NULL;
    }
    /* speculators: layers.0.*, input-of-layer ids verbatim, flags */
    o = (ey_eagle3_init_opts){.layout = EY_E3_LAYOUT_SPECULATORS, .seed = 3, .write_aux_ids = true,
                              .aux_ids = ids, .norm_before_residual = true,
                              .norm_before_fc = true, .norm_output = true, .dtype = EY_F16,
                              .draft_vocab = 17, .random_vocab = true};
    e = write_and_load("speculators", &o, &d);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    if (d) {
        TEST_CHECK(d->cfg.layout == EY_E3_LAYOUT_SPECULATORS);
        TEST_CHECK(d->cfg.norm_before_residual && d->cfg.norm_before_fc && d->cfg.norm_output);
        for (int i = 0; i < 3; i++) TEST_CHECK(d->cfg.aux_layers[i] == ids[i]);
        TEST_CHECK(d->cfg.Vd == 17);
        ey_eagle3_free(d);
        d = NULL;
    }
    /* AngelSlim: tie_word_embeddings true is ignored with a [Vd,H] lm_head */
    o = (ey_eagle3_init_opts){.layout = EY_E3_LAYOUT_ANGELSLIM, .seed = 4, .draft_vocab = 31,
                              .write_aux_ids = true, .aux_ids = ids};
    e = write_and_load("angelslim", &o, &d);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    if (d) {
        TEST_CHECK(d->cfg.layout == EY_E3_LAYOUT_ANGELSLIM && d->own_head && d->lm_head.N == 31);
        for (int i = 0; i < 3; i++) TEST_CHECK(d->cfg.aux_layers[i] == ids[i]);
        ey_eagle3_free(d);
        d = NULL;
    }
    /* convention override: the same SpecForge file read as input-of-layer */
    ey_eagle3_opts lo = {.aux_conv = EY_E3_AUX_INPUT, .rope_theta = 5000};
    e = ey_eagle3_load(tmp_dir("specforge"), g_m, &lo, &d);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    if (d) {
        TEST_CHECK(d->cfg.aux_layers[0] == 0 && d->cfg.aux_layers[1] == 1);
        TEST_CHECK(d->cfg.rope_theta == 5000);
        ey_eagle3_free(d);
        d = NULL;
    }
}

/* ---------------------------------------------------------------- hostile */

static char *slurp(const char *path, size_t *n)
{
    char *b;
    return ey_read_file(path, 1u << 30, &b, n) ? NULL : b;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

/* Byte offset of tensor `name`'s data in a safetensors image. */
static size_t tensor_off(const char *img, const char *name)
{
    uint64_t hl;
    memcpy(&hl, img, 8);
    cJSON *h = cJSON_ParseWithLength(img + 8, (size_t)hl);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    size_t off = 8 + (size_t)hl + (size_t)o->child->valuedouble;
    cJSON_Delete(h);
    return off;
}

static void expect_err(const char *dir, ey_err want, const char *needle)
{
    ey_eagle3 *d = NULL;
    ey_err_clear();
    ey_err e = ey_eagle3_load(dir, g_m, NULL, &d);
    TEST_CHECK_MSG(e == want, "%s: got %s (%s), want %s", dir, ey_strerror(e), ey_err_detail(),
                   ey_strerror(want));
    TEST_CHECK_MSG(!needle || strstr(ey_err_detail(), needle), "%s: message '%s' lacks '%s'", dir,
                   ey_err_detail(), needle);
    TEST_CHECK(d == NULL);
    ey_eagle3_free(d);
}

static void test_hostile(void)
{
    const int V = g_m->cfg.n_vocab;
    ey_eagle3_init_opts o = {.layout = EY_E3_LAYOUT_EAGLE, .draft_vocab = V / 4, .seed = 9,
                             .random_vocab = true};
    const char *base = tmp_dir("base");
    TEST_CHECK(!ey_eagle3_write_random(g_m, base, &o));
    char path[600], cfg[600];
    snprintf(path, sizeof path, "%s/model.safetensors", base);
    snprintf(cfg, sizeof cfg, "%s/config.json", base);
    size_t n, nc;
    char *img = slurp(path, &n), *conf = slurp(cfg, &nc);
    TEST_CHECK(img && conf);
    if (!img || !conf) return;
    char p2[700];
    const char *dir;
#define CASE(name)                                                                               \
    dir = tmp_dir(name);                                                                         \
    snprintf(p2, sizeof p2, "%s/config.json", dir);                                              \
    spit(p2, conf, nc);                                                                          \
    snprintf(p2, sizeof p2, "%s/model.safetensors", dir)

    /* truncated weights, at several cut points */
    size_t cuts[] = {0, 4, 8, 100, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "trunc%zu", i);
        CASE(nm);
        spit(p2, img, cuts[i]);
        ey_eagle3 *d = NULL;
        ey_err e = ey_eagle3_load(dir, g_m, NULL, &d);
        TEST_CHECK_MSG(e == EY_ERR_FORMAT, "cut %zu: %s", cuts[i], ey_strerror(e));
        ey_eagle3_free(d);
    }
    /* d2t not monotone */
    {
        CASE("d2t_order");
        char *b = malloc(n);
        memcpy(b, img, n);
        int64_t *d2t = (int64_t *)(b + tensor_off(b, "d2t"));
        int64_t a0, a1;
        memcpy(&a0, &d2t[3], 8);
        memcpy(&a1, &d2t[4], 8);
        a1 = a0 - 2; /* target(4) = 4 + a1 < target(3) */
        memcpy(&d2t[4], &a1, 8);
        spit(p2, b, n);
        free(b);
        expect_err(dir, EY_ERR_FORMAT, "monotone");
    }
    /* d2t pointing outside the vocab (absolute ids instead of offsets) */
    {
        CASE("d2t_range");
        char *b = malloc(n);
        memcpy(b, img, n);
        int64_t *d2t = (int64_t *)(b + tensor_off(b, "d2t"));
        int64_t big = V;
        memcpy(&d2t[V / 4 - 1], &big, 8);
        spit(p2, b, n);
        free(b);
        expect_err(dir, EY_ERR_FORMAT, "d2t");
    }
    /* t2d disagreeing with d2t */
    {
        CASE("t2d");
        char *b = malloc(n);
        memcpy(b, img, n);
        uint8_t *t2d = (uint8_t *)(b + tensor_off(b, "t2d"));
        for (int v = 0; v < V; v++) t2d[v] = 0;
        t2d[0] = 1;
        spit(p2, b, n);
        free(b);
        expect_err(dir, EY_ERR_FORMAT, "t2d");
    }
    /* wrong shapes: the config promises another intermediate size */
    {
        dir = tmp_dir("shape");
        snprintf(p2, sizeof p2, "%s/model.safetensors", dir);
        spit(p2, img, n);
        cJSON *j = cJSON_Parse(conf);
        cJSON_ReplaceItemInObject(j, "intermediate_size", cJSON_CreateNumber(g_m->cfg.n_ff + 1));
        char *s = cJSON_Print(j);
        snprintf(p2, sizeof p2, "%s/config.json", dir);
        spit(p2, s, strlen(s));
        free(s);
        cJSON_Delete(j);
        expect_err(dir, EY_ERR_SHAPE, "mlp.gate_proj");
    }
    /* num_hidden_layers: a config carrying the target's count (eagle3.md
     * §1.2) loads; tensors of a second layer are refused */
    {
        dir = tmp_dir("nlayers");
        snprintf(p2, sizeof p2, "%s/model.safetensors", dir);
        spit(p2, img, n);
        cJSON *j = cJSON_Parse(conf);
        cJSON_DeleteItemFromObject(j, "num_hidden_layers");
        cJSON_AddNumberToObject(j, "num_hidden_layers", 40);
        char *s = cJSON_Print(j);
        snprintf(p2, sizeof p2, "%s/config.json", dir);
        spit(p2, s, strlen(s));
        free(s);
        cJSON_Delete(j);
        ey_eagle3 *d = NULL;
        ey_err e = ey_eagle3_load(dir, g_m, NULL, &d);
        TEST_CHECK_MSG(!e && d && d->cfg.n_layers_config == 40, "40 in config: %s",
                       ey_err_detail());
        ey_eagle3_free(d);
        /* rename one tensor of the layer to a second layer's (same length) */
        char *b = malloc(n);
        memcpy(b, img, n);
        uint64_t hl;
        memcpy(&hl, b, 8);
        char *hit = memmem(b + 8, (size_t)hl, "midlayer.", 9);
        TEST_CHECK(hit != NULL);
        if (hit) memcpy(hit, "layers.1.", 9);
        snprintf(p2, sizeof p2, "%s/model.safetensors", dir);
        spit(p2, b, n);
        free(b);
        expect_err(dir, EY_ERR_UNSUPPORTED, "40-layer drafter");
    }
    /* vocab mismatch with the target (§6 P17) */
    {
        dir = tmp_dir("vocab");
        snprintf(p2, sizeof p2, "%s/model.safetensors", dir);
        spit(p2, img, n);
        cJSON *j = cJSON_Parse(conf);
        cJSON_ReplaceItemInObject(j, "vocab_size", cJSON_CreateNumber(V + 1));
        char *s = cJSON_Print(j);
        snprintf(p2, sizeof p2, "%s/config.json", dir);
        spit(p2, s, strlen(s));
        free(s);
        cJSON_Delete(j);
        expect_err(dir, EY_ERR_SHAPE, "vocab");
    }
    /* aux ids outside the target */
    {
        dir = tmp_dir("auxids");
        snprintf(p2, sizeof p2, "%s/model.safetensors", dir);
        spit(p2, img, n);
        cJSON *j = cJSON_Parse(conf);
        cJSON *a = cJSON_AddArrayToObject(j, "eagle_aux_hidden_state_layer_ids");
        int bad[3] = {1, 2, g_m->cfg.n_layer + 5};
        for (int i = 0; i < 3; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(bad[i]));
        char *s = cJSON_Print(j);
        snprintf(p2, sizeof p2, "%s/config.json", dir);
        spit(p2, s, strlen(s));
        free(s);
        cJSON_Delete(j);
        expect_err(dir, EY_ERR_FORMAT, "aux layer id");
    }
    /* garbage config */
    {
        dir = tmp_dir("badjson");
        snprintf(p2, sizeof p2, "%s/model.safetensors", dir);
        spit(p2, img, n);
        snprintf(p2, sizeof p2, "%s/config.json", dir);
        spit(p2, "{\"hidden_size\": ", 16);
        expect_err(dir, EY_ERR_FORMAT, NULL);
    }
    /* no d2t although draft vocab < vocab (§6 P2) */
    {
        dir = tmp_dir("nod2t");
        ey_eagle3_init_opts o2 = o;
        o2.no_d2t = true;
        TEST_CHECK(!ey_eagle3_write_random(g_m, dir, &o2));
        expect_err(dir, EY_ERR_MISSING, "d2t");
    }
    /* only a pickle: clear error naming the conversion */
    {
        dir = tmp_dir("pickle");
        snprintf(p2, sizeof p2, "%s/config.json", dir);
        spit(p2, conf, nc);
        snprintf(p2, sizeof p2, "%s/pytorch_model.bin", dir);
        spit(p2, "PK\003\004", 4);
        expect_err(dir, EY_ERR_UNSUPPORTED, "safetensors");
    }
    /* no weights at all; not a directory */
    {
        dir = tmp_dir("empty");
        snprintf(p2, sizeof p2, "%s/config.json", dir);
        spit(p2, conf, nc);
        expect_err(dir, EY_ERR_MISSING, NULL);
        expect_err("/nonexistent/drafter", EY_ERR_IO, NULL);
    }
    /* header length pointing past the file; huge header */
    {
        CASE("hdr");
        char *b = malloc(n);
        memcpy(b, img, n);
        uint64_t hl = (uint64_t)n;
        memcpy(b, &hl, 8);
        spit(p2, b, n);
        expect_err(dir, EY_ERR_FORMAT, NULL);
        hl = 1ull << 40;
        memcpy(b, &hl, 8);
        spit(p2, b, n);
        expect_err(dir, EY_ERR_LIMIT, NULL);
        free(b);
    }
    /* random byte corruption of the header: never a crash */
    for (int it = 0; it < 200; it++) {
        CASE("fuzz");
        char *b = malloc(n);
        memcpy(b, img, n);
        uint64_t hl;
        memcpy(&hl, b, 8);
        for (int k = 0; k < 3; k++) b[8 + rnd() % hl] = (char)rnd();
        spit(p2, b, n);
        free(b);
        ey_eagle3 *d = NULL;
        ey_err e = ey_eagle3_load(dir, g_m, NULL, &d);
        if (!e) TEST_CHECK(d != NULL);
        ey_eagle3_free(d);
    }
#undef CASE
    free(img);
    free(conf);
}

/* eyrie drafter-init: writes a loadable drafter; a frequency file picks the
 * draft vocabulary; bad arguments exit 2, runtime errors 1. */
static void test_cli(const char *target)
{
    const int V = g_m->cfg.n_vocab;
    const char *dir = tmp_dir("cli");
    char freq[600];
    snprintf(freq, sizeof freq, "%s/freq.txt", dir);
    FILE *f = fopen(freq, "w");
    /* ids 7, 3, 11 most frequent, then 2 more ids by count */
    fprintf(f, "7 100\n3 90\n11 80\n5 1\n%d 2\n", V - 1);
    fclose(f);
    char out[600];
    snprintf(out, sizeof out, "%s/drafter", dir);
    char *a1[] = {"drafter-init", "--target", (char *)target, "--out", out, "--draft-vocab", "4",
                  "--freq", freq, "--seed", "5", "--dtype", "f32", NULL};
    TEST_CHECK(ey_cli_drafter_init(13, a1) == 0);
    ey_eagle3 *d = NULL;
    ey_err e = ey_eagle3_load(out, g_m, NULL, &d);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    if (d) {
        /* top 4 by count: 7, 3, 11, V-1 -> sorted ascending */
        TEST_CHECK(d->cfg.Vd == 4 && d->d2t[0] == 3 && d->d2t[1] == 7 && d->d2t[2] == 11 &&
                   d->d2t[3] == V - 1);
        ey_eagle3_free(d);
    }
    char *a2[] = {"drafter-init", "--target", (char *)target, NULL};
    TEST_CHECK(ey_cli_drafter_init(3, a2) == 2); /* no --out */
    char *a3[] = {"drafter-init", "--out", out, "--layout", "nope", NULL};
    TEST_CHECK(ey_cli_drafter_init(5, a3) == 2);
    char *a4[] = {"drafter-init", "--target", "/nonexistent/model", "--out", out, NULL};
    TEST_CHECK(ey_cli_drafter_init(5, a4) == 1);
    char *a5[] = {"drafter-init", "--target", (char *)target, "--out", out, "--draft-vocab",
                  "999999", NULL};
    TEST_CHECK(ey_cli_drafter_init(7, a5) == 1); /* larger than the target vocab */
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_spec_load TARGET\n");
        return 2;
    }
    ey_backend *be = cpu_backend(1);
    g_m = load_model(be, argv[1]);
    test_layouts();
    test_hostile();
    test_cli(argv[1]);
    ey_model_free(g_m);
    ey_backend_destroy(be);
    tmp_cleanup();
    return test_result();
}
