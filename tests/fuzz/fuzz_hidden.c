/* libFuzzer target for the drafter trainer's file parsers (clang only; built
 * by scripts/fuzz-hidden.sh, not by meson). The first input byte picks the
 * mode:
 *   even  an offline hidden-state directory (train/hidden_io.h): bytes 1-2
 *         are a little-endian length L, the next L bytes (clamped to what is
 *         there) are meta.json and the rest records.bin; ey_hid_open, then
 *         ey_hid_count, ey_hid_get (aux converted into a reused buffer, and
 *         once without aux) and ey_hid_len over every record, ey_hid_close
 *   odd   a trainer checkpoint (train/e3_train.h): the rest of the input is
 *         the file, loaded by ey_e3t_load into one tiny trainer made at
 *         start-up (H=8, n_aux=3, Ht=8, nh=2, nkv=1, hd=4, I=8, V=16, Vd=8,
 *         K=2) with a FUZZ_BLOB-byte state record
 * The files go to one mkdtemp directory per process, rewritten each input.
 * EY_FUZZ_HIDDEN_SEEDS=DIR writes valid seed inputs there (made with
 * ey_hid_writer_open / ey_hid_append / ey_e3t_save) and exits. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/e3_train.h"
#include "train/hidden_io.h"

#define FUZZ_BLOB 40

static char g_dir[64];
static char g_meta[96], g_recs[96], g_ckpt[96];
static ey_e3t *g_tr;
static float g_embed[16 * 8];
static float *g_aux;
static size_t g_aux_cap;

static const ey_e3t_dims g_dims = {.H = 8, .n_aux = 3, .Ht = 8, .nh = 2, .nkv = 1, .hd = 4,
                                   .I = 8, .V = 16, .Vd = 8, .eps = 1e-6f};

static void cleanup(void)
{
    unlink(g_meta);
    unlink(g_recs);
    unlink(g_ckpt);
    if (g_dir[0]) rmdir(g_dir);
    ey_e3t_free(g_tr);
    free(g_aux);
}

static int put_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    return off == n ? 0 : -1;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && sz > 0 && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = sz > 0 ? (size_t)sz : 0;
    return b;
}

static ey_e3t *make_trainer(void)
{
    for (int i = 0; i < 16 * 8; i++) g_embed[i] = (float)(i % 7) * 0.125f - 0.375f;
    ey_e3t_opts o = {.K = 2, .decay = 0.8f, .rope_theta = 10000.0f};
    ey_e3t *tr;
    if (ey_e3t_create(&g_dims, &o, g_embed, &tr)) {
        fprintf(stderr, "fuzz_hidden: ey_e3t_create: %s\n", ey_err_detail());
        exit(1);
    }
    static const int32_t sel[8] = {0, 1, 3, 4, 7, 9, 12, 15};
    if (ey_e3t_set_vocab(tr, sel)) exit(1);
    return tr;
}

static int run_input(const uint8_t *data, size_t size);

/* ------------------------------------------------------------ seeds */

static void seed_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    if (run_input(p, n) != 1) { /* every seed must parse */
        fprintf(stderr, "fuzz_hidden: seed %s does not load: %s\n", name, ey_err_detail());
        exit(1);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (put_file(path, p, n)) {
        fprintf(stderr, "fuzz_hidden: cannot write %s\n", path);
        exit(1);
    }
}

/* A hidden-state directory with records of the given lengths, as a seed. */
static void seed_hidden(const char *dir, const char *name, const int *Ts, int n_rec, int k)
{
    char sub[128];
    snprintf(sub, sizeof sub, "%s/%s.d", g_dir, name);
    ey_hid_meta m = {.n_layer = 4, .Ht = 8, .V = 16, .n_aux = 3, .aux_layers = {1, 2, 4}, .k = k};
    snprintf(m.model, sizeof m.model, "tiny-target.gguf");
    ey_hid_writer *w;
    long done;
    if (ey_hid_writer_open(sub, &m, false, &w, &done)) {
        fprintf(stderr, "fuzz_hidden: writer: %s\n", ey_err_detail());
        exit(1);
    }
    for (int r = 0; r < n_rec; r++) {
        int T = Ts[r];
        int32_t ids[64], top1[64], tids[64 * 4];
        int nt[64];
        uint8_t mask[64];
        float tl[64 * 4], aux[64 * 24];
        for (int t = 0; t < T; t++) {
            ids[t] = (t * 5 + r) % 16;
            top1[t] = (t * 3 + 1) % 16;
            mask[t] = t % 3 != 0;
            nt[t] = t % (k + 1);
            for (int j = 0; j < k; j++) {
                tids[t * k + j] = (t + j * 7) % 16;
                tl[t * k + j] = 2.0f - (float)j;
            }
            for (int j = 0; j < 24; j++) aux[t * 24 + j] = (float)((t * 24 + j) % 11) * 0.25f - 1.0f;
        }
        ey_hid_rec rec = {.conv = (uint64_t)r, .T = T, .k = k, .ids = ids, .mask = mask,
                          .top1 = top1, .n_teach = nt, .teach_ids = tids, .teach_logits = tl,
                          .aux = aux};
        if (ey_hid_append(w, &rec)) {
            fprintf(stderr, "fuzz_hidden: append: %s\n", ey_err_detail());
            exit(1);
        }
    }
    if (ey_hid_writer_close(w)) exit(1);
    char mp[256], rp[256];
    snprintf(mp, sizeof mp, "%s/meta.json", sub);
    snprintf(rp, sizeof rp, "%s/records.bin", sub);
    size_t nm, nr;
    uint8_t *mb = slurp(mp, &nm), *rb = slurp(rp, &nr);
    if (!mb || !rb || nm > 0xffff) exit(1);
    uint8_t *s = malloc(3 + nm + nr);
    s[0] = 0;
    s[1] = (uint8_t)(nm & 0xff);
    s[2] = (uint8_t)(nm >> 8);
    memcpy(s + 3, mb, nm);
    memcpy(s + 3 + nm, rb, nr);
    seed_file(dir, name, s, 3 + nm + nr);
    free(s);
    free(mb);
    free(rb);
    unlink(mp);
    unlink(rp);
    rmdir(sub);
}

static void seed_ckpt(const char *dir, const char *name, long step)
{
    float *p = ey_e3t_params(g_tr);
    size_t n = ey_e3t_layout_of(g_tr)->n;
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 37) % 19) * 0.01f - 0.09f;
    uint8_t blob[FUZZ_BLOB];
    for (int i = 0; i < FUZZ_BLOB; i++) blob[i] = (uint8_t)(i * 13 + step);
    if (ey_e3t_save(g_tr, g_ckpt, step, blob, sizeof blob)) {
        fprintf(stderr, "fuzz_hidden: save: %s\n", ey_err_detail());
        exit(1);
    }
    size_t nc;
    uint8_t *c = slurp(g_ckpt, &nc);
    if (!c) exit(1);
    uint8_t *s = malloc(1 + nc);
    s[0] = 1;
    memcpy(s + 1, c, nc);
    seed_file(dir, name, s, 1 + nc);
    free(s);
    free(c);
}

static void write_seeds(const char *dir)
{
    static const int T1[] = {3}, T2[] = {2, 5}, T3[] = {7, 2, 4};
    seed_hidden(dir, "hid-empty", NULL, 0, 2);
    seed_hidden(dir, "hid-one", T1, 1, 2);
    seed_hidden(dir, "hid-two", T2, 2, 1);
    seed_hidden(dir, "hid-three", T3, 3, 3);
    seed_ckpt(dir, "ckpt-0", 0);
    seed_ckpt(dir, "ckpt-1234", 1234);
}

/* ------------------------------------------------------------ fuzzing */

/* 1: the input parsed (the directory opened / the checkpoint loaded). */
static int run_input(const uint8_t *data, size_t size)
{
    int ok = 0;
    if (size < 1) return 0;
    if (!(data[0] & 1)) {
        data++;
        size--;
        size_t lm = 0;
        if (size >= 2) {
            lm = (size_t)data[0] | (size_t)data[1] << 8;
            data += 2;
            size -= 2;
        }
        if (lm > size) lm = size;
        if (put_file(g_meta, data, lm) || put_file(g_recs, data + lm, size - lm)) abort();
        ey_hid_file *f;
        if (ey_hid_open(g_dir, &f) == EY_OK) {
            ok = 1;
            const ey_hid_meta *m = ey_hid_meta_of(f);
            const uint64_t W = (uint64_t)m->n_aux * (uint64_t)m->Ht, recs = size - lm;
            long n = ey_hid_count(f);
            if (n < 0 || (n == 0 && recs) || m->n_records != n) abort();
            volatile int64_t sink = 0;
            volatile float fsink = 0; /* logits and aux are any float, NaN included */
            /* records.bin is mapped, which ASan does not guard: check instead that
             * every view lies where the record walk puts it, inside the file */
            uint64_t off = 0;
            const uint8_t *base = NULL;
            for (long i = -1; i <= n; i++) {
                ey_hid_rec r;
                int T = ey_hid_len(f, i);
                sink += T;
                if ((i < 0 || i == n) != (T == 0)) abort();
                uint64_t pay = T ? ey_hid_payload_bytes((uint64_t)T, (uint64_t)m->k, W) : 0;
                if (T && (pay == 0 || off + EY_HID_HEADER_BYTES + pay > recs)) abort();
                if (ey_hid_get(f, i, &r, &g_aux, &g_aux_cap) == EY_OK) {
                    if (i < 0 || i >= n || r.T != T || r.k != m->k || !r.aux) abort();
                    const uint8_t *p = (const uint8_t *)r.ids;
                    if (!base) base = p - EY_HID_HEADER_BYTES - off;
                    const size_t Tk = (size_t)r.T * (size_t)r.k;
                    if (p != base + off + EY_HID_HEADER_BYTES || r.mask < p ||
                        (const uint8_t *)(r.teach_logits + Tk) + 2 * (size_t)T * W >
                            base + off + EY_HID_HEADER_BYTES + pay)
                        abort();
                    /* touch the ends of every view the trainer reads */
                    size_t last = (size_t)r.T - 1;
                    sink += r.ids[last] + r.mask[last] + r.top1[last] + r.n_teach[last];
                    sink += r.teach_ids[Tk - 1];
                    fsink += r.teach_logits[Tk - 1];
                    fsink += r.aux[(size_t)r.T * W - 1];
                    if (ey_hid_get(f, i, &r, NULL, NULL) != EY_OK || r.aux) abort();
                }
                if (T) off += EY_HID_HEADER_BYTES + pay;
            }
            if (off != recs) abort();
            (void)sink;
            (void)fsink;
            ey_hid_close(f);
        }
    } else {
        if (put_file(g_ckpt, data + 1, size - 1)) abort();
        long step = -1;
        uint8_t blob[FUZZ_BLOB];
        if (ey_e3t_load(g_tr, g_ckpt, &step, blob, sizeof blob) == EY_OK) {
            ok = 1;
            const int32_t *sel = ey_e3t_vocab(g_tr);
            for (int i = 0; i < g_dims.Vd; i++)
                if (sel[i] < 0 || sel[i] >= g_dims.V || (i && sel[i] <= sel[i - 1])) abort();
        }
    }
    return ok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(g_dir, sizeof g_dir, "%s", "/tmp/ey-fuzz-hidden-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("fuzz_hidden: mkdtemp");
        exit(1);
    }
    snprintf(g_meta, sizeof g_meta, "%s/meta.json", g_dir);
    snprintf(g_recs, sizeof g_recs, "%s/records.bin", g_dir);
    snprintf(g_ckpt, sizeof g_ckpt, "%s/checkpoint.bin", g_dir);
    g_tr = make_trainer();
    atexit(cleanup);
    const char *sd = getenv("EY_FUZZ_HIDDEN_SEEDS");
    if (sd && *sd) {
        write_seeds(sd);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_input(data, size);
    return 0;
}
