/* libFuzzer targets for the model-file and tokenizer parsers (clang only;
 * built by scripts/fuzz-loaders.sh, not by meson).
 *   -DEY_FUZZ_GGUF         ey_gguf_parse on arbitrary bytes, then every
 *                          accessor the loader uses
 *   -DEY_FUZZ_SAFETENSORS  ey_st_parse_into on arbitrary bytes
 *   -DEY_FUZZ_TOKJSON      ey_tokenizer_from_json_buffer + encode/decode */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gguf.h"
#include "core/safetensors.h"
#include "core/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
#if defined(EY_FUZZ_GGUF)
    ey_gguf *g;
    if (ey_gguf_parse(data, size, &g) == EY_OK) {
        int64_t v;
        double d;
        char **s;
        int64_t n;
        int32_t *a;
        ey_gguf_get_int(g, "llama.block_count", &v);
        ey_gguf_get_float(g, "llama.rope.freq_base", &d);
        free(ey_gguf_get_str(g, "general.architecture"));
        if (ey_gguf_get_str_array(g, "tokenizer.ggml.tokens", &s, &n) == EY_OK)
            ey_gguf_free_strs(s, n);
        if (ey_gguf_get_i32_array(g, "tokenizer.ggml.token_type", &a, &n) == EY_OK) free(a);
        volatile uint8_t sink = 0;
        for (int64_t t = 0; t < g->n_tensors; t++)
            if (g->tensors[t].bytes)
                sink ^= ((const uint8_t *)g->tensors[t].data)[g->tensors[t].bytes - 1];
        (void)sink;
        ey_gguf_close(g);
    }
#elif defined(EY_FUZZ_SAFETENSORS)
    ey_safetensors st = {0};
    ey_st_parse_into(&st, data, size, "fuzz");
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < st.n_tensors; i++) {
        if (st.tensors[i].bytes)
            sink ^= ((const uint8_t *)st.tensors[i].data)[st.tensors[i].bytes - 1];
        free(st.tensors[i].name);
    }
    (void)sink;
    free(st.tensors);
#elif defined(EY_FUZZ_TOKJSON)
    ey_tokenizer *tok;
    if (ey_tokenizer_from_json_buffer((const char *)data, size, &tok) == EY_OK) {
        int32_t *ids;
        int n;
        static const char text[] = "Hello <|im_start|> wörld 123 \xf0\x9f\x98\x80!";
        if (ey_tokenize(tok, text, sizeof text - 1, true, &ids, &n) == EY_OK) {
            char *out;
            if (ey_detokenize(tok, ids, n, false, &out) == EY_OK) free(out);
            free(ids);
        }
        ey_tokenizer_free(tok);
    }
#else
#error "define one of EY_FUZZ_GGUF, EY_FUZZ_SAFETENSORS, EY_FUZZ_TOKJSON"
#endif
    return 0;
}
