/* eyrie — chat templates for the supported families.
 *
 * The template kind is detected from the model's Jinja chat template text
 * (GGUF `tokenizer.chat_template` or tokenizer_config.json) by its markers;
 * a default system prompt embedded in the template (SmolLM2, Qwen2.5) is
 * used when the conversation has no system message. */
#ifndef EY_CHAT_H
#define EY_CHAT_H

#include <stdbool.h>

#include "../common/ey_err.h"

typedef enum ey_chat_kind {
    EY_CHAT_NONE = 0, /* no template: plain concatenation */
    EY_CHAT_CHATML,   /* <|im_start|>role\n...<|im_end|>\n (SmolLM2, Qwen2/2.5/3) */
    EY_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
} ey_chat_kind;

typedef struct ey_chat_msg {
    const char *role; /* "system" | "user" | "assistant" */
    const char *content;
} ey_chat_msg;

typedef struct ey_chat_template {
    ey_chat_kind kind;
    char *default_system; /* malloc'ed or NULL */
    bool bos_in_template; /* the template itself emits BOS text (Llama-3) */
    /* details detected from the template text (EY_CHAT_F_*) */
    unsigned flags;
    char *date_string; /* Llama-3.1+ "Today Date" when the template fixes one; malloc'ed or NULL */
} ey_chat_template;

enum {
    EY_CHAT_F_SYS_NEEDS_MSG = 1u << 0, /* default system only when there is a message (SmolLM2/Qwen2) */
    EY_CHAT_F_QWEN3_THINK = 1u << 1,   /* Qwen3: <think> handling of assistant turns */
    EY_CHAT_F_TOOL_RESPONSE = 1u << 2, /* Qwen: role "tool" as <tool_response> in a user turn */
    EY_CHAT_F_TRIM = 1u << 3,          /* Llama-3: contents are | trim'ed */
    EY_CHAT_F_LLAMA31_SYS = 1u << 4,   /* Llama-3.1+: system header with knowledge/today dates */
    EY_CHAT_F_STRFTIME = 1u << 5,      /* Llama-3.2+: today's date from the clock */
};

/* Detect the kind from Jinja source (may be NULL -> EY_CHAT_NONE). */
ey_err ey_chat_template_init(ey_chat_template *t, const char *jinja);
void ey_chat_template_free(ey_chat_template *t);

/* Render messages; with add_generation_prompt, ends with the assistant
 * header. *out is malloc'ed. */
ey_err ey_chat_render(const ey_chat_template *t, const ey_chat_msg *msgs, int n,
                      bool add_generation_prompt, char **out);

#endif
