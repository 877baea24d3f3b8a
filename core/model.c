#include "model.h"
#include "owned.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "safetensors.h"

/* Where the tensors come from, behind one lookup. */
typedef struct src_tensor {
    ey_dtype type;
    int n_dims;
    int64_t ne[4]; /* ne[0] contiguous (GGUF order) */
    const void *data;
    size_t bytes;
} src_tensor;

typedef struct ey_model_priv {
    ey_gguf *gguf;
    ey_safetensors *st;
    ey_owned own; /* weight buffers; converted tensors (norms, biases as f32) */
    bool is_gguf;
} ey_model_priv;

const char *ey_arch_name(ey_arch a)
{
    switch (a) {
    case EY_ARCH_LLAMA: return "llama";
    case EY_ARCH_QWEN2: return "qwen2";
    case EY_ARCH_QWEN3: return "qwen3";
    }
    return "?";
}

static bool find_src(const ey_model_priv *p, const char *name, src_tensor *t)
{
    if (p->is_gguf) {
        const ey_gguf_tensor *g = ey_gguf_tensor_find(p->gguf, name);
        if (!g) return false;
        *t = (src_tensor){g->type, g->n_dims, {g->ne[0], g->ne[1], g->ne[2], g->ne[3]}, g->data,
                          g->bytes};
        return true;
    }
    const ey_st_tensor *s = ey_st_find(p->st, name);
    if (!s) return false;
    *t = (src_tensor){s->type, s->n_dims, {1, 1, 1, 1}, s->data, s->bytes};
    for (int d = 0; d < s->n_dims; d++) t->ne[d] = s->shape[s->n_dims - 1 - d];
    return true;
}

/* Upload host bytes as a backend buffer owned by the model. */
static ey_err upload(ey_model *m, const void *host, size_t bytes, ey_ptr *out)
{
    return ey_owned_upload(&m->priv->own, m->be, host, bytes, out);
}

/* How get_weight keeps a tensor: as read; converted to f32 on the host
 * (norms, biases); or as a matmul weight, in the backend's own layout when
 * it has one (ey_backend_i.weight_type: the CPU repacks quantized matrices). */
enum { W_RAW, W_F32, W_MM };

/* Fetch a tensor that must have shape [N][K] (N = 1 for vectors). */
static ey_err get_weight(ey_model *m, const char *name, int64_t K, int64_t N, bool vec,
                         int how, bool required, ey_weight *w)
{
    const bool as_f32 = how == W_F32;
    src_tensor t;
    memset(w, 0, sizeof *w);
    if (!find_src(m->priv, name, &t)) {
        if (!required) return EY_OK;
        return ey_err_set(EY_ERR_MISSING, "model: tensor '%s' is missing", name);
    }
    if (!m->priv->is_gguf && t.type != EY_F32 && t.type != EY_F16 && t.type != EY_BF16)
        return ey_err_set(EY_ERR_UNSUPPORTED, "model: tensor '%s' has dtype %s (weights must be "
                          "F32, F16 or BF16)", name, ey_dtype_name(t.type));
    int64_t nel = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3];
    bool ok = vec ? (nel == K && t.ne[0] == K) : (t.n_dims == 2 && t.ne[0] == K && t.ne[1] == N);
    if (!ok)
        return ey_err_set(EY_ERR_SHAPE, "model: tensor '%s' has shape [%lld, %lld], expected "
                          "[%lld, %lld] from the config", name, (long long)t.ne[1],
                          (long long)t.ne[0], (long long)(vec ? 1 : N), (long long)K);
    w->K = K;
    w->N = vec ? 1 : N;
    if (as_f32 && t.type != EY_F32) {
        float *f = malloc((size_t)nel * sizeof *f);
        if (!f) return ey_err_set(EY_ERR_NOMEM, "model: no memory for '%s'", name);
        ey_err e = ey_owned_host(&m->priv->own, f);
        if (e) { free(f); return e; }
        size_t rb = ey_dtype_row_bytes(t.type, t.ne[0]);
        for (int64_t r = 0; r < nel / t.ne[0]; r++)
            ey_dequant_row(t.type, (const uint8_t *)t.data + r * rb, f + r * t.ne[0], t.ne[0]);
        w->type = EY_F32;
        return upload(m, f, (size_t)nel * sizeof *f, &w->p);
    }
    w->type = t.type;
    if (how == W_MM)
        return ey_owned_upload_mm(&m->priv->own, m->be, &w->type, t.data, t.bytes, N, K, &w->p);
    return upload(m, t.data, t.bytes, &w->p);
}

/* ---------------------------------------------------------------- config */

static int json_int(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < -2e9 || v->valuedouble > 2e9) return def;
    return (int)v->valuedouble;
}

static double json_num(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static bool json_bool(const cJSON *o, const char *k, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static ey_err check_config(ey_model_config *c)
{
    if (c->n_layer < 1 || c->n_layer > EY_MAX_LAYERS || c->n_embd < 1 || c->n_embd > EY_MAX_EMBD ||
        c->n_head < 1 || c->n_head > EY_MAX_HEADS || c->n_kv_head < 1 ||
        c->n_kv_head > c->n_head || c->n_head % c->n_kv_head || c->head_dim < 2 ||
        c->head_dim > EY_MAX_HEAD_DIM || c->head_dim % 2 || c->n_ff < 1 || c->n_ff > EY_MAX_FF ||
        c->n_vocab < 1 || c->n_vocab > EY_MAX_VOCAB || c->n_ctx_train < 1 ||
        c->rope_dim < 2 || c->rope_dim > c->head_dim || c->rope_dim % 2 || !(c->rms_eps > 0) ||
        !(c->rope_theta > 0))
        return ey_err_set(EY_ERR_FORMAT, "model: config out of range (layers %d, hidden %d, "
                          "heads %d/%d, head_dim %d, ff %d, vocab %d)", c->n_layer, c->n_embd,
                          c->n_head, c->n_kv_head, c->head_dim, c->n_ff, c->n_vocab);
    if (!strcmp(c->rope_scaling, "llama3") &&
        (!(c->rope_factor > 0) || !(c->rope_high_freq > c->rope_low_freq) || c->rope_orig_ctx < 1))
        return ey_err_set(EY_ERR_FORMAT, "model: bad llama3 rope_scaling parameters");
    if (!strcmp(c->rope_scaling, "linear") && !(c->rope_factor > 0))
        return ey_err_set(EY_ERR_FORMAT, "model: bad linear rope_scaling factor");
    return EY_OK;
}

static ey_err parse_hf_config(const char *dir, ey_model_config *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *txt;
    ey_err e = ey_read_file(path, 1u << 20, &txt, NULL);
    if (e) return e;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ey_err_set(EY_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : "";
    memset(c, 0, sizeof *c);
    if (!strcmp(type, "llama") || !strcmp(type, "mistral")) c->arch = EY_ARCH_LLAMA;
    else if (!strcmp(type, "qwen2")) c->arch = EY_ARCH_QWEN2;
    else if (!strcmp(type, "qwen3")) c->arch = EY_ARCH_QWEN3;
    else {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: model_type '%.40s' is not supported (llama, "
                       "qwen2, qwen3)", path, type);
        cJSON_Delete(j);
        return e;
    }
    c->n_layer = json_int(j, "num_hidden_layers", 0);
    c->n_embd = json_int(j, "hidden_size", 0);
    c->n_head = json_int(j, "num_attention_heads", 0);
    c->n_kv_head = json_int(j, "num_key_value_heads", c->n_head);
    c->head_dim = json_int(j, "head_dim", c->n_head > 0 ? c->n_embd / c->n_head : 0);
    c->n_ff = json_int(j, "intermediate_size", 0);
    c->n_vocab = json_int(j, "vocab_size", 0);
    c->n_ctx_train = json_int(j, "max_position_embeddings", 2048);
    c->rms_eps = (float)json_num(j, "rms_norm_eps", 1e-6);
    /* transformers 5 may write only rope_parameters {rope_theta, rope_type, ...} */
    const cJSON *rparams = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    if (!cJSON_IsObject(rparams)) rparams = NULL;
    c->rope_theta = (float)json_num(j, "rope_theta",
                                    rparams ? json_num(rparams, "rope_theta", 10000.0) : 10000.0);
    c->rope_dim = c->head_dim;
    c->rope_mode = EY_ROPE_NEOX;
    c->tied_embeddings = json_bool(j, "tie_word_embeddings", false);
    c->qkv_bias = c->arch == EY_ARCH_QWEN2;
    c->qk_norm = c->arch == EY_ARCH_QWEN3;
    if (c->arch == EY_ARCH_LLAMA && (json_bool(j, "attention_bias", false) ||
                                     json_bool(j, "mlp_bias", false))) {
        cJSON_Delete(j);
        return ey_err_set(EY_ERR_UNSUPPORTED, "%s: llama attention_bias/mlp_bias not supported",
                          path);
    }
    if (c->arch == EY_ARCH_QWEN3 && json_bool(j, "attention_bias", false)) c->qkv_bias = true;
    strcpy(c->rope_scaling, "none");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (!cJSON_IsObject(rs)) rs = rparams;
    if (cJSON_IsObject(rs)) {
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!cJSON_IsString(rt)) rt = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *t = cJSON_IsString(rt) ? rt->valuestring : "default";
        c->rope_factor = (float)json_num(rs, "factor", 1.0);
        if (!strcmp(t, "llama3")) {
            strcpy(c->rope_scaling, "llama3");
            c->rope_low_freq = (float)json_num(rs, "low_freq_factor", 1.0);
            c->rope_high_freq = (float)json_num(rs, "high_freq_factor", 4.0);
            c->rope_orig_ctx = json_int(rs, "original_max_position_embeddings", 8192);
        } else if (!strcmp(t, "linear")) {
            strcpy(c->rope_scaling, "linear");
        } else if (strcmp(t, "default")) {
            e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: rope_scaling type '%.32s' not supported "
                           "(default, linear, llama3)", path, t);
            cJSON_Delete(j);
            return e;
        }
    }
    cJSON_Delete(j);
    return check_config(c);
}

static ey_err parse_gguf_config(const ey_gguf *g, ey_model_config *c)
{
    char *arch = ey_gguf_get_str(g, "general.architecture");
    if (!arch) return ey_err_set(EY_ERR_MISSING, "gguf: general.architecture missing");
    memset(c, 0, sizeof *c);
    if (!strcmp(arch, "llama")) c->arch = EY_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2")) c->arch = EY_ARCH_QWEN2;
    else if (!strcmp(arch, "qwen3")) c->arch = EY_ARCH_QWEN3;
    else {
        ey_err e = ey_err_set(EY_ERR_UNSUPPORTED, "gguf: architecture '%.40s' not supported "
                              "(llama, qwen2, qwen3)", arch);
        free(arch);
        return e;
    }
    char key[128];
    int64_t v;
    double d;
#define GI(field, name, def)                                                                  \
    snprintf(key, sizeof key, "%s.%s", arch, name);                                           \
    c->field = ey_gguf_get_int(g, key, &v) && v > 0 && v < (1 << 30) ? (int)v : (def);
    GI(n_layer, "block_count", 0);
    GI(n_embd, "embedding_length", 0);
    GI(n_head, "attention.head_count", 0);
    GI(n_kv_head, "attention.head_count_kv", c->n_head);
    GI(n_ff, "feed_forward_length", 0);
    GI(n_ctx_train, "context_length", 2048);
    GI(head_dim, "attention.key_length", c->n_head ? c->n_embd / c->n_head : 0);
    GI(rope_dim, "rope.dimension_count", c->head_dim);
    GI(n_vocab, "vocab_size", 0);
#undef GI
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    c->rms_eps = ey_gguf_get_float(g, key, &d) ? (float)d : 1e-6f;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    c->rope_theta = ey_gguf_get_float(g, key, &d) ? (float)d : 10000.0f;
    strcpy(c->rope_scaling, "none");
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    char *st = ey_gguf_get_str(g, key);
    if (st && !strcmp(st, "linear")) {
        strcpy(c->rope_scaling, "linear");
        snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
        c->rope_factor = ey_gguf_get_float(g, key, &d) ? (float)d : 1.0f;
    } else if (st && strcmp(st, "none")) {
        ey_err e = ey_err_set(EY_ERR_UNSUPPORTED, "gguf: rope scaling '%.32s' not supported", st);
        free(st);
        free(arch);
        return e;
    }
    free(st);
    free(arch);
    /* llama.cpp permutes Q/K of llama checkpoints for interleaved RoPE; the
     * Qwen families keep the HF (NEOX) layout. */
    c->rope_mode = c->arch == EY_ARCH_LLAMA ? EY_ROPE_NORMAL : EY_ROPE_NEOX;
    if (!c->n_vocab) {
        const ey_gguf_tensor *te = ey_gguf_tensor_find(g, "token_embd.weight");
        if (te && te->n_dims == 2 && te->ne[1] < EY_MAX_VOCAB) c->n_vocab = (int)te->ne[1];
    }
    c->tied_embeddings = ey_gguf_tensor_find(g, "output.weight") == NULL;
    c->qkv_bias = ey_gguf_tensor_find(g, "blk.0.attn_q.bias") != NULL;
    c->qk_norm = c->arch == EY_ARCH_QWEN3;
    return check_config(c);
}

/* ---------------------------------------------------------------- rope */

static ey_err build_rope(ey_model *m)
{
    const ey_model_config *c = &m->cfg;
    int half = c->rope_dim / 2;
    float *f = malloc((size_t)half * sizeof *f);
    if (!f) return ey_err_set(EY_ERR_NOMEM, "no memory");
    ey_err e = ey_owned_host(&m->priv->own, f);
    if (e) { free(f); return e; }
    for (int i = 0; i < half; i++) {
        f[i] = ey_rope_inv_freq(c->rope_theta, i, c->rope_dim, c->rope_scaling, c->rope_factor,
                                c->rope_low_freq, c->rope_high_freq, c->rope_orig_ctx);
    }
    /* GGUF llama3 checkpoints carry per-pair divisors instead of config keys */
    src_tensor rf;
    if (m->priv->is_gguf && find_src(m->priv, "rope_freqs.weight", &rf)) {
        if (rf.type != EY_F32 || rf.ne[0] != half || rf.n_dims != 1)
            return ey_err_set(EY_ERR_SHAPE, "gguf: rope_freqs.weight must be f32 [%d]", half);
        const float *div = rf.data;
        for (int i = 0; i < half; i++) {
            if (!(div[i] > 0)) return ey_err_set(EY_ERR_FORMAT, "gguf: rope_freqs has %g", div[i]);
            f[i] /= div[i];
        }
        strcpy(m->cfg.rope_scaling, "freqs");
    }
    return upload(m, f, (size_t)half * sizeof *f, &m->inv_freq);
}

/* ---------------------------------------------------------------- weights */

static ey_err load_weights(ey_model *m)
{
    const ey_model_config *c = &m->cfg;
    const bool g = m->priv->is_gguf;
    int64_t H = c->n_embd, Q = (int64_t)c->n_head * c->head_dim,
            KV = (int64_t)c->n_kv_head * c->head_dim, F = c->n_ff;
    char n[256];
    ey_err e;
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) return ey_err_set(EY_ERR_NOMEM, "no memory");
#define W(dst, gname, hname, K, N, vec, how, req)                                              \
    do {                                                                                      \
        if (g) snprintf(n, sizeof n, "%s", gname);                                            \
        else snprintf(n, sizeof n, "%s", hname);                                              \
        if ((e = get_weight(m, n, K, N, vec, how, req, dst))) return e;                       \
    } while (0)
    /* tied: the embedding is also the head, a matmul weight (the CPU repacks
     * it; embedding lookups read the repacked rows) */
    W(&m->tok_embd, "token_embd.weight", "model.embed_tokens.weight", H, c->n_vocab, false,
      c->tied_embeddings ? W_MM : W_RAW, true);
    W(&m->out_norm, "output_norm.weight", "model.norm.weight", H, 1, true, W_F32, true);
    if (c->tied_embeddings) {
        m->output = m->tok_embd;
    } else {
        W(&m->output, "output.weight", "lm_head.weight", H, c->n_vocab, false, W_MM, true);
    }
    for (int l = 0; l < c->n_layer; l++) {
        ey_layer_w *L = &m->layers[l];
        char gn[128], hn[160];
#define LW(dst, gsuf, hsuf, K, N, vec, how, req)                                               \
    do {                                                                                      \
        snprintf(gn, sizeof gn, "blk.%d.%s", l, gsuf);                                        \
        snprintf(hn, sizeof hn, "model.layers.%d.%s", l, hsuf);                               \
        W(dst, gn, hn, K, N, vec, how, req);                                                  \
    } while (0)
        LW(&L->attn_norm, "attn_norm.weight", "input_layernorm.weight", H, 1, true, W_F32, true);
        LW(&L->wq, "attn_q.weight", "self_attn.q_proj.weight", H, Q, false, W_MM, true);
        LW(&L->wk, "attn_k.weight", "self_attn.k_proj.weight", H, KV, false, W_MM, true);
        LW(&L->wv, "attn_v.weight", "self_attn.v_proj.weight", H, KV, false, W_MM, true);
        LW(&L->wo, "attn_output.weight", "self_attn.o_proj.weight", Q, H, false, W_MM, true);
        if (c->qkv_bias) {
            LW(&L->bq, "attn_q.bias", "self_attn.q_proj.bias", Q, 1, true, W_F32, true);
            LW(&L->bk, "attn_k.bias", "self_attn.k_proj.bias", KV, 1, true, W_F32, true);
            LW(&L->bv, "attn_v.bias", "self_attn.v_proj.bias", KV, 1, true, W_F32, true);
        }
        if (c->qk_norm) {
            LW(&L->q_norm, "attn_q_norm.weight", "self_attn.q_norm.weight", c->head_dim, 1, true,
               W_F32, true);
            LW(&L->k_norm, "attn_k_norm.weight", "self_attn.k_norm.weight", c->head_dim, 1, true,
               W_F32, true);
        }
        LW(&L->ffn_norm, "ffn_norm.weight", "post_attention_layernorm.weight", H, 1, true, W_F32,
           true);
        LW(&L->w_gate, "ffn_gate.weight", "mlp.gate_proj.weight", H, F, false, W_MM, true);
        LW(&L->w_up, "ffn_up.weight", "mlp.up_proj.weight", H, F, false, W_MM, true);
        LW(&L->w_down, "ffn_down.weight", "mlp.down_proj.weight", F, H, false, W_MM, true);
#undef LW
        ey_weight *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++)
            m->weight_bytes += ey_dtype_row_bytes(mats[i]->type, mats[i]->K) * (size_t)mats[i]->N;
    }
#undef W
    m->weight_bytes += ey_dtype_row_bytes(m->output.type, m->output.K) * (size_t)m->output.N;
    return EY_OK;
}

/* ---------------------------------------------------------------- tokenizer */

static ey_err load_gguf_tokenizer(ey_model *m)
{
    const ey_gguf *g = m->priv->gguf;
    char *model = ey_gguf_get_str(g, "tokenizer.ggml.model");
    if (!model) return EY_OK; /* no vocabulary: token ids only */
    ey_err e = EY_OK;
    char **tokens = NULL, **merges = NULL, *pre = NULL;
    int32_t *types = NULL;
    int64_t n_tok = 0, n_merge = 0, n_types = 0, v;
    if (strcmp(model, "gpt2")) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "gguf: tokenizer model '%.32s' not supported (gpt2 "
                       "byte-level BPE)", model);
        goto out;
    }
    if ((e = ey_gguf_get_str_array(g, "tokenizer.ggml.tokens", &tokens, &n_tok))) goto out;
    if (ey_gguf_find(g, "tokenizer.ggml.merges") &&
        (e = ey_gguf_get_str_array(g, "tokenizer.ggml.merges", &merges, &n_merge)))
        goto out;
    if (ey_gguf_find(g, "tokenizer.ggml.token_type")) {
        if ((e = ey_gguf_get_i32_array(g, "tokenizer.ggml.token_type", &types, &n_types))) goto out;
        if (n_types != n_tok) {
            e = ey_err_set(EY_ERR_FORMAT, "gguf: %lld token types for %lld tokens",
                           (long long)n_types, (long long)n_tok);
            goto out;
        }
    }
    if (n_tok > EY_MAX_VOCAB || n_merge > EY_MAX_VOCAB) {
        e = ey_err_set(EY_ERR_LIMIT, "gguf: vocabulary too large");
        goto out;
    }
    pre = ey_gguf_get_str(g, "tokenizer.ggml.pre");
    ey_tok_spec spec = {
        .n_vocab = (int)n_tok, .tokens = (const char *const *)tokens, .types = types,
        .n_merges = (int)n_merge, .merges = (const char *const *)merges,
        .pre = pre ? pre : "default",
        .bos_id = ey_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v) ? (int32_t)v : -1,
        .eos_id = ey_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v) ? (int32_t)v : -1,
        .pad_id = ey_gguf_get_int(g, "tokenizer.ggml.padding_token_id", &v) ? (int32_t)v : -1,
        .add_bos = ey_gguf_get_int(g, "tokenizer.ggml.add_bos_token", &v) ? v != 0 : false,
    };
    e = ey_tokenizer_from_spec(&spec, &m->tok);
    if (!e) {
        char *tmpl = ey_gguf_get_str(g, "tokenizer.chat_template");
        e = ey_chat_template_init(&m->chat, tmpl);
        free(tmpl);
    }
out:
    free(model);
    free(pre);
    free(types);
    ey_gguf_free_strs(tokens, n_tok);
    ey_gguf_free_strs(merges, n_merge);
    return e;
}

static ey_err load_hf_tokenizer(ey_model *m, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    struct stat st;
    if (stat(path, &st)) return EY_OK; /* token ids only */
    ey_err e = ey_tokenizer_from_json_file(path, &m->tok);
    if (e) return e;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    char *txt = NULL;
    if (stat(path, &st) == 0 && (e = ey_read_file(path, 16u << 20, &txt, NULL))) return e;
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    const char *tmpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
    if (cJSON_IsArray(ct)) /* [{name, template}, ...]: take "default" or the first */
        for (const cJSON *it = ct->child; it; it = it->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(it, "template");
            if (cJSON_IsString(tp) && (!tmpl || (cJSON_IsString(nm) &&
                                                 !strcmp(nm->valuestring, "default"))))
                tmpl = tp->valuestring;
        }
    e = ey_chat_template_init(&m->chat, tmpl);
    cJSON_Delete(j);
    return e;
}

/* ---------------------------------------------------------------- entry */

ey_err ey_model_load(const char *path, ey_backend *be, ey_model **out)
{
    *out = NULL;
    ey_model *m = calloc(1, sizeof *m);
    if (!m || !(m->priv = calloc(1, sizeof *m->priv))) {
        free(m);
        return ey_err_set(EY_ERR_NOMEM, "no memory");
    }
    m->be = be;
    ey_err e;
    struct stat st;
    if (stat(path, &st)) {
        e = ey_err_set(EY_ERR_IO, "model '%s' not found", path);
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        if ((e = parse_hf_config(path, &m->cfg))) goto fail;
        if ((e = ey_safetensors_open_dir(path, &m->priv->st))) goto fail;
        if ((e = load_hf_tokenizer(m, path))) goto fail;
    } else {
        m->priv->is_gguf = true;
        if ((e = ey_gguf_open(path, &m->priv->gguf))) goto fail;
        if ((e = parse_gguf_config(m->priv->gguf, &m->cfg))) goto fail;
        if ((e = load_gguf_tokenizer(m))) goto fail;
        char *nm = ey_gguf_get_str(m->priv->gguf, "general.name");
        m->name = nm;
    }
    if (!m->name) m->name = strdup(path);
    if ((e = load_weights(m))) goto fail;
    if ((e = build_rope(m))) goto fail;
    if (m->tok && ey_tokenizer_n_vocab(m->tok) > m->cfg.n_vocab) {
        e = ey_err_set(EY_ERR_SHAPE, "model: tokenizer has %d tokens but the model only %d",
                       ey_tokenizer_n_vocab(m->tok), m->cfg.n_vocab);
        goto fail;
    }
    *out = m;
    return EY_OK;
fail:
    ey_model_free(m);
    return e;
}

void ey_model_free(ey_model *m)
{
    if (!m) return;
    if (m->priv) {
        ey_owned_free(&m->priv->own, m->be);
        ey_gguf_close(m->priv->gguf);
        ey_safetensors_close(m->priv->st);
        free(m->priv);
    }
    ey_tokenizer_free(m->tok);
    ey_chat_template_free(&m->chat);
    free(m->layers);
    free(m->name);
    free(m);
}

char *ey_default_model_path(void)
{
    const char *env = getenv("EYRIE_MODEL");
    if (env && *env) return strdup(env);
    const char *cache = getenv("EYRIE_CACHE"), *home = getenv("HOME");
    char buf[PATH_MAX];
    if (cache && *cache)
        snprintf(buf, sizeof buf, "%s/models/%s", cache, EY_DEFAULT_MODEL_NAME);
    else
        snprintf(buf, sizeof buf, "%s/.cache/eyrie/models/%s", home ? home : ".",
                 EY_DEFAULT_MODEL_NAME);
    return strdup(buf);
}

float ey_rope_inv_freq(float theta, int i, int dim, const char *scaling, float factor,
                       float low_freq, float high_freq, int orig_ctx)
{
    /* as transformers: base ** (arange(0, dim, 2) / dim), in float32 */
    float expo = (float)(2 * i) / (float)dim;
    float inv = 1.0f / powf(theta, expo);
    if (!strcmp(scaling, "linear")) return inv / factor;
    if (strcmp(scaling, "llama3")) return inv;
    float lo_wl = (float)orig_ctx / low_freq;
    float hi_wl = (float)orig_ctx / high_freq;
    float wl = 2.0f * (float)M_PI / inv;
    float scaled = wl > lo_wl ? inv / factor : inv;
    if (!(wl < hi_wl) && !(wl > lo_wl)) {
        float s = ((float)orig_ctx / wl - low_freq) / (high_freq - low_freq);
        scaled = (1.0f - s) * scaled / factor + s * scaled;
    }
    return scaled;
}

ey_err ey_weight_rows_f32(ey_backend *be, const ey_weight *w, int64_t K, const int32_t *rows,
                          int n, float *out)
{
    size_t rb = ey_dtype_row_bytes(w->type, K);
    /* a repacked (R8) matrix: read the row's group of 8, take the row out */
    const bool r8 = ey_dtype_is_r8(w->type);
    uint8_t *raw = malloc(rb ? (r8 ? 9 : 1) * rb : 1);
    if (!raw) return ey_err_set(EY_ERR_NOMEM, "no memory");
    ey_err e = EY_OK;
    for (int i = 0; !e && i < n; i++) {
        size_t r = rows ? (size_t)rows[i] : (size_t)i;
        if (r8) {
            e = be->iface.buf_get(be, raw, ey_ptr_at(w->p, r / 8 * 8 * rb), 8 * rb);
            if (e) break;
            ey_r8_row(w->type, raw, (int64_t)(r % 8), K, raw + 8 * rb);
            ey_dequant_row(ey_dtype_r8_base(w->type), raw + 8 * rb, out + (size_t)i * (size_t)K, K);
        } else {
            e = be->iface.buf_get(be, raw, ey_ptr_at(w->p, r * rb), rb);
            if (!e) ey_dequant_row(w->type, raw, out + (size_t)i * (size_t)K, K);
        }
    }
    free(raw);
    return e;
}
