/* eyrie — byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen2 style).
 *
 * Built either from a Hugging Face tokenizer.json or from a GGUF vocabulary
 * (tokens + merges + token types + the `tokenizer.ggml.pre` name). Must
 * match the `tokenizers` library exactly. Read-only after construction and
 * safe to share between threads. */
#ifndef EY_TOKENIZER_H
#define EY_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/ey_err.h"

typedef struct ey_tokenizer ey_tokenizer;

/* GGUF token types (tokenizer.ggml.token_type) */
enum { EY_TOKTYPE_NORMAL = 1, EY_TOKTYPE_UNKNOWN = 2, EY_TOKTYPE_CONTROL = 3,
       EY_TOKTYPE_USER_DEFINED = 4, EY_TOKTYPE_UNUSED = 5, EY_TOKTYPE_BYTE = 6 };

/* A vocabulary as GGUF stores it. Strings are NUL-terminated; the tokenizer
 * copies what it keeps. */
typedef struct ey_tok_spec {
    int n_vocab;
    const char *const *tokens;     /* [n_vocab] byte-level-encoded token strings */
    const int32_t *types;          /* [n_vocab] EY_TOKTYPE_*, or NULL (all normal) */
    int n_merges;
    const char *const *merges;     /* [n_merges] "left right" */
    const char *pre;               /* tokenizer.ggml.pre, e.g. "smollm", "gpt2", "qwen2", "llama-bpe" */
    int32_t bos_id, eos_id, pad_id; /* -1 if absent */
    bool add_bos;
} ey_tok_spec;

ey_err ey_tokenizer_from_spec(const ey_tok_spec *spec, ey_tokenizer **out);
ey_err ey_tokenizer_from_json_file(const char *path, ey_tokenizer **out);
/* Same from an in-memory tokenizer.json (no tokenizer_config.json lookup). */
ey_err ey_tokenizer_from_json_buffer(const char *json, size_t len, ey_tokenizer **out);
void ey_tokenizer_free(ey_tokenizer *tok);

int ey_tokenizer_n_vocab(const ey_tokenizer *tok);
int32_t ey_tokenizer_bos(const ey_tokenizer *tok); /* -1 if none */
int32_t ey_tokenizer_eos(const ey_tokenizer *tok); /* -1 if none */
bool ey_tokenizer_add_bos(const ey_tokenizer *tok);
/* true for control/special tokens (never printed, end generation if EOG) */
bool ey_tokenizer_is_special(const ey_tokenizer *tok, int32_t id);
/* true for end-of-generation tokens (eos, <|im_end|>, <|eot_id|>, <|endoftext|>...) */
bool ey_tokenizer_is_eog(const ey_tokenizer *tok, int32_t id);
/* id of an exact token string (special or normal, as stored); -1 if absent */
int32_t ey_tokenizer_find(const ey_tokenizer *tok, const char *token);

/* Encode `len` bytes of UTF-8 `text`. With parse_special, added/special
 * token strings in the text become their ids (as `tokenizers` does for
 * added tokens); otherwise they are encoded as plain text. Invalid UTF-8 is
 * encoded byte-wise as `tokenizers` does. BOS is not added here.
 * *ids is malloc'ed; the caller frees it. */
ey_err ey_tokenize(const ey_tokenizer *tok, const char *text, size_t len, bool parse_special,
                   int32_t **ids, int *n_ids);

/* The raw bytes a token stands for (byte-level decoding undone); special
 * tokens give their text. Returns NULL for an out-of-range id. */
const char *ey_token_bytes(const ey_tokenizer *tok, int32_t id, size_t *len);

/* Streaming detokenizer: holds back an incomplete UTF-8 sequence at the end
 * until the bytes that complete it arrive. */
typedef struct ey_detok {
    char pending[8];
    int n_pending;
    bool skip_special; /* drop special tokens' text */
} ey_detok;

/* Appends the printable bytes produced by `id` to out (at most cap bytes;
 * returns the number written, or -1 if cap is too small). */
int ey_detok_push(ey_detok *d, const ey_tokenizer *tok, int32_t id, char *out, size_t cap);
/* Flush held bytes at end of stream (invalid leftovers become U+FFFD). */
int ey_detok_flush(ey_detok *d, char *out, size_t cap);

/* Decode a whole id sequence to a malloc'ed NUL-terminated string. */
ey_err ey_detokenize(const ey_tokenizer *tok, const int32_t *ids, int n, bool skip_special,
                     char **out);
/* Same, also giving the length (the text may contain NUL bytes). Invalid
 * UTF-8 in the token bytes becomes U+FFFD, as tokenizers' decode() does. */
ey_err ey_detokenize_len(const ey_tokenizer *tok, const int32_t *ids, int n, bool skip_special,
                         char **out, size_t *len);

#endif
