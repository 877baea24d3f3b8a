/* Format parity: a tiny drafter saved in one published layout
 * (tests/fixtures/eagle3/<variant>/, written by scripts/make_eagle3_fixtures.py
 * with a float64 torch reference of docs/eagle3.md §2.2) loads with the
 * expected resolved config and reproduces the reference draft forward:
 *  - the target's captures at the resolved aux layers equal the reference
 *    feature rows (checks the aux-id convention of the layout end to end);
 *  - stage 1: T fused rows (target features, tokens x_{t+1}, positions 0..T-1)
 *    give the reference draft logits and recurrent features on every row;
 *  - stage 2: chain steps with fused = false (draft features fed back), one
 *    row per call as chain drafting does; the next token is checked to be
 *    d2t[argmax] of the previous row.
 * Tolerance: max|Δ| / max|ref| <= 1e-4 per array, and equal argmaxes (the
 * generator guarantees top-1 margins >= 2e-2 of the logit scale). Run with
 * EYRIE_MATMUL=ref (set here if absent): plain reference products.
 *   test_e3_parity DRAFTER_DIR TARGET_DIR */
#include "spec_util.h"
#include "../../core/safetensors.h"

#define TOL 1e-4
#define CAP_TOL 1e-4

static float *g_bin;
static size_t g_bin_n;
static double g_worst_logit, g_worst_feat, g_worst_cap;

static const float *arr(const cJSON *o, const char *k, int want)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    int off = cJSON_GetObjectItemCaseSensitive(a, "off")->valueint;
    int n = cJSON_GetObjectItemCaseSensitive(a, "n")->valueint;
    if (n != want || off < 0 || (size_t)off + (size_t)n > g_bin_n) {
        fprintf(stderr, "ref.bin: array '%s' has %d values at %d, expected %d\n", k, n, off, want);
        exit(1);
    }
    return g_bin + off;
}

static int ints(const cJSON *o, const char *k, int32_t *out, int max)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    int n = 0;
    for (const cJSON *it = a ? a->child : NULL; it && n < max; it = it->next) out[n++] = it->valueint;
    return n;
}

static int jint(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k)->valueint; }
static double jnum(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k)->valuedouble; }
static bool jbool(const cJSON *o, const char *k) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k)); }

/* max|a-b| / max|b| */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]), y = fabs((double)b[i]);
        if (x > d || isnan(x)) d = isnan(x) ? INFINITY : x;
        if (y > s) s = y;
    }
    return s > 0 ? d / s : d;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static const char *layout_name(ey_e3_layout l)
{
    switch (l) {
    case EY_E3_LAYOUT_EAGLE: return "eagle";
    case EY_E3_LAYOUT_SPECFORGE: return "specforge";
    case EY_E3_LAYOUT_ANGELSLIM: return "angelslim";
    case EY_E3_LAYOUT_SPECULATORS: return "speculators";
    }
    return "?";
}

static void check_config(const ey_eagle3 *d, const cJSON *ref, const cJSON *ex, float theta_ovr)
{
    const ey_eagle3_config *c = &d->cfg;
    const char *lay = cJSON_GetObjectItemCaseSensitive(ref, "layout")->valuestring;
    TEST_CHECK_MSG(!strcmp(layout_name(c->layout), lay), "layout %s, expected %s",
                   layout_name(c->layout), lay);
    TEST_CHECK(c->H == jint(ex, "H") && c->Ht == jint(ex, "Ht"));
    TEST_CHECK(c->V == jint(ex, "V") && c->Vd == jint(ex, "Vd"));
    TEST_CHECK(c->n_head == jint(ex, "n_head") && c->n_kv_head == jint(ex, "n_kv_head"));
    TEST_CHECK_MSG(c->head_dim == jint(ex, "head_dim"), "head_dim %d", c->head_dim);
    TEST_CHECK(c->n_ff == jint(ex, "n_ff"));
    TEST_CHECK(c->n_aux == 3 && c->use_aux);
    int32_t aux[8];
    TEST_CHECK(ints(ex, "aux_layers", aux, 8) == 3);
    for (int i = 0; i < 3; i++)
        TEST_CHECK_MSG(c->aux_layers[i] == aux[i], "aux layer %d: %d, expected %d", i,
                       c->aux_layers[i], aux[i]);
    TEST_CHECK(c->aux_from_config == jbool(ex, "aux_from_config"));
    TEST_CHECK(c->norm_before_residual == jbool(ex, "norm_before_residual"));
    TEST_CHECK(c->norm_before_fc == jbool(ex, "norm_before_fc"));
    TEST_CHECK(c->fc_norm == jbool(ex, "fc_norm"));
    TEST_CHECK(c->norm_output == jbool(ex, "norm_output"));
    TEST_CHECK(c->attn_bias == jbool(ex, "attn_bias") && c->mlp_bias == jbool(ex, "mlp_bias"));
    TEST_CHECK(d->own_embed == jbool(ex, "own_embed") && d->own_head);
    double th = theta_ovr > 0 ? theta_ovr : jnum(ex, "rope_theta");
    TEST_CHECK_MSG(fabs(c->rope_theta - th) <= 1e-6 * th, "rope_theta %g, expected %g",
                   c->rope_theta, th);
    TEST_CHECK(!strcmp(c->rope_scaling,
                       cJSON_GetObjectItemCaseSensitive(ex, "rope_scaling")->valuestring));
    int32_t *map = malloc((size_t)c->Vd * sizeof *map);
    TEST_CHECK(ints(ex, "d2t_abs", map, c->Vd) == c->Vd);
    bool same = true;
    for (int i = 0; i < c->Vd; i++) same &= d->d2t[i] == map[i];
    TEST_CHECK_MSG(same, "d2t differs from the reference mapping");
    free(map);
}

/* The target's captures at the resolved aux layers against the reference rows. */
static void check_capture(ey_model *m, const ey_eagle3 *d, const cJSON *ref, const cJSON *st0)
{
    const int T = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(st0, "tokens"));
    const int FW = ey_eagle3_feat_width(d);
    int32_t prompt[64];
    int np = ints(ref, "prompt", prompt, 64);
    TEST_CHECK(np >= T + 1);
    ey_ctx *c = NULL;
    TEST_CHECK(!ey_ctx_create(m, 64, 32, 1, &c));
    if (!c) return;
    TEST_CHECK_MSG(!ey_ctx_set_capture(c, d->cfg.aux_layers, d->cfg.n_aux), "%s", ey_err_detail());
    ey_seq s;
    TEST_CHECK(!ey_seq_init(&s, 64));
    float *aux = calloc((size_t)T * FW, sizeof *aux);
    ey_err e = ey_forward_aux(c, &s, prompt, T, NULL, NULL, 0, NULL, aux);
    TEST_CHECK_MSG(!e, "%s", ey_err_detail());
    if (!e) {
        double err = rel_err(aux, arr(st0, "feat", T * FW), (size_t)T * FW);
        if (err > g_worst_cap) g_worst_cap = err;
        TEST_CHECK_MSG(err <= CAP_TOL, "target captures differ from the reference features: %.3g",
                       err);
    }
    free(aux);
    ey_seq_release(&c->kv, &s);
    ey_ctx_free(c);
}

/* Run every stage of a case on a loaded drafter. check: assert the
 * tolerance and argmaxes (and record the worst errors); otherwise only
 * return the worst relative error (negative controls). */
static double run_stages(ey_eagle3 *d, const cJSON *cs, bool check)
{
    const char *cname = cJSON_GetObjectItemCaseSensitive(cs, "name")->valuestring;
    const int H = d->cfg.H, Vd = d->cfg.Vd, FW = ey_eagle3_feat_width(d);
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(cs, "stages");
    double worst = 0;
    ey_eagle3_ctx *c = NULL;
    TEST_CHECK(!ey_eagle3_ctx_create(d, 64, 16, 16, &c));
    if (!c) return INFINITY;
    ey_seq s;
    TEST_CHECK(!ey_seq_init(&s, 64));
    int prev_arg = -1; /* argmax of the previous stage's last row */
    int si = 0;
    for (const cJSON *st = stages->child; st; st = st->next, si++) {
        int32_t tok[64], pos[64], want_arg[64];
        int T = ints(st, "tokens", tok, 64);
        TEST_CHECK(ints(st, "pos", pos, 64) == T && ints(st, "argmax", want_arg, 64) == T);
        bool fused = jbool(st, "fused");
        if (check && !fused && prev_arg >= 0)
            TEST_CHECK_MSG(d->d2t[prev_arg] == tok[0], "chain token: d2t[%d] = %d, reference %d",
                           prev_arg, d->d2t[prev_arg], tok[0]);
        float *lg = calloc((size_t)T * Vd, sizeof *lg), *fo = calloc((size_t)T * H, sizeof *fo);
        /* stage 2 feeds the reference's recurrent features (so errors do not
         * compound) one row per call, as chain drafting does */
        ey_draft_in in = {.T = T, .tokens = tok, .feat = arr(st, "feat", T * (fused ? FW : H)),
                          .fused = fused, .pos = pos, .n_out = T, .logits = lg, .feat_out = fo};
        ey_err e = ey_eagle3_forward(c, &s, &in);
        TEST_CHECK_MSG(!e, "forward: %s", ey_err_detail());
        if (!e) {
            double el = rel_err(lg, arr(st, "logits", T * Vd), (size_t)T * Vd);
            double ef = rel_err(fo, arr(st, "feat_out", T * H), (size_t)T * H);
            worst = fmax(worst, fmax(el, ef));
            if (check) {
                g_worst_logit = fmax(g_worst_logit, el);
                g_worst_feat = fmax(g_worst_feat, ef);
                TEST_CHECK_MSG(el <= TOL, "case %s stage %d: logits rel err %.3g", cname, si, el);
                TEST_CHECK_MSG(ef <= TOL, "case %s stage %d: feature rel err %.3g", cname, si,
                               ef);
                int bad = 0;
                for (int t = 0; t < T; t++) bad += argmax(lg + (size_t)t * Vd, Vd) != want_arg[t];
                TEST_CHECK_MSG(!bad, "case %s stage %d: %d rows with a different argmax", cname,
                               si, bad);
            }
            prev_arg = argmax(lg + (size_t)(T - 1) * Vd, Vd);
        } else {
            worst = INFINITY;
        }
        free(lg);
        free(fo);
    }
    TEST_CHECK(si >= 2);
    ey_seq_release(&c->kv, &s);
    ey_eagle3_ctx_free(c);
    return worst;
}

/* Negative controls: the wrong readings the generator proved to move the
 * reference (ref.json "discrimination") must also fail here, so a loader
 * that ignored a flag or swapped the two input norms could not pass. */
static void controls(ey_model *m, const char *dir, const cJSON *ref, const cJSON *cs)
{
    const cJSON *disc = cJSON_GetObjectItemCaseSensitive(ref, "discrimination");
    for (const cJSON *it = disc ? disc->child : NULL; it; it = it->next) {
        ey_eagle3 *d = NULL;
        if (ey_eagle3_load(dir, m, NULL, &d)) {
            TEST_CHECK_MSG(0, "reload: %s", ey_err_detail());
            return;
        }
        const char *k = it->string;
        bool done = true;
        if (!strcmp(k, "swap_concat")) {
            /* the generator swaps the two halves of u; here the two input
             * norms trade places, the loader-side form of the same mix-up */
            ey_weight t = d->hidden_norm;
            d->hidden_norm = d->input_layernorm;
            d->input_layernorm = t;
        } else if (!strcmp(k, "nbr_ignored")) {
            d->cfg.norm_before_residual = false;
        } else if (!strcmp(k, "nbfc_ignored")) {
            d->cfg.norm_before_fc = false;
        } else if (!strcmp(k, "fc_norm_ignored")) {
            d->cfg.fc_norm = false;
        } else if (!strcmp(k, "norm_output_ignored")) {
            d->cfg.norm_output = false;
        } else if (!strcmp(k, "norm_output_read_as_vllm")) {
            d->cfg.norm_output = true;
        } else {
            done = false; /* RoPE / aux-id controls: covered by the cases and the capture check */
        }
        if (done) {
            double err = run_stages(d, cs, false);
            TEST_CHECK_MSG(err > 100 * TOL, "control '%s' is not detected (rel err %.3g)", k, err);
            fprintf(stderr, "  control %-26s rel err %.3g\n", k, err);
        }
        ey_eagle3_free(d);
    }
}

static void run_case(ey_model *m, const char *dir, const cJSON *ref, const cJSON *cs)
{
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(ref, "expect");
    const char *cname = cJSON_GetObjectItemCaseSensitive(cs, "name")->valuestring;
    ey_eagle3_opts o = {.rope_theta = (float)jnum(cs, "rope_theta_override")};
    ey_eagle3 *d = NULL;
    ey_err e = ey_eagle3_load(dir, m, &o, &d);
    TEST_CHECK_MSG(!e, "load %s: %s", dir, ey_err_detail());
    if (!d) return;
    check_config(d, ref, ex, o.rope_theta);
    const cJSON *st0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cs, "stages"), 0);
    bool first = !strcmp(cname, "config");
    if (first) check_capture(m, d, ref, st0);
    double w = run_stages(d, cs, true);
    fprintf(stderr, "  case %-16s rel err %.3g\n", cname, w);
    ey_eagle3_free(d);
    if (first) controls(m, dir, ref, cs);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DRAFTER_DIR TARGET_DIR\n", argv[0]);
        return 2;
    }
    if (!getenv("EYRIE_MATMUL")) setenv("EYRIE_MATMUL", "ref", 1);
    const char *dir = argv[1];
    char path[4096];
    snprintf(path, sizeof path, "%s/ref.json", dir);
    char *txt = NULL;
    if (ey_read_file(path, 1u << 22, &txt, NULL)) {
        fprintf(stderr, "%s: %s\n", path, ey_err_detail());
        return 1;
    }
    cJSON *ref = cJSON_Parse(txt);
    free(txt);
    snprintf(path, sizeof path, "%s/ref.bin", dir);
    char *bin = NULL;
    size_t nb = 0;
    if (!ref || ey_read_file(path, 1u << 26, &bin, &nb) || nb % 4) {
        fprintf(stderr, "%s: cannot read the reference\n", dir);
        return 1;
    }
    g_bin = malloc(nb ? nb : 4);
    memcpy(g_bin, bin, nb); /* little-endian f32 (x86/arm hosts) */
    g_bin_n = nb / 4;
    free(bin);

    ey_backend *be = cpu_backend(1);
    ey_model *m = load_model(be, argv[2]);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(ref, "cases");
    int n = 0;
    for (const cJSON *cs = cases ? cases->child : NULL; cs; cs = cs->next, n++)
        run_case(m, dir, ref, cs);
    TEST_CHECK(n >= 1);
    fprintf(stderr, "%s: %d case(s); worst rel err: logits %.3g, features %.3g, target "
            "captures %.3g (tolerance %.0e)\n",
            cJSON_GetObjectItemCaseSensitive(ref, "variant")->valuestring, n, g_worst_logit,
            g_worst_feat, g_worst_cap, TOL);
    cJSON_Delete(ref);
    free(g_bin);
    ey_model_free(m);
    ey_backend_destroy(be);
    return test_result();
}
