/* eyrie — EAGLE-3 draft model: loading every published layout, the draft
 * forward pass, and a writer for randomly initialised drafters.
 *
 * Specification: docs/eagle3.md (§ numbers below refer to it).
 *
 * Layouts read (§1, §7):
 *  - SafeAILab original: config.json (flat) + model.safetensors with
 *    `midlayer.*`, `fc.weight`, `norm.weight`, `lm_head.weight`, `d2t`, `t2d`,
 *    no `embed_tokens.weight` (the target's embedding is used);
 *  - SpecForge export: the same names plus `embed_tokens.weight`
 *    (architectures "LlamaForCausalLMEagle3");
 *  - AngelSlim: architectures "Eagle3LlamaForCausalLM"; tie_word_embeddings
 *    is ignored when a [Vd, H] lm_head exists (§6 P9);
 *  - speculators: `layers.0.*` names, config with `transformer_layer_config`
 *    and top-level eagle fields (`speculators_model_type: "eagle3"`).
 * A `pytorch_model.bin`-only checkpoint is refused with an error naming the
 * conversion to safetensors.
 *
 * Aux-layer ids (§2.1). Captures are stored as "input of layer k" (k = N:
 * the final pre-norm output), which is what ey_ctx_set_capture takes. With
 * no ids in the config the default is {2, N/2, N-3} (clamped to [0, N] for
 * toy targets). Explicit ids are read in this order and convention:
 *  - top-level `eagle_aux_hidden_state_layer_ids` (vLLM, speculators):
 *    input-of-layer, used verbatim;
 *  - `eagle_config.eagle_aux_hidden_state_layer_ids` (SpecForge, AngelSlim,
 *    SGLang): output-of-layer, so 1 is added — unless some id already equals
 *    N ("boundary" ids such as gpt-oss [24,30,36] on 36 layers), then verbatim.
 * ey_eagle3_opts.aux_conv overrides the convention.
 *
 * RoPE (§2.2, §6 P4/P5): the draft uses NEOX rotate-half with base
 * rope_theta (default 10000) or the override in ey_eagle3_opts; scaling
 * "linear" and "llama3" are honoured. Angles are computed from the absolute
 * position at every call (the backend has no cos/sin table), so the usable
 * range is the target context, never the drafter's max_position_embeddings. */
#ifndef EY_EAGLE3_H
#define EY_EAGLE3_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"

#define EY_E3_MAX_AUX EY_MAX_CAPTURE
#define EY_E3_MAX_VOCAB EY_MAX_VOCAB

typedef enum ey_e3_layout {
    EY_E3_LAYOUT_EAGLE = 0,   /* SafeAILab original (midlayer.*) */
    EY_E3_LAYOUT_SPECFORGE,   /* midlayer.* + embed_tokens, LlamaForCausalLMEagle3 */
    EY_E3_LAYOUT_ANGELSLIM,   /* midlayer.*, Eagle3LlamaForCausalLM */
    EY_E3_LAYOUT_SPECULATORS, /* layers.0.*, transformer_layer_config */
} ey_e3_layout;

typedef enum ey_e3_aux_conv {
    EY_E3_AUX_AUTO = 0, /* as described above */
    EY_E3_AUX_INPUT,    /* ids name the input of layer k (vLLM, speculators) */
    EY_E3_AUX_OUTPUT,   /* ids name the output of layer j (SpecForge, AngelSlim): +1 */
} ey_e3_aux_conv;

typedef enum ey_e3_mrope_layout {
    EY_E3_MROPE_CONFIG = 0,   /* interleaved iff rope_scaling.mrope_interleaved is true */
    EY_E3_MROPE_INTERLEAVED,  /* Qwen3-VL layout; what AngelSlim trains with, always */
    EY_E3_MROPE_CONTIGUOUS,   /* Qwen2.5-VL sections [t | h | w] (vLLM, SGLang) */
} ey_e3_mrope_layout;

/* Drafter matrices at load: as stored (bf16/f16/f32), or quantized to Q8_0
 * or Q4_1 (drafting reads fewer bytes and uses the integer kernels; drafts
 * may change slightly, the verified output never does). */
typedef enum ey_e3_quant { EY_E3_QUANT_NONE = 0, EY_E3_QUANT_Q8_0, EY_E3_QUANT_Q4_1 } ey_e3_quant;
/* what eyrie generate and eyried use unless told (docs/speculative.md) */
#define EY_E3_QUANT_DEFAULT "q4_1"
/* "none" | "q8_0" | "q4_1" -> *q; false for anything else */
bool ey_e3_quant_parse(const char *s, ey_e3_quant *q);

typedef struct ey_eagle3_opts {
    float rope_theta;       /* > 0: override the draft RoPE base (§6 P5) */
    ey_e3_quant quant;      /* matrices (fc, q/k/v/o, MLP, own lm_head) with K % 32 == 0 */
    ey_e3_aux_conv aux_conv;
    ey_e3_mrope_layout mrope_layout; /* drafters whose rope_scaling has mrope_section */
} ey_eagle3_opts;

typedef struct ey_eagle3_config {
    ey_e3_layout layout;
    int H, Ht;              /* draft hidden, target hidden (target_hidden_size) */
    int n_head, n_kv_head, head_dim, n_ff;
    int V, Vd;              /* target vocab, draft vocab */
    float rms_eps, rope_theta;
    char rope_scaling[16];  /* "none", "linear", "llama3" */
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_ctx;
    bool mrope;             /* rope_scaling.mrope_section present (VLM drafters) */
    bool mrope_interleaved;
    int mrope_section[3];   /* frequency pairs driven by the t, h, w position rows */
    bool norm_before_residual; /* residual = hidden_norm(f) (§2.2 step 3) */
    bool norm_before_fc;       /* input_norm over the 3*Ht vector */
    bool fc_norm;              /* one RMSNorm per aux chunk before fc */
    bool norm_output;          /* vLLM/speculators meaning: feed norm(g) back */
    bool use_aux;              /* false: no fc, the target's final hidden state */
    bool attn_bias, mlp_bias;  /* speculators checkpoints may carry biases */
    int n_aux;
    int aux_config[EY_E3_MAX_AUX]; /* ids as written in the config (-1: default) */
    int aux_layers[EY_E3_MAX_AUX]; /* resolved: input-of-layer ids of the target */
    bool aux_from_config;
    int n_layers_config;    /* num_hidden_layers as written (only 1 layer is run) */
} ey_eagle3_config;

typedef struct ey_eagle3 {
    ey_eagle3_config cfg;
    ey_backend *be;
    ey_weight fc, input_norm, fc_norm[EY_E3_MAX_AUX];
    ey_weight hidden_norm, input_layernorm, wq, wk, wv, wo, bq, bk, bv, bo;
    ey_weight post_norm, w_gate, w_up, w_down, b_gate, b_up, b_down;
    ey_weight norm, lm_head, embed;
    bool own_embed, own_head;
    int32_t *d2t;     /* host [Vd]: absolute target id of each draft id (§1.4) */
    ey_ptr inv_freq;  /* f32 [head_dim/2] */
    ey_ptr inv_freq_mrope[3]; /* M-RoPE: inv_freq masked to each row's section */
    struct ey_eagle3_priv *priv;
} ey_eagle3;

/* Load a drafter directory for `target` (vocab, hidden size, layer count and
 * the embedding/head to alias are taken from it). Every refusal is an
 * ey_err with a message; nothing aborts on bad files. */
ey_err ey_eagle3_load(const char *dir, const ey_model *target, const ey_eagle3_opts *opts,
                      ey_eagle3 **out);
void ey_eagle3_free(ey_eagle3 *d);

/* ------------------------------------------------------------ runtime */

#define EY_E3_MAX_TREE_DEPTH 64

/* Draft workspace: its own KV pool (one layer, block size 1 so that tree
 * rows can be addressed one by one, §4.1) and activations for max_batch
 * rows, all sized here; ey_eagle3_forward allocates nothing. */
typedef struct ey_eagle3_ctx {
    ey_eagle3 *d;
    ey_backend *be;
    ey_kv_pool kv;
    int max_batch, max_out, n_rows;
    ey_buf *act;
    ey_ptr a, f, e, x, u, q, k, v, att, xn, gate, up, tmp, nrm, logits, ids, pos;
    int32_t *tbl; /* per-row block table for tree rows [n_rows + depth + 2] */
} ey_eagle3_ctx;

ey_err ey_eagle3_ctx_create(ey_eagle3 *d, int n_rows, int max_batch, int max_out,
                            ey_eagle3_ctx **out);
void ey_eagle3_ctx_free(ey_eagle3_ctx *c);

/* One draft forward over T rows (§2.2). Row t pairs feature feat[t] with
 * token tokens[t] (a TARGET-vocab id) at RoPE position pos[t] (NULL:
 * s->n_past + t) and appends its K/V to s.
 *  - fused = true: feat rows are target captures, n_aux * Ht wide (or Ht
 *    when use_aux is false), and go through the fusion (norms, fc);
 *    fused = false: feat rows are draft features, H wide (no fc).
 *  - anc != NULL (tree levels, §4.1 step 3): row t attends to the sequence
 *    rows [0, n_prefix), to the n_anc rows anc[t * n_anc + i] and to itself;
 *    otherwise attention is causal over the whole sequence.
 *  - The last n_out rows produce draft logits ([n_out][Vd], host) and the
 *    recurrent feature ([n_out][H], host: g, or norm(g) with norm_output).
 * T may exceed max_batch only without anc (then it runs in chunks).
 *
 * Multimodal inputs (issue 3 item 7, multimodal.md §2.4/§4):
 *  - embeds != NULL ([T][H] host) replaces the embedding lookup of every
 *    row: TTS drafters are driven by input embeddings; tokens may then be
 *    NULL. VLM/ASR drafters follow AngelSlim and vLLM instead: they embed the
 *    placeholder ids with their own table (pass tokens, no embeds);
 *    ey_eagle3_embed_rows gives token embeddings for callers that mix both.
 *  - pos3 != NULL ([3][T] host: t, h, w rows) gives M-RoPE positions. A
 *    drafter with mrope_section rotates each frequency pair by its section's
 *    row; a drafter without uses row 0 (vLLM _set_positions). A M-RoPE
 *    drafter given only pos uses it for all three rows (text: t = h = w). */
typedef struct ey_draft_in {
    int T;
    const int32_t *tokens;
    const float *feat;
    bool fused;
    const int32_t *pos;
    const int32_t *pos3;
    const float *embeds;
    const int32_t *anc;
    int n_anc, n_prefix;
    int n_out;
    float *logits;
    float *feat_out;
} ey_draft_in;

ey_err ey_eagle3_forward(ey_eagle3_ctx *c, ey_seq *s, const ey_draft_in *in);

/* Embeddings of n target-vocab ids (n <= max_batch) into out ([n][H], host). */
ey_err ey_eagle3_embed_rows(ey_eagle3_ctx *c, const int32_t *ids, int n, float *out);

/* M-RoPE: which position row (0 = t, 1 = h, 2 = w) drives frequency pair i. */
int ey_eagle3_mrope_row(const int section[3], bool interleaved, int i);

/* Width of a target-feature row (n_aux * Ht, or Ht without aux). */
int ey_eagle3_feat_width(const ey_eagle3 *d);

/* ------------------------------------------------------------ writer */

/* Trained values for the writer (fp32 host, the published shapes, one
 * layer; eyrie's trainer): every pointer set, vocab = the sorted draft
 * vocabulary (target ids, d2t[i] = vocab[i] - i). */
typedef struct ey_e3_values {
    const float *fc, *hidden_norm, *input_layernorm, *wq, *wk, *wv, *wo, *post_norm;
    const float *w_gate, *w_up, *w_down, *norm, *lm_head;
    const int32_t *vocab;
} ey_e3_values;

typedef struct ey_eagle3_init_opts {
    ey_e3_layout layout;   /* names and config shape to write */
    int draft_vocab;       /* 0: the target vocab */
    int n_ff;              /* 0: the target's */
    uint64_t seed;
    float init_std;        /* 0: 0.02 */
    ey_dtype dtype;        /* EY_F32, EY_F16 or EY_BF16 */
    const char *freq_path; /* token counts ("id count" per line) for d2t/t2d, or NULL */
    bool random_vocab;     /* without freq_path: a random subset instead of the first Vd ids */
    bool with_embed;       /* copy the target embedding in (SpecForge always does) */
    bool norm_before_residual, norm_before_fc, fc_norm, norm_output;
    bool write_aux_ids;    /* write aux ids explicitly in the layout's convention */
    const int *aux_ids;    /* 3 input-of-layer ids to write (NULL: {2, N/2, N-3}) */
    bool no_d2t;           /* hostile-test knob: omit d2t/t2d */
    const ey_e3_values *values; /* trained weights instead of a random init
                                 * (EAGLE layout, no optional norms) */
} ey_eagle3_init_opts;

/* Draft vocabulary (§1.4): the Vd ids of highest count (ties: lower id;
 * zero-count ids pad), sorted ascending, into sel[Vd]. */
ey_err ey_e3_vocab_from_counts(const double *cnt, int V, int Vd, int32_t *sel);
/* Add the "id count" lines of a token-freq file to cnt[V]. */
ey_err ey_e3_read_freq(const char *path, int V, double *cnt);

/* Write a drafter for `target` into `dir` (created if needed): config.json +
 * model.safetensors; randomly initialised, or o->values. */
ey_err ey_eagle3_write_random(const ey_model *target, const char *dir,
                              const ey_eagle3_init_opts *o);

#endif
