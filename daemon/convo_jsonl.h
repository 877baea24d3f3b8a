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

#include <cjson/cJSON.h>

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

/* Well-formed UTF-8 (Unicode table 3-7); each ill-formed piece (its maximal
 * subpart) becomes U+FFFD, as Python's errors="replace" does; NUL bytes are
 * dropped. Returns a malloc'ed string (NULL: no memory). */
char *ey_utf8_clean(const char *s, size_t n);

#endif
