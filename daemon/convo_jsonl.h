/* eyrie — one JSONL conversation line, as `eyrie gen-data` and
 * `eyrie token-freq` read them: OpenAI {"messages": [{role, content}]}
 * (content a string or an array of text parts; "developer" is "system")
 * or ShareGPT {"conversations": [{from, value}]} (human, gpt, system,
 * tool), optional "id" (a string or a number). Contents are made
 * well-formed UTF-8 (ill-formed pieces become U+FFFD, NUL bytes dropped). */
#ifndef EY_CONVO_JSONL_H
#define EY_CONVO_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "../core/model.h"

typedef struct ey_jsonl_conv {
    cJSON *id;          /* a copy of the "id" item, or NULL when absent */
    int n_msg;
    const char **role;  /* [n_msg + extra] static strings: system, user, assistant, tool */
    char **content;     /* [n_msg + extra] malloc'ed; the extra slots NULL */
} ey_jsonl_conv;

/* Parse one line. `extra` more (zeroed) role/content slots are allocated for
 * the caller. Returns false with err set (a message for the line's report;
 * "no memory" when out of memory) and *c zeroed. */
bool ey_jsonl_conv_parse(const char *line, int extra, ey_jsonl_conv *c, char *err, size_t en);
/* Frees id, contents (n_slots of them) and the arrays; zeroes *c. */
void ey_jsonl_conv_free(ey_jsonl_conv *c, int n_slots);

/* Strip the line end (\n, \r) in place; true if only spaces/tabs are left
 * (a blank line, which every reader of these files skips). */
bool ey_jsonl_blank(char *line, ssize_t *len);

/* One line -> the conversation's chat-templated token ids and assistant loss
 * mask (ey_convo_tokens; *ids and *mask malloc'ed, [*n] each). On an error
 * err holds the reason and *bad_line says whether the line was not a
 * conversation at all (else the template/tokenizer refused it);
 * EY_ERR_NOMEM is fatal. */
ey_err ey_jsonl_convo_tokens(const ey_model *m, const char *line, int32_t **ids, uint8_t **mask,
                             int *n, bool *bad_line, char *err, size_t en);

/* The last component of a path (trailing slashes ignored), malloc'ed: the
 * model name gen-data and dump-hidden record. NULL: no memory. */
char *ey_path_base(const char *path);

/* Well-formed UTF-8 (Unicode table 3-7); each ill-formed piece (its maximal
 * subpart) becomes U+FFFD, as Python's errors="replace" does; NUL bytes are
 * dropped. Returns a malloc'ed string (NULL: no memory). */
char *ey_utf8_clean(const char *s, size_t n);

#endif
