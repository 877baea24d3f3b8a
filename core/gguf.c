#include "gguf.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */

typedef struct cursor {
    const uint8_t *p, *end;
} cursor;

static bool cur_take(cursor *c, size_t n, const uint8_t **out)
{
    if ((size_t)(c->end - c->p) < n) return false;
    *out = c->p;
    c->p += n;
    return true;
}

static bool cur_u32(cursor *c, uint32_t *v)
{
    const uint8_t *b;
    if (!cur_take(c, 4, &b)) return false;
    memcpy(v, b, 4);
    return true;
}

static bool cur_u64(cursor *c, uint64_t *v)
{
    const uint8_t *b;
    if (!cur_take(c, 8, &b)) return false;
    memcpy(v, b, 8);
    return true;
}

static bool cur_str(cursor *c, const char **s, size_t *len)
{
    uint64_t n;
    const uint8_t *b;
    if (!cur_u64(c, &n) || n > (uint64_t)(c->end - c->p)) return false;
    if (!cur_take(c, (size_t)n, &b)) return false;
    *s = (const char *)b;
    *len = (size_t)n;
    return true;
}

static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case EY_GGUF_U8: case EY_GGUF_I8: case EY_GGUF_BOOL: return 1;
    case EY_GGUF_U16: case EY_GGUF_I16: return 2;
    case EY_GGUF_U32: case EY_GGUF_I32: case EY_GGUF_F32: return 4;
    case EY_GGUF_U64: case EY_GGUF_I64: case EY_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Skip one value of type t (not an array). */
static bool skip_value(cursor *c, uint32_t t)
{
    if (t == EY_GGUF_STRING) {
        const char *s;
        size_t n;
        return cur_str(c, &s, &n);
    }
    size_t sz = scalar_size(t);
    const uint8_t *b;
    return sz && cur_take(c, sz, &b);
}

static ey_err parse_kv(cursor *c, ey_gguf_kv *kv, int64_t idx)
{
    if (!cur_str(c, &kv->key, &kv->key_len) || !cur_u32(c, &kv->type))
        return ey_err_set(EY_ERR_FORMAT, "gguf: truncated metadata entry %lld", (long long)idx);
    if (kv->type >= EY_GGUF__COUNT)
        return ey_err_set(EY_ERR_FORMAT, "gguf: metadata '%.*s' has unknown type %u",
                          (int)(kv->key_len > 64 ? 64 : kv->key_len), kv->key, kv->type);
    if (kv->type == EY_GGUF_ARRAY) {
        if (!cur_u32(c, &kv->arr_type) || !cur_u64(c, &kv->arr_n))
            return ey_err_set(EY_ERR_FORMAT, "gguf: truncated array header");
        if (kv->arr_type >= EY_GGUF__COUNT || kv->arr_type == EY_GGUF_ARRAY)
            return ey_err_set(EY_ERR_FORMAT, "gguf: array '%.*s' has bad element type %u",
                              (int)(kv->key_len > 64 ? 64 : kv->key_len), kv->key,
                              kv->arr_type);
        kv->val = c->p;
        if (kv->arr_type == EY_GGUF_STRING) {
            /* each string needs at least 8 bytes of length */
            if (kv->arr_n > (uint64_t)(c->end - c->p) / 8)
                return ey_err_set(EY_ERR_FORMAT, "gguf: array count %llu exceeds file",
                                  (unsigned long long)kv->arr_n);
            for (uint64_t i = 0; i < kv->arr_n; i++)
                if (!skip_value(c, EY_GGUF_STRING))
                    return ey_err_set(EY_ERR_FORMAT, "gguf: truncated string array");
        } else {
            size_t sz = scalar_size(kv->arr_type);
            const uint8_t *b;
            if (kv->arr_n > (uint64_t)(c->end - c->p) / sz ||
                !cur_take(c, (size_t)kv->arr_n * sz, &b))
                return ey_err_set(EY_ERR_FORMAT, "gguf: array count %llu exceeds file",
                                  (unsigned long long)kv->arr_n);
        }
        return EY_OK;
    }
    kv->val = c->p;
    if (!skip_value(c, kv->type)) return ey_err_set(EY_ERR_FORMAT, "gguf: truncated value");
    return EY_OK;
}

static bool key_eq(const ey_gguf_kv *kv, const char *key)
{
    size_t n = strlen(key);
    return kv->key_len == n && memcmp(kv->key, key, n) == 0;
}

const ey_gguf_kv *ey_gguf_find(const ey_gguf *g, const char *key)
{
    for (int64_t i = 0; i < g->n_kv; i++)
        if (key_eq(&g->kv[i], key)) return &g->kv[i];
    return NULL;
}

static bool read_int(uint32_t t, const uint8_t *p, int64_t *v)
{
    switch (t) {
    case EY_GGUF_U8: *v = *p; return true;
    case EY_GGUF_I8: *v = (int8_t)*p; return true;
    case EY_GGUF_BOOL: *v = *p != 0; return true;
    case EY_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case EY_GGUF_I16: { int16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case EY_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case EY_GGUF_I32: { int32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case EY_GGUF_U64: { uint64_t x; memcpy(&x, p, 8); if (x > INT64_MAX) return false; *v = (int64_t)x; return true; }
    case EY_GGUF_I64: { int64_t x; memcpy(&x, p, 8); *v = x; return true; }
    default: return false;
    }
}

bool ey_gguf_get_int(const ey_gguf *g, const char *key, int64_t *v)
{
    const ey_gguf_kv *kv = ey_gguf_find(g, key);
    return kv && read_int(kv->type, kv->val, v);
}

bool ey_gguf_get_float(const ey_gguf *g, const char *key, double *v)
{
    const ey_gguf_kv *kv = ey_gguf_find(g, key);
    if (!kv) return false;
    if (kv->type == EY_GGUF_F32) { float f; memcpy(&f, kv->val, 4); *v = f; return true; }
    if (kv->type == EY_GGUF_F64) { memcpy(v, kv->val, 8); return true; }
    int64_t i;
    if (read_int(kv->type, kv->val, &i)) { *v = (double)i; return true; }
    return false;
}

static char *dup_gguf_str(const uint8_t *p)
{
    uint64_t n;
    memcpy(&n, p, 8); /* already bounds-checked during parse */
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    memcpy(s, p + 8, (size_t)n);
    s[n] = 0;
    return s;
}

char *ey_gguf_get_str(const ey_gguf *g, const char *key)
{
    const ey_gguf_kv *kv = ey_gguf_find(g, key);
    if (!kv || kv->type != EY_GGUF_STRING) return NULL;
    return dup_gguf_str(kv->val);
}

void ey_gguf_free_strs(char **s, int64_t n)
{
    if (!s) return;
    for (int64_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

ey_err ey_gguf_get_str_array(const ey_gguf *g, const char *key, char ***out, int64_t *n)
{
    *out = NULL;
    *n = 0;
    const ey_gguf_kv *kv = ey_gguf_find(g, key);
    if (!kv) return ey_err_set(EY_ERR_MISSING, "gguf: key '%s' missing", key);
    if (kv->type != EY_GGUF_ARRAY || kv->arr_type != EY_GGUF_STRING)
        return ey_err_set(EY_ERR_FORMAT, "gguf: key '%s' is not a string array", key);
    char **s = calloc(kv->arr_n ? (size_t)kv->arr_n : 1, sizeof *s);
    if (!s) return ey_err_set(EY_ERR_NOMEM, "gguf: no memory for '%s'", key);
    const uint8_t *p = kv->val;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        if (!(s[i] = dup_gguf_str(p))) {
            ey_gguf_free_strs(s, (int64_t)i);
            return ey_err_set(EY_ERR_NOMEM, "gguf: no memory for '%s'", key);
        }
        p += 8 + len;
    }
    *out = s;
    *n = (int64_t)kv->arr_n;
    return EY_OK;
}

ey_err ey_gguf_get_i32_array(const ey_gguf *g, const char *key, int32_t **out, int64_t *n)
{
    *out = NULL;
    *n = 0;
    const ey_gguf_kv *kv = ey_gguf_find(g, key);
    if (!kv) return ey_err_set(EY_ERR_MISSING, "gguf: key '%s' missing", key);
    if (kv->type != EY_GGUF_ARRAY || !scalar_size(kv->arr_type) ||
        kv->arr_type == EY_GGUF_F32 || kv->arr_type == EY_GGUF_F64)
        return ey_err_set(EY_ERR_FORMAT, "gguf: key '%s' is not an integer array", key);
    int32_t *a = malloc((kv->arr_n ? (size_t)kv->arr_n : 1) * sizeof *a);
    if (!a) return ey_err_set(EY_ERR_NOMEM, "gguf: no memory for '%s'", key);
    size_t sz = scalar_size(kv->arr_type);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        int64_t v = 0;
        if (!read_int(kv->arr_type, kv->val + i * sz, &v) || v < INT32_MIN || v > INT32_MAX) {
            free(a);
            return ey_err_set(EY_ERR_FORMAT, "gguf: '%s'[%llu] out of range", key,
                              (unsigned long long)i);
        }
        a[i] = (int32_t)v;
    }
    *out = a;
    *n = (int64_t)kv->arr_n;
    return EY_OK;
}

const ey_gguf_tensor *ey_gguf_tensor_find(const ey_gguf *g, const char *name)
{
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp((*(const ey_gguf_tensor *const *)a)->name,
                  (*(const ey_gguf_tensor *const *)b)->name);
}

/* Duplicate tensor names, found by sorting (O(n log n) for 65,536 names). */
static ey_err check_unique(ey_gguf *g)
{
    if (g->n_tensors < 2) return EY_OK;
    const ey_gguf_tensor **idx = malloc((size_t)g->n_tensors * sizeof *idx);
    if (!idx) return ey_err_set(EY_ERR_NOMEM, "gguf: no memory");
    for (int64_t i = 0; i < g->n_tensors; i++) idx[i] = &g->tensors[i];
    qsort(idx, (size_t)g->n_tensors, sizeof *idx, name_cmp);
    ey_err e = EY_OK;
    for (int64_t i = 1; i < g->n_tensors && !e; i++)
        if (!strcmp(idx[i - 1]->name, idx[i]->name))
            e = ey_err_set(EY_ERR_FORMAT, "gguf: duplicate tensor '%s'", idx[i]->name);
    free(idx);
    return e;
}

static ey_err parse(ey_gguf *g)
{
    cursor c = {g->map, (const uint8_t *)g->map + g->size};
    uint32_t magic;
    uint64_t n_tensors, n_kv;
    if (!cur_u32(&c, &magic) || magic != GGUF_MAGIC)
        return ey_err_set(EY_ERR_FORMAT, "gguf: bad magic (not a GGUF file)");
    if (!cur_u32(&c, &g->version) || !cur_u64(&c, &n_tensors) || !cur_u64(&c, &n_kv))
        return ey_err_set(EY_ERR_FORMAT, "gguf: truncated header");
    if (g->version != 2 && g->version != 3)
        return ey_err_set(EY_ERR_UNSUPPORTED, "gguf: version %u not supported (need 2 or 3)",
                          g->version);
    if (n_tensors > EY_GGUF_MAX_TENSORS || n_kv > EY_GGUF_MAX_KV)
        return ey_err_set(EY_ERR_LIMIT, "gguf: header declares %llu tensors / %llu keys (max %d)",
                          (unsigned long long)n_tensors, (unsigned long long)n_kv,
                          EY_GGUF_MAX_TENSORS);
    /* the smallest possible entries: a key-value is >= 13 bytes (8 length +
     * 4 type + 1 value), a tensor info >= 32 (8 name length + 4 dims + 8 dim
     * + 4 type + 8 offset): refuse counts the file cannot hold before sizing
     * anything by them */
    size_t left = (size_t)(c.end - c.p);
    if (n_kv > left / 13 || n_tensors > left / 32)
        return ey_err_set(EY_ERR_FORMAT, "gguf: header declares %llu keys and %llu tensors, "
                          "more than the file can hold", (unsigned long long)n_kv,
                          (unsigned long long)n_tensors);
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return ey_err_set(EY_ERR_NOMEM, "gguf: no memory for header");
    for (uint64_t i = 0; i < n_kv; i++) {
        ey_err e = parse_kv(&c, &g->kv[i], (int64_t)i);
        if (e) return e;
        g->n_kv = (int64_t)i + 1;
    }
    g->alignment = 32;
    int64_t al;
    if (ey_gguf_get_int(g, "general.alignment", &al)) {
        if (al <= 0 || al > 65536 || (al & (al - 1)))
            return ey_err_set(EY_ERR_FORMAT, "gguf: bad general.alignment %lld", (long long)al);
        g->alignment = (size_t)al;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        ey_gguf_tensor *t = &g->tensors[i];
        const char *name;
        size_t name_len;
        uint32_t n_dims, type;
        if (!cur_str(&c, &name, &name_len) || !cur_u32(&c, &n_dims))
            return ey_err_set(EY_ERR_FORMAT, "gguf: truncated tensor info %llu",
                              (unsigned long long)i);
        if (name_len >= EY_GGUF_MAX_NAME)
            return ey_err_set(EY_ERR_LIMIT, "gguf: tensor name of %zu bytes too long", name_len);
        memcpy(t->name, name, name_len);
        t->name[name_len] = 0;
        if (n_dims < 1 || n_dims > EY_GGUF_MAX_DIMS)
            return ey_err_set(EY_ERR_FORMAT, "gguf: tensor '%s' has %u dims", t->name, n_dims);
        t->n_dims = (int)n_dims;
        uint64_t nel = 1;
        for (int d = 0; d < EY_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            if (!cur_u64(&c, &ne)) return ey_err_set(EY_ERR_FORMAT, "gguf: truncated dims");
            if (ne == 0 || ne > ((uint64_t)1 << 40) || nel > ((uint64_t)1 << 46) / ne)
                return ey_err_set(EY_ERR_FORMAT, "gguf: tensor '%s' has bad dim %llu",
                                  t->name, (unsigned long long)ne);
            nel *= ne;
            t->ne[d] = (int64_t)ne;
        }
        uint64_t off;
        if (!cur_u32(&c, &type) || !cur_u64(&c, &off))
            return ey_err_set(EY_ERR_FORMAT, "gguf: truncated tensor info '%s'", t->name);
        if (!ey_dtype_valid(type))
            return ey_err_set(EY_ERR_UNSUPPORTED, "gguf: tensor '%s' has type %u, not supported "
                              "(eyrie reads f32, f16, bf16, q8_0, q4_0, q4_1)", t->name, type);
        t->type = (ey_dtype)type;
        if (t->ne[0] % ey_dtype_block(t->type))
            return ey_err_set(EY_ERR_FORMAT, "gguf: tensor '%s' row of %lld is not a multiple "
                              "of the %s block", t->name, (long long)t->ne[0],
                              ey_dtype_name(t->type));
        t->bytes = ey_dtype_row_bytes(t->type, t->ne[0]) * (size_t)(nel / (uint64_t)t->ne[0]);
        t->data = (const void *)(uintptr_t)off; /* fixed up below */
        g->n_tensors = (int64_t)i + 1;
    }
    size_t hdr = (size_t)(c.p - (const uint8_t *)g->map);
    g->data_off = (hdr + g->alignment - 1) / g->alignment * g->alignment;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        ey_gguf_tensor *t = &g->tensors[i];
        uint64_t off = (uint64_t)(uintptr_t)t->data;
        if (off % g->alignment)
            return ey_err_set(EY_ERR_FORMAT, "gguf: tensor '%s' offset misaligned", t->name);
        if (g->data_off > g->size || off > g->size - g->data_off ||
            t->bytes > g->size - g->data_off - off)
            return ey_err_set(EY_ERR_FORMAT, "gguf: tensor '%s' extends past the end of the file "
                              "(truncated?)", t->name);
        t->data = (const uint8_t *)g->map + g->data_off + off;
    }
    return check_unique(g);
}

static void gguf_free(ey_gguf *g)
{
    if (!g) return;
    if (g->owns_map && g->map) munmap(g->map, g->size);
    free(g->kv);
    free(g->tensors);
    free(g);
}

ey_err ey_gguf_parse(const void *data, size_t size, ey_gguf **out)
{
    *out = NULL;
    ey_gguf *g = calloc(1, sizeof *g);
    if (!g) return ey_err_set(EY_ERR_NOMEM, "gguf: no memory");
    g->map = (void *)data;
    g->size = size;
    ey_err e = parse(g);
    if (e) {
        gguf_free(g);
        return e;
    }
    *out = g;
    return EY_OK;
}

ey_err ey_gguf_open(const char *path, ey_gguf **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ey_err_set(EY_ERR_IO, "cannot open '%s'", path);
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < 24) {
        close(fd);
        return ey_err_set(EY_ERR_FORMAT, "'%s' is not a GGUF file (too small)", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return ey_err_set(EY_ERR_IO, "cannot map '%s'", path);
    ey_gguf *g;
    ey_err e = ey_gguf_parse(map, (size_t)st.st_size, &g);
    if (e) {
        munmap(map, (size_t)st.st_size);
        return e;
    }
    g->owns_map = true;
    *out = g;
    return EY_OK;
}

void ey_gguf_close(ey_gguf *g)
{
    gguf_free(g);
}
