#include "safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

ey_err ey_read_file(const char *path, size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ey_err_set(EY_ERR_IO, "cannot open '%s'", path);
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ey_err_set(EY_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return ey_err_set(EY_ERR_LIMIT, "'%s' is %lld bytes (limit %zu)", path,
                          (long long)st.st_size, max_bytes);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return ey_err_set(EY_ERR_NOMEM, "no memory to read '%s'", path);
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    if (n != (size_t)st.st_size) {
        free(buf);
        return ey_err_set(EY_ERR_IO, "short read on '%s'", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return EY_OK;
}

static bool st_dtype(const char *s, ey_dtype *t)
{
    if (!strcmp(s, "F32")) *t = EY_F32;
    else if (!strcmp(s, "F16")) *t = EY_F16;
    else if (!strcmp(s, "BF16")) *t = EY_BF16;
    else if (!strcmp(s, "I64")) *t = EY_I64; /* index tensors, e.g. EAGLE-3 d2t */
    else if (!strcmp(s, "I32")) *t = EY_I32;
    else if (!strcmp(s, "BOOL")) *t = EY_BOOL; /* masks, e.g. EAGLE-3 t2d */
    else return false;
    return true;
}

static int st_name_cmp(const void *a, const void *b)
{
    return strcmp((*(const ey_st_tensor *const *)a)->name, (*(const ey_st_tensor *const *)b)->name);
}

/* Tensor names must be unique across the file and all shards so far. */
static ey_err check_unique(const ey_safetensors *st, const char *label)
{
    if (st->n_tensors < 2) return EY_OK;
    const ey_st_tensor **idx = malloc((size_t)st->n_tensors * sizeof *idx);
    if (!idx) return ey_err_set(EY_ERR_NOMEM, "no memory");
    for (int64_t i = 0; i < st->n_tensors; i++) idx[i] = &st->tensors[i];
    qsort(idx, (size_t)st->n_tensors, sizeof *idx, st_name_cmp);
    ey_err e = EY_OK;
    for (int64_t i = 1; i < st->n_tensors && !e; i++)
        if (!strcmp(idx[i - 1]->name, idx[i]->name))
            e = ey_err_set(EY_ERR_FORMAT, "%s: duplicate tensor '%.100s'", label, idx[i]->name);
    free(idx);
    return e;
}

ey_err ey_st_parse_into(ey_safetensors *st, const void *data, size_t size, const char *label)
{
    const uint8_t *p = data;
    uint64_t hlen;
    if (size < 8) return ey_err_set(EY_ERR_FORMAT, "%s: truncated safetensors header", label);
    memcpy(&hlen, p, 8);
    if (hlen > EY_ST_MAX_HEADER)
        return ey_err_set(EY_ERR_LIMIT, "%s: safetensors header of %llu bytes exceeds %u", label,
                          (unsigned long long)hlen, EY_ST_MAX_HEADER);
    if (hlen > size - 8)
        return ey_err_set(EY_ERR_FORMAT, "%s: safetensors header longer than the file", label);
    cJSON *root = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ey_err_set(EY_ERR_FORMAT, "%s: safetensors header is not a JSON object", label);
    }
    const uint8_t *base = p + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    int n = cJSON_GetArraySize(root);
    ey_st_tensor *grown = realloc(st->tensors, (size_t)(st->n_tensors + n + 1) * sizeof *grown);
    if (!grown) {
        cJSON_Delete(root);
        return ey_err_set(EY_ERR_NOMEM, "%s: no memory", label);
    }
    st->tensors = grown;
    ey_err err = EY_OK;
    for (cJSON *it = root->child; it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) continue;
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
        cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        ey_st_tensor t = {0};
        if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) ||
            cJSON_GetArraySize(offs) != 2) {
            err = ey_err_set(EY_ERR_FORMAT, "%s: tensor '%.100s' has a malformed entry", label,
                             it->string);
            break;
        }
        if (!st_dtype(dt->valuestring, &t.type)) {
            err = ey_err_set(EY_ERR_UNSUPPORTED, "%s: tensor '%.100s' has dtype %.16s "
                             "(eyrie reads F32, F16, BF16, I64, I32, BOOL safetensors)", label, it->string,
                             dt->valuestring);
            break;
        }
        t.n_dims = cJSON_GetArraySize(shape);
        if (t.n_dims > EY_ST_MAX_DIMS) {
            err = ey_err_set(EY_ERR_UNSUPPORTED, "%s: tensor '%.100s' has %d dims", label,
                             it->string, t.n_dims);
            break;
        }
        uint64_t nel = 1;
        int d = 0;
        for (cJSON *s = shape->child; s; s = s->next, d++) {
            double v = cJSON_IsNumber(s) ? s->valuedouble : -1;
            if (v < 0 || v > (double)(1ull << 40) || v != (double)(int64_t)v ||
                (v > 0 && nel > (1ull << 46) / (uint64_t)v)) {
                err = ey_err_set(EY_ERR_FORMAT, "%s: tensor '%.100s' has a bad shape", label,
                                 it->string);
                break;
            }
            t.shape[d] = (int64_t)v;
            nel *= (uint64_t)v;
        }
        if (err) break;
        double o0 = cJSON_IsNumber(offs->child) ? offs->child->valuedouble : -1;
        double o1 = cJSON_IsNumber(offs->child->next) ? offs->child->next->valuedouble : -1;
        size_t esz = ey_dtype_block_bytes(t.type);
        if (o0 < 0 || o1 < o0 || o1 > (double)data_size || o0 != floor(o0) ||
            o1 != floor(o1) || o1 - o0 != (double)(nel * esz)) {
            err = ey_err_set(EY_ERR_FORMAT, "%s: tensor '%.100s' byte range [%.0f, %.0f) does "
                             "not match its shape or the file (truncated?)", label, it->string,
                             o0, o1);
            break;
        }
        t.data = base + (size_t)o0;
        t.bytes = (size_t)(o1 - o0);
        if (!(t.name = strdup(it->string))) {
            err = ey_err_set(EY_ERR_NOMEM, "no memory");
            break;
        }
        st->tensors[st->n_tensors++] = t;
    }
    cJSON_Delete(root);
    return err ? err : check_unique(st, label);
}

static ey_err map_file(const char *path, ey_st_file *f)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ey_err_set(EY_ERR_IO, "cannot open '%s'", path);
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < 8) {
        close(fd);
        return ey_err_set(EY_ERR_FORMAT, "'%s' is not a safetensors file", path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return ey_err_set(EY_ERR_IO, "cannot map '%s'", path);
    f->map = m;
    f->size = (size_t)st.st_size;
    return EY_OK;
}

static ey_err add_file(ey_safetensors *st, const char *path)
{
    if (st->n_files >= EY_ST_MAX_SHARDS)
        return ey_err_set(EY_ERR_LIMIT, "more than %d safetensors shards", EY_ST_MAX_SHARDS);
    ey_st_file *g = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *g);
    if (!g) return ey_err_set(EY_ERR_NOMEM, "no memory");
    st->files = g;
    ey_err e = map_file(path, &st->files[st->n_files]);
    if (e) return e;
    st->n_files++;
    return ey_st_parse_into(st, st->files[st->n_files - 1].map, st->files[st->n_files - 1].size,
                            path);
}

static bool is_safe_shard_name(const char *s)
{
    return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") && strlen(s) < 256;
}

ey_err ey_safetensors_open_dir(const char *dir, ey_safetensors **out)
{
    *out = NULL;
    ey_safetensors *st = calloc(1, sizeof *st);
    if (!st) return ey_err_set(EY_ERR_NOMEM, "no memory");
    char path[4096];
    ey_err e;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char *idx = NULL;
    if (access(path, R_OK) == 0) {
        if ((e = ey_read_file(path, 64u << 20, &idx, NULL))) goto fail;
        cJSON *root = cJSON_Parse(idx);
        cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
        if (!cJSON_IsObject(map)) {
            cJSON_Delete(root);
            e = ey_err_set(EY_ERR_FORMAT, "%s: no weight_map object", path);
            goto fail;
        }
        /* open each distinct shard once, in first-seen order */
        e = EY_OK;
        for (cJSON *it = map->child; it && !e; it = it->next) {
            if (!cJSON_IsString(it) || !is_safe_shard_name(it->valuestring)) {
                e = ey_err_set(EY_ERR_FORMAT, "%s: bad shard name for '%.100s'", path,
                               it->string);
                break;
            }
            bool seen = false;
            for (cJSON *j = map->child; j != it; j = j->next)
                if (!strcmp(j->valuestring, it->valuestring)) { seen = true; break; }
            if (seen) continue;
            char sp[4096];
            snprintf(sp, sizeof sp, "%s/%s", dir, it->valuestring);
            e = add_file(st, sp);
        }
        /* every indexed tensor must exist */
        for (cJSON *it = map->child; it && !e; it = it->next)
            if (!ey_st_find(st, it->string))
                e = ey_err_set(EY_ERR_MISSING, "%s names tensor '%.100s' that no shard holds",
                               path, it->string);
        cJSON_Delete(root);
        if (e) goto fail;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if ((e = add_file(st, path))) goto fail;
    }
    free(idx);
    *out = st;
    return EY_OK;
fail:
    free(idx);
    ey_safetensors_close(st);
    return e;
}

void ey_safetensors_close(ey_safetensors *st)
{
    if (!st) return;
    for (int64_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_files; i++) munmap(st->files[i].map, st->files[i].size);
    free(st->files);
    free(st);
}

const ey_st_tensor *ey_st_find(const ey_safetensors *st, const char *name)
{
    for (int64_t i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}
