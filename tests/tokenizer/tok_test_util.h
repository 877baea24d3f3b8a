/* helpers shared by the tokenizer tests */
#ifndef EY_TOK_TEST_UTIL_H
#define EY_TOK_TEST_UTIL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline char *tt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    if (n < 0) {
        fclose(f);
        return NULL;
    }
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        if (len) *len = (size_t)n;
    }
    return b;
}

static inline cJSON *tt_load_json(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t n;
    char *b = tt_read_file(path, &n);
    if (!b) {
        fprintf(stderr, "cannot read %s\n", path);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(b, n);
    free(b);
    if (!j) fprintf(stderr, "bad JSON in %s\n", path);
    return j;
}

/* hex string -> malloc'ed bytes */
static inline unsigned char *tt_unhex(const char *h, size_t *n)
{
    size_t l = strlen(h) / 2;
    unsigned char *b = malloc(l + 1);
    if (!b) return NULL;
    for (size_t i = 0; i < l; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1) {
            free(b);
            return NULL;
        }
        b[i] = (unsigned char)v;
    }
    b[l] = 0;
    *n = l;
    return b;
}

/* a case's input: "text" or "hex"; malloc'ed copy */
static inline char *tt_case_text(const cJSON *c, size_t *n)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
    if (cJSON_IsString(t)) {
        *n = strlen(t->valuestring);
        char *s = malloc(*n + 1);
        if (s) memcpy(s, t->valuestring, *n + 1);
        return s;
    }
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, "hex");
    if (cJSON_IsString(h)) return (char *)tt_unhex(h->valuestring, n);
    return NULL;
}

static inline bool tt_ids_equal(const cJSON *arr, const int32_t *ids, int n)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return false;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsNumber(it) || (int32_t)it->valuedouble != ids[i]) return false;
        i++;
    }
    return true;
}

static inline void tt_print_ids(const char *label, const int32_t *ids, int n)
{
    fprintf(stderr, "  %s:", label);
    for (int i = 0; i < n && i < 60; i++) fprintf(stderr, " %d", ids[i]);
    if (n > 60) fprintf(stderr, " ... (%d)", n);
    fputc('\n', stderr);
}

static inline void tt_print_json_ids(const char *label, const cJSON *arr)
{
    fprintf(stderr, "  %s:", label);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (i++ < 60) fprintf(stderr, " %d", (int)it->valuedouble);
    }
    fputc('\n', stderr);
}

#endif
