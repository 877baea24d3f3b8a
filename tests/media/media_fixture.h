/* eyrie tests — helpers for the media tests: whole-file reads, the .eyfx
 * fixture reader (format in scripts/make_media_fixtures.py), and the
 * integer-exact synthetic chirp shared with the fixture script. Header-only:
 * each test is one translation unit. */
#ifndef EY_MEDIA_FIXTURE_H
#define EY_MEDIA_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint8_t *media_read_file(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long sz = ftell(f);
    rewind(f);
    if (sz < 0) {
        fclose(f);
        return NULL;
    }
    uint8_t *buf = malloc((size_t)sz + 1);
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) *n = (size_t)sz;
    return buf;
}

enum { EYFX_F32 = 0, EYFX_U8 = 1, EYFX_I64 = 2, EYFX_F64 = 3, EYFX_STR = 4 };

typedef struct eyfx_entry {
    char name[64];
    int dtype;
    uint32_t ndim;
    uint64_t dims[4];
    uint64_t count;
    const uint8_t *data; /* points into eyfx.buf */
} eyfx_entry;

typedef struct eyfx {
    uint8_t *buf;
    size_t n;
    uint32_t n_entries;
    eyfx_entry e[64];
} eyfx;

static inline void eyfx_free(eyfx *f)
{
    free(f->buf);
    memset(f, 0, sizeof *f);
}

/* Returns 0 on success; fixture files are trusted but still bounds-checked. */
static inline int eyfx_load(eyfx *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->buf = media_read_file(path, &f->n);
    if (!f->buf || f->n < 12 || memcmp(f->buf, "EYFX", 4)) goto bad;
    uint32_t ver, cnt;
    memcpy(&ver, f->buf + 4, 4);
    memcpy(&cnt, f->buf + 8, 4);
    if (ver != 1 || cnt > 64) goto bad;
    size_t pos = 12;
    for (uint32_t i = 0; i < cnt; i++) {
        eyfx_entry *e = &f->e[i];
        uint16_t nl;
        if (pos + 2 > f->n) goto bad;
        memcpy(&nl, f->buf + pos, 2);
        pos += 2;
        if (nl >= sizeof e->name || pos + nl + 5 > f->n) goto bad;
        memcpy(e->name, f->buf + pos, nl);
        pos += nl;
        e->dtype = f->buf[pos];
        memcpy(&e->ndim, f->buf + pos + 1, 4);
        pos += 5;
        if (e->ndim > 4 || pos + 8ull * e->ndim > f->n) goto bad;
        e->count = 1;
        for (uint32_t d = 0; d < e->ndim; d++) {
            memcpy(&e->dims[d], f->buf + pos, 8);
            pos += 8;
            e->count *= e->dims[d];
        }
        static const size_t esz[] = {4, 1, 8, 8, 1};
        if (e->dtype < 0 || e->dtype > 4) goto bad;
        uint64_t bytes = e->count * esz[e->dtype];
        if (bytes > f->n - pos) goto bad;
        e->data = f->buf + pos;
        pos += bytes;
    }
    f->n_entries = cnt;
    return 0;
bad:
    fprintf(stderr, "bad fixture %s (regenerate with scripts/make_media_fixtures.py)\n", path);
    eyfx_free(f);
    return -1;
}

static inline const eyfx_entry *eyfx_get(const eyfx *f, const char *name, int dtype)
{
    for (uint32_t i = 0; i < f->n_entries; i++)
        if (!strcmp(f->e[i].name, name) && f->e[i].dtype == dtype) return &f->e[i];
    fprintf(stderr, "fixture entry '%s' missing\n", name);
    return NULL;
}

static inline int64_t eyfx_i64(const eyfx *f, const char *name, uint64_t i)
{
    const eyfx_entry *e = eyfx_get(f, name, EYFX_I64);
    int64_t v = 0;
    if (e && i < e->count) memcpy(&v, e->data + 8 * i, 8);
    return v;
}

static inline double eyfx_f64(const eyfx *f, const char *name)
{
    const eyfx_entry *e = eyfx_get(f, name, EYFX_F64);
    double v = 0;
    if (e && e->count) memcpy(&v, e->data, 8);
    return v;
}

static inline float eyfx_f32_at(const eyfx_entry *e, uint64_t i)
{
    float v = 0;
    if (e && i < e->count) memcpy(&v, e->data + 4 * i, 4);
    return v;
}

/* Copies a string entry into out (NUL-terminated). */
static inline int eyfx_str(const eyfx *f, const char *name, char *out, size_t cap)
{
    const eyfx_entry *e = eyfx_get(f, name, EYFX_STR);
    if (!e || e->count >= cap) return -1;
    memcpy(out, e->data, e->count);
    out[e->count] = 0;
    return 0;
}

/* Same as synth_chirp() in scripts/make_media_fixtures.py. */
static inline void media_synth_chirp(float *out, size_t n)
{
    uint32_t lcg = 12345, phase = 0;
    for (size_t i = 0; i < n; i++) {
        phase = (phase + 200 + (uint32_t)(i >> 6)) & 0xFFFFFF;
        int sq = (phase >> 15) & 1 ? 6000 : -6000;
        lcg = (uint32_t)(((uint64_t)lcg * 1103515245u + 12345u) & 0x7FFFFFFF);
        int noise = (int)((lcg >> 16) & 0x7FF) - 1024;
        out[i] = (float)(int16_t)(sq + noise) / 32768.0f;
    }
}

#endif
