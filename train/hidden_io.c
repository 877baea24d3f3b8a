/* eyrie — the offline hidden-state format (see hidden_io.h). */
#include "hidden_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "../kernels/ey_dtype.h"

_Static_assert(sizeof(int) == 4, "n_teach is stored as int32 and viewed as int");
_Static_assert(sizeof(float) == 4, "f32");

#define META_NAME "meta.json"
#define RECS_NAME "records.bin"
#define META_MAX_BYTES (1 << 20)

/* ------------------------------------------------------------ crc32 */

static uint32_t g_crc[8][256];
static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        g_crc[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            g_crc[t][i] = (g_crc[t - 1][i] >> 8) ^ g_crc[0][g_crc[t - 1][i] & 0xff];
}

uint32_t ey_hid_crc32(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&g_crc_once, crc_init);
    const uint8_t *b = p;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)b & 7)) {
        c = g_crc[0][(c ^ *b++) & 0xff] ^ (c >> 8);
        n--;
    }
    while (n >= 8) { /* little-endian slicing-by-8 */
        uint32_t lo, hi;
        memcpy(&lo, b, 4);
        memcpy(&hi, b + 4, 4);
        lo ^= c;
        c = g_crc[7][lo & 0xff] ^ g_crc[6][(lo >> 8) & 0xff] ^ g_crc[5][(lo >> 16) & 0xff] ^
            g_crc[4][lo >> 24] ^ g_crc[3][hi & 0xff] ^ g_crc[2][(hi >> 8) & 0xff] ^
            g_crc[1][(hi >> 16) & 0xff] ^ g_crc[0][hi >> 24];
        b += 8;
        n -= 8;
    }
    while (n--) c = g_crc[0][(c ^ *b++) & 0xff] ^ (c >> 8);
    return ~c;
}

/* ------------------------------------------------------------ layout */

static bool host_le(void)
{
    const uint16_t x = 1;
    uint8_t b;
    memcpy(&b, &x, 1);
    return b == 1;
}

typedef struct layout {
    uint64_t ids, mask, top1, n_teach, teach_ids, teach_logits, aux, total;
} layout;

static bool make_layout(uint64_t T, uint64_t k, uint64_t W, layout *l)
{
    if (T < EY_HID_MIN_T || T > EY_HID_MAX_T || k < 1 || k > EY_HID_MAX_K || W < 1 ||
        W > (uint64_t)EY_HID_MAX_AUX * EY_HID_MAX_HT)
        return false;
    uint64_t o = 0;
    l->ids = o;
    o += 4 * T;
    l->mask = o;
    o += (T + 3) / 4 * 4;
    l->top1 = o;
    o += 4 * T;
    l->n_teach = o;
    o += 4 * T;
    l->teach_ids = o;
    o += 4 * T * k;
    l->teach_logits = o;
    o += 4 * T * k;
    l->aux = o;
    o += 2 * T * W;
    l->total = (o + 7) / 8 * 8;
    return true;
}

uint64_t ey_hid_payload_bytes(uint64_t T, uint64_t k, uint64_t aux_width)
{
    layout l;
    return make_layout(T, k, aux_width, &l) ? l.total : 0;
}

typedef struct rec_hdr {
    char magic[4];
    uint32_t T, k, crc;
    uint64_t conv, reserved;
} rec_hdr;
_Static_assert(sizeof(rec_hdr) == EY_HID_HEADER_BYTES, "record header");

/* ------------------------------------------------------------ meta.json */

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static ey_err meta_check(const ey_hid_meta *m, const char *where)
{
    if (!m->model[0] || memchr(m->model, 0, sizeof m->model) == NULL)
        return ey_err_set(EY_ERR_FORMAT, "%s: model name missing or too long", where);
    if (m->n_layer < 1 || m->n_layer > EY_HID_MAX_LAYER)
        return ey_err_set(EY_ERR_FORMAT, "%s: n_layer %d outside [1, %d]", where, m->n_layer,
                          EY_HID_MAX_LAYER);
    if (m->Ht < 1 || m->Ht > EY_HID_MAX_HT)
        return ey_err_set(EY_ERR_FORMAT, "%s: hidden_size %d outside [1, %d]", where, m->Ht,
                          EY_HID_MAX_HT);
    if (m->V < 1 || m->V > EY_HID_MAX_VOCAB)
        return ey_err_set(EY_ERR_FORMAT, "%s: vocab_size %d outside [1, %d]", where, m->V,
                          EY_HID_MAX_VOCAB);
    if (m->n_aux < 1 || m->n_aux > EY_HID_MAX_AUX)
        return ey_err_set(EY_ERR_FORMAT, "%s: n_aux %d outside [1, %d]", where, m->n_aux,
                          EY_HID_MAX_AUX);
    for (int i = 0; i < m->n_aux; i++)
        if (m->aux_layers[i] < 0 || m->aux_layers[i] > m->n_layer)
            return ey_err_set(EY_ERR_FORMAT, "%s: aux layer %d outside [0, %d]", where,
                              m->aux_layers[i], m->n_layer);
    int kmax = m->V < EY_HID_MAX_K ? m->V : EY_HID_MAX_K;
    if (m->k < 1 || m->k > kmax)
        return ey_err_set(EY_ERR_FORMAT, "%s: topk %d outside [1, %d]", where, m->k, kmax);
    return EY_OK;
}

static ey_err write_meta(const char *dir, const ey_hid_meta *m)
{
    char *path = path_join(dir, META_NAME), *tmp = path_join(dir, META_NAME ".tmp");
    cJSON *o = cJSON_CreateObject();
    char *txt = NULL;
    ey_err e = EY_OK;
    if (!path || !tmp || !o) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory");
        goto out;
    }
    cJSON_AddStringToObject(o, "format", "eyrie-hidden");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "model", m->model);
    cJSON_AddNumberToObject(o, "n_layer", m->n_layer);
    cJSON_AddNumberToObject(o, "hidden_size", m->Ht);
    cJSON_AddNumberToObject(o, "vocab_size", m->V);
    cJSON *a = cJSON_CreateIntArray(m->aux_layers, m->n_aux);
    if (a) cJSON_AddItemToObject(o, "aux_layers", a);
    cJSON_AddNumberToObject(o, "n_aux", m->n_aux);
    cJSON_AddNumberToObject(o, "topk", m->k);
    cJSON_AddStringToObject(o, "aux_dtype", "f16");
    cJSON_AddStringToObject(o, "byte_order", "little");
    cJSON_AddNumberToObject(o, "n_records", (double)m->n_records);
    cJSON_AddNumberToObject(o, "n_tokens", (double)m->n_tokens);
    if (!a || !(txt = cJSON_Print(o))) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory");
        goto out;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        e = ey_err_set(EY_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    size_t n = strlen(txt), off = 0;
    while (off < n) {
        ssize_t w = write(fd, txt + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    bool ok = off == n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int err = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok || rename(tmp, path) != 0) {
        if (ok) err = errno;
        unlink(tmp);
        e = ey_err_set(EY_ERR_IO, "%s: cannot write: %s", path, strerror(err));
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    free(txt);
    cJSON_Delete(o);
    free(path);
    free(tmp);
    return e;
}

/* An integral JSON number in [lo, hi]. */
static bool j_int(const cJSON *o, const char *key, double lo, double hi, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it)) return false;
    double v = it->valuedouble;
    if (!(v >= lo && v <= hi) || v != floor(v)) return false;
    *out = v;
    return true;
}

/* Read meta.json. EY_ERR_MISSING when the file does not exist. */
static ey_err read_meta(const char *dir, ey_hid_meta *m)
{
    memset(m, 0, sizeof *m);
    char *path = path_join(dir, META_NAME);
    if (!path) return ey_err_set(EY_ERR_NOMEM, "no memory");
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    cJSON *o = NULL;
    ey_err e = EY_OK;
    if (!fp) {
        e = ey_err_set(errno == ENOENT ? EY_ERR_MISSING : EY_ERR_IO, "%s: %s", path,
                       strerror(errno));
        goto out;
    }
    if (!(buf = malloc(META_MAX_BYTES + 1))) {
        e = ey_err_set(EY_ERR_NOMEM, "no memory");
        goto out;
    }
    size_t n = fread(buf, 1, META_MAX_BYTES + 1, fp);
    if (ferror(fp)) {
        e = ey_err_set(EY_ERR_IO, "%s: read error", path);
        goto out;
    }
    if (n > META_MAX_BYTES) {
        e = ey_err_set(EY_ERR_LIMIT, "%s: larger than %d bytes", path, META_MAX_BYTES);
        goto out;
    }
    buf[n] = 0;
    if (!(o = cJSON_ParseWithLength(buf, n)) || !cJSON_IsObject(o)) {
        e = ey_err_set(EY_ERR_FORMAT, "%s: not a JSON object", path);
        goto out;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "eyrie-hidden")) {
        e = ey_err_set(EY_ERR_FORMAT, "%s: format is not \"eyrie-hidden\"", path);
        goto out;
    }
    double v;
    if (!j_int(o, "version", 0, 1e9, &v) || v != 1) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: version missing or not 1", path);
        goto out;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "aux_dtype");
    if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "f16")) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: aux_dtype is not \"f16\"", path);
        goto out;
    }
    const cJSON *bo = cJSON_GetObjectItemCaseSensitive(o, "byte_order");
    if (bo && (!cJSON_IsString(bo) || strcmp(bo->valuestring, "little"))) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "%s: byte_order is not \"little\"", path);
        goto out;
    }
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (!cJSON_IsString(mo) || !mo->valuestring[0] ||
        strlen(mo->valuestring) >= sizeof m->model) {
        e = ey_err_set(EY_ERR_FORMAT, "%s: model missing or longer than %zu bytes", path,
                       sizeof m->model - 1);
        goto out;
    }
    strcpy(m->model, mo->valuestring);
    static const struct { const char *key; double lo, hi; } F[] = {
        {"n_layer", 1, EY_HID_MAX_LAYER},   {"hidden_size", 1, EY_HID_MAX_HT},
        {"vocab_size", 1, EY_HID_MAX_VOCAB}, {"n_aux", 1, EY_HID_MAX_AUX},
        {"topk", 1, EY_HID_MAX_K},          {"n_records", 0, 1e15},
        {"n_tokens", 0, 1e15}};
    double val[7];
    for (int i = 0; i < 7; i++)
        if (!j_int(o, F[i].key, F[i].lo, F[i].hi, &val[i])) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: \"%s\" missing or not an integer in [%.0f, %.0f]",
                           path, F[i].key, F[i].lo, F[i].hi);
            goto out;
        }
    m->n_layer = (int)val[0];
    m->Ht = (int)val[1];
    m->V = (int)val[2];
    m->n_aux = (int)val[3];
    m->k = (int)val[4];
    m->n_records = (long)val[5];
    m->n_tokens = (long)val[6];
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(o, "aux_layers");
    if (!cJSON_IsArray(al) || cJSON_GetArraySize(al) != m->n_aux) {
        e = ey_err_set(EY_ERR_FORMAT, "%s: aux_layers is not an array of n_aux = %d ids", path,
                       m->n_aux);
        goto out;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, al)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            !(it->valuedouble >= 0 && it->valuedouble <= EY_HID_MAX_LAYER)) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: aux_layers[%d] is not a layer id", path, i);
            goto out;
        }
        m->aux_layers[i++] = (int)it->valuedouble;
    }
    e = meta_check(m, path);
out:
    cJSON_Delete(o);
    free(buf);
    if (fp) fclose(fp);
    free(path);
    return e;
}

static ey_err meta_same(const ey_hid_meta *have, const ey_hid_meta *want, const char *dir)
{
#define DIFF(field, name)                                                                        \
    if (have->field != want->field)                                                              \
        return ey_err_set(EY_ERR_ARG, "%s was written with %s %d, now %d (use another "          \
                          "directory)", dir, name, have->field, want->field);
    if (strcmp(have->model, want->model))
        return ey_err_set(EY_ERR_ARG, "%s was written with model '%s', now '%s' (use another "
                          "directory)", dir, have->model, want->model);
    DIFF(n_layer, "n_layer");
    DIFF(Ht, "hidden size");
    DIFF(V, "vocabulary size");
    DIFF(k, "topk");
    DIFF(n_aux, "aux layer count");
    for (int i = 0; i < want->n_aux; i++) DIFF(aux_layers[i], "aux layer");
#undef DIFF
    return EY_OK;
}

/* ------------------------------------------------------------ scanning */

typedef struct scan_res {
    uint64_t good_end;   /* end of the last valid record */
    long n;
    long tokens;
    uint64_t *offs;      /* when collecting: offsets of the valid records */
    size_t cap;
    /* the first problem (bad == false: none) */
    bool bad, tail;      /* tail: the problem is a torn / invalid last record */
    char why[160];
} scan_res;

static bool all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* Walk the records of base[0..size). Returns EY_ERR_NOMEM only; problems
 * are reported in r. */
static ey_err scan(const uint8_t *base, uint64_t size, const ey_hid_meta *m, bool collect,
                   scan_res *r)
{
    const uint64_t W = (uint64_t)m->n_aux * m->Ht;
    uint64_t off = 0;
    while (off < size) {
        uint64_t left = size - off;
        if (left < EY_HID_HEADER_BYTES) {
            r->bad = r->tail = true;
            snprintf(r->why, sizeof r->why, "a %llu-byte partial header",
                     (unsigned long long)left);
            break;
        }
        rec_hdr h;
        memcpy(&h, base + off, sizeof h);
        layout l;
        if (memcmp(h.magic, "EYHR", 4) || h.reserved != 0 || h.k != (uint32_t)m->k ||
            !make_layout(h.T, h.k, W, &l)) {
            r->bad = true;
            r->tail = all_zero(base + off, left);
            if (memcmp(h.magic, "EYHR", 4))
                snprintf(r->why, sizeof r->why, "bad record magic");
            else if (h.reserved)
                snprintf(r->why, sizeof r->why, "reserved header field not zero");
            else if (h.k != (uint32_t)m->k)
                snprintf(r->why, sizeof r->why, "record k %u but meta.json topk %d", h.k, m->k);
            else
                snprintf(r->why, sizeof r->why, "record length T = %u outside [%d, %d]", h.T,
                         EY_HID_MIN_T, EY_HID_MAX_T);
            break;
        }
        if (l.total > left - EY_HID_HEADER_BYTES) {
            r->bad = r->tail = true;
            snprintf(r->why, sizeof r->why, "truncated record (%llu payload bytes, %llu left)",
                     (unsigned long long)l.total,
                     (unsigned long long)(left - EY_HID_HEADER_BYTES));
            break;
        }
        uint32_t crc = ey_hid_crc32(0, base + off + EY_HID_HEADER_BYTES, l.total);
        if (crc != h.crc) {
            r->bad = true;
            r->tail = l.total == left - EY_HID_HEADER_BYTES;
            snprintf(r->why, sizeof r->why, "CRC mismatch (stored %08x, computed %08x)", h.crc,
                     crc);
            break;
        }
        if (collect) {
            if ((size_t)r->n == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 1024;
                uint64_t *o = realloc(r->offs, cap * sizeof *o);
                if (!o) return ey_err_set(EY_ERR_NOMEM, "no memory for the record index");
                r->offs = o;
                r->cap = cap;
            }
            r->offs[r->n] = off;
        }
        r->n++;
        r->tokens += h.T;
        off += EY_HID_HEADER_BYTES + l.total;
        r->good_end = off;
    }
    return EY_OK;
}

/* Map a file read-only (*base NULL when empty). */
static ey_err map_file(const char *path, const uint8_t **base, uint64_t *size, bool *missing)
{
    *base = NULL;
    *size = 0;
    if (missing) *missing = false;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (missing && errno == ENOENT) {
            *missing = true;
            return EY_OK;
        }
        return ey_err_set(errno == ENOENT ? EY_ERR_MISSING : EY_ERR_IO, "%s: %s", path,
                          strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ey_err_set(EY_ERR_IO, "%s: not a regular file", path);
    }
    *size = (uint64_t)st.st_size;
    if (*size) {
        void *p = mmap(NULL, (size_t)*size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            close(fd);
            return ey_err_set(EY_ERR_IO, "%s: mmap: %s", path, strerror(err));
        }
        *base = p;
    }
    close(fd);
    return EY_OK;
}

/* ------------------------------------------------------------ writer */

struct ey_hid_writer {
    char *dir, *recs;
    ey_hid_meta meta;
    FILE *fp;
    uint64_t cut;
    uint8_t *buf;
    size_t cap;
};

uint64_t ey_hid_writer_cut_bytes(const ey_hid_writer *w) { return w ? w->cut : 0; }
long ey_hid_writer_tokens(const ey_hid_writer *w) { return w ? w->meta.n_tokens : 0; }

static void writer_free(ey_hid_writer *w)
{
    if (!w) return;
    if (w->fp) fclose(w->fp);
    free(w->dir);
    free(w->recs);
    free(w->buf);
    free(w);
}

ey_err ey_hid_writer_open(const char *dir, const ey_hid_meta *meta, bool resume,
                          ey_hid_writer **out, long *n_done)
{
    *out = NULL;
    if (n_done) *n_done = 0;
    if (!host_le()) return ey_err_set(EY_ERR_UNSUPPORTED, "hidden states: big-endian host");
    ey_err e = meta_check(meta, "hidden-state meta");
    if (e) return ey_err_set(EY_ERR_ARG, "%s", ey_err_detail());
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ey_err_set(EY_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ey_err_set(EY_ERR_IO, "%s: not a directory", dir);
    ey_hid_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir)) || !(w->recs = path_join(dir, RECS_NAME))) {
        writer_free(w);
        return ey_err_set(EY_ERR_NOMEM, "no memory");
    }
    w->meta = *meta;
    w->meta.n_records = w->meta.n_tokens = 0;

    ey_hid_meta have;
    ey_err me = read_meta(dir, &have);
    if (me && me != EY_ERR_MISSING) {
        writer_free(w);
        return me;
    }
    const uint8_t *base;
    uint64_t size;
    bool missing;
    if ((e = map_file(w->recs, &base, &size, &missing))) {
        writer_free(w);
        return e;
    }
    if (size && !resume) {
        munmap((void *)base, size);
        writer_free(w);
        return ey_err_set(EY_ERR_ARG, "%s already holds records (resume it, or use another "
                          "directory)", dir);
    }
    if (size && me == EY_ERR_MISSING) {
        munmap((void *)base, size);
        writer_free(w);
        return ey_err_set(EY_ERR_FORMAT, "%s: %s without %s", dir, RECS_NAME, META_NAME);
    }
    if (!me && resume && (e = meta_same(&have, meta, dir))) {
        if (size) munmap((void *)base, size);
        writer_free(w);
        return e;
    }
    if (size) {
        scan_res r = {0};
        e = scan(base, size, &w->meta, false, &r);
        munmap((void *)base, size);
        if (e) {
            writer_free(w);
            return e;
        }
        if (r.bad && !r.tail) {
            e = ey_err_set(EY_ERR_FORMAT, "%s: record %ld at byte %llu: %s (damage before the "
                           "last record; not resumable)", w->recs, r.n,
                           (unsigned long long)r.good_end, r.why);
            writer_free(w);
            return e;
        }
        if (r.bad) {
            if (truncate(w->recs, (off_t)r.good_end) != 0) {
                int err = errno;
                writer_free(w);
                return ey_err_set(EY_ERR_IO, "%s: cannot cut the torn last record: %s", w->recs,
                                  strerror(err));
            }
            w->cut = size - r.good_end;
        }
        w->meta.n_records = r.n;
        w->meta.n_tokens = r.tokens;
    }
    if ((e = write_meta(dir, &w->meta))) {
        writer_free(w);
        return e;
    }
    if (!(w->fp = fopen(w->recs, "ab"))) {
        e = ey_err_set(EY_ERR_IO, "%s: %s", w->recs, strerror(errno));
        writer_free(w);
        return e;
    }
    if (n_done) *n_done = w->meta.n_records;
    *out = w;
    return EY_OK;
}

ey_err ey_hid_append(ey_hid_writer *w, const ey_hid_rec *r)
{
    const ey_hid_meta *m = &w->meta;
    const uint64_t W = (uint64_t)m->n_aux * m->Ht;
    layout l;
    if (r->k != m->k)
        return ey_err_set(EY_ERR_ARG, "hidden states: record k %d, meta topk %d", r->k, m->k);
    if (!make_layout((uint64_t)(r->T < 0 ? 0 : r->T), (uint64_t)r->k, W, &l))
        return ey_err_set(EY_ERR_ARG, "hidden states: record length %d outside [%d, %d]", r->T,
                          EY_HID_MIN_T, EY_HID_MAX_T);
    const int T = r->T, k = r->k, V = m->V;
    for (int t = 0; t < T; t++) {
        if (r->ids[t] < 0 || r->ids[t] >= V || r->top1[t] < 0 || r->top1[t] >= V ||
            r->mask[t] > 1 || r->n_teach[t] < 0 || r->n_teach[t] > k)
            return ey_err_set(EY_ERR_ARG, "hidden states: row %d: id/top1/mask/n_teach out of "
                              "range", t);
        for (int j = 0; j < r->n_teach[t]; j++) {
            int32_t id = r->teach_ids[(size_t)t * k + j];
            if (id < 0 || id >= V)
                return ey_err_set(EY_ERR_ARG, "hidden states: row %d: teacher id %d outside "
                                  "[0, %d)", t, id, V);
        }
    }
    if (l.total > w->cap) {
        uint8_t *b = realloc(w->buf, l.total);
        if (!b) return ey_err_set(EY_ERR_NOMEM, "hidden states: no memory");
        w->buf = b;
        w->cap = l.total;
    }
    uint8_t *p = w->buf;
    memset(p, 0, l.total);
    memcpy(p + l.ids, r->ids, 4 * (size_t)T);
    memcpy(p + l.mask, r->mask, (size_t)T);
    memcpy(p + l.top1, r->top1, 4 * (size_t)T);
    memcpy(p + l.n_teach, r->n_teach, 4 * (size_t)T);
    for (int t = 0; t < T; t++) { /* entries past n_teach are written as 0 */
        size_t n = (size_t)r->n_teach[t], o = (size_t)t * k * 4;
        memcpy(p + l.teach_ids + o, r->teach_ids + (size_t)t * k, 4 * n);
        memcpy(p + l.teach_logits + o, r->teach_logits + (size_t)t * k, 4 * n);
    }
    uint16_t *a = (uint16_t *)(p + l.aux);
    for (size_t i = 0, n = (size_t)T * W; i < n; i++) a[i] = ey_f32_to_f16(r->aux[i]);
    rec_hdr h = {.magic = {'E', 'Y', 'H', 'R'}, .T = (uint32_t)T, .k = (uint32_t)k,
                 .crc = ey_hid_crc32(0, p, l.total), .conv = r->conv, .reserved = 0};
    if (fwrite(&h, sizeof h, 1, w->fp) != 1 || fwrite(p, 1, l.total, w->fp) != l.total ||
        fflush(w->fp) != 0)
        return ey_err_set(EY_ERR_IO, "%s: write failed: %s", w->recs, strerror(errno));
    w->meta.n_records++;
    w->meta.n_tokens += T;
    return EY_OK;
}

ey_err ey_hid_writer_close(ey_hid_writer *w)
{
    if (!w) return EY_OK;
    ey_err e = EY_OK;
    if (w->fp) {
        bool ok = fflush(w->fp) == 0 && fsync(fileno(w->fp)) == 0;
        int err = errno;
        if (fclose(w->fp) != 0 && ok) {
            ok = false;
            err = errno;
        }
        w->fp = NULL;
        if (!ok) e = ey_err_set(EY_ERR_IO, "%s: %s", w->recs, strerror(err));
    }
    if (!e) e = write_meta(w->dir, &w->meta);
    writer_free(w);
    return e;
}

/* ------------------------------------------------------------ reader */

struct ey_hid_file {
    ey_hid_meta meta;
    const uint8_t *base;
    uint64_t size;
    uint64_t *offs;
    long n;
    char *recs;
};

ey_err ey_hid_open(const char *dir, ey_hid_file **out)
{
    *out = NULL;
    if (!host_le()) return ey_err_set(EY_ERR_UNSUPPORTED, "hidden states: big-endian host");
    ey_hid_file *f = calloc(1, sizeof *f);
    if (!f || !(f->recs = path_join(dir, RECS_NAME))) {
        free(f);
        return ey_err_set(EY_ERR_NOMEM, "no memory");
    }
    ey_err e = read_meta(dir, &f->meta);
    if (e == EY_ERR_MISSING) e = ey_err_set(EY_ERR_MISSING, "%s: no %s (not a hidden-state "
                                            "directory)", dir, META_NAME);
    if (!e) e = map_file(f->recs, &f->base, &f->size, NULL);
    scan_res r = {0};
    if (!e) e = scan(f->base, f->size, &f->meta, true, &r);
    f->offs = r.offs;
    if (!e && r.bad)
        e = ey_err_set(EY_ERR_FORMAT, "%s: record %ld at byte %llu: %s%s", f->recs, r.n,
                       (unsigned long long)r.good_end, r.why,
                       r.tail ? " (an interrupted dump? rerun it to repair and finish)" : "");
    if (!e && (r.n != f->meta.n_records || r.tokens != f->meta.n_tokens))
        e = ey_err_set(EY_ERR_FORMAT, "%s: %ld records / %ld tokens, but %s says %ld / %ld (an "
                       "interrupted dump? rerun it to finish)", f->recs, r.n, r.tokens, META_NAME,
                       f->meta.n_records, f->meta.n_tokens);
    if (e) {
        ey_hid_close(f);
        return e;
    }
    f->n = r.n;
    *out = f;
    return EY_OK;
}

long ey_hid_count(const ey_hid_file *f) { return f->n; }
const ey_hid_meta *ey_hid_meta_of(const ey_hid_file *f) { return &f->meta; }

ey_err ey_hid_get(const ey_hid_file *f, long i, ey_hid_rec *r, float **aux_buf, size_t *aux_cap)
{
    if (i < 0 || i >= f->n)
        return ey_err_set(EY_ERR_ARG, "hidden states: record %ld of %ld", i, f->n);
    const ey_hid_meta *m = &f->meta;
    const uint64_t W = (uint64_t)m->n_aux * m->Ht;
    rec_hdr h;
    memcpy(&h, f->base + f->offs[i], sizeof h);
    layout l;
    if (!make_layout(h.T, h.k, W, &l)) /* validated when opened */
        return ey_err_set(EY_ERR_FORMAT, "hidden states: record %ld: bad header", i);
    const uint8_t *p = f->base + f->offs[i] + EY_HID_HEADER_BYTES;
    const int T = (int)h.T, k = (int)h.k, V = m->V;
    r->conv = h.conv;
    r->T = T;
    r->k = k;
    r->ids = (const int32_t *)(p + l.ids);
    r->mask = p + l.mask;
    r->top1 = (const int32_t *)(p + l.top1);
    r->n_teach = (const int *)(p + l.n_teach);
    r->teach_ids = (const int32_t *)(p + l.teach_ids);
    r->teach_logits = (const float *)(p + l.teach_logits);
    for (int t = 0; t < T; t++) {
        if (r->ids[t] < 0 || r->ids[t] >= V || r->top1[t] < 0 || r->top1[t] >= V ||
            r->mask[t] > 1 || r->n_teach[t] < 0 || r->n_teach[t] > k)
            return ey_err_set(EY_ERR_FORMAT, "%s: record %ld row %d: id, top1, mask or n_teach "
                              "out of range", f->recs, i, t);
        for (int j = 0; j < r->n_teach[t]; j++) {
            int32_t id = r->teach_ids[(size_t)t * k + j];
            if (id < 0 || id >= V)
                return ey_err_set(EY_ERR_FORMAT, "%s: record %ld row %d: teacher id %d outside "
                                  "[0, %d)", f->recs, i, t, id, V);
        }
    }
    r->aux = NULL;
    if (!aux_buf) return EY_OK; /* no aux wanted (vocabulary counts, lengths) */
    size_t n = (size_t)T * W;
    if (n > *aux_cap) {
        float *b = realloc(*aux_buf, n * sizeof *b);
        if (!b) return ey_err_set(EY_ERR_NOMEM, "hidden states: no memory for %zu floats", n);
        *aux_buf = b;
        *aux_cap = n;
    }
    const uint16_t *a = (const uint16_t *)(p + l.aux);
    float *dst = *aux_buf;
    for (size_t j = 0; j < n; j++) dst[j] = ey_f16_to_f32(a[j]);
    r->aux = dst;
    return EY_OK;
}

int ey_hid_len(const ey_hid_file *f, long i)
{
    if (i < 0 || i >= f->n) return 0;
    rec_hdr h;
    memcpy(&h, f->base + f->offs[i], sizeof h);
    return (int)h.T; /* validated when opened */
}

void ey_hid_close(ey_hid_file *f)
{
    if (!f) return;
    if (f->base) munmap((void *)f->base, (size_t)f->size);
    free(f->offs);
    free(f->recs);
    free(f);
}
