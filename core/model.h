/* eyrie — decoder-only target model (Llama / Qwen2 / Qwen3 families).
 *
 * An ey_model is loaded once and is read-only afterwards: config, weights
 * (borrowed from the mapped file on the CPU backend, uploaded on a device
 * backend), RoPE frequencies, tokenizer and chat template. Per-request state
 * lives in ey_ctx / ey_seq (forward.h). */
#ifndef EY_MODEL_H
#define EY_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/ey_err.h"
#include "../kernels/ey_backend.h"
#include "chat.h"
#include "tokenizer.h"

typedef enum ey_arch { EY_ARCH_LLAMA = 0, EY_ARCH_QWEN2, EY_ARCH_QWEN3 } ey_arch;

/* Limits on configs (checked before anything is sized from them). */
#define EY_MAX_LAYERS 512
#define EY_MAX_EMBD 65536
#define EY_MAX_HEADS 1024
#define EY_MAX_HEAD_DIM 1024
#define EY_MAX_VOCAB (1 << 22)
#define EY_MAX_FF (1 << 20)

typedef struct ey_model_config {
    ey_arch arch;
    int n_layer, n_embd, n_head, n_kv_head, head_dim, n_ff, n_vocab;
    int n_ctx_train;
    float rms_eps;
    float rope_theta;
    int rope_dim;          /* rotated dims per head (== head_dim normally) */
    int rope_mode;         /* EY_ROPE_NEOX | EY_ROPE_NORMAL */
    char rope_scaling[16]; /* "none", "linear", "llama3" */
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_ctx;
    bool tied_embeddings;
    bool qkv_bias, qk_norm;
} ey_model_config;

/* A weight as the backend sees it: N rows of K elements of `type`. */
typedef struct ey_weight {
    ey_dtype type;
    int64_t K, N;
    ey_ptr p;
} ey_weight;

typedef struct ey_layer_w {
    ey_weight attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm;
    ey_weight ffn_norm, w_gate, w_up, w_down;
} ey_layer_w;

typedef struct ey_model {
    ey_model_config cfg;
    ey_backend *be;
    ey_weight tok_embd, out_norm, output; /* output == tok_embd when tied */
    ey_layer_w *layers;
    ey_ptr inv_freq; /* f32 [rope_dim/2] */
    ey_tokenizer *tok; /* may be NULL for test checkpoints without one */
    ey_chat_template chat;
    char *name;
    size_t weight_bytes; /* bytes of weights read per token (all matrices + head) */
    /* private: loader state */
    struct ey_model_priv *priv;
} ey_model;

/* Load from a .gguf file or a Hugging Face directory (config.json +
 * model.safetensors[.index.json] + optional tokenizer.json /
 * tokenizer_config.json). */
ey_err ey_model_load(const char *path, ey_backend *be, ey_model **out);
void ey_model_free(ey_model *m);

const char *ey_arch_name(ey_arch a);

/* Rows of a weight, dequantized to f32: rows[i] (rows NULL: row i) for
 * i < n, K elements each, into out[n][K] (the drafter trainer and writer
 * read the target's embedding and head this way). */
ey_err ey_weight_rows_f32(ey_backend *be, const ey_weight *w, int64_t K, const int32_t *rows,
                          int n, float *out);

/* RoPE inverse frequency of pair i of a dim-wide rotation with base theta
 * and scaling "none" | "linear" | "llama3" (transformers' f32 arithmetic);
 * shared by the target and the EAGLE-3 drafter. */
float ey_rope_inv_freq(float theta, int i, int dim, const char *scaling, float factor,
                       float low_freq, float high_freq, int orig_ctx);

/* The default model's file name, fetched by scripts/fetch-model.sh. */
#define EY_DEFAULT_MODEL_NAME "smollm2-135m-instruct-q4_1.gguf"

/* Where the default model is: $EYRIE_MODEL, else
 * $EYRIE_CACHE/models/<name>, else ~/.cache/eyrie/models/<name>. malloc'ed;
 * NULL on no memory. */
char *ey_default_model_path(void);

#endif
