/* eyrie — chat templates: ChatML (SmolLM2, Qwen2/2.5/3) and Llama-3 headers.
 *
 * No Jinja interpreter: the family is recognised from markers in the
 * template text and rendered by hand, reproducing what the HF template
 * renders for plain system/user/assistant(/tool) conversations without tool
 * definitions (see docs/tokenizer.md). */
#include "chat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHAT_MAX_TEMPLATE ((size_t)1 << 20)
#define CHAT_MAX_OUTPUT ((size_t)256 << 20)

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        if (c > CHAT_MAX_OUTPUT) {
            b->oom = true;
            return;
        }
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* ------------------------------------------------------------------------ */
/* detection                                                                 */

/* Jinja string escapes -> text; stops at the first unescaped quote. Returns
 * NULL if the literal contains template syntax or no closing marker. */
static char *extract_default_system(const char *tpl)
{
    static const char marker[] = "<|im_start|>system";
    const char *p = tpl;
    while ((p = strstr(p, marker)) != NULL) {
        p += sizeof marker - 1;
        const char *q = p;
        if (q[0] == '\n') q += 1;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        /* the prompt must follow inside the same literal, up to <|im_end|> */
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end <= q) continue;
        bool ok = true;
        for (const char *c = q; c < end; c++) {
            if (*c == '\'' || *c == '"' || *c == '{' || *c == '}') {
                if (c > q && c[-1] == '\\') continue;
                ok = false;
                break;
            }
        }
        if (!ok) continue;
        char *out = malloc((size_t)(end - q) + 1);
        if (!out) return NULL;
        size_t o = 0;
        for (const char *c = q; c < end; c++) {
            if (*c == '\\' && c + 1 < end) {
                c++;
                switch (*c) {
                case 'n': out[o++] = '\n'; break;
                case 't': out[o++] = '\t'; break;
                case 'r': out[o++] = '\r'; break;
                default: out[o++] = *c; break;
                }
            } else
                out[o++] = *c;
        }
        out[o] = 0;
        return out;
    }
    return NULL;
}

/* `date_string = "26 Jul 2024"` in a Llama-3.1 template */
static char *extract_date(const char *tpl)
{
    const char *p = strstr(tpl, "date_string = \"");
    if (!p) return NULL;
    p += strlen("date_string = \"");
    const char *e = strchr(p, '"');
    if (!e || e - p > 40) return NULL;
    char *s = malloc((size_t)(e - p) + 1);
    if (!s) return NULL;
    memcpy(s, p, (size_t)(e - p));
    s[e - p] = 0;
    return s;
}

ey_err ey_chat_template_init(ey_chat_template *t, const char *jinja)
{
    if (!t) return ey_err_set(EY_ERR_ARG, "chat: NULL template");
    memset(t, 0, sizeof *t);
    if (!jinja) return EY_OK;
    if (strnlen(jinja, CHAT_MAX_TEMPLATE + 1) > CHAT_MAX_TEMPLATE)
        return ey_err_set(EY_ERR_LIMIT, "chat: template longer than %zu bytes", CHAT_MAX_TEMPLATE);
    if (strstr(jinja, "<|im_start|>")) {
        t->kind = EY_CHAT_CHATML;
        t->default_system = extract_default_system(jinja);
        if (strstr(jinja, "loop.first and messages[0]")) t->flags |= EY_CHAT_F_SYS_NEEDS_MSG;
        if (strstr(jinja, "reasoning_content")) t->flags |= EY_CHAT_F_QWEN3_THINK;
        if (strstr(jinja, "<tool_response>")) t->flags |= EY_CHAT_F_TOOL_RESPONSE;
        return EY_OK;
    }
    if (strstr(jinja, "<|start_header_id|>")) {
        t->kind = EY_CHAT_LLAMA3;
        t->bos_in_template = strstr(jinja, "bos_token") != NULL;
        if (strstr(jinja, "| trim") || strstr(jinja, "|trim")) t->flags |= EY_CHAT_F_TRIM;
        if (strstr(jinja, "Cutting Knowledge Date")) {
            t->flags |= EY_CHAT_F_LLAMA31_SYS;
            if (strstr(jinja, "strftime_now")) t->flags |= EY_CHAT_F_STRFTIME;
            t->date_string = extract_date(jinja);
        }
        return EY_OK;
    }
    return ey_err_set(EY_ERR_UNSUPPORTED, "chat: unrecognised chat template (supported: ChatML, Llama-3)");
}

void ey_chat_template_free(ey_chat_template *t)
{
    if (!t) return;
    free(t->default_system);
    free(t->date_string);
    t->default_system = NULL;
    t->date_string = NULL;
}

/* ------------------------------------------------------------------------ */
/* rendering                                                                 */

static bool role_is(const ey_chat_msg *m, const char *r) { return m->role && strcmp(m->role, r) == 0; }

/* Python str.isspace() for the code point at s (returns its byte length or 0) */
static int py_space_at(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return 1;
    if (c == 0xC2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (n >= 3) {
        uint32_t cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        if ((c & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
            (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
             cp == 0x205F || cp == 0x3000))
            return 3;
    }
    return 0;
}

/* Jinja `| trim` (Python str.strip()) */
static void trimmed(const char *s, const char **out, size_t *on)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), a = 0, b = n;
    int l;
    while (a < b && (l = py_space_at(u + a, b - a)) > 0) a += (size_t)l;
    /* from the right: step back over one code point at a time */
    while (b > a) {
        size_t i = b - 1;
        while (i > a && (u[i] & 0xC0) == 0x80 && b - i < 4) i--;
        l = py_space_at(u + i, b - i);
        if (l <= 0 || i + (size_t)l != b) break;
        b = i;
    }
    *out = s + a;
    *on = b - a;
}

static void strip_nl(const char **s, size_t *n, bool left, bool right)
{
    while (left && *n && **s == '\n') (*s)++, (*n)--;
    while (right && *n && (*s)[*n - 1] == '\n') (*n)--;
}

static const char *memmem_last(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn > hn) return NULL;
    for (size_t i = hn - nn + 1; i-- > 0;)
        if (memcmp(h + i, nd, nn) == 0) return h + i;
    return NULL;
}

static void render_chatml(const ey_chat_template *t, const ey_chat_msg *m, int n, bool gen, sbuf *b)
{
    bool first_is_system = n > 0 && role_is(&m[0], "system");
    if (t->default_system && !first_is_system && (n > 0 || !(t->flags & EY_CHAT_F_SYS_NEEDS_MSG))) {
        sb_str(b, "<|im_start|>system\n");
        sb_str(b, t->default_system);
        sb_str(b, "<|im_end|>\n");
    }
    int last_query = n - 1;
    if (t->flags & EY_CHAT_F_QWEN3_THINK) {
        for (int i = n - 1; i >= 0; i--) {
            const char *c = m[i].content ? m[i].content : "";
            size_t cl = strlen(c);
            bool tool_resp = cl >= 15 + 16 && strncmp(c, "<tool_response>", 15) == 0 &&
                             strcmp(c + cl - 16, "</tool_response>") == 0;
            if (role_is(&m[i], "user") && !tool_resp) {
                last_query = i;
                break;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        const char *role = m[i].role ? m[i].role : "";
        const char *c = m[i].content ? m[i].content : "";
        if ((t->flags & EY_CHAT_F_TOOL_RESPONSE) && role_is(&m[i], "tool")) {
            if (i == 0 || !role_is(&m[i - 1], "tool")) sb_str(b, "<|im_start|>user");
            sb_str(b, "\n<tool_response>\n");
            sb_str(b, c);
            sb_str(b, "\n</tool_response>");
            if (i == n - 1 || !role_is(&m[i + 1], "tool")) sb_str(b, "<|im_end|>\n");
            continue;
        }
        if ((t->flags & EY_CHAT_F_QWEN3_THINK) && role_is(&m[i], "assistant")) {
            const char *content = c, *reason = "";
            size_t content_n = strlen(c), reason_n = 0;
            const char *close_last = memmem_last(c, strlen(c), "</think>", 8);
            if (close_last) {
                /* content = split('</think>')[-1].lstrip('\n') */
                content = close_last + 8;
                content_n = strlen(content);
                strip_nl(&content, &content_n, true, false);
                /* reasoning = split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
                const char *close_first = strstr(c, "</think>");
                size_t r0 = (size_t)(close_first - c);
                const char *r = c;
                strip_nl(&r, &r0, false, true);
                const char *open = memmem_last(r, r0, "<think>", 7);
                if (open) {
                    r0 -= (size_t)(open + 7 - r);
                    r = open + 7;
                }
                strip_nl(&r, &r0, true, false);
                reason = r;
                reason_n = r0;
            }
            sb_str(b, "<|im_start|>assistant\n");
            if (i > last_query && (i == n - 1 || reason_n > 0)) {
                const char *rr = reason;
                size_t rn = reason_n;
                strip_nl(&rr, &rn, true, true);
                sb_str(b, "<think>\n");
                sb_put(b, rr, rn);
                sb_str(b, "\n</think>\n\n");
                strip_nl(&content, &content_n, true, false);
            }
            sb_put(b, content, content_n);
            sb_str(b, "<|im_end|>\n");
            continue;
        }
        sb_str(b, "<|im_start|>");
        sb_str(b, role);
        sb_str(b, "\n");
        sb_str(b, c);
        sb_str(b, "<|im_end|>\n");
    }
    if (gen) sb_str(b, "<|im_start|>assistant\n");
}

static void put_content(const ey_chat_template *t, const char *c, sbuf *b)
{
    if (!c) c = "";
    if (t->flags & EY_CHAT_F_TRIM) {
        const char *s;
        size_t n;
        trimmed(c, &s, &n);
        sb_put(b, s, n);
    } else
        sb_str(b, c);
}

/* Python json.dumps(s, ensure_ascii=False) */
static void put_json_string(const char *s, sbuf *b)
{
    sb_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sb_str(b, esc);
            } else
                sb_put(b, p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void render_llama3(const ey_chat_template *t, const ey_chat_msg *m, int n, bool gen, sbuf *b)
{
    static const char bos[] = "<|begin_of_text|>";
    if (t->flags & EY_CHAT_F_LLAMA31_SYS) {
        if (t->bos_in_template) sb_str(b, bos);
        int start = 0;
        sb_str(b, "<|start_header_id|>system<|end_header_id|>\n\n");
        sb_str(b, "Cutting Knowledge Date: December 2023\n");
        char date[64];
        const char *ds = t->date_string ? t->date_string : "26 Jul 2024";
        if (t->flags & EY_CHAT_F_STRFTIME) {
            time_t now = time(NULL);
            struct tm tmv;
            if (localtime_r(&now, &tmv) && strftime(date, sizeof date, "%d %b %Y", &tmv) > 0) ds = date;
        }
        sb_str(b, "Today Date: ");
        sb_str(b, ds);
        sb_str(b, "\n\n");
        if (n > 0 && role_is(&m[0], "system")) {
            const char *s;
            size_t sn;
            trimmed(m[0].content ? m[0].content : "", &s, &sn);
            sb_put(b, s, sn);
            start = 1;
        }
        sb_str(b, "<|eot_id|>");
        for (int i = start; i < n; i++) {
            if (role_is(&m[i], "tool") || role_is(&m[i], "ipython")) {
                /* a string is "iterable" to Jinja, so the template tojson's it */
                sb_str(b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
                put_json_string(m[i].content ? m[i].content : "", b);
                sb_str(b, "<|eot_id|>");
                continue;
            }
            sb_str(b, "<|start_header_id|>");
            sb_str(b, m[i].role ? m[i].role : "");
            sb_str(b, "<|end_header_id|>\n\n");
            put_content(t, m[i].content, b);
            sb_str(b, "<|eot_id|>");
        }
    } else {
        for (int i = 0; i < n; i++) {
            if (i == 0 && t->bos_in_template) sb_str(b, bos);
            sb_str(b, "<|start_header_id|>");
            sb_str(b, m[i].role ? m[i].role : "");
            sb_str(b, "<|end_header_id|>\n\n");
            put_content(t, m[i].content, b);
            sb_str(b, "<|eot_id|>");
        }
    }
    if (gen) sb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

ey_err ey_chat_render(const ey_chat_template *t, const ey_chat_msg *msgs, int n, bool add_generation_prompt,
                      char **out)
{
    if (!t || !out || n < 0 || (n > 0 && !msgs)) return ey_err_set(EY_ERR_ARG, "chat: bad argument");
    *out = NULL;
    sbuf b = {0};
    sb_put(&b, "", 0);
    switch (t->kind) {
    case EY_CHAT_CHATML: render_chatml(t, msgs, n, add_generation_prompt, &b); break;
    case EY_CHAT_LLAMA3: render_llama3(t, msgs, n, add_generation_prompt, &b); break;
    default:
        for (int i = 0; i < n; i++) sb_str(&b, msgs[i].content ? msgs[i].content : "");
        break;
    }
    if (b.oom) {
        free(b.p);
        return ey_err_set(EY_ERR_NOMEM, "chat: out of memory rendering the prompt");
    }
    *out = b.p;
    return EY_OK;
}
