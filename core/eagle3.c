/* eyrie — EAGLE-3 drafter: loader, draft forward, random-drafter writer.
 * See eagle3.h and docs/eagle3.md. */
#include "eagle3.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "owned.h"
#include "safetensors.h"
#include "sample.h"

/* ================================================================ files */

/* Drafter files are read with the shared safetensors reader, which also
 * takes the I64 (d2t) and BOOL (t2d) tensors drafters carry. */
typedef ey_st_tensor dt_tensor;

typedef struct ey_eagle3_priv {
    ey_safetensors *st;
    ey_e3_quant quant; /* ey_eagle3_opts.quant */
    ey_owned own;    /* weight/table buffers and converted host tensors */
    char prefix[16]; /* "midlayer." or "layers.0." */
} ey_eagle3_priv;

static size_t dt_size(int type) { return ey_dtype_block_bytes((ey_dtype)type); }

static const char *dt_name(int type)
{
    switch (type) {
    case EY_I64: return "I64";
    case EY_BOOL: return "BOOL";
    case EY_I32: return "I32";
    case EY_F32: return "F32";
    case EY_F16: return "F16";
    case EY_BF16: return "BF16";
    }
    return "?";
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static ey_err dt_open(ey_eagle3_priv *p, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    bool single = file_exists(path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (single || file_exists(path)) return ey_safetensors_open_dir(dir, &p->st);
    snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
    if (file_exists(path))
        return ey_err_set(EY_ERR_UNSUPPORTED, "drafter '%s' has only pytorch_model.bin (a pickle); "
                          "convert it to safetensors first, e.g. python3 -c \"import torch, "
                          "safetensors.torch as s; s.save_file(torch.load('%s/pytorch_model.bin'), "
                          "'%s/model.safetensors')\"", dir, dir, dir);
    return ey_err_set(EY_ERR_MISSING, "drafter '%s': no model.safetensors (or index) found", dir);
}

static const dt_tensor *dt_find(const ey_eagle3_priv *p, const char *name)
{
    return p->st ? ey_st_find(p->st, name) : NULL;
}

static bool dt_has_prefix(const ey_eagle3_priv *p, const char *pre)
{
    size_t n = strlen(pre);
    for (int64_t i = 0; p->st && i < p->st->n_tensors; i++)
        if (!strncmp(p->st->tensors[i].name, pre, n)) return true;
    return false;
}

/* ================================================================ weights */

static ey_err upload(ey_eagle3 *d, const void *host, size_t bytes, ey_ptr *out)
{
    return ey_owned_upload(&d->priv->own, d->be, host, bytes, out);
}

bool ey_e3_quant_parse(const char *s, ey_e3_quant *q)
{
    static const char *const names[] = {"none", "q8_0", "q4_1"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) {
            *q = (ey_e3_quant)i;
            return true;
        }
    return false;
}

/* A float tensor of shape [N][K] (vec: [K]); vectors are converted to f32;
 * matrices (mm) are quantized when asked (ey_eagle3_opts.quant) and kept in
 * the backend's matmul layout. */
static ey_err get_w_mm(ey_eagle3 *d, const char *name, int64_t K, int64_t N, bool vec,
                       bool required, bool mm, ey_weight *w)
{
    memset(w, 0, sizeof *w);
    const dt_tensor *t = dt_find(d->priv, name);
    if (!t) {
        if (!required) return EY_OK;
        return ey_err_set(EY_ERR_MISSING, "drafter: tensor '%s' is missing", name);
    }
    if (t->type != EY_F32 && t->type != EY_F16 && t->type != EY_BF16)
        return ey_err_set(EY_ERR_FORMAT, "drafter: tensor '%s' is %s, expected a float type", name,
                          dt_name(t->type));
    bool ok = vec ? (t->n_dims == 1 && t->shape[0] == K)
                  : (t->n_dims == 2 && t->shape[0] == N && t->shape[1] == K);
    if (!ok)
        return ey_err_set(EY_ERR_SHAPE, "drafter: tensor '%s' has shape [%lld, %lld] (%d dims), "
                          "expected [%lld, %lld] from the config", name,
                          (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                          t->n_dims, (long long)(vec ? K : N), (long long)(vec ? 0 : K));
    w->K = K;
    w->N = vec ? 1 : N;
    if (vec && t->type != EY_F32) {
        float *f = malloc((size_t)K * sizeof *f);
        if (!f) return ey_err_set(EY_ERR_NOMEM, "no memory");
        ey_err e = ey_owned_host(&d->priv->own, f);
        if (e) {
            free(f);
            return e;
        }
        ey_dequant_row((ey_dtype)t->type, t->data, f, K);
        w->type = EY_F32;
        return upload(d, f, (size_t)K * sizeof *f, &w->p);
    }
    w->type = (ey_dtype)t->type;
    if (mm && d->priv->quant != EY_E3_QUANT_NONE && K % EY_QK == 0)
        return ey_owned_upload_quant(&d->priv->own, d->be, name, &w->type,
                                     d->priv->quant == EY_E3_QUANT_Q8_0 ? EY_Q8_0 : EY_Q4_1,
                                     t->data, N, K, &w->p);
    if (mm) return ey_owned_upload_mm(&d->priv->own, d->be, &w->type, t->data, t->bytes, N, K, &w->p);
    return upload(d, t->data, t->bytes, &w->p);
}

static ey_err get_w(ey_eagle3 *d, const char *name, int64_t K, int64_t N, bool vec, bool required,
                    ey_weight *w)
{
    return get_w_mm(d, name, K, N, vec, required, !vec, w);
}

/* ================================================================ config */

static int j_int(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < -2e9 || v->valuedouble > 2e9 ||
        v->valuedouble != (double)(int)v->valuedouble)
        return def;
    return (int)v->valuedouble;
}

static double j_num(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* -1 absent, 0 false, 1 true */
static int j_bool(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

static const cJSON *j_obj(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsObject(v) ? v : NULL;
}

static const char *j_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* first value found among the objects (NULL entries skipped) */
static int j_int2(const cJSON *a, const cJSON *b, const char *k, int def)
{
    int v = a ? j_int(a, k, INT32_MIN) : INT32_MIN;
    if (v == INT32_MIN && b) v = j_int(b, k, INT32_MIN);
    return v == INT32_MIN ? def : v;
}

static int j_bool2(const cJSON *a, const cJSON *b, const char *k)
{
    int v = a ? j_bool(a, k) : -1;
    if (v < 0 && b) v = j_bool(b, k);
    return v;
}

static ey_err read_ids(const cJSON *arr, const char *path, ey_eagle3_config *c)
{
    int n = cJSON_GetArraySize(arr);
    if (n < 1 || n > EY_E3_MAX_AUX)
        return ey_err_set(EY_ERR_FORMAT, "%s: eagle_aux_hidden_state_layer_ids has %d entries "
                          "(1..%d)", path, n, EY_E3_MAX_AUX);
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > EY_MAX_LAYERS ||
            it->valuedouble != (double)(int)it->valuedouble)
            return ey_err_set(EY_ERR_FORMAT, "%s: bad aux layer id", path);
        c->aux_config[i] = (int)it->valuedouble;
    }
    c->n_aux = n;
    c->aux_from_config = true;
    return EY_OK;
}

/* mrope_section [t, h, w] (pairs of head dims per position row), layout
 * from mrope_interleaved unless the caller forces one (multimodal.md §2.4
 * quirk 2: AngelSlim applies the interleaved layout even to contiguous
 * Qwen2.5-VL configs). The sum is checked against head_dim later. */
static ey_err parse_mrope(const cJSON *ms, const cJSON *rs, const ey_eagle3_opts *o,
                          const char *path, ey_eagle3_config *c)
{
    if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) != 3)
        return ey_err_set(EY_ERR_FORMAT, "%s: mrope_section must list 3 integers", path);
    int i = 0;
    for (const cJSON *v = ms->child; v; v = v->next, i++) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > EY_MAX_HEAD_DIM ||
            v->valuedouble != (double)(int)v->valuedouble)
            return ey_err_set(EY_ERR_FORMAT, "%s: bad mrope_section entry", path);
        c->mrope_section[i] = (int)v->valuedouble;
    }
    c->mrope = true;
    c->mrope_interleaved = j_bool(rs, "mrope_interleaved") == 1;
    if (o && o->mrope_layout == EY_E3_MROPE_INTERLEAVED) c->mrope_interleaved = true;
    if (o && o->mrope_layout == EY_E3_MROPE_CONTIGUOUS) c->mrope_interleaved = false;
    return EY_OK;
}

static ey_err parse_config(const char *dir, const ey_model *tgt, const ey_eagle3_opts *o,
                           ey_eagle3_config *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *txt;
    ey_err e = ey_read_file(path, 1u << 20, &txt, NULL);
    if (e) return e;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ey_err_set(EY_ERR_FORMAT, "%s: not a JSON object", path);
    }
    memset(c, 0, sizeof *c);
    /* three config shapes (§7.1): flat, flat + eagle_config, speculators */
    const cJSON *lc = j_obj(root, "transformer_layer_config");
    const char *spec_type = j_str(root, "speculators_model_type");
    const cJSON *ec = j_obj(root, "eagle_config");
    const cJSON *arch_arr = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const char *arch = cJSON_IsArray(arch_arr) && cJSON_IsString(arch_arr->child)
                           ? arch_arr->child->valuestring : "";
    if (lc || spec_type) {
        if (spec_type && strcmp(spec_type, "eagle3")) {
            e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: speculators_model_type '%.32s' is not eagle3",
                           path, spec_type);
            goto out;
        }
        if (!lc) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: speculators config without "
                           "transformer_layer_config", path);
            goto out;
        }
        c->layout = EY_E3_LAYOUT_SPECULATORS;
    } else {
        lc = root;
        if (!strcmp(arch, "LlamaForCausalLMEagle3")) c->layout = EY_E3_LAYOUT_SPECFORGE;
        else if (!strcmp(arch, "Eagle3LlamaForCausalLM")) c->layout = EY_E3_LAYOUT_ANGELSLIM;
        else c->layout = EY_E3_LAYOUT_EAGLE;
    }
    const char *mt = j_str(lc, "model_type");
    if (mt && strcmp(mt, "llama")) {
        /* the draft layer is always Llama-style (§1.2); the qwen3 variant of
         * speculators carries q/k norms that eyrie does not implement */
        e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: draft layer model_type '%.32s' (only llama draft "
                       "layers are supported)", path, mt);
        goto out;
    }
    /* eagle3.md §1.2: published drafters have one layer, but some configs
     * carry the target's count here; only tensors of a second layer mean a
     * multi-layer drafter (checked at load) */
    c->n_layers_config = j_int2(lc, NULL, "num_hidden_layers", 1);
    const char *act = j_str(lc, "hidden_act");
    if (act && strcmp(act, "silu")) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: hidden_act '%.32s' (silu only)", path, act);
        goto out;
    }
    const cJSON *top = root;
    c->H = j_int(lc, "hidden_size", 0);
    c->n_head = j_int(lc, "num_attention_heads", 0);
    c->n_kv_head = j_int(lc, "num_key_value_heads", c->n_head);
    c->head_dim = j_int(lc, "head_dim", 0);
    if (!c->head_dim) {
        if (c->n_head <= 0 || c->H % c->n_head) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: hidden_size %d not divisible by %d heads and no "
                           "head_dim", path, c->H, c->n_head);
            goto out;
        }
        c->head_dim = c->H / c->n_head;
    }
    c->n_ff = j_int(lc, "intermediate_size", 0);
    c->V = j_int2(lc, top, "vocab_size", 0);
    c->Vd = j_int2(top, lc, "draft_vocab_size", c->V);
    c->Ht = j_int2(top, lc, "target_hidden_size", c->H);
    c->rms_eps = (float)j_num(lc, "rms_norm_eps", 1e-6);
    /* transformers 5 writes rope_parameters {rope_theta, ...} */
    const cJSON *rp = j_obj(lc, "rope_parameters");
    c->rope_theta = (float)j_num(lc, "rope_theta", rp ? j_num(rp, "rope_theta", 10000) : 10000);
    if (o && o->rope_theta > 0) c->rope_theta = o->rope_theta;
    strcpy(c->rope_scaling, "none");
    const cJSON *rs = j_obj(lc, "rope_scaling");
    if (!rs) rs = rp; /* transformers 5 keeps the scaling there too */
    if (rs) {
        const char *t = j_str(rs, "rope_type");
        if (!t) t = j_str(rs, "type");
        if (!t) t = "default";
        c->rope_factor = (float)j_num(rs, "factor", 1.0);
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(rs, "mrope_section");
        if (ms) {
            /* M-RoPE (VLM drafters): SGLang/vLLM switch on mrope_section and
             * force the default rope type (multimodal.md §4.2) */
            if ((e = parse_mrope(ms, rs, o, path, c))) goto out;
            t = "default";
        }
        if (!strcmp(t, "linear")) {
            strcpy(c->rope_scaling, "linear");
        } else if (!strcmp(t, "llama3")) {
            strcpy(c->rope_scaling, "llama3");
            c->rope_low_freq = (float)j_num(rs, "low_freq_factor", 1.0);
            c->rope_high_freq = (float)j_num(rs, "high_freq_factor", 4.0);
            c->rope_orig_ctx = j_int(rs, "original_max_position_embeddings", 8192);
            if (!(c->rope_factor > 0) || !(c->rope_high_freq > c->rope_low_freq) ||
                c->rope_orig_ctx < 1) {
                e = ey_err_set(EY_ERR_FORMAT, "%s: bad llama3 rope_scaling", path);
                goto out;
            }
        } else if (strcmp(t, "default")) {
            e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: draft rope_scaling '%.32s' (default, linear, "
                           "llama3)", path, t);
            goto out;
        }
        if (!(c->rope_factor > 0)) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: bad rope_scaling factor", path);
            goto out;
        }
    }
    /* flags (§1.2, §6 P6/P7). speculators: vLLM's update_eagle3 reads a
     * missing norm_before_residual as true. norm_output in a SpecForge
     * config only means "norm before lm_head", which eyrie always does. */
    int nbr = j_bool2(top, lc, "norm_before_residual");
    c->norm_before_residual = nbr < 0 ? c->layout == EY_E3_LAYOUT_SPECULATORS : nbr == 1;
    int nbf = j_bool2(top, ec, "norm_before_fc");
    c->norm_before_fc = nbf == 1;
    c->fc_norm = j_bool2(top, lc, "fc_norm") == 1;
    c->norm_output = c->layout != EY_E3_LAYOUT_SPECFORGE && j_bool2(top, lc, "norm_output") == 1;
    c->use_aux = j_bool2(ec, top, "use_aux_hidden_state") != 0;
    c->attn_bias = j_bool(lc, "attention_bias") == 1;
    c->mlp_bias = j_bool(lc, "mlp_bias") == 1;
    /* aux ids (§2.1): top level = input-of-layer (vLLM), eagle_config =
     * output-of-layer (SpecForge/AngelSlim/SGLang) */
    const int N = tgt->cfg.n_layer;
    bool output_conv = false;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(top, "eagle_aux_hidden_state_layer_ids");
    if (cJSON_IsArray(ids)) {
        if ((e = read_ids(ids, path, c))) goto out;
    } else if (ec && cJSON_IsArray(ids = cJSON_GetObjectItemCaseSensitive(
                                       ec, "eagle_aux_hidden_state_layer_ids"))) {
        if ((e = read_ids(ids, path, c))) goto out;
        output_conv = true;
        for (int i = 0; i < c->n_aux; i++)
            if (c->aux_config[i] >= N) output_conv = false; /* boundary ids */
    }
    if (o && o->aux_conv == EY_E3_AUX_INPUT) output_conv = false;
    if (o && o->aux_conv == EY_E3_AUX_OUTPUT) output_conv = true;
    if (!c->use_aux) {
        /* "Eagle3-v2": no fc, the target's last hidden state (pre-norm) */
        c->n_aux = 1;
        c->aux_layers[0] = N;
        c->aux_config[0] = N;
    } else if (c->aux_from_config) {
        int want = j_int2(top, ec, "num_aux_hidden_states", c->n_aux);
        if (want != c->n_aux) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: num_aux_hidden_states %d but %d aux layer ids", path,
                           want, c->n_aux);
            goto out;
        }
        for (int i = 0; i < c->n_aux; i++) {
            int k = c->aux_config[i] + (output_conv ? 1 : 0);
            if (k < 0 || k > N) {
                e = ey_err_set(EY_ERR_FORMAT, "%s: aux layer id %d (%s convention) is outside the "
                               "target's %d layers", path, c->aux_config[i],
                               output_conv ? "output-of-layer" : "input-of-layer", N);
                goto out;
            }
            c->aux_layers[i] = k;
        }
    } else {
        c->n_aux = j_int2(top, ec, "num_aux_hidden_states", 3);
        if (c->n_aux != 3) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: num_aux_hidden_states %d without explicit layer ids",
                           path, c->n_aux);
            goto out;
        }
        int def[3] = {2, N / 2, N - 3};
        for (int i = 0; i < 3; i++) {
            c->aux_config[i] = -1;
            c->aux_layers[i] = def[i] < 0 ? 0 : def[i] > N ? N : def[i];
        }
    }
    /* ranges, before anything is sized from them */
    if (c->H < 1 || c->H > EY_MAX_EMBD || c->Ht < 1 || c->Ht > EY_MAX_EMBD || c->n_head < 1 ||
        c->n_head > EY_MAX_HEADS || c->n_kv_head < 1 || c->n_kv_head > c->n_head ||
        c->n_head % c->n_kv_head || c->head_dim < 2 || c->head_dim > EY_MAX_HEAD_DIM ||
        c->head_dim % 2 || c->n_ff < 1 || c->n_ff > EY_MAX_FF || c->V < 1 ||
        c->V > EY_E3_MAX_VOCAB || c->Vd < 1 || c->Vd > c->V || !(c->rms_eps > 0) ||
        !(c->rope_theta > 0)) {
        e = ey_err_set(EY_ERR_FORMAT, "%s: drafter config out of range (hidden %d, target hidden "
                       "%d, heads %d/%d, head_dim %d, ff %d, vocab %d, draft vocab %d)", path,
                       c->H, c->Ht, c->n_head, c->n_kv_head, c->head_dim, c->n_ff, c->V, c->Vd);
        goto out;
    }
    if (c->mrope && c->mrope_section[0] + c->mrope_section[1] + c->mrope_section[2] !=
                        c->head_dim / 2) {
        e = ey_err_set(EY_ERR_FORMAT, "%s: mrope_section [%d, %d, %d] must sum to head_dim/2 = %d",
                       path, c->mrope_section[0], c->mrope_section[1], c->mrope_section[2],
                       c->head_dim / 2);
        goto out;
    }
    if (c->V != tgt->cfg.n_vocab) { /* §6 P17 */
        e = ey_err_set(EY_ERR_SHAPE, "%s: drafter vocab_size %d but the target has %d tokens "
                       "(tokenizer mismatch?)", path, c->V, tgt->cfg.n_vocab);
        goto out;
    }
    if (c->Ht != tgt->cfg.n_embd) {
        e = ey_err_set(EY_ERR_SHAPE, "%s: drafter expects target hidden size %d but the target "
                       "has %d", path, c->Ht, tgt->cfg.n_embd);
        goto out;
    }
    if (!c->use_aux && c->Ht != c->H) {
        e = ey_err_set(EY_ERR_SHAPE, "%s: use_aux_hidden_state=false needs hidden_size == target "
                       "hidden size", path);
        goto out;
    }
out:
    cJSON_Delete(root);
    return e;
}

/* ================================================================ load */

static ey_err build_rope(ey_eagle3 *d)
{
    const ey_eagle3_config *c = &d->cfg;
    int half = c->head_dim / 2;
    float *f = malloc((size_t)half * sizeof *f);
    if (!f) return ey_err_set(EY_ERR_NOMEM, "no memory");
    ey_err e = ey_owned_host(&d->priv->own, f);
    if (e) {
        free(f);
        return e;
    }
    for (int i = 0; i < half; i++) {
        f[i] = ey_rope_inv_freq(c->rope_theta, i, c->head_dim, c->rope_scaling, c->rope_factor,
                                c->rope_low_freq, c->rope_high_freq, c->rope_orig_ctx);
    }
    e = upload(d, f, (size_t)half * sizeof *f, &d->inv_freq);
    if (e || !c->mrope) return e;
    /* M-RoPE: one table per position row holding only the frequencies of
     * its section (zero elsewhere: angle 0 rotates by exactly the identity),
     * so three ordinary rope passes compose the sectioned rotation. */
    for (int r = 0; r < 3; r++) {
        float *g = malloc((size_t)half * sizeof *g);
        if (!g) return ey_err_set(EY_ERR_NOMEM, "no memory");
        if ((e = ey_owned_host(&d->priv->own, g))) {
            free(g);
            return e;
        }
        for (int i = 0; i < half; i++)
            g[i] = ey_eagle3_mrope_row(c->mrope_section, c->mrope_interleaved, i) == r ? f[i] : 0;
        if ((e = upload(d, g, (size_t)half * sizeof *g, &d->inv_freq_mrope[r]))) return e;
    }
    return EY_OK;
}

int ey_eagle3_mrope_row(const int section[3], bool interleaved, int i)
{
    if (interleaved) {
        /* Qwen3-VL apply_interleaved_mrope: T everywhere, then H at 1::3 and
         * W at 2::3 up to 3 * section */
        if (i % 3 == 1 && i < 3 * section[1]) return 1;
        if (i % 3 == 2 && i < 3 * section[2]) return 2;
        return 0;
    }
    if (i < section[0]) return 0;
    return i < section[0] + section[1] ? 1 : 2;
}

/* d2t offsets -> absolute ids, validated (§1.4, §6 P2/P3). */
static ey_err load_vocab_map(ey_eagle3 *d)
{
    const ey_eagle3_config *c = &d->cfg;
    const dt_tensor *t = dt_find(d->priv, "d2t");
    d->d2t = malloc((size_t)c->Vd * sizeof *d->d2t);
    if (!d->d2t) return ey_err_set(EY_ERR_NOMEM, "no memory");
    if (!t) {
        if (c->Vd < c->V)
            return ey_err_set(EY_ERR_MISSING, "drafter: draft_vocab_size %d < vocab_size %d but "
                              "there is no d2t tensor (draft ids cannot be mapped)", c->Vd, c->V);
        for (int i = 0; i < c->Vd; i++) d->d2t[i] = i;
    } else {
        if ((t->type != EY_I64 && t->type != EY_I32) || t->n_dims != 1 || t->shape[0] != c->Vd)
            return ey_err_set(EY_ERR_SHAPE, "drafter: d2t must be an integer vector of "
                              "draft_vocab_size %d entries (got %s, %d dims, %lld)", c->Vd,
                              dt_name(t->type), t->n_dims, (long long)t->shape[0]);
        int64_t prev = -1;
        for (int i = 0; i < c->Vd; i++) {
            int64_t off;
            if (t->type == EY_I64) {
                memcpy(&off, (const uint8_t *)t->data + (size_t)i * 8, 8);
            } else {
                int32_t o32;
                memcpy(&o32, (const uint8_t *)t->data + (size_t)i * 4, 4);
                off = o32;
            }
            /* d2t holds offsets: target = i + d2t[i]; the draft vocabulary is
             * a sorted subset, so targets strictly increase */
            if (off < 0 || off > c->V || (int64_t)i + off >= c->V)
                return ey_err_set(EY_ERR_FORMAT, "drafter: d2t[%d] = %lld maps outside the target "
                                  "vocab of %d (d2t must hold offsets, not ids)", i,
                                  (long long)off, c->V);
            if ((int64_t)i + off <= prev)
                return ey_err_set(EY_ERR_FORMAT, "drafter: d2t is not monotone at %d (draft ids "
                                  "must map to distinct, increasing target ids)", i);
            prev = (int64_t)i + off;
            d->d2t[i] = (int32_t)prev;
        }
    }
    /* t2d is only used in training; when present it must agree (§1.4) */
    const dt_tensor *m = dt_find(d->priv, "t2d");
    if (m) {
        if ((m->type != EY_BOOL && m->type != EY_I64) || m->n_dims != 1 || m->shape[0] != c->V)
            return ey_err_set(EY_ERR_SHAPE, "drafter: t2d must be a bool vector of vocab_size %d",
                              c->V);
        int j = 0;
        for (int v = 0; v < c->V; v++) {
            bool on;
            if (m->type == EY_BOOL) {
                on = ((const uint8_t *)m->data)[v] != 0;
            } else {
                int64_t x;
                memcpy(&x, (const uint8_t *)m->data + (size_t)v * 8, 8);
                on = x != 0;
            }
            if (!on) continue;
            if (j >= c->Vd || d->d2t[j] != v)
                return ey_err_set(EY_ERR_FORMAT, "drafter: t2d does not match d2t (target id %d)",
                                  v);
            j++;
        }
        if (j != c->Vd)
            return ey_err_set(EY_ERR_FORMAT, "drafter: t2d marks %d tokens, draft_vocab_size is %d",
                              j, c->Vd);
    }
    return EY_OK;
}

static ey_err load_weights(ey_eagle3 *d, const ey_model *tgt)
{
    ey_eagle3_config *c = &d->cfg;
    ey_eagle3_priv *p = d->priv;
    const int64_t H = c->H, Ht = c->Ht, Q = (int64_t)c->n_head * c->head_dim,
                  KV = (int64_t)c->n_kv_head * c->head_dim, I = c->n_ff,
                  FW = ey_eagle3_feat_width(d);
    char n[128];
    ey_err e;
    if (dt_find(p, "midlayer.self_attn.q_proj.weight")) strcpy(p->prefix, "midlayer.");
    else if (dt_find(p, "layers.0.self_attn.q_proj.weight")) strcpy(p->prefix, "layers.0.");
    else if (dt_find(p, "model.layers.0.self_attn.qkv_proj.weight") ||
             dt_find(p, "layers.0.self_attn.qkv_proj.weight"))
        return ey_err_set(EY_ERR_UNSUPPORTED, "drafter: fused qkv_proj weights (a vLLM-internal "
                          "layout) are not a published format; use the original checkpoint");
    else
        return ey_err_set(EY_ERR_MISSING, "drafter: no midlayer.* or layers.0.* attention weights "
                          "(not an EAGLE-3 checkpoint?)");
    if (dt_has_prefix(p, "layers.1.") || dt_has_prefix(p, "midlayer.1."))
        return ey_err_set(EY_ERR_UNSUPPORTED, "drafter: more than one draft layer is not supported");
    snprintf(n, sizeof n, "%sself_attn.q_norm.weight", p->prefix);
    if (dt_find(p, n))
        return ey_err_set(EY_ERR_UNSUPPORTED, "drafter: q_norm/k_norm tensors found (Qwen3-style "
                          "draft layer); only the standard Llama draft layer is supported");
#define LW(dst, suf, K, N, vec, req)                                                             \
    do {                                                                                         \
        snprintf(n, sizeof n, "%s%s", p->prefix, suf);                                           \
        if ((e = get_w(d, n, K, N, vec, req, dst))) return e;                                    \
    } while (0)
    if (c->use_aux) {
        if ((e = get_w(d, "fc.weight", FW, H, false, true, &d->fc))) return e;
    }
    if (c->norm_before_fc && (e = get_w(d, "input_norm.weight", FW, 1, true, true, &d->input_norm)))
        return e;
    if (c->fc_norm)
        for (int i = 0; i < c->n_aux; i++) {
            snprintf(n, sizeof n, "fc_norm.%d.weight", i);
            if ((e = get_w(d, n, Ht, 1, true, true, &d->fc_norm[i]))) return e;
        }
    LW(&d->hidden_norm, "hidden_norm.weight", H, 1, true, true);
    LW(&d->input_layernorm, "input_layernorm.weight", H, 1, true, true);
    /* q, k, v read concat(embedding, feature): 2H columns (§1.3) */
    LW(&d->wq, "self_attn.q_proj.weight", 2 * H, Q, false, true);
    LW(&d->wk, "self_attn.k_proj.weight", 2 * H, KV, false, true);
    LW(&d->wv, "self_attn.v_proj.weight", 2 * H, KV, false, true);
    LW(&d->wo, "self_attn.o_proj.weight", Q, H, false, true);
    if (c->attn_bias) {
        LW(&d->bq, "self_attn.q_proj.bias", Q, 1, true, true);
        LW(&d->bk, "self_attn.k_proj.bias", KV, 1, true, true);
        LW(&d->bv, "self_attn.v_proj.bias", KV, 1, true, true);
        LW(&d->bo, "self_attn.o_proj.bias", H, 1, true, false);
    }
    LW(&d->post_norm, "post_attention_layernorm.weight", H, 1, true, true);
    LW(&d->w_gate, "mlp.gate_proj.weight", H, I, false, true);
    LW(&d->w_up, "mlp.up_proj.weight", H, I, false, true);
    LW(&d->w_down, "mlp.down_proj.weight", I, H, false, true);
    if (c->mlp_bias) {
        LW(&d->b_gate, "mlp.gate_proj.bias", I, 1, true, true);
        LW(&d->b_up, "mlp.up_proj.bias", I, 1, true, true);
        LW(&d->b_down, "mlp.down_proj.bias", H, 1, true, true);
    }
#undef LW
    if ((e = get_w(d, "norm.weight", H, 1, true, true, &d->norm))) return e;
    /* embedding: own [V, H] or the target's [V, Ht] (§1.5, §7.3) */
    const char *en = dt_find(p, "embed_tokens.weight") ? "embed_tokens.weight"
                     : dt_find(p, "model.embed_tokens.weight") ? "model.embed_tokens.weight" : NULL;
    if (en) {
        if ((e = get_w_mm(d, en, H, c->V, false, true, false, &d->embed))) return e;
        d->own_embed = true;
    } else {
        if (H != Ht)
            return ey_err_set(EY_ERR_MISSING, "drafter: hidden_size %lld differs from the target's "
                              "%lld, so it must ship its own embed_tokens.weight", (long long)H,
                              (long long)Ht);
        d->embed = tgt->tok_embd;
    }
    /* head: own [Vd, H] (tie_word_embeddings ignored then, §6 P9) or the
     * target's when Vd == V and H == Ht */
    if (dt_find(p, "lm_head.weight")) {
        if ((e = get_w(d, "lm_head.weight", H, c->Vd, false, true, &d->lm_head))) return e;
        d->own_head = true;
    } else if (c->Vd == c->V && d->own_embed) {
        d->lm_head = d->embed; /* tied to its own embedding */
    } else if (c->Vd == c->V && H == Ht) {
        d->lm_head = tgt->output;
    } else {
        return ey_err_set(EY_ERR_MISSING, "drafter: lm_head.weight missing (it can only be shared "
                          "with the target when draft_vocab_size == vocab_size and the hidden "
                          "sizes agree)");
    }
    return EY_OK;
}

int ey_eagle3_feat_width(const ey_eagle3 *d)
{
    return d->cfg.use_aux ? d->cfg.n_aux * d->cfg.Ht : d->cfg.Ht;
}

ey_err ey_eagle3_load(const char *dir, const ey_model *target, const ey_eagle3_opts *opts,
                      ey_eagle3 **out)
{
    *out = NULL;
    ey_eagle3 *d = calloc(1, sizeof *d);
    if (!d || !(d->priv = calloc(1, sizeof *d->priv))) {
        free(d);
        return ey_err_set(EY_ERR_NOMEM, "no memory");
    }
    d->be = target->be;
    d->priv->quant = opts ? opts->quant : EY_E3_QUANT_NONE;
    struct stat st;
    ey_err e;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        e = ey_err_set(EY_ERR_IO, "drafter '%s' is not a directory", dir);
        goto fail;
    }
    if ((e = parse_config(dir, target, opts, &d->cfg))) goto fail;
    if ((e = dt_open(d->priv, dir))) goto fail;
    if (d->cfg.n_layers_config > 1 &&
        (dt_has_prefix(d->priv, "layers.1.") || dt_has_prefix(d->priv, "midlayers.1.") ||
         dt_has_prefix(d->priv, "model.layers.1."))) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: a %d-layer drafter (eyrie runs single-layer "
                       "EAGLE-3 drafters)", dir, d->cfg.n_layers_config);
        goto fail;
    }
    if ((e = load_weights(d, target))) goto fail;
    if ((e = load_vocab_map(d))) goto fail;
    if ((e = build_rope(d))) goto fail;
    *out = d;
    return EY_OK;
fail:
    ey_eagle3_free(d);
    return e;
}

void ey_eagle3_free(ey_eagle3 *d)
{
    if (!d) return;
    ey_eagle3_priv *p = d->priv;
    if (p) {
        ey_owned_free(&p->own, d->be);
        ey_safetensors_close(p->st);
        free(p);
    }
    free(d->d2t);
    free(d);
}

/* ================================================================ runtime */

ey_err ey_eagle3_ctx_create(ey_eagle3 *d, int n_rows, int max_batch, int max_out,
                            ey_eagle3_ctx **out)
{
    *out = NULL;
    const ey_eagle3_config *c = &d->cfg;
    if (max_batch < 1 || max_batch > 8192 || max_out < 1 || max_out > max_batch || n_rows < 1 ||
        n_rows > (1 << 24))
        return ey_err_set(EY_ERR_ARG, "drafter ctx: bad sizes (%d rows, batch %d, out %d)", n_rows,
                          max_batch, max_out);
    ey_eagle3_ctx *x = calloc(1, sizeof *x);
    if (!x) return ey_err_set(EY_ERR_NOMEM, "no memory");
    x->d = d;
    x->be = d->be;
    x->max_batch = max_batch;
    x->max_out = max_out;
    x->n_rows = n_rows;
    /* one layer; block size 1 so each tree row can be addressed alone */
    ey_model_config kc = {.n_layer = 1, .n_kv_head = c->n_kv_head, .head_dim = c->head_dim};
    ey_err e = ey_kv_pool_init(&x->kv, d->be, &kc, n_rows, 1);
    if (e) {
        free(x);
        return e;
    }
    x->tbl = malloc(((size_t)n_rows + EY_E3_MAX_TREE_DEPTH + 2) * sizeof *x->tbl);
    if (!x->tbl) {
        ey_eagle3_ctx_free(x);
        return ey_err_set(EY_ERR_NOMEM, "no memory");
    }
    size_t B = (size_t)max_batch, H = (size_t)c->H, Qd = (size_t)c->n_head * c->head_dim,
           KVd = (size_t)c->n_kv_head * c->head_dim, FW = (size_t)ey_eagle3_feat_width(d);
    size_t sizes[] = {B * FW, B * H, B * H, B * H, B * 2 * H, B * Qd, B * KVd, B * KVd, B * Qd,
                      B * H, B * c->n_ff, B * c->n_ff, B * H, (size_t)max_out * H,
                      (size_t)max_out * c->Vd, B, B};
    ey_ptr *slots[] = {&x->a, &x->f, &x->e, &x->x, &x->u, &x->q, &x->k, &x->v, &x->att,
                       &x->xn, &x->gate, &x->up, &x->tmp, &x->nrm, &x->logits, &x->ids, &x->pos};
    enum { NS = sizeof sizes / sizeof *sizes };
    size_t off[NS], total = 0;
    for (int i = 0; i < NS; i++) {
        off[i] = total;
        total += (sizes[i] * 4 + 63) & ~(size_t)63;
    }
    if ((e = d->be->iface.buf_alloc(d->be, total, &x->act))) {
        ey_eagle3_ctx_free(x);
        return e;
    }
    for (int i = 0; i < NS; i++) *slots[i] = (ey_ptr){x->act, off[i]};
    *out = x;
    return EY_OK;
}

void ey_eagle3_ctx_free(ey_eagle3_ctx *c)
{
    if (!c) return;
    if (c->act) c->be->iface.buf_free(c->be, c->act);
    ey_kv_pool_free(&c->kv);
    free(c->tbl);
    free(c);
}

static inline ey_ptr row(ey_ptr p, size_t r, size_t width) { return ey_ptr_at(p, r * width * 4); }

static ey_err draft_chunk(ey_eagle3_ctx *c, ey_seq *s, const ey_draft_in *in, int t0, int T,
                          int n_out)
{
    ey_backend *be = c->be;
    const struct ey_backend_i *f = &be->iface;
    const ey_eagle3 *d = c->d;
    const ey_eagle3_config *cf = &d->cfg;
    const int H = cf->H, Ht = cf->Ht, hd = cf->head_dim, Qd = cf->n_head * hd,
              KVd = cf->n_kv_head * hd, I = cf->n_ff, FW = ey_eagle3_feat_width(d);
    const float eps = cf->rms_eps;
    const int start = s->n_past;
    ey_err e;
    if ((e = ey_seq_reserve(&c->kv, s, start + T))) return e;
    const bool mrope3 = in->pos3 && cf->mrope;
    if (in->pos3 && !cf->mrope) { /* row 0, the temporal one */
        if ((e = f->buf_set(be, c->pos, in->pos3 + t0, (size_t)T * 4))) return e;
    } else if (in->pos) {
        if ((e = f->buf_set(be, c->pos, in->pos + t0, (size_t)T * 4))) return e;
    } else {
        for (int i = 0; i < T; i++) c->tbl[i] = start + i; /* tbl as scratch */
        if ((e = f->buf_set(be, c->pos, c->tbl, (size_t)T * 4))) return e;
    }
    if (!in->embeds && (e = f->buf_set(be, c->ids, in->tokens + t0, (size_t)T * 4))) return e;

    /* 1. fusion of target features (§2.2 step 1) */
    if (in->fused) {
        if ((e = f->buf_set(be, c->a, in->feat + (size_t)t0 * FW, (size_t)T * FW * 4))) return e;
        if (cf->norm_before_fc) f->rmsnorm(be, c->a, c->a, d->input_norm.p, T, FW, eps);
        if (cf->fc_norm) /* one norm per aux chunk; chunks interleave per row */
            for (int t = 0; t < T; t++)
                for (int i = 0; i < cf->n_aux; i++) {
                    ey_ptr ch = row(c->a, (size_t)t * cf->n_aux + i, Ht);
                    f->rmsnorm(be, ch, ch, d->fc_norm[i].p, 1, Ht, eps);
                }
        if (cf->use_aux) f->matmul(be, c->f, d->fc.type, d->fc.p, (ey_ptr){0}, c->a, H, FW, T);
        else f->copy(be, c->f, c->a, (int64_t)T * H);
    } else if ((e = f->buf_set(be, c->f, in->feat + (size_t)t0 * H, (size_t)T * H * 4))) {
        return e;
    }
    /* 2. embedding of target-vocab ids, or the caller's input embeddings */
    if (in->embeds) {
        if ((e = f->buf_set(be, c->e, in->embeds + (size_t)t0 * H, (size_t)T * H * 4))) return e;
    } else {
        f->get_rows(be, c->e, d->embed.type, d->embed.p, H, c->ids, T);
    }
    /* 3. layer 0: r = f or hidden_norm(f); u = [input_layernorm(e), hidden_norm(f)] */
    if (cf->norm_before_residual) f->rmsnorm(be, c->x, c->f, d->hidden_norm.p, T, H, eps);
    else f->copy(be, c->x, c->f, (int64_t)T * H);
    for (int t = 0; t < T; t++) {
        f->rmsnorm(be, row(c->u, (size_t)t * 2, H), row(c->e, t, H), d->input_layernorm.p, 1, H,
                   eps);
        f->rmsnorm(be, row(c->u, (size_t)t * 2 + 1, H), row(c->f, t, H), d->hidden_norm.p, 1, H,
                   eps);
    }
    f->matmul(be, c->q, d->wq.type, d->wq.p, d->bq.p, c->u, Qd, 2 * H, T);
    f->matmul(be, c->k, d->wk.type, d->wk.p, d->bk.p, c->u, KVd, 2 * H, T);
    f->matmul(be, c->v, d->wv.type, d->wv.p, d->bv.p, c->u, KVd, 2 * H, T);
    if (!mrope3) {
        f->rope(be, c->q, c->pos, d->inv_freq, T, cf->n_head, hd, hd, EY_ROPE_NEOX);
        f->rope(be, c->k, c->pos, d->inv_freq, T, cf->n_kv_head, hd, hd, EY_ROPE_NEOX);
    } else {
        for (int r = 0; r < 3; r++) {
            if ((e = f->buf_set(be, c->pos, in->pos3 + (size_t)r * in->T + t0, (size_t)T * 4)))
                return e;
            f->rope(be, c->q, c->pos, d->inv_freq_mrope[r], T, cf->n_head, hd, hd, EY_ROPE_NEOX);
            f->rope(be, c->k, c->pos, d->inv_freq_mrope[r], T, cf->n_kv_head, hd, hd,
                    EY_ROPE_NEOX);
        }
    }
    ey_ptr kc = {c->kv.k, 0}, vc = {c->kv.v, 0};
    f->kv_store(be, kc, vc, c->k, c->v, KVd, start, T, s->blocks, 1);
    const float scale = 1.0f / sqrtf((float)hd);
    if (!in->anc) {
        ey_attn_args a = {.n_head = cf->n_head, .n_kv_head = cf->n_kv_head, .head_dim = hd,
                          .n_kv = start + T, .T = T, .blocks = s->blocks, .block_size = 1,
                          .mask = NULL, .scale = scale};
        f->attention(be, c->att, c->q, kc, vc, &a);
    } else {
        /* tree level (§4.1 step 3): each row sees the stable prefix, its
         * own ancestors among earlier tree rows, and itself. With block
         * size 1 the block table is a row map, so a per-row table lists
         * exactly those rows. */
        memcpy(c->tbl, s->blocks, (size_t)in->n_prefix * sizeof *c->tbl);
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < in->n_anc; i++)
                c->tbl[in->n_prefix + i] = s->blocks[in->anc[(size_t)(t0 + t) * in->n_anc + i]];
            c->tbl[in->n_prefix + in->n_anc] = s->blocks[start + t];
            ey_attn_args a = {.n_head = cf->n_head, .n_kv_head = cf->n_kv_head, .head_dim = hd,
                              .n_kv = in->n_prefix + in->n_anc + 1, .T = 1, .blocks = c->tbl,
                              .block_size = 1, .mask = NULL, .scale = scale};
            f->attention(be, row(c->att, t, Qd), row(c->q, t, Qd), kc, vc, &a);
        }
    }
    f->matmul(be, c->xn, d->wo.type, d->wo.p, d->bo.p, c->att, H, Qd, T);
    f->add(be, c->x, c->xn, (int64_t)T * H);
    f->rmsnorm(be, c->xn, c->x, d->post_norm.p, T, H, eps);
    f->matmul(be, c->gate, d->w_gate.type, d->w_gate.p, d->b_gate.p, c->xn, I, H, T);
    f->matmul(be, c->up, d->w_up.type, d->w_up.p, d->b_up.p, c->xn, I, H, T);
    f->silu_mul(be, c->gate, c->up, (int64_t)T * I);
    f->matmul(be, c->tmp, d->w_down.type, d->w_down.p, d->b_down.p, c->gate, H, I, T);
    f->add(be, c->x, c->tmp, (int64_t)T * H);
    s->n_past = start + T;
    if (n_out > 0) {
        /* 5./6. head on norm(g); the recurrent feature is g (or norm(g)) */
        ey_ptr last = row(c->x, (size_t)(T - n_out), H);
        f->rmsnorm(be, c->nrm, last, d->norm.p, n_out, H, eps);
        f->matmul(be, c->logits, d->lm_head.type, d->lm_head.p, (ey_ptr){0}, c->nrm, cf->Vd, H,
                  n_out);
        if ((e = f->sync(be))) return e;
        if (in->logits &&
            (e = f->buf_get(be, in->logits, c->logits, (size_t)n_out * cf->Vd * 4)))
            return e;
        if (in->feat_out && (e = f->buf_get(be, in->feat_out, cf->norm_output ? c->nrm : last,
                                            (size_t)n_out * H * 4)))
            return e;
    }
    return f->sync(be);
}

ey_err ey_eagle3_forward(ey_eagle3_ctx *c, ey_seq *s, const ey_draft_in *in)
{
    const ey_eagle3_config *cf = &c->d->cfg;
    if (in->T < 1 || (!in->tokens && !in->embeds) || !in->feat)
        return ey_err_set(EY_ERR_ARG, "draft forward: no rows");
    if (in->n_out < 0 || in->n_out > in->T || in->n_out > c->max_out)
        return ey_err_set(EY_ERR_ARG, "draft forward: %d output rows (max %d)", in->n_out,
                          c->max_out);
    if (s->n_past + in->T > s->max_rows || s->n_past + in->T > c->n_rows)
        return ey_err_set(EY_ERR_CAPACITY, "draft KV full: %d + %d rows", s->n_past, in->T);
    for (int t = 0; in->tokens && t < in->T; t++)
        if (in->tokens[t] < 0 || in->tokens[t] >= cf->V)
            return ey_err_set(EY_ERR_ARG, "draft forward: token %d out of range", in->tokens[t]);
    if (in->anc) {
        if (in->T > c->max_batch || in->n_anc < 0 || in->n_anc > EY_E3_MAX_TREE_DEPTH ||
            in->n_prefix < 0 || in->n_prefix > s->n_past)
            return ey_err_set(EY_ERR_ARG, "draft forward: bad tree rows");
        for (int i = 0; i < in->T * in->n_anc; i++)
            if (in->anc[i] < in->n_prefix || in->anc[i] >= s->n_past)
                return ey_err_set(EY_ERR_ARG, "draft forward: ancestor row %d outside the tree",
                                  in->anc[i]);
    }
    for (int t0 = 0; t0 < in->T; t0 += c->max_batch) {
        int n = in->T - t0 < c->max_batch ? in->T - t0 : c->max_batch;
        bool last = t0 + n == in->T;
        int no = last ? in->n_out : 0;
        if (last && no > n) return ey_err_set(EY_ERR_ARG, "draft forward: outputs span chunks");
        ey_err e = draft_chunk(c, s, in, t0, n, no);
        if (e) return e;
    }
    return EY_OK;
}

ey_err ey_eagle3_embed_rows(ey_eagle3_ctx *c, const int32_t *ids, int n, float *out)
{
    const struct ey_backend_i *f = &c->be->iface;
    const ey_eagle3 *d = c->d;
    if (n < 1 || n > c->max_batch)
        return ey_err_set(EY_ERR_ARG, "embed rows: %d rows (max %d)", n, c->max_batch);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= d->cfg.V)
            return ey_err_set(EY_ERR_ARG, "embed rows: token %d out of range", ids[i]);
    ey_err e = f->buf_set(c->be, c->ids, ids, (size_t)n * 4);
    if (e) return e;
    f->get_rows(c->be, c->e, d->embed.type, d->embed.p, d->cfg.H, c->ids, n);
    if ((e = f->sync(c->be))) return e;
    return f->buf_get(c->be, out, c->e, (size_t)n * d->cfg.H * 4);
}

/* ================================================================ writer */

typedef struct wt {
    char name[96];
    int type;
    int n_dims;
    int64_t shape[2];
    void *data;
    size_t bytes;
} wt;

static ey_err wt_add(wt *ts, int *n, const char *name, int type, int n_dims, int64_t d0,
                     int64_t d1)
{
    wt *t = &ts[(*n)++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    t->shape[0] = d0;
    t->shape[1] = d1;
    size_t nel = (size_t)d0 * (size_t)(n_dims > 1 ? d1 : 1);
    t->bytes = nel * dt_size(type);
    t->data = calloc(1, t->bytes ? t->bytes : 1);
    if (!t->data) return ey_err_set(EY_ERR_NOMEM, "drafter-init: no memory for '%s'", name);
    return EY_OK;
}

static void put_f(wt *t, size_t i, float v)
{
    if (t->type == EY_F32) ((float *)t->data)[i] = v;
    else if (t->type == EY_F16) ((uint16_t *)t->data)[i] = ey_f32_to_f16(v);
    else ((uint16_t *)t->data)[i] = ey_f32_to_bf16(v);
}

static void fill(wt *t, ey_rng *r, float std, float constant)
{
    size_t nel = (size_t)t->shape[0] * (size_t)(t->n_dims > 1 ? t->shape[1] : 1);
    for (size_t i = 0; i < nel; i++) put_f(t, i, std > 0 ? (float)(ey_rng_normal(r) * std) : constant);
}

/* trained values when given, else the random/constant init */
static void fill_v(wt *t, ey_rng *r, float std, float constant, const float *val)
{
    if (!val) {
        fill(t, r, std, constant);
        return;
    }
    size_t nel = (size_t)t->shape[0] * (size_t)(t->n_dims > 1 ? t->shape[1] : 1);
    for (size_t i = 0; i < nel; i++) put_f(t, i, val[i]);
}

static const double *g_cnt; /* comparator context (single-threaded writer) */

static int cnt_cmp(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_cnt[x] != g_cnt[y]) return g_cnt[x] > g_cnt[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static int id_cmp(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

ey_err ey_e3_read_freq(const char *path, int V, double *cnt)
{
    FILE *fp = fopen(path, "r");
    if (!fp) return ey_err_set(EY_ERR_IO, "cannot open '%s'", path);
    long long id;
    double c;
    int line = 0;
    ey_err e = EY_OK;
    while (!e && fscanf(fp, "%lld %lf", &id, &c) == 2) {
        line++;
        if (id < 0 || id >= V || !(c >= 0) || c > 1e300)
            e = ey_err_set(EY_ERR_FORMAT, "%s line %d: bad 'id count' pair", path, line);
        else cnt[id] += c;
    }
    if (!e && !feof(fp)) e = ey_err_set(EY_ERR_FORMAT, "%s: expected 'id count' lines", path);
    fclose(fp);
    return e;
}

ey_err ey_e3_vocab_from_counts(const double *cnt, int V, int Vd, int32_t *sel)
{
    int32_t *ord = malloc((size_t)V * sizeof *ord);
    if (!ord) return ey_err_set(EY_ERR_NOMEM, "no memory");
    /* top Vd by count, ties to the lower id; zero-count ids pad the set when
     * fewer distinct tokens occur (SpecForge PR #76) */
    g_cnt = cnt;
    for (int i = 0; i < V; i++) ord[i] = i;
    qsort(ord, (size_t)V, sizeof *ord, cnt_cmp);
    qsort(ord, (size_t)Vd, sizeof *ord, id_cmp);
    memcpy(sel, ord, (size_t)Vd * sizeof *sel);
    free(ord);
    return EY_OK;
}

/* Pick the draft vocabulary: sorted ascending target ids (§1.4). */
static ey_err pick_vocab(const ey_eagle3_init_opts *o, int V, int Vd, ey_rng *r, int32_t *sel)
{
    if (o->freq_path) {
        double *cnt = calloc((size_t)V, sizeof *cnt);
        if (!cnt) return ey_err_set(EY_ERR_NOMEM, "no memory");
        ey_err e = ey_e3_read_freq(o->freq_path, V, cnt);
        if (!e) e = ey_e3_vocab_from_counts(cnt, V, Vd, sel);
        free(cnt);
        return e;
    }
    if (o->random_vocab && Vd < V) {
        int32_t *perm = malloc((size_t)V * sizeof *perm);
        uint8_t *taken = calloc((size_t)V, 1);
        if (!perm || !taken) {
            free(perm);
            free(taken);
            return ey_err_set(EY_ERR_NOMEM, "no memory");
        }
        for (int i = 0; i < V; i++) perm[i] = i;
        for (int i = 0; i < Vd; i++) {
            int j = i + (int)(ey_rng_next(r) % (uint64_t)(V - i));
            int32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
            taken[perm[i]] = 1;
        }
        int j = 0;
        for (int i = 0; i < V; i++)
            if (taken[i]) sel[j++] = i;
        free(perm);
        free(taken);
        return EY_OK;
    }
    for (int i = 0; i < Vd; i++) sel[i] = i;
    return EY_OK;
}

static ey_err write_safetensors(const char *path, wt *ts, int n)
{
    cJSON *h = cJSON_CreateObject();
    if (!h) return ey_err_set(EY_ERR_NOMEM, "no memory");
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(h, ts[i].name);
        cJSON_AddStringToObject(t, "dtype", dt_name(ts[i].type));
        cJSON *sh = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < ts[i].n_dims; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)ts[i].shape[d]));
        cJSON *of = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + ts[i].bytes)));
        off += ts[i].bytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!js) return ey_err_set(EY_ERR_NOMEM, "no memory");
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(js);
        return ey_err_set(EY_ERR_IO, "drafter-init: cannot create '%s'", path);
    }
    uint64_t hl = padded;
    bool ok = fwrite(&hl, 8, 1, fp) == 1 && fwrite(js, 1, jl, fp) == jl;
    for (size_t i = jl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < n; i++)
        ok = ts[i].bytes == 0 || fwrite(ts[i].data, 1, ts[i].bytes, fp) == ts[i].bytes;
    free(js);
    if (fclose(fp) || !ok) return ey_err_set(EY_ERR_IO, "drafter-init: write to '%s' failed", path);
    return EY_OK;
}

static void add_ids(cJSON *o, const int *ids, int n)
{
    cJSON *a = cJSON_AddArrayToObject(o, "eagle_aux_hidden_state_layer_ids");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
}

ey_err ey_eagle3_write_random(const ey_model *target, const char *dir,
                              const ey_eagle3_init_opts *o)
{
    const ey_model_config *tc = &target->cfg;
    const int V = tc->n_vocab, H = tc->n_embd, N = tc->n_layer;
    const int Vd = o->draft_vocab > 0 ? o->draft_vocab : V;
    const int I = o->n_ff > 0 ? o->n_ff : tc->n_ff;
    const int nh = tc->n_head, nkv = tc->n_kv_head, hd = tc->head_dim;
    const float std = o->init_std > 0 ? o->init_std : 0.02f;
    const int dt = o->dtype == EY_F16 || o->dtype == EY_BF16 ? (int)o->dtype : EY_F32;
    if (Vd > V) return ey_err_set(EY_ERR_ARG, "drafter-init: draft vocab %d exceeds the target's %d",
                                  Vd, V);
    if (I < 1 || I > EY_MAX_FF) return ey_err_set(EY_ERR_ARG, "drafter-init: bad n_ff %d", I);
    if (mkdir(dir, 0755) && errno != EEXIST)
        return ey_err_set(EY_ERR_IO, "drafter-init: cannot create '%s'", dir);
    ey_rng r;
    ey_rng_seed(&r, o->seed);
    int32_t *sel = malloc((size_t)Vd * sizeof *sel);
    if (!sel) return ey_err_set(EY_ERR_NOMEM, "no memory");
    const ey_e3_values *val = o->values;
    ey_err e = EY_OK;
    if (val && (o->layout != EY_E3_LAYOUT_EAGLE || o->norm_before_fc || o->fc_norm ||
                o->norm_before_residual || o->norm_output))
        e = ey_err_set(EY_ERR_ARG, "drafter writer: trained values are written in the EAGLE "
                                   "layout without optional norms only");
    if (!e && val)
        for (int i = 0; i < Vd; i++) {
            sel[i] = val->vocab[i];
            if (sel[i] < 0 || sel[i] >= V || (i && sel[i] <= sel[i - 1]))
                e = ey_err_set(EY_ERR_ARG, "drafter writer: the vocabulary must be ascending "
                                           "target ids");
        }
    if (!e && !val) e = pick_vocab(o, V, Vd, &r, sel);
    wt ts[32];
    int n = 0;
    const bool spec = o->layout == EY_E3_LAYOUT_SPECULATORS;
    const char *pre = spec ? "layers.0." : "midlayer.";
    const int Ht = H, FW = 3 * Ht;
    /* the default ids {2, N/2, N-3}, clamped, as input-of-layer ids */
    int aux[3] = {2, N / 2, N - 3};
    for (int i = 0; i < 3; i++) aux[i] = aux[i] < 0 ? 0 : aux[i] > N ? N : aux[i];
    if (o->aux_ids)
        for (int i = 0; i < 3; i++) {
            if (o->aux_ids[i] < 0 || o->aux_ids[i] > N) e = ey_err_set(EY_ERR_ARG, "drafter-init: "
                                                                  "aux id %d outside [0, %d]",
                                                                  o->aux_ids[i], N);
            aux[i] = o->aux_ids[i];
        }
    char nm[96];
#define ADD(name, t, nd, a, b)                                                                    \
    do {                                                                                         \
        if (!e) e = wt_add(ts, &n, name, t, nd, a, b);                                           \
    } while (0)
#define ADDL(suf, nd, a, b, sd, cst, v)                                                           \
    do {                                                                                         \
        snprintf(nm, sizeof nm, "%s%s", pre, suf);                                               \
        ADD(nm, dt, nd, a, b);                                                                   \
        if (!e) fill_v(&ts[n - 1], &r, sd, cst, val ? val->v : NULL);                            \
    } while (0)
    ADD("fc.weight", dt, 2, H, FW);
    if (!e) fill_v(&ts[n - 1], &r, std, 0, val ? val->fc : NULL);
    if (o->norm_before_fc) {
        ADD("input_norm.weight", dt, 1, FW, 0);
        if (!e) fill(&ts[n - 1], &r, 0, 1.0f);
    }
    if (o->fc_norm)
        for (int i = 0; i < 3; i++) {
            snprintf(nm, sizeof nm, "fc_norm.%d.weight", i);
            ADD(nm, dt, 1, Ht, 0);
            if (!e) fill(&ts[n - 1], &r, 0, 1.0f);
        }
    ADDL("hidden_norm.weight", 1, H, 0, 0, 1.0f, hidden_norm);
    ADDL("input_layernorm.weight", 1, H, 0, 0, 1.0f, input_layernorm);
    ADDL("self_attn.q_proj.weight", 2, (int64_t)nh * hd, 2 * H, std, 0, wq);
    ADDL("self_attn.k_proj.weight", 2, (int64_t)nkv * hd, 2 * H, std, 0, wk);
    ADDL("self_attn.v_proj.weight", 2, (int64_t)nkv * hd, 2 * H, std, 0, wv);
    ADDL("self_attn.o_proj.weight", 2, H, (int64_t)nh * hd, std, 0, wo);
    ADDL("post_attention_layernorm.weight", 1, H, 0, 0, 1.0f, post_norm);
    ADDL("mlp.gate_proj.weight", 2, I, H, std, 0, w_gate);
    ADDL("mlp.up_proj.weight", 2, I, H, std, 0, w_up);
    ADDL("mlp.down_proj.weight", 2, H, I, std, 0, w_down);
    ADD("norm.weight", dt, 1, H, 0);
    if (!e) fill_v(&ts[n - 1], &r, 0, 1.0f, val ? val->norm : NULL);
    ADD("lm_head.weight", dt, 2, Vd, H);
    if (!e) fill_v(&ts[n - 1], &r, std, 0, val ? val->lm_head : NULL);
    if (!o->no_d2t) {
        ADD("d2t", EY_I64, 1, Vd, 0);
        if (!e)
            for (int i = 0; i < Vd; i++) ((int64_t *)ts[n - 1].data)[i] = sel[i] - i;
        ADD("t2d", EY_BOOL, 1, V, 0);
        if (!e)
            for (int i = 0; i < Vd; i++) ((uint8_t *)ts[n - 1].data)[sel[i]] = 1;
    }
    if (o->with_embed || o->layout == EY_E3_LAYOUT_SPECFORGE) {
        /* copy the target's embedding (dequantized) into the drafter */
        ADD("embed_tokens.weight", dt, 2, V, H);
        if (!e) {
            float *rowf = malloc((size_t)H * sizeof *rowf);
            if (!rowf) e = ey_err_set(EY_ERR_NOMEM, "no memory");
            for (int32_t v = 0; !e && v < V; v++) {
                e = ey_weight_rows_f32(target->be, &target->tok_embd, H, &v, 1, rowf);
                for (int i = 0; !e && i < H; i++) put_f(&ts[n - 1], (size_t)v * H + i, rowf[i]);
            }
            free(rowf);
        }
    }
#undef ADDL
#undef ADD
    char path[4096 + 32];
    if (!e) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        e = write_safetensors(path, ts, n);
    }
    if (!e) {
        cJSON *root = cJSON_CreateObject(), *lc = root;
        const char *dts = dt == EY_F32 ? "float32" : dt == EY_F16 ? "float16" : "bfloat16";
        if (spec) {
            cJSON *a = cJSON_AddArrayToObject(root, "architectures");
            cJSON_AddItemToArray(a, cJSON_CreateString("Eagle3Speculator"));
            cJSON_AddStringToObject(root, "speculators_model_type", "eagle3");
            lc = cJSON_AddObjectToObject(root, "transformer_layer_config");
            cJSON_AddNumberToObject(root, "draft_vocab_size", Vd);
            cJSON_AddBoolToObject(root, "norm_before_residual", o->norm_before_residual);
            cJSON_AddNumberToObject(root, "target_hidden_size", Ht);
            if (o->write_aux_ids) add_ids(root, aux, 3);
            cJSON *sc = cJSON_AddObjectToObject(root, "speculators_config");
            cJSON_AddStringToObject(sc, "algorithm", "eagle3");
            cJSON *v = cJSON_AddObjectToObject(sc, "verifier");
            cJSON_AddStringToObject(v, "name_or_path", target->name ? target->name : "");
        } else {
            cJSON *a = cJSON_AddArrayToObject(root, "architectures");
            const char *an = o->layout == EY_E3_LAYOUT_SPECFORGE ? "LlamaForCausalLMEagle3"
                             : o->layout == EY_E3_LAYOUT_ANGELSLIM ? "Eagle3LlamaForCausalLM"
                                                                   : "LlamaForCausalLM";
            cJSON_AddItemToArray(a, cJSON_CreateString(an));
            cJSON_AddNumberToObject(root, "draft_vocab_size", Vd);
            if (o->norm_before_residual) cJSON_AddBoolToObject(root, "norm_before_residual", 1);
            if (o->write_aux_ids) {
                if (o->layout == EY_E3_LAYOUT_EAGLE) {
                    add_ids(root, aux, 3);
                    /* trained exports also carry SGLang's/SpecForge's spelling
                     * (output-of-layer ids); the top-level ids win in eyrie and vLLM */
                    if (val && aux[0] > 0 && aux[1] > 0 && aux[2] > 0) {
                        int out_ids[3] = {aux[0] - 1, aux[1] - 1, aux[2] - 1};
                        add_ids(cJSON_AddObjectToObject(root, "eagle_config"), out_ids, 3);
                    }
                } else {
                    /* SpecForge/AngelSlim write output-of-layer ids (§2.1) */
                    int out_ids[3];
                    for (int i = 0; i < 3; i++) out_ids[i] = aux[i] - 1;
                    if (out_ids[0] < 0 || out_ids[1] < 0 || out_ids[2] < 0) {
                        cJSON_Delete(root);
                        e = ey_err_set(EY_ERR_ARG, "drafter-init: the target is too shallow for "
                                       "output-of-layer aux ids");
                        goto done;
                    }
                    cJSON *ec = cJSON_AddObjectToObject(root, "eagle_config");
                    add_ids(ec, out_ids, 3);
                }
            }
        }
        cJSON_AddStringToObject(lc, "model_type", "llama");
        cJSON_AddStringToObject(lc, "hidden_act", "silu");
        cJSON_AddNumberToObject(lc, "hidden_size", H);
        cJSON_AddNumberToObject(lc, "intermediate_size", I);
        cJSON_AddNumberToObject(lc, "num_attention_heads", nh);
        cJSON_AddNumberToObject(lc, "num_key_value_heads", nkv);
        cJSON_AddNumberToObject(lc, "head_dim", hd);
        cJSON_AddNumberToObject(lc, "num_hidden_layers", 1);
        cJSON_AddNumberToObject(lc, "vocab_size", V);
        cJSON_AddNumberToObject(lc, "rms_norm_eps", tc->rms_eps);
        cJSON_AddNumberToObject(lc, "rope_theta", tc->rope_theta);
        cJSON_AddNumberToObject(lc, "max_position_embeddings", tc->n_ctx_train);
        cJSON_AddBoolToObject(lc, "tie_word_embeddings", o->layout == EY_E3_LAYOUT_ANGELSLIM);
        cJSON_AddStringToObject(lc, "torch_dtype", dts);
        if (o->fc_norm) cJSON_AddBoolToObject(root, "fc_norm", 1);
        if (o->norm_before_fc) cJSON_AddBoolToObject(root, "norm_before_fc", 1);
        if (o->norm_output) cJSON_AddBoolToObject(root, "norm_output", 1);
        char *js = cJSON_Print(root);
        cJSON_Delete(root);
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *fp = js ? fopen(path, "w") : NULL;
        if (!fp || fputs(js, fp) == EOF || fputc('\n', fp) == EOF)
            e = ey_err_set(EY_ERR_IO, "drafter-init: cannot write '%s'", path);
        if (fp && fclose(fp) && !e) e = ey_err_set(EY_ERR_IO, "drafter-init: write failed");
        free(js);
    }
done:
    for (int i = 0; i < n; i++) free(ts[i].data);
    free(sel);
    return e;
}
