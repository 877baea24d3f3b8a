/* eyrie — JSONL conversation lines (see convo_jsonl.h); shared by
 * `eyrie gen-data` and `eyrie token-freq`. */
#include "convo_jsonl.h"

#include "../core/convo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Well-formed UTF-8 (Unicode table 3-7); each ill-formed piece (its maximal
 * subpart) becomes U+FFFD, as Python's errors="replace" does; NUL bytes are
 * dropped (JSON strings here are C strings). Returns a malloc'ed string. */
char *ey_utf8_clean(const char *s, size_t n)
{
    char *o = malloc(n * 3 + 1);
    if (!o) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned b = u[i];
        if (b < 0x80) {
            if (b) o[k++] = (char)b;
            i++;
            continue;
        }
        int len = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) len = 2;
        else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        }
        int j = 1;
        if (len) {
            for (; j < len && i + j < n; j++) {
                unsigned c = u[i + j];
                unsigned l = j == 1 ? lo : 0x80, h = j == 1 ? hi : 0xBF;
                if (c < l || c > h) break;
            }
        }
        if (len && j == len) {
            memcpy(o + k, s + i, (size_t)len);
            k += (size_t)len;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
        }
        i += (size_t)j;
    }
    o[k] = 0;
    return o;
}

static const char *map_role(const char *r, bool sharegpt)
{
    if (!strcmp(r, "system")) return "system";
    if (!strcmp(r, "tool")) return "tool";
    if (!strcmp(r, "user") || (sharegpt && !strcmp(r, "human"))) return "user";
    if (!strcmp(r, "assistant") || (sharegpt && !strcmp(r, "gpt"))) return "assistant";
    if (!sharegpt && !strcmp(r, "developer")) return "system";
    return NULL;
}

/* OpenAI content: a string, or an array of {"type": "text", "text": ...}. */
static char *message_text(const cJSON *v, char *err, size_t en, int i)
{
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    if (!cJSON_IsArray(v)) {
        snprintf(err, en, "message %d: content is not a string", i);
        return NULL;
    }
    size_t len = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, v) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(tx)) {
            snprintf(err, en, "message %d: only text content parts are supported", i);
            return NULL;
        }
        len += strlen(tx->valuestring);
    }
    char *s = malloc(len + 1);
    if (!s) return NULL;
    size_t k = 0;
    cJSON_ArrayForEach(p, v) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        size_t l = strlen(t);
        memcpy(s + k, t, l);
        k += l;
    }
    s[k] = 0;
    return s;
}

void ey_jsonl_conv_free(ey_jsonl_conv *c, int n_slots)
{
    if (!c) return;
    cJSON_Delete(c->id);
    for (int i = 0; c->content && i < n_slots; i++) free(c->content[i]);
    free(c->content);
    free(c->role);
    memset(c, 0, sizeof *c);
}

bool ey_jsonl_conv_parse(const char *line, int extra, ey_jsonl_conv *c, char *err, size_t en)
{
    memset(c, 0, sizeof *c);
    int n = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(line, &end, true);
    if (!root) {
        snprintf(err, en, "not valid JSON (near byte %ld)", end ? (long)(end - line) + 1 : 0L);
        return false;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(err, en, "not a JSON object");
        goto bad;
    }
    bool sharegpt = false;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!arr) {
        arr = cJSON_GetObjectItemCaseSensitive(root, "conversations");
        sharegpt = true;
    }
    if (!cJSON_IsArray(arr)) {
        snprintf(err, en, arr ? "\"%s\" is not an array"
                              : "no \"messages\" or \"conversations\" array",
                 sharegpt ? "conversations" : "messages");
        goto bad;
    }
    n = cJSON_GetArraySize(arr);
    if (n < 1) {
        snprintf(err, en, "empty conversation");
        goto bad;
    }
    if (n > 100000) {
        snprintf(err, en, "more than 100000 messages");
        goto bad;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id && !cJSON_IsString(id) && !cJSON_IsNumber(id)) {
        snprintf(err, en, "\"id\" is not a string or a number");
        goto bad;
    }
    if (id && !(c->id = cJSON_Duplicate(id, false))) goto nomem;
    if (extra < 0) extra = 0;
    c->role = calloc((size_t)n + (size_t)extra, sizeof *c->role);
    c->content = calloc((size_t)n + (size_t)extra, sizeof *c->content);
    if (!c->role || !c->content) goto nomem;
    const cJSON *msg;
    int i = 0;
    cJSON_ArrayForEach(msg, arr) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(msg, sharegpt ? "from" : "role");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, sharegpt ? "value" : "content");
        if (!cJSON_IsObject(msg)) {
            snprintf(err, en, "message %d is not an object", i);
            goto bad;
        }
        if (!cJSON_IsString(r)) {
            snprintf(err, en, "message %d: no \"%s\" string", i, sharegpt ? "from" : "role");
            goto bad;
        }
        if (!(c->role[i] = map_role(r->valuestring, sharegpt))) {
            snprintf(err, en, "message %d: unknown %s \"%.40s\" (%s)", i,
                     sharegpt ? "from" : "role", r->valuestring,
                     sharegpt ? "human, gpt, system, tool" : "system, user, assistant, tool");
            goto bad;
        }
        char *t;
        if (sharegpt) {
            if (!cJSON_IsString(v)) {
                snprintf(err, en, "message %d: \"value\" is not a string", i);
                goto bad;
            }
            t = strdup(v->valuestring);
        } else {
            err[0] = 0;
            t = message_text(v, err, en, i);
            if (!t && err[0]) goto bad;
        }
        if (!t) goto nomem;
        c->content[i] = ey_utf8_clean(t, strlen(t));
        free(t);
        if (!c->content[i]) goto nomem;
        i++;
    }
    c->n_msg = n;
    cJSON_Delete(root);
    return true;
nomem:
    snprintf(err, en, "no memory");
bad:
    ey_jsonl_conv_free(c, n + (extra > 0 ? extra : 0));
    cJSON_Delete(root);
    return false;
}

bool ey_jsonl_blank(char *line, ssize_t *len)
{
    while (*len > 0 && (line[*len - 1] == '\n' || line[*len - 1] == '\r')) line[--*len] = 0;
    for (ssize_t i = 0; i < *len; i++)
        if (line[i] != ' ' && line[i] != '\t') return false;
    return true;
}

ey_err ey_jsonl_convo_tokens(const ey_model *m, const char *line, int32_t **ids, uint8_t **mask,
                             int *n, bool *bad_line, char *err, size_t en)
{
    *ids = NULL;
    *mask = NULL;
    *n = 0;
    *bad_line = false;
    ey_jsonl_conv jc;
    if (!ey_jsonl_conv_parse(line, 0, &jc, err, en)) {
        if (!strcmp(err, "no memory")) return ey_err_set(EY_ERR_NOMEM, "no memory");
        *bad_line = true;
        return EY_ERR_FORMAT;
    }
    ey_chat_msg *msgs = malloc((size_t)jc.n_msg * sizeof *msgs);
    ey_err e = msgs ? EY_OK : ey_err_set(EY_ERR_NOMEM, "no memory");
    for (int i = 0; !e && i < jc.n_msg; i++) msgs[i] = (ey_chat_msg){jc.role[i], jc.content[i]};
    if (!e) e = ey_convo_tokens(m, msgs, jc.n_msg, ids, mask, n);
    if (e) snprintf(err, en, "%s", ey_err_detail());
    free(msgs);
    ey_jsonl_conv_free(&jc, jc.n_msg);
    return e;
}

char *ey_path_base(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    char *b = malloc(n - s + 1);
    if (b) {
        memcpy(b, path + s, n - s);
        b[n - s] = 0;
    }
    return b;
}
