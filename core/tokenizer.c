/* eyrie — byte-level BPE tokenizer matching Hugging Face `tokenizers`.
 *
 * Pipeline (as tokenizers' Tokenizer::encode does it):
 *   1. added tokens with normalized=false are split out of the raw text
 *   2. each remaining segment is normalized (NFC/NFD/NFKC/NFKD via utf8proc)
 *   3. added tokens with normalized=true are split out of the normalized text
 *   4. pre-tokenizer steps (Split regex / Digits / ByteLevel) cut segments into
 *      words (PCRE2, UTF + UCP, JIT when available)
 *   5. each word goes through BPE: one symbol per byte (the ByteLevel alphabet
 *      is applied implicitly: vocab keys are stored as raw bytes), then merges
 *      by rank with a binary heap over a linked list of symbols.
 *
 * Everything is read-only after construction; per-call scratch lives on the
 * caller's stack/heap, so one tokenizer can be shared between threads. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

/* ------------------------------------------------------------------------ */
/* limits (checked before allocating)                                        */

#define TOK_MAX_JSON_BYTES   ((size_t)64 << 20) /* tokenizer.json file size */
#define TOK_MAX_CONFIG_BYTES ((size_t)4 << 20)  /* tokenizer_config.json */
#define TOK_MAX_VOCAB        (1 << 22)          /* ids are < 4M */
#define TOK_MAX_MERGES       (1 << 22)
#define TOK_MAX_TOKEN_BYTES  65536              /* one token string */
#define TOK_MAX_ADDED        (1 << 18)
#define TOK_MAX_INPUT        ((size_t)64 << 20) /* one ey_tokenize() call */
#define TOK_MAX_STEPS        16
#define TOK_MAX_NORMS        8
#define TOK_MAX_PATTERN      65536

/* ------------------------------------------------------------------------ */
/* small utilities                                                           */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return (uint32_t)c;
}

/* Length of a valid UTF-8 sequence at s (1..4), or 0 if s[0..] does not
 * start one (invalid or truncated). Rejects overlongs and surrogates. */
static int utf8_valid_len(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3) return 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4) return 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        return 4;
    }
    return 0;
}

/* Length of the "maximal subpart" of an ill-formed sequence at s (>= 1), as
 * Unicode / WHATWG / Rust from_utf8_lossy / Python 'replace' count it; sets
 * *truncated when the subpart is a valid prefix cut by the end of input. */
static int utf8_bad_len(const unsigned char *s, size_t n, bool *truncated)
{
    *truncated = false;
    unsigned c = s[0];
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c < 0xE0) need = 2;
    else if (c >= 0xE0 && c < 0xF0) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c < 0xF5) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 1;
    size_t i = 1;
    if (i < n && s[i] >= lo && s[i] <= hi) {
        i++;
        while ((int)i < need && i < n && (s[i] & 0xC0) == 0x80) i++;
    }
    if (i == n && (int)i < need) *truncated = true;
    return (int)i;
}

static uint32_t utf8_decode(const unsigned char *s, int len)
{
    switch (len) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
}

/* Unicode White_Space (what Rust's char::is_whitespace and regex \s use) */
static bool is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Rust regex's Unicode \w: Alphabetic, M, Nd, Pc, Join_Control (Alphabetic
 * approximated by L* + Nl). */
static bool is_word_char(uint32_t c)
{
    if (c == 0x200C || c == 0x200D) return true;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

/* code point that ends at s[n-1] (valid UTF-8 only); returns its byte length
 * or 0 if the text before n does not end with a valid sequence */
static int utf8_last_cp(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0) return 0;
    size_t i = n - 1;
    int back = 0;
    while (back < 3 && i > 0 && (s[i] & 0xC0) == 0x80) { i--; back++; }
    int l = utf8_valid_len(s + i, n - i);
    if (l == 0 || i + (size_t)l != n) return 0;
    *cp = utf8_decode(s + i, l);
    return l;
}

/* ------------------------------------------------------------------------ */
/* GPT-2 ByteLevel alphabet                                                  */

static void bytelevel_tables(uint16_t b2c[256], int16_t c2b[324])
{
    int extra = 0;
    for (int i = 0; i < 324; i++) c2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint16_t cp;
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
            cp = (uint16_t)b;
        else
            cp = (uint16_t)(256 + extra++);
        b2c[b] = cp;
        c2b[cp] = (int16_t)b;
    }
}

/* ------------------------------------------------------------------------ */
/* hash maps                                                                 */

/* string -> id, keys live in the tokenizer's arena */
typedef struct sm_entry {
    uint64_t off;
    uint32_t len;
    int32_t id; /* -1: empty */
    uint64_t hash;
} sm_entry;

typedef struct strmap {
    sm_entry *e;
    uint32_t mask;
    uint32_t n;
} strmap;

/* (a,b) -> (rank, new id) for merges; (node,byte) -> node for the tries */
typedef struct pm_entry {
    uint64_t key; /* UINT64_MAX: empty */
    uint32_t rank;
    int32_t val;
} pm_entry;

typedef struct pairmap {
    pm_entry *e;
    uint32_t mask;
    uint32_t n;
} pairmap;

/* ------------------------------------------------------------------------ */
/* tokenizer                                                                 */

enum { PT_SPLIT = 1, PT_BYTELEVEL = 2 };
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };

typedef struct pt_step {
    int kind;
    pcre2_code *re; /* SPLIT pattern, or the GPT-2 regex for ByteLevel(use_regex) */
    int behavior;
    bool invert;
    bool add_prefix_space;
    bool use_regex;
} pt_step;

enum { TF_SPECIAL = 1, TF_ADDED = 2, TF_EOG = 4, TF_MODEL = 8 };

typedef struct added_tok {
    int32_t id;
    uint64_t off; /* content to match (normalized when normalized=true) */
    uint32_t len;
    bool special, lstrip, rstrip, single_word, normalized;
} added_tok;

struct ey_tokenizer {
    int n_vocab;
    /* arena of all strings */
    char *arena;
    size_t arena_len, arena_cap;
    /* per id: stored string (as in vocab / added content) and decoded bytes */
    uint64_t *str_off;
    uint32_t *str_len;
    uint64_t *byt_off;
    uint32_t *byt_len;
    uint8_t *flags;
    /* model (BPE) vocab */
    strmap model_str;   /* stored string -> id (merges, find) */
    strmap model_bytes; /* raw bytes -> id (BPE lookups) */
    strmap added_str;   /* added content -> id (find) */
    pairmap merges;
    int32_t byte_sym[256];  /* model id of the one-byte token for byte b */
    int32_t fallback[256][2]; /* byte fallback ids for byte b: "<0xXX>" of each
                                 UTF-8 byte of b's ByteLevel char; -1 if absent */
    uint8_t n_fallback[256];
    int32_t unk_id;
    bool byte_fallback, fuse_unk, ignore_merges;
    /* added tokens */
    added_tok *added;
    int n_added;
    pairmap trie; /* key (node << 8 | byte) -> child node */
    int32_t *trie_term; /* node -> added index or -1 */
    int trie_nodes, trie_cap;
    bool have_raw_added, have_norm_added;
    /* normalizer: utf8proc option sets applied in order */
    int n_norms;
    utf8proc_option_t norms[TOK_MAX_NORMS];
    /* pre-tokenizer */
    int n_steps;
    pt_step steps[TOK_MAX_STEPS];
    /* specials */
    int32_t bos_id, eos_id, pad_id;
    bool add_bos;
    bool json_origin;
    int16_t c2b[324]; /* ByteLevel alphabet code point -> byte */
    uint16_t b2c[256];
};

#define TRIE_RAW 0
#define TRIE_NORM 1

static const char *tstr(const ey_tokenizer *t, int32_t id) { return t->arena + t->str_off[id]; }

/* --- arena --- */
static ey_err arena_put(ey_tokenizer *t, const void *p, size_t n, uint64_t *off)
{
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t c = t->arena_cap ? t->arena_cap : 4096;
        while (c < t->arena_len + n + 1) {
            if (c > ((size_t)1 << 40)) return ey_err_set(EY_ERR_LIMIT, "tokenizer: strings too large");
            c *= 2;
        }
        char *a = realloc(t->arena, c);
        if (!a) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (strings)");
        t->arena = a;
        t->arena_cap = c;
    }
    if (n) memcpy(t->arena + t->arena_len, p, n);
    t->arena[t->arena_len + n] = 0;
    *off = t->arena_len;
    t->arena_len += n + 1;
    return EY_OK;
}

/* --- strmap --- */
static ey_err strmap_init(strmap *m, uint64_t expect)
{
    uint32_t cap = pow2_at_least(expect * 2 + 16);
    m->e = malloc((size_t)cap * sizeof *m->e);
    if (!m->e) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (map)");
    for (uint32_t i = 0; i < cap; i++) m->e[i].id = -1;
    m->mask = cap - 1;
    m->n = 0;
    return EY_OK;
}

static ey_err strmap_grow(strmap *m)
{
    uint32_t ncap = (m->mask + 1) * 2;
    sm_entry *ne = malloc((size_t)ncap * sizeof *ne);
    if (!ne) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (map)");
    for (uint32_t i = 0; i < ncap; i++) ne[i].id = -1;
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (m->e[i].id < 0) continue;
        uint32_t j = (uint32_t)m->e[i].hash & (ncap - 1);
        while (ne[j].id >= 0) j = (j + 1) & (ncap - 1);
        ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne;
    m->mask = ncap - 1;
    return EY_OK;
}

static int32_t strmap_get(const strmap *m, const char *arena, const void *key, size_t n)
{
    if (!m->e) return -1;
    uint64_t h = hash_bytes(key, n);
    uint32_t j = (uint32_t)h & m->mask;
    while (m->e[j].id >= 0) {
        const sm_entry *e = &m->e[j];
        if (e->hash == h && e->len == n && memcmp(arena + e->off, key, n) == 0) return e->id;
        j = (j + 1) & m->mask;
    }
    return -1;
}

/* insert or overwrite (later wins) */
static ey_err strmap_put(strmap *m, const char *arena, uint64_t off, uint32_t len, int32_t id)
{
    if ((uint64_t)(m->n + 1) * 2 > (uint64_t)m->mask + 1) {
        ey_err e = strmap_grow(m);
        if (e) return e;
    }
    uint64_t h = hash_bytes(arena + off, len);
    uint32_t j = (uint32_t)h & m->mask;
    while (m->e[j].id >= 0) {
        sm_entry *e = &m->e[j];
        if (e->hash == h && e->len == len && memcmp(arena + e->off, arena + off, len) == 0) {
            e->id = id;
            e->off = off;
            return EY_OK;
        }
        j = (j + 1) & m->mask;
    }
    m->e[j] = (sm_entry){.off = off, .len = len, .id = id, .hash = h};
    m->n++;
    return EY_OK;
}

/* --- pairmap --- */
static ey_err pairmap_init(pairmap *m, uint64_t expect)
{
    uint32_t cap = pow2_at_least(expect * 2 + 16);
    m->e = malloc((size_t)cap * sizeof *m->e);
    if (!m->e) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (merges)");
    for (uint32_t i = 0; i < cap; i++) m->e[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
    return EY_OK;
}

static ey_err pairmap_grow(pairmap *m)
{
    uint32_t ncap = (m->mask + 1) * 2;
    pm_entry *ne = malloc((size_t)ncap * sizeof *ne);
    if (!ne) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (merges)");
    for (uint32_t i = 0; i < ncap; i++) ne[i].key = UINT64_MAX;
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (m->e[i].key == UINT64_MAX) continue;
        uint32_t j = (uint32_t)hash_u64(m->e[i].key) & (ncap - 1);
        while (ne[j].key != UINT64_MAX) j = (j + 1) & (ncap - 1);
        ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne;
    m->mask = ncap - 1;
    return EY_OK;
}

static const pm_entry *pairmap_get(const pairmap *m, uint64_t key)
{
    if (!m->e) return NULL;
    uint32_t j = (uint32_t)hash_u64(key) & m->mask;
    while (m->e[j].key != UINT64_MAX) {
        if (m->e[j].key == key) return &m->e[j];
        j = (j + 1) & m->mask;
    }
    return NULL;
}

/* overwrite: replace an existing entry's value */
static ey_err pairmap_put(pairmap *m, uint64_t key, uint32_t rank, int32_t val, bool overwrite)
{
    if ((uint64_t)(m->n + 1) * 2 > (uint64_t)m->mask + 1) {
        ey_err e = pairmap_grow(m);
        if (e) return e;
    }
    uint32_t j = (uint32_t)hash_u64(key) & m->mask;
    while (m->e[j].key != UINT64_MAX) {
        if (m->e[j].key == key) {
            if (overwrite) {
                m->e[j].rank = rank;
                m->e[j].val = val;
            }
            return EY_OK;
        }
        j = (j + 1) & m->mask;
    }
    m->e[j] = (pm_entry){.key = key, .rank = rank, .val = val};
    m->n++;
    return EY_OK;
}

/* ------------------------------------------------------------------------ */
/* construction helpers                                                      */

static ey_err tok_alloc(int n_vocab, ey_tokenizer **out)
{
    if (n_vocab <= 0 || n_vocab > TOK_MAX_VOCAB)
        return ey_err_set(EY_ERR_LIMIT, "tokenizer: vocabulary size %d out of range (1..%d)", n_vocab,
                          TOK_MAX_VOCAB);
    ey_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    t->n_vocab = n_vocab;
    t->str_off = calloc((size_t)n_vocab, sizeof *t->str_off);
    t->str_len = calloc((size_t)n_vocab, sizeof *t->str_len);
    t->byt_off = calloc((size_t)n_vocab, sizeof *t->byt_off);
    t->byt_len = calloc((size_t)n_vocab, sizeof *t->byt_len);
    t->flags = calloc((size_t)n_vocab, 1);
    t->unk_id = -1;
    t->bos_id = t->eos_id = t->pad_id = -1;
    for (int b = 0; b < 256; b++) t->byte_sym[b] = -1;
    bytelevel_tables(t->b2c, t->c2b);
    uint64_t empty;
    ey_err e = EY_OK;
    if (!t->str_off || !t->str_len || !t->byt_off || !t->byt_len || !t->flags)
        e = ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    if (!e) e = arena_put(t, "", 0, &empty); /* offset 0 = "" for holes */
    if (!e) e = strmap_init(&t->model_str, (uint64_t)n_vocab);
    if (!e) e = strmap_init(&t->model_bytes, (uint64_t)n_vocab);
    if (!e) e = strmap_init(&t->added_str, 64);
    if (e) {
        ey_tokenizer_free(t);
        return e;
    }
    *out = t;
    return EY_OK;
}

void ey_tokenizer_free(ey_tokenizer *t)
{
    if (!t) return;
    for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    free(t->arena);
    free(t->str_off);
    free(t->str_len);
    free(t->byt_off);
    free(t->byt_len);
    free(t->flags);
    free(t->model_str.e);
    free(t->model_bytes.e);
    free(t->added_str.e);
    free(t->merges.e);
    free(t->added);
    free(t->trie.e);
    free(t->trie_term);
    free(t);
}

/* Byte-level decode of a stored token string: true when every char is in the
 * ByteLevel alphabet (then *out gets the raw bytes, length <= n). */
static bool bytelevel_decode(const int16_t *c2b, const char *s, size_t n, char *out, size_t *on)
{
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int l = utf8_valid_len(u + i, n - i);
        if (!l) return false;
        uint32_t cp = utf8_decode(u + i, l);
        if (cp >= 324 || c2b[cp] < 0) return false;
        out[o++] = (char)c2b[cp];
        i += (size_t)l;
    }
    *on = o;
    return true;
}

/* set the model token `id` (stored string s) */
static ey_err set_model_token(ey_tokenizer *t, int32_t id, const char *s, size_t n, char *scratch)
{
    if (n > TOK_MAX_TOKEN_BYTES)
        return ey_err_set(EY_ERR_LIMIT, "tokenizer: token %d is %zu bytes long (max %d)", id, n,
                          TOK_MAX_TOKEN_BYTES);
    uint64_t off;
    ey_err e = arena_put(t, s, n, &off);
    if (e) return e;
    t->str_off[id] = off;
    t->str_len[id] = (uint32_t)n;
    t->flags[id] |= TF_MODEL;
    e = strmap_put(&t->model_str, t->arena, off, (uint32_t)n, id);
    if (e) return e;
    size_t bn;
    if (bytelevel_decode(t->c2b, t->arena + off, n, scratch, &bn)) {
        uint64_t boff;
        e = arena_put(t, scratch, bn, &boff);
        if (e) return e;
        t->byt_off[id] = boff;
        t->byt_len[id] = (uint32_t)bn;
        e = strmap_put(&t->model_bytes, t->arena, boff, (uint32_t)bn, id);
        if (e) return e;
    } else {
        /* not byte-level text: unreachable by BPE, decodes to its raw UTF-8 */
        t->byt_off[id] = off;
        t->byt_len[id] = (uint32_t)n;
    }
    return EY_OK;
}

/* --- added-token trie --- */
static ey_err trie_new_node(ey_tokenizer *t, int *node)
{
    if (t->trie_nodes == t->trie_cap) {
        int c = t->trie_cap ? t->trie_cap * 2 : 64;
        int32_t *n = realloc(t->trie_term, (size_t)c * sizeof *n);
        if (!n) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (trie)");
        t->trie_term = n;
        t->trie_cap = c;
    }
    t->trie_term[t->trie_nodes] = -1;
    *node = t->trie_nodes++;
    return EY_OK;
}

static ey_err trie_insert(ey_tokenizer *t, int root, const char *s, size_t n, int added_idx)
{
    int node = root;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = ((uint64_t)node << 8) | (unsigned char)s[i];
        const pm_entry *pe = pairmap_get(&t->trie, key);
        if (pe) {
            node = pe->val;
        } else {
            int nn = 0;
            ey_err e = trie_new_node(t, &nn);
            if (!e) e = pairmap_put(&t->trie, key, 0, nn, false);
            if (e) return e;
            node = nn;
        }
    }
    /* a later duplicate content wins (as a HashMap insert would) */
    t->trie_term[node] = added_idx;
    return EY_OK;
}

/* longest added token starting at s; returns its length (0: none) */
static size_t trie_longest(const ey_tokenizer *t, int root, const unsigned char *s, size_t n, int *idx)
{
    int node = root;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        const pm_entry *pe = pairmap_get(&t->trie, ((uint64_t)node << 8) | s[i]);
        if (!pe) break;
        node = pe->val;
        if (t->trie_term[node] >= 0) {
            best = i + 1;
            *idx = t->trie_term[node];
        }
    }
    return best;
}

/* normalizer over a whole string; invalid UTF-8 bytes are kept as they are and
 * the valid runs between them are normalized separately. *out malloc'ed. */
static ey_err normalize_text(const ey_tokenizer *t, const char *s, size_t n, char **out, size_t *on)
{
    char *cur = malloc(n + 1);
    if (!cur) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (normalize)");
    memcpy(cur, s, n);
    size_t cn = n;
    for (int k = 0; k < t->n_norms; k++) {
        size_t cap = cn + 16, len = 0;
        char *nb = malloc(cap);
        if (!nb) {
            free(cur);
            return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (normalize)");
        }
        const unsigned char *u = (const unsigned char *)cur;
        size_t i = 0;
        while (i < cn) {
            size_t j = i;
            while (j < cn) {
                int l = utf8_valid_len(u + j, cn - j);
                if (!l) break;
                j += (size_t)l;
            }
            const char *piece = cur + i;
            size_t pn = j - i;
            utf8proc_uint8_t *dst = NULL;
            bool own = false;
            if (pn) {
                utf8proc_ssize_t r =
                    utf8proc_map((const utf8proc_uint8_t *)piece, (utf8proc_ssize_t)pn, &dst, t->norms[k]);
                if (r < 0) {
                    free(nb);
                    free(cur);
                    return ey_err_set(EY_ERR_TOKENIZER, "tokenizer: normalization failed: %s",
                                      utf8proc_errmsg(r));
                }
                piece = (const char *)dst;
                pn = (size_t)r;
                own = true;
            }
            /* then the invalid bytes at j (one maximal subpart at a time) */
            size_t bad = 0;
            if (j < cn) {
                bool tr;
                bad = (size_t)utf8_bad_len(u + j, cn - j, &tr);
            }
            if (len + pn + bad + 1 > cap) {
                while (len + pn + bad + 1 > cap) cap *= 2;
                char *g = realloc(nb, cap);
                if (!g) {
                    if (own) free(dst);
                    free(nb);
                    free(cur);
                    return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (normalize)");
                }
                nb = g;
            }
            memcpy(nb + len, piece, pn);
            len += pn;
            if (own) free(dst);
            memcpy(nb + len, cur + j, bad);
            len += bad;
            i = j + bad;
        }
        free(cur);
        cur = nb;
        cn = len;
    }
    *out = cur;
    *on = cn;
    return EY_OK;
}

/* Oniguruma (what `tokenizers` uses) and PCRE2 disagree on a few Unicode
 * shorthands: onig's \s is White_Space (PCRE2's also takes U+180E) and onig's
 * \w takes marks and excludes No/Nl. Rewrite them to explicit properties. */
static char *onig_to_pcre2(const char *pat, size_t n, size_t *on)
{
    static const char WS[] = "\\p{White_Space}", NWS[] = "\\P{White_Space}";
    static const char W_IN[] = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
    size_t cap = n * 24 + 1, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char d = pat[i + 1];
            const char *rep = NULL;
            if (d == 's') rep = WS;
            else if (d == 'S') rep = NWS;
            else if (d == 'w') rep = in_class ? W_IN : "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
            else if (d == 'W' && !in_class) rep = "[^\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
            if (rep) {
                size_t l = strlen(rep);
                memcpy(out + o, rep, l);
                o += l;
            } else {
                out[o++] = c;
                out[o++] = d;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            out[o++] = c;
            /* a leading ']' (or '^]') is a literal */
            if (i + 1 < n && pat[i + 1] == '^') out[o++] = pat[++i];
            if (i + 1 < n && pat[i + 1] == ']') out[o++] = pat[++i];
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        out[o++] = c;
    }
    out[o] = 0;
    *on = o;
    return out;
}

static ey_err compile_regex(const char *pat, size_t n, bool literal, pcre2_code **out)
{
    if (n > TOK_MAX_PATTERN) return ey_err_set(EY_ERR_LIMIT, "tokenizer: regex pattern too long (%zu bytes)", n);
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    opts |= literal ? PCRE2_LITERAL : PCRE2_UCP;
    char *conv = NULL;
    if (!literal) {
        conv = onig_to_pcre2(pat, n, &n);
        if (!conv) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
        pat = conv;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, n, opts, &ec, &eo, NULL);
    free(conv);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ey_err_set(EY_ERR_FORMAT, "tokenizer: bad pre-tokenizer regex at offset %zu: %s", (size_t)eo,
                          (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    *out = re;
    return EY_OK;
}

/* The published split regexes (tokenizers' ByteLevel default; Llama-3 and
 * Qwen2 from their tokenizer.json files). */
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static ey_err add_step_split(ey_tokenizer *t, const char *pat, size_t n, bool literal, int behavior, bool invert)
{
    if (t->n_steps >= TOK_MAX_STEPS) return ey_err_set(EY_ERR_LIMIT, "tokenizer: too many pre-tokenizer steps");
    pt_step *st = &t->steps[t->n_steps];
    memset(st, 0, sizeof *st);
    ey_err e = compile_regex(pat, n, literal, &st->re);
    if (e) return e;
    st->kind = PT_SPLIT;
    st->behavior = behavior;
    st->invert = invert;
    t->n_steps++;
    return EY_OK;
}

static ey_err add_step_bytelevel(ey_tokenizer *t, bool add_prefix_space, bool use_regex)
{
    if (t->n_steps >= TOK_MAX_STEPS) return ey_err_set(EY_ERR_LIMIT, "tokenizer: too many pre-tokenizer steps");
    pt_step *st = &t->steps[t->n_steps];
    memset(st, 0, sizeof *st);
    st->kind = PT_BYTELEVEL;
    st->add_prefix_space = add_prefix_space;
    st->use_regex = use_regex;
    if (use_regex) {
        ey_err e = compile_regex(RE_GPT2, strlen(RE_GPT2), false, &st->re);
        if (e) return e;
    }
    t->n_steps++;
    return EY_OK;
}

static ey_err add_added_token(ey_tokenizer *t, int32_t id, const char *content, size_t n, bool special,
                              bool lstrip, bool rstrip, bool single_word, bool normalized)
{
    if (id < 0 || id >= t->n_vocab) return ey_err_set(EY_ERR_FORMAT, "tokenizer: added token id %d out of range", id);
    if (n == 0) return ey_err_set(EY_ERR_FORMAT, "tokenizer: added token %d has empty content", id);
    if (n > TOK_MAX_TOKEN_BYTES) return ey_err_set(EY_ERR_LIMIT, "tokenizer: added token %d too long", id);
    if (t->n_added >= TOK_MAX_ADDED) return ey_err_set(EY_ERR_LIMIT, "tokenizer: too many added tokens");
    added_tok *a = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *a);
    if (!a) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    t->added = a;
    uint64_t off;
    ey_err e = arena_put(t, content, n, &off);
    if (e) return e;
    t->str_off[id] = off;
    t->str_len[id] = (uint32_t)n;
    t->flags[id] |= TF_ADDED | (special ? TF_SPECIAL : 0);
    e = strmap_put(&t->added_str, t->arena, off, (uint32_t)n, id);
    if (e) return e;
    t->added[t->n_added++] = (added_tok){.id = id, .off = off, .len = (uint32_t)n, .special = special,
                                         .lstrip = lstrip, .rstrip = rstrip, .single_word = single_word,
                                         .normalized = normalized};
    return EY_OK;
}

static bool name_is_eog(const char *s, size_t n)
{
    static const char *const names[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>",
                                        "<|eom_id|>"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0) return true;
    return false;
}

/* after vocab, added tokens and pipeline are set */
static ey_err tok_finalize(ey_tokenizer *t)
{
    ey_err e;
    /* byte symbols and byte fallback ids */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_sym[b] = strmap_get(&t->model_bytes, t->arena, &c, 1);
        /* tokenizers' byte_fallback looks up "<0xXX>" for each UTF-8 byte of
         * the (ByteLevel) character, all or nothing */
        uint32_t cp = t->b2c[b];
        unsigned char u8[2];
        int nu = cp < 0x80 ? 1 : 2;
        if (nu == 1) u8[0] = (unsigned char)cp;
        else {
            u8[0] = (unsigned char)(0xC0 | (cp >> 6));
            u8[1] = (unsigned char)(0x80 | (cp & 0x3F));
        }
        t->n_fallback[b] = (uint8_t)nu;
        for (int k = 0; k < nu; k++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", u8[k]);
            t->fallback[b][k] = strmap_get(&t->model_str, t->arena, name, 6);
            if (t->fallback[b][k] < 0) t->n_fallback[b] = 0;
        }
    }
    /* tries: normalized tokens are matched by their normalized content */
    e = pairmap_init(&t->trie, 256);
    int r0, r1;
    if (!e) e = trie_new_node(t, &r0);
    if (!e) e = trie_new_node(t, &r1);
    if (e) return e;
    for (int i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        if (a->normalized && t->n_norms) {
            char *nc;
            size_t nn;
            e = normalize_text(t, t->arena + a->off, a->len, &nc, &nn);
            if (e) return e;
            if (nn == 0) {
                free(nc);
                continue;
            }
            uint64_t off;
            e = arena_put(t, nc, nn, &off);
            free(nc);
            if (e) return e;
            a->off = off;
            a->len = (uint32_t)nn;
        }
        e = trie_insert(t, a->normalized ? TRIE_NORM : TRIE_RAW, t->arena + a->off, a->len, i);
        if (e) return e;
        if (a->normalized) t->have_norm_added = true;
        else t->have_raw_added = true;
    }
    /* added tokens: content bytes decoded as the ByteLevel decoder does
     * (JSON), raw text otherwise (GGUF control/user-defined); a normalized
     * token decodes to its normalized content, as in tokenizers */
    char *scratch = malloc(TOK_MAX_TOKEN_BYTES + 1);
    if (!scratch) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    for (int i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        size_t bn;
        if (t->json_origin && bytelevel_decode(t->c2b, t->arena + a->off, a->len, scratch, &bn)) {
            uint64_t boff;
            e = arena_put(t, scratch, bn, &boff);
            if (e) {
                free(scratch);
                return e;
            }
            t->byt_off[a->id] = boff;
            t->byt_len[a->id] = (uint32_t)bn;
        } else {
            t->byt_off[a->id] = a->off;
            t->byt_len[a->id] = a->len;
        }
    }
    free(scratch);
    /* end-of-generation set */
    for (int id = 0; id < t->n_vocab; id++)
        if (name_is_eog(tstr(t, id), t->str_len[id])) t->flags[id] |= TF_EOG;
    if (t->eos_id >= 0) t->flags[t->eos_id] |= TF_EOG;
    return EY_OK;
}

/* ------------------------------------------------------------------------ */
/* construction from a GGUF-style spec                                       */

typedef struct pre_def {
    const char *name;
    int kind; /* 0 gpt2, 1 digits+gpt2, 2 llama3, 3 qwen2 */
    bool ignore_merges;
} pre_def;

static const pre_def k_pre_defs[] = {
    {"gpt2", 0, false},      {"gpt-2", 0, false},     {"default", 0, false},   {"mpt", 0, false},
    {"olmo", 0, false},      {"jais", 0, false},      {"smollm", 1, false},    {"starcoder", 1, false},
    {"refact", 1, false},    {"command-r", 1, false}, {"codeshell", 1, false}, {"exaone", 1, false},
    {"minerva-7b", 1, false}, {"llama3", 2, true},    {"llama-v3", 2, true},   {"llama-bpe", 2, true},
    {"falcon3", 2, true},    {"pixtral", 2, true},    {"dbrx", 2, false},      {"smaug-bpe", 2, false},
    {"qwen2", 3, false},     {"deepseek-r1-qwen", 3, false}, {"megrez", 3, false},
};

static ey_err setup_pre_by_name(ey_tokenizer *t, const char *pre)
{
    const pre_def *d = NULL;
    const char *name = (pre && *pre) ? pre : "default";
    for (size_t i = 0; i < sizeof k_pre_defs / sizeof k_pre_defs[0]; i++)
        if (strcmp(k_pre_defs[i].name, name) == 0) d = &k_pre_defs[i];
    if (!d)
        return ey_err_set(EY_ERR_UNSUPPORTED,
                          "tokenizer: pre-tokenizer '%.64s' (tokenizer.ggml.pre) is not supported; supported: "
                          "gpt2, smollm, starcoder, llama-bpe/llama3, qwen2 and aliases (see docs/tokenizer.md)",
                          name);
    ey_err e = EY_OK;
    t->ignore_merges = d->ignore_merges;
    switch (d->kind) {
    case 0: e = add_step_bytelevel(t, false, true); break;
    case 1:
        e = add_step_split(t, "\\p{N}", 5, false, SPLIT_ISOLATED, false);
        if (!e) e = add_step_bytelevel(t, false, true);
        break;
    case 2:
        e = add_step_split(t, RE_LLAMA3, strlen(RE_LLAMA3), false, SPLIT_ISOLATED, false);
        if (!e) e = add_step_bytelevel(t, false, false);
        break;
    case 3:
        /* Qwen2's tokenizer.json declares an NFC normalizer (llama.cpp skips it) */
        t->norms[t->n_norms++] = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
        e = add_step_split(t, RE_QWEN2, strlen(RE_QWEN2), false, SPLIT_ISOLATED, false);
        if (!e) e = add_step_bytelevel(t, false, false);
        break;
    }
    return e;
}

ey_err ey_tokenizer_from_spec(const ey_tok_spec *spec, ey_tokenizer **out)
{
    if (!spec || !out) return ey_err_set(EY_ERR_ARG, "tokenizer: NULL argument");
    *out = NULL;
    if (!spec->tokens) return ey_err_set(EY_ERR_ARG, "tokenizer: spec has no tokens");
    if (spec->n_merges < 0 || spec->n_merges > TOK_MAX_MERGES || (spec->n_merges > 0 && !spec->merges))
        return ey_err_set(EY_ERR_LIMIT, "tokenizer: bad merge count %d", spec->n_merges);
    ey_tokenizer *t;
    ey_err e = tok_alloc(spec->n_vocab, &t);
    if (e) return e;
    char *scratch = malloc(TOK_MAX_TOKEN_BYTES + 1);
    if (!scratch) {
        ey_tokenizer_free(t);
        return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int id = 0; id < spec->n_vocab && !e; id++) {
        const char *s = spec->tokens[id];
        if (!s) {
            e = ey_err_set(EY_ERR_FORMAT, "tokenizer: token %d is NULL", id);
            break;
        }
        size_t n = strnlen(s, TOK_MAX_TOKEN_BYTES + 1);
        int32_t ty = spec->types ? spec->types[id] : EY_TOKTYPE_NORMAL;
        e = set_model_token(t, id, s, n, scratch);
        if (e) break;
        if (ty == EY_TOKTYPE_CONTROL || ty == EY_TOKTYPE_UNKNOWN) {
            e = add_added_token(t, id, s, n, true, false, false, false, false);
        } else if (ty == EY_TOKTYPE_USER_DEFINED) {
            e = add_added_token(t, id, s, n, false, false, false, false, false);
        } else if (ty == EY_TOKTYPE_BYTE) {
            unsigned v;
            char tail;
            if (n == 6 && sscanf(s, "<0x%2X%c", &v, &tail) == 2 && tail == '>' && v < 256) {
                uint64_t off;
                char b = (char)v;
                e = arena_put(t, &b, 1, &off);
                t->byt_off[id] = off;
                t->byt_len[id] = 1;
            }
        }
    }
    free(scratch);
    if (!e) e = setup_pre_by_name(t, spec->pre);
    /* merges: "left right", first occurrence ranks (as llama.cpp) */
    if (!e) e = pairmap_init(&t->merges, (uint64_t)spec->n_merges);
    char *buf = NULL;
    if (!e && spec->n_merges) {
        buf = malloc(2 * TOK_MAX_TOKEN_BYTES + 2);
        if (!buf) e = ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int i = 0; i < spec->n_merges && !e; i++) {
        const char *m = spec->merges[i];
        if (!m) {
            e = ey_err_set(EY_ERR_FORMAT, "tokenizer: merge %d is NULL", i);
            break;
        }
        size_t n = strnlen(m, 2 * TOK_MAX_TOKEN_BYTES + 1);
        const char *sp = memchr(m + (n > 0 ? 1 : 0), ' ', n > 0 ? n - 1 : 0);
        if (!sp) {
            e = ey_err_set(EY_ERR_FORMAT, "tokenizer: merge %d has no separating space", i);
            break;
        }
        size_t la = (size_t)(sp - m), lb = n - la - 1;
        if (la + lb > 2 * TOK_MAX_TOKEN_BYTES) continue;
        int32_t a = strmap_get(&t->model_str, t->arena, m, la);
        int32_t b = strmap_get(&t->model_str, t->arena, sp + 1, lb);
        memcpy(buf, m, la);
        memcpy(buf + la, sp + 1, lb);
        int32_t ab = strmap_get(&t->model_str, t->arena, buf, la + lb);
        if (a < 0 || b < 0 || ab < 0) continue; /* unreachable merge */
        e = pairmap_put(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, (uint32_t)i, ab, false);
    }
    free(buf);
    if (!e) {
        if (spec->bos_id >= spec->n_vocab || spec->eos_id >= spec->n_vocab || spec->pad_id >= spec->n_vocab)
            e = ey_err_set(EY_ERR_FORMAT, "tokenizer: bos/eos/pad id out of range");
        t->bos_id = spec->bos_id < 0 ? -1 : spec->bos_id;
        t->eos_id = spec->eos_id < 0 ? -1 : spec->eos_id;
        t->pad_id = spec->pad_id < 0 ? -1 : spec->pad_id;
        t->add_bos = spec->add_bos && t->bos_id >= 0;
    }
    if (!e) e = tok_finalize(t);
    if (e) {
        ey_tokenizer_free(t);
        return e;
    }
    *out = t;
    return EY_OK;
}

/* ------------------------------------------------------------------------ */
/* construction from tokenizer.json                                          */

static const char *jtype(const cJSON *o)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *k, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return def;
}

static bool jint(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi)) return false;
    if ((double)(int64_t)d != d) return false;
    *out = (int64_t)d;
    return true;
}

static ey_err parse_normalizer(ey_tokenizer *t, const cJSON *n, int depth)
{
    if (!n || cJSON_IsNull(n)) return EY_OK;
    if (depth > 8) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: normalizer nested too deeply");
    const char *ty = jtype(n);
    if (!ty) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: normalizer without a type");
    utf8proc_option_t o;
    if (!strcmp(ty, "NFC")) o = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    else if (!strcmp(ty, "NFD")) o = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    else if (!strcmp(ty, "NFKC")) o = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(ty, "NFKD")) o = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(ty, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(arr)) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: Sequence normalizer without list");
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            ey_err e = parse_normalizer(t, it, depth + 1);
            if (e) return e;
        }
        return EY_OK;
    } else
        return ey_err_set(EY_ERR_UNSUPPORTED, "tokenizer.json: normalizer '%.40s' is not supported", ty);
    if (t->n_norms >= TOK_MAX_NORMS) return ey_err_set(EY_ERR_LIMIT, "tokenizer.json: too many normalizers");
    t->norms[t->n_norms++] = o;
    return EY_OK;
}

static ey_err parse_pretok(ey_tokenizer *t, const cJSON *p, int depth, bool *saw_bytelevel)
{
    if (!p || cJSON_IsNull(p)) return EY_OK;
    if (depth > 8) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: pre_tokenizer nested too deeply");
    const char *ty = jtype(p);
    if (!ty) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    if (!strcmp(ty, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(arr))
            return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: Sequence pre_tokenizer without list");
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            ey_err e = parse_pretok(t, it, depth + 1, saw_bytelevel);
            if (e) return e;
        }
        return EY_OK;
    }
    if (*saw_bytelevel)
        return ey_err_set(EY_ERR_UNSUPPORTED,
                          "tokenizer.json: pre-tokenizer '%.40s' after ByteLevel is not supported", ty);
    if (!strcmp(ty, "ByteLevel")) {
        *saw_bytelevel = true;
        return add_step_bytelevel(t, jbool(p, "add_prefix_space", true), jbool(p, "use_regex", true));
    }
    if (!strcmp(ty, "Digits")) {
        if (jbool(p, "individual_digits", false)) return add_step_split(t, "\\p{N}", 5, false, SPLIT_ISOLATED, false);
        return add_step_split(t, "\\p{N}+", 6, false, SPLIT_ISOLATED, false);
    }
    if (!strcmp(ty, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *src = cJSON_IsString(rx) ? rx : lit;
        if (!cJSON_IsString(src))
            return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: Split pre_tokenizer without a Regex/String pattern");
        const cJSON *bh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        if (!cJSON_IsString(bh)) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: Split without behavior");
        int b;
        const char *bs = bh->valuestring;
        if (!strcmp(bs, "Isolated")) b = SPLIT_ISOLATED;
        else if (!strcmp(bs, "Removed")) b = SPLIT_REMOVED;
        else if (!strcmp(bs, "MergedWithPrevious")) b = SPLIT_MERGED_PREV;
        else if (!strcmp(bs, "MergedWithNext")) b = SPLIT_MERGED_NEXT;
        else if (!strcmp(bs, "Contiguous")) b = SPLIT_CONTIGUOUS;
        else return ey_err_set(EY_ERR_UNSUPPORTED, "tokenizer.json: Split behavior '%.40s' unknown", bs);
        const char *ps = src->valuestring;
        return add_step_split(t, ps, strlen(ps), src == lit, b, jbool(p, "invert", false));
    }
    return ey_err_set(EY_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer '%.40s' is not supported", ty);
}

static bool decoder_ok(const cJSON *d, int depth)
{
    if (!d || cJSON_IsNull(d)) return true;
    if (depth > 8) return false;
    const char *ty = jtype(d);
    if (!ty) return false;
    if (!strcmp(ty, "ByteLevel")) return true;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        const cJSON *it;
        bool any = false;
        cJSON_ArrayForEach(it, arr)
        {
            const char *ity = jtype(it);
            if (!ity || strcmp(ity, "ByteLevel") != 0) return false;
            any = true;
        }
        return any;
    }
    return false;
}

static char *read_file(const char *path, size_t max, size_t *len, ey_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = ey_err_set(EY_ERR_IO, "tokenizer: cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        *err = ey_err_set(EY_ERR_IO, "tokenizer: '%s' is not a regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > max) {
        fclose(f);
        *err = ey_err_set(EY_ERR_LIMIT, "tokenizer: '%s' is %lld bytes (max %zu)", path, (long long)st.st_size, max);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        *err = ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory reading '%s'", path);
        return NULL;
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        *err = ey_err_set(EY_ERR_IO, "tokenizer: short read on '%s'", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    *err = EY_OK;
    return buf;
}

static const char *special_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static int32_t find_any(const ey_tokenizer *t, const char *s)
{
    return ey_tokenizer_find(t, s);
}

/* bos/eos from the post-processor and (if present) tokenizer_config.json */
static void json_specials(ey_tokenizer *t, const cJSON *root, const char *config_path)
{
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *list[8];
    int nl = 0;
    if (pp && jtype(pp) && !strcmp(jtype(pp), "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pp, "processors"))
        {
            if (nl < 8) list[nl++] = it;
        }
    } else if (pp)
        list[nl++] = pp;
    for (int i = 0; i < nl; i++) {
        const char *ty = jtype(list[i]);
        if (!ty || strcmp(ty, "TemplateProcessing") != 0) continue;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(list[i], "single");
        const cJSON *first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
        const cJSON *sid = cJSON_GetObjectItemCaseSensitive(sp, "id");
        if (cJSON_IsString(sid)) {
            int32_t id = find_any(t, sid->valuestring);
            if (id >= 0) {
                t->bos_id = id;
                t->add_bos = true;
            }
        }
    }
    if (config_path) {
        size_t n;
        ey_err e;
        char *buf = read_file(config_path, TOK_MAX_CONFIG_BYTES, &n, &e);
        cJSON *cfg = buf ? cJSON_ParseWithLength(buf, n) : NULL;
        free(buf);
        ey_err_clear();
        if (cfg) {
            const char *b = special_name(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token"));
            const char *s = special_name(cJSON_GetObjectItemCaseSensitive(cfg, "eos_token"));
            const char *p = special_name(cJSON_GetObjectItemCaseSensitive(cfg, "pad_token"));
            if (b && find_any(t, b) >= 0) t->bos_id = find_any(t, b);
            if (s && find_any(t, s) >= 0) t->eos_id = find_any(t, s);
            if (p && find_any(t, p) >= 0) t->pad_id = find_any(t, p);
            const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
            if (cJSON_IsBool(ab)) t->add_bos = cJSON_IsTrue(ab);
            cJSON_Delete(cfg);
        }
    }
    if (t->eos_id < 0) {
        static const char *const eos_names[] = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>",
                                                "</s>"};
        for (size_t i = 0; i < sizeof eos_names / sizeof eos_names[0] && t->eos_id < 0; i++)
            t->eos_id = find_any(t, eos_names[i]);
    }
    if (t->bos_id < 0) t->bos_id = find_any(t, "<|begin_of_text|>");
    if (t->bos_id < 0) t->add_bos = false;
}

static ey_err from_json_root(const cJSON *root, const char *config_path, ey_tokenizer **out)
{
    if (!cJSON_IsObject(root)) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: top level is not an object");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: no \"model\" object");
    const char *mty = jtype(model);
    if (mty && strcmp(mty, "BPE") != 0)
        return ey_err_set(EY_ERR_UNSUPPORTED, "tokenizer.json: model type '%.40s' is not supported (BPE only)", mty);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: model.vocab is not an object");
    if (merges && !cJSON_IsArray(merges) && !cJSON_IsNull(merges))
        return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: model.merges is not an array");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0.0)
        return ey_err_set(EY_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout is not supported");
    const char *opt_names[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, opt_names[i]);
        if (cJSON_IsString(v) && v->valuestring[0])
            return ey_err_set(EY_ERR_UNSUPPORTED, "tokenizer.json: model.%s is not supported", opt_names[i]);
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: added_tokens is not an array");

    /* pass 1: sizes and types */
    int64_t max_id = -1, n_vocab_items = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab)
    {
        int64_t id;
        if (!jint(it, 0, TOK_MAX_VOCAB - 1, &id))
            return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: vocab entry '%.40s' has a bad id",
                              it->string ? it->string : "?");
        if (id > max_id) max_id = id;
        if (++n_vocab_items > TOK_MAX_VOCAB) return ey_err_set(EY_ERR_LIMIT, "tokenizer.json: vocab too large");
    }
    int64_t n_added = 0;
    cJSON_ArrayForEach(it, added)
    {
        int64_t id;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsObject(it) || !jint(cJSON_GetObjectItemCaseSensitive(it, "id"), 0, TOK_MAX_VOCAB - 1, &id) ||
            !cJSON_IsString(c))
            return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: added_tokens entry %lld is malformed",
                              (long long)n_added);
        if (id > max_id) max_id = id;
        if (++n_added > TOK_MAX_ADDED) return ey_err_set(EY_ERR_LIMIT, "tokenizer.json: too many added tokens");
    }
    if (max_id < 0) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: empty vocabulary");
    int n_merges = merges ? cJSON_GetArraySize(merges) : 0;
    if (n_merges > TOK_MAX_MERGES) return ey_err_set(EY_ERR_LIMIT, "tokenizer.json: too many merges");

    ey_tokenizer *t;
    ey_err e = tok_alloc((int)max_id + 1, &t);
    if (e) return e;
    t->json_origin = true;
    char *scratch = malloc(2 * TOK_MAX_TOKEN_BYTES + 2);
    if (!scratch) e = ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    cJSON_ArrayForEach(it, vocab)
    {
        if (e) break;
        int64_t id = (int64_t)it->valuedouble;
        if (!it->string) {
            e = ey_err_set(EY_ERR_FORMAT, "tokenizer.json: vocab entry without a key");
            break;
        }
        e = set_model_token(t, (int32_t)id, it->string, strlen(it->string), scratch);
    }
    /* model options */
    if (!e) {
        t->byte_fallback = jbool(model, "byte_fallback", false);
        t->fuse_unk = jbool(model, "fuse_unk", false);
        t->ignore_merges = jbool(model, "ignore_merges", false);
        const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
        if (cJSON_IsString(unk)) {
            t->unk_id = strmap_get(&t->model_str, t->arena, unk->valuestring, strlen(unk->valuestring));
            if (t->unk_id < 0)
                e = ey_err_set(EY_ERR_FORMAT, "tokenizer.json: unk_token '%.40s' is not in the vocab",
                               unk->valuestring);
        }
    }
    /* merges: "a b" strings or [a, b] pairs; a later duplicate wins (HashMap) */
    if (!e) e = pairmap_init(&t->merges, (uint64_t)n_merges);
    int rank = 0;
    cJSON_ArrayForEach(it, merges)
    {
        if (e) break;
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                e = ey_err_set(EY_ERR_FORMAT, "tokenizer.json: merge %d '%.40s' is not \"a b\"", rank, s);
                break;
            }
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            e = ey_err_set(EY_ERR_FORMAT, "tokenizer.json: merge %d is neither \"a b\" nor [a, b]", rank);
            break;
        }
        if (la > TOK_MAX_TOKEN_BYTES || lb > TOK_MAX_TOKEN_BYTES) {
            e = ey_err_set(EY_ERR_LIMIT, "tokenizer.json: merge %d too long", rank);
            break;
        }
        int32_t ia = strmap_get(&t->model_str, t->arena, a, la);
        int32_t ib = strmap_get(&t->model_str, t->arena, b, lb);
        memcpy(scratch, a, la);
        memcpy(scratch + la, b, lb);
        int32_t iab = strmap_get(&t->model_str, t->arena, scratch, la + lb);
        if (ia < 0 || ib < 0 || iab < 0) {
            e = ey_err_set(EY_ERR_FORMAT, "tokenizer.json: merge %d (%.40s + %.40s) uses a token not in the vocab",
                           rank, a, b);
            break;
        }
        e = pairmap_put(&t->merges, ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib, (uint32_t)rank, iab, true);
        rank++;
    }
    free(scratch);
    /* pipeline */
    bool saw_bl = false;
    if (!e) e = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0);
    if (!e) e = parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0, &saw_bl);
    if (!e && !saw_bl)
        e = ey_err_set(EY_ERR_UNSUPPORTED, "tokenizer.json: not a byte-level BPE (no ByteLevel pre_tokenizer)");
    if (!e && !decoder_ok(cJSON_GetObjectItemCaseSensitive(root, "decoder"), 0))
        e = ey_err_set(EY_ERR_UNSUPPORTED, "tokenizer.json: decoder must be ByteLevel");
    /* added tokens */
    cJSON_ArrayForEach(it, added)
    {
        if (e) break;
        int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const char *c = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        bool special = jbool(it, "special", false);
        e = add_added_token(t, (int32_t)id, c, strlen(c), special, jbool(it, "lstrip", false),
                            jbool(it, "rstrip", false), jbool(it, "single_word", false),
                            jbool(it, "normalized", !special));
    }
    if (!e) {
        json_specials(t, root, config_path);
        e = tok_finalize(t);
    }
    if (e) {
        ey_tokenizer_free(t);
        return e;
    }
    *out = t;
    return EY_OK;
}

static ey_err from_json_buffer(const char *json, size_t len, const char *config_path, ey_tokenizer **out)
{
    if (len > TOK_MAX_JSON_BYTES)
        return ey_err_set(EY_ERR_LIMIT, "tokenizer.json: %zu bytes (max %zu)", len, TOK_MAX_JSON_BYTES);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return ey_err_set(EY_ERR_FORMAT, "tokenizer.json: malformed JSON");
    ey_err e = from_json_root(root, config_path, out);
    cJSON_Delete(root);
    return e;
}

ey_err ey_tokenizer_from_json_buffer(const char *json, size_t len, ey_tokenizer **out)
{
    if (!json || !out) return ey_err_set(EY_ERR_ARG, "tokenizer: NULL argument");
    *out = NULL;
    return from_json_buffer(json, len, NULL, out);
}

ey_err ey_tokenizer_from_json_file(const char *path, ey_tokenizer **out)
{
    if (!path || !out) return ey_err_set(EY_ERR_ARG, "tokenizer: NULL argument");
    *out = NULL;
    size_t n;
    ey_err e;
    char *buf = read_file(path, TOK_MAX_JSON_BYTES, &n, &e);
    if (!buf) return e;
    /* tokenizer_config.json next to it, if any (bos/eos/add_bos) */
    char *cfg = NULL;
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    cfg = malloc(dl + sizeof "tokenizer_config.json");
    if (cfg) {
        memcpy(cfg, path, dl);
        memcpy(cfg + dl, "tokenizer_config.json", sizeof "tokenizer_config.json");
        struct stat st;
        if (stat(cfg, &st) != 0 || strcmp(cfg, path) == 0) {
            free(cfg);
            cfg = NULL;
        }
    }
    e = from_json_buffer(buf, n, cfg, out);
    free(cfg);
    free(buf);
    return e;
}

/* ------------------------------------------------------------------------ */
/* accessors                                                                 */

int ey_tokenizer_n_vocab(const ey_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t ey_tokenizer_bos(const ey_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t ey_tokenizer_eos(const ey_tokenizer *t) { return t ? t->eos_id : -1; }
bool ey_tokenizer_add_bos(const ey_tokenizer *t) { return t && t->add_bos; }

bool ey_tokenizer_is_special(const ey_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && (t->flags[id] & TF_SPECIAL);
}

bool ey_tokenizer_is_eog(const ey_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && (t->flags[id] & TF_EOG);
}

int32_t ey_tokenizer_find(const ey_tokenizer *t, const char *token)
{
    if (!t || !token) return -1;
    size_t n = strlen(token);
    int32_t id = strmap_get(&t->added_str, t->arena, token, n);
    if (id >= 0) return id;
    return strmap_get(&t->model_str, t->arena, token, n);
}

const char *ey_token_bytes(const ey_tokenizer *t, int32_t id, size_t *len)
{
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->byt_len[id];
    return t->arena + t->byt_off[id];
}

/* ------------------------------------------------------------------------ */
/* encoding                                                                  */

typedef struct bpe_sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
} bpe_sym;

typedef struct heap_it {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
} heap_it;

typedef struct enc_ctx {
    const ey_tokenizer *t;
    bool parse_special;
    int32_t *ids;
    size_t n, cap;
    pcre2_match_data *md;
    bpe_sym *sym;
    size_t sym_cap;
    heap_it *heap;
    size_t heap_cap;
} enc_ctx;

static ey_err emit(enc_ctx *c, int32_t id)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        if (nc > (size_t)INT_MAX) nc = (size_t)INT_MAX;
        if (c->n >= nc) return ey_err_set(EY_ERR_LIMIT, "tokenizer: too many tokens");
        int32_t *p = realloc(c->ids, nc * sizeof *p);
        if (!p) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (ids)");
        c->ids = p;
        c->cap = nc;
    }
    c->ids[c->n++] = id;
    return EY_OK;
}

static bool heap_less(const heap_it *a, const heap_it *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(heap_it *h, size_t *n, heap_it v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static heap_it heap_pop(heap_it *h, size_t *n)
{
    heap_it top = h[0];
    heap_it last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, s = i;
        const heap_it *best = &last;
        if (l < m && heap_less(&h[l], best)) { s = l; best = &h[l]; }
        if (r < m && heap_less(&h[r], best)) { s = r; }
        if (s == i) break;
        h[i] = h[s];
        i = s;
    }
    if (m) h[i] = last;
    return top;
}

static const pm_entry *merge_of(const ey_tokenizer *t, int32_t a, int32_t b)
{
    return pairmap_get(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
}

/* one pre-tokenized word (raw bytes) through the BPE model */
static ey_err bpe_word(enc_ctx *c, const unsigned char *s, size_t n)
{
    const ey_tokenizer *t = c->t;
    if (n == 0) return EY_OK;
    if (t->ignore_merges) {
        int32_t id = strmap_get(&t->model_bytes, t->arena, s, n);
        if (id >= 0) return emit(c, id);
    }
    if (2 * n > c->sym_cap) {
        size_t nc = 2 * n < 64 ? 64 : 2 * n;
        bpe_sym *ns = realloc(c->sym, nc * sizeof *ns);
        if (!ns) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (bpe)");
        c->sym = ns;
        c->sym_cap = nc;
        heap_it *nh = realloc(c->heap, 3 * nc * sizeof *nh);
        if (!nh) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory (bpe)");
        c->heap = nh;
        c->heap_cap = 3 * nc;
    }
    /* initial symbols: one per byte; missing byte symbols use byte fallback
     * "<0xXX>", else unk (fused if fuse_unk), else are dropped */
    bpe_sym *sy = c->sym;
    int ns = 0;
    int32_t pend_unk = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_sym[s[i]];
        if (id >= 0) {
            if (pend_unk >= 0) {
                sy[ns++] = (bpe_sym){.id = pend_unk};
                pend_unk = -1;
            }
            sy[ns++] = (bpe_sym){.id = id};
        } else if (t->byte_fallback && t->n_fallback[s[i]]) {
            /* as tokenizers: a pending unk is not flushed by fallback bytes */
            for (int k = 0; k < t->n_fallback[s[i]]; k++) sy[ns++] = (bpe_sym){.id = t->fallback[s[i]][k]};
        } else if (t->unk_id >= 0) {
            if (pend_unk >= 0 && !t->fuse_unk) sy[ns++] = (bpe_sym){.id = pend_unk};
            pend_unk = t->unk_id;
        }
    }
    if (pend_unk >= 0) sy[ns++] = (bpe_sym){.id = pend_unk};
    for (int i = 0; i < ns; i++) {
        sy[i].prev = i - 1;
        sy[i].next = i + 1 < ns ? i + 1 : -1;
        sy[i].alive = true;
    }
    heap_it *h = c->heap;
    size_t hn = 0;
    for (int i = 0; i + 1 < ns; i++) {
        const pm_entry *m = merge_of(t, sy[i].id, sy[i + 1].id);
        if (m) heap_push(h, &hn, (heap_it){m->rank, i, m->val});
    }
    while (hn) {
        heap_it top = heap_pop(h, &hn);
        bpe_sym *cur = &sy[top.pos];
        if (!cur->alive || cur->next < 0) continue;
        bpe_sym *right = &sy[cur->next];
        const pm_entry *m = merge_of(t, cur->id, right->id);
        if (!m || m->val != top.new_id) continue; /* stale entry */
        cur->id = top.new_id;
        right->alive = false;
        cur->next = right->next;
        if (right->next >= 0) sy[right->next].prev = top.pos;
        if (cur->prev >= 0) {
            const pm_entry *pm = merge_of(t, sy[cur->prev].id, cur->id);
            if (pm && hn < c->heap_cap) heap_push(h, &hn, (heap_it){pm->rank, cur->prev, pm->val});
        }
        if (cur->next >= 0) {
            const pm_entry *nm = merge_of(t, cur->id, sy[cur->next].id);
            if (nm && hn < c->heap_cap) heap_push(h, &hn, (heap_it){nm->rank, top.pos, nm->val});
        }
    }
    for (int i = 0; i < ns; i = sy[i].next) {
        ey_err e = emit(c, sy[i].id);
        if (e) return e;
        if (sy[i].next < 0) break;
    }
    return EY_OK;
}

static ey_err pretok(enc_ctx *c, int step, const char *s, size_t n);

/* one regex match search from `off`, tokenizers/onig iteration semantics */
static int re_find(enc_ctx *c, const pcre2_code *re, const char *s, size_t n, size_t off, size_t *ms, size_t *me)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, 0, c->md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_JIT, c->md, NULL);
    if (rc < 0) return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

typedef struct split_state {
    int behavior;
    bool have;
    size_t ps, pe;
    bool pm;
} split_state;

static ey_err split_flush(enc_ctx *c, int step, const char *s, split_state *st)
{
    if (!st->have) return EY_OK;
    st->have = false;
    if (st->behavior == SPLIT_REMOVED && st->pm) return EY_OK;
    if (st->pe > st->ps) return pretok(c, step + 1, s + st->ps, st->pe - st->ps);
    return EY_OK;
}

/* feed one (start, end, is_match) item of the match/gap sequence */
static ey_err split_feed(enc_ctx *c, int step, const char *s, split_state *st, size_t a, size_t b, bool m)
{
    ey_err e;
    switch (st->behavior) {
    case SPLIT_ISOLATED:
    case SPLIT_REMOVED:
        e = split_flush(c, step, s, st);
        st->have = true;
        st->ps = a, st->pe = b, st->pm = m;
        return e;
    case SPLIT_CONTIGUOUS:
        if (st->have && st->pm == m) {
            st->pe = b;
            return EY_OK;
        }
        e = split_flush(c, step, s, st);
        st->have = true;
        st->ps = a, st->pe = b, st->pm = m;
        return e;
    case SPLIT_MERGED_PREV:
        if (st->have && m && !st->pm) {
            st->pe = b;
            st->pm = m;
            return EY_OK;
        }
        e = split_flush(c, step, s, st);
        st->have = true;
        st->ps = a, st->pe = b, st->pm = m;
        return e;
    case SPLIT_MERGED_NEXT:
        if (st->have && st->pm && !m) {
            st->pe = b;
            st->pm = m;
            return EY_OK;
        }
        e = split_flush(c, step, s, st);
        st->have = true;
        st->ps = a, st->pe = b, st->pm = m;
        return e;
    }
    return EY_OK;
}

static ey_err regex_split(enc_ctx *c, int step, const pcre2_code *re, int behavior, bool invert, const char *s,
                          size_t n)
{
    split_state st = {.behavior = behavior};
    size_t prev = 0, off = 0;
    bool have_last = false;
    size_t last_end = 0;
    ey_err e = EY_OK;
    const unsigned char *u = (const unsigned char *)s;
    while (off <= n) {
        size_t ms, me;
        int rc = re_find(c, re, s, n, off, &ms, &me);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ey_err_set(EY_ERR_TOKENIZER, "tokenizer: regex match failed: %s", (const char *)msg);
        }
        if (ms == me && have_last && last_end == me) {
            /* no empty match right after the previous match: step one char */
            if (off >= n) break;
            int l = utf8_valid_len(u + off, n - off);
            off += l ? (size_t)l : 1;
            continue;
        }
        if (prev != ms) {
            e = split_feed(c, step, s, &st, prev, ms, invert);
            if (e) return e;
        }
        e = split_feed(c, step, s, &st, ms, me, !invert);
        if (e) return e;
        prev = me;
        off = me;
        have_last = true;
        last_end = me;
    }
    if (prev != n) {
        e = split_feed(c, step, s, &st, prev, n, invert);
        if (e) return e;
    }
    return split_flush(c, step, s, &st);
}

static ey_err pretok(enc_ctx *c, int step, const char *s, size_t n)
{
    if (n == 0) return EY_OK;
    const ey_tokenizer *t = c->t;
    if (step >= t->n_steps) return bpe_word(c, (const unsigned char *)s, n);
    const pt_step *st = &t->steps[step];
    if (st->kind == PT_BYTELEVEL) {
        if (st->add_prefix_space && s[0] != ' ') {
            char *b = malloc(n + 1);
            if (!b) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
            b[0] = ' ';
            memcpy(b + 1, s, n);
            ey_err e = st->use_regex ? regex_split(c, step, st->re, SPLIT_ISOLATED, false, b, n + 1)
                                     : pretok(c, step + 1, b, n + 1);
            free(b);
            return e;
        }
        if (!st->use_regex) return pretok(c, step + 1, s, n);
        return regex_split(c, step, st->re, SPLIT_ISOLATED, false, s, n);
    }
    return regex_split(c, step, st->re, st->behavior, st->invert, s, n);
}

/* added-token extraction (tokenizers' AddedVocabulary::find_matches); text
 * between matches goes to `next` */
typedef ey_err (*seg_fn)(enc_ctx *c, const char *s, size_t n);

static size_t space_run_back(const unsigned char *s, size_t end)
{
    size_t i = end;
    uint32_t cp;
    int l;
    while (i > 0 && (l = utf8_last_cp(s, i, &cp)) > 0 && is_white_space(cp)) i -= (size_t)l;
    return i;
}

static size_t space_run_fwd(const unsigned char *s, size_t start, size_t n)
{
    size_t i = start;
    int l;
    while (i < n && (l = utf8_valid_len(s + i, n - i)) > 0 && is_white_space(utf8_decode(s + i, l))) i += (size_t)l;
    return i;
}

static ey_err split_added(enc_ctx *c, int root, const char *s, size_t n, seg_fn next)
{
    const ey_tokenizer *t = c->t;
    const unsigned char *u = (const unsigned char *)s;
    size_t start_off = 0, i = 0;
    ey_err e;
    while (i < n) {
        int idx = -1;
        size_t ml = trie_longest(t, root, u + i, n - i, &idx);
        if (!ml) {
            i++;
            continue;
        }
        const added_tok *a = &t->added[idx];
        size_t start = i, stop = i + ml;
        i = stop;
        if (a->special && !c->parse_special) continue;
        if (a->single_word) {
            uint32_t cp;
            bool start_ok = start == 0 || !(utf8_last_cp(u, start, &cp) > 0 && is_word_char(cp));
            int l = stop < n ? utf8_valid_len(u + stop, n - stop) : 0;
            bool stop_ok = stop == n || !(l > 0 && is_word_char(utf8_decode(u + stop, l)));
            if (!start_ok || !stop_ok) continue;
        }
        if (a->lstrip) {
            size_t ns = space_run_back(u, start);
            start = ns > start_off ? ns : start_off;
        }
        if (a->rstrip) stop = space_run_fwd(u, stop, n);
        if (start_off < start) {
            e = next(c, s + start_off, start - start_off);
            if (e) return e;
        }
        e = emit(c, a->id);
        if (e) return e;
        start_off = stop;
        if (i < stop) i = stop;
    }
    if (start_off < n) return next(c, s + start_off, n - start_off);
    return EY_OK;
}

static ey_err seg_pretok(enc_ctx *c, const char *s, size_t n) { return pretok(c, 0, s, n); }

static bool all_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static ey_err seg_normalize(enc_ctx *c, const char *s, size_t n)
{
    const ey_tokenizer *t = c->t;
    /* NFC/NFD/NFKC/NFKD leave ASCII unchanged */
    if (!t->n_norms || all_ascii(s, n)) {
        if (t->have_norm_added) return split_added(c, TRIE_NORM, s, n, seg_pretok);
        return pretok(c, 0, s, n);
    }
    char *ns;
    size_t nn;
    ey_err e = normalize_text(t, s, n, &ns, &nn);
    if (e) return e;
    if (t->have_norm_added) e = split_added(c, TRIE_NORM, ns, nn, seg_pretok);
    else e = pretok(c, 0, ns, nn);
    free(ns);
    return e;
}

ey_err ey_tokenize(const ey_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids,
                   int *n_ids)
{
    if (!t || !ids || !n_ids || (!text && len)) return ey_err_set(EY_ERR_ARG, "tokenizer: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (len > TOK_MAX_INPUT) return ey_err_set(EY_ERR_LIMIT, "tokenizer: input of %zu bytes (max %zu)", len, TOK_MAX_INPUT);
    enc_ctx c = {.t = t, .parse_special = parse_special};
    c.md = pcre2_match_data_create(4, NULL);
    if (!c.md) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    ey_err e = EY_OK;
    if (len) {
        if (t->have_raw_added) e = split_added(&c, TRIE_RAW, text, len, seg_normalize);
        else e = seg_normalize(&c, text, len);
    }
    pcre2_match_data_free(c.md);
    free(c.sym);
    free(c.heap);
    if (e) {
        free(c.ids);
        return e;
    }
    if (!c.ids) {
        c.ids = malloc(sizeof *c.ids);
        if (!c.ids) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    }
    *ids = c.ids;
    *n_ids = (int)c.n;
    return EY_OK;
}

/* ------------------------------------------------------------------------ */
/* decoding                                                                  */

/* Convert bytes to valid UTF-8, ill-formed subparts -> U+FFFD. With `hold`,
 * a truncated-but-valid prefix at the end is not converted: its length is
 * returned in *held. Returns the output length; out may be NULL to measure. */
static size_t utf8_lossy(const unsigned char *s, size_t n, char *out, bool hold, size_t *held)
{
    size_t o = 0, i = 0;
    if (held) *held = 0;
    while (i < n) {
        int l = utf8_valid_len(s + i, n - i);
        if (l) {
            if (out) memcpy(out + o, s + i, (size_t)l);
            o += (size_t)l;
            i += (size_t)l;
            continue;
        }
        bool tr;
        int bl = utf8_bad_len(s + i, n - i, &tr);
        if (tr && hold) {
            *held = n - i;
            break;
        }
        if (out) memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += (size_t)bl;
    }
    return o;
}

int ey_detok_push(ey_detok *d, const ey_tokenizer *t, int32_t id, char *out, size_t cap)
{
    if (!d || !t || (!out && cap)) return -1;
    size_t bl;
    const char *b = ey_token_bytes(t, id, &bl);
    if (!b) return 0;
    if (d->skip_special && ey_tokenizer_is_special(t, id)) return 0;
    if (d->n_pending < 0 || d->n_pending > 4) d->n_pending = 0;
    /* pending (<= 3 bytes) + the token bytes */
    size_t n = (size_t)d->n_pending + bl;
    unsigned char stackbuf[256];
    unsigned char *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!buf) return -1;
    memcpy(buf, d->pending, (size_t)d->n_pending);
    memcpy(buf + d->n_pending, b, bl);
    size_t held;
    size_t need = utf8_lossy(buf, n, NULL, true, &held);
    if (need > cap) {
        if (buf != stackbuf) free(buf);
        return -1;
    }
    utf8_lossy(buf, n, out, true, &held);
    memcpy(d->pending, buf + n - held, held);
    d->n_pending = (int)held;
    if (buf != stackbuf) free(buf);
    return (int)need;
}

int ey_detok_flush(ey_detok *d, char *out, size_t cap)
{
    if (!d) return -1;
    if (d->n_pending <= 0 || d->n_pending > 4) {
        d->n_pending = 0;
        return 0;
    }
    size_t need = utf8_lossy((const unsigned char *)d->pending, (size_t)d->n_pending, NULL, false, NULL);
    if (need > cap || !out) return -1;
    utf8_lossy((const unsigned char *)d->pending, (size_t)d->n_pending, out, false, NULL);
    d->n_pending = 0;
    return (int)need;
}

ey_err ey_detokenize(const ey_tokenizer *t, const int32_t *ids, int n, bool skip_special, char **out)
{
    return ey_detokenize_len(t, ids, n, skip_special, out, NULL);
}

ey_err ey_detokenize_len(const ey_tokenizer *t, const int32_t *ids, int n, bool skip_special, char **out,
                         size_t *len)
{
    if (len) *len = 0;
    if (!t || !out || (n > 0 && !ids) || n < 0) return ey_err_set(EY_ERR_ARG, "tokenizer: bad argument");
    *out = NULL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t l;
        if (!ey_token_bytes(t, ids[i], &l)) continue;
        if (skip_special && ey_tokenizer_is_special(t, ids[i])) continue;
        total += l;
        if (total > TOK_MAX_INPUT * 4) return ey_err_set(EY_ERR_LIMIT, "tokenizer: decoded text too long");
    }
    unsigned char *raw = malloc(total + 1);
    if (!raw) return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        size_t l;
        const char *b = ey_token_bytes(t, ids[i], &l);
        if (!b || (skip_special && ey_tokenizer_is_special(t, ids[i]))) continue;
        memcpy(raw + o, b, l);
        o += l;
    }
    size_t need = utf8_lossy(raw, o, NULL, false, NULL);
    char *s = malloc(need + 1);
    if (!s) {
        free(raw);
        return ey_err_set(EY_ERR_NOMEM, "tokenizer: out of memory");
    }
    utf8_lossy(raw, o, s, false, NULL);
    s[need] = 0;
    free(raw);
    *out = s;
    if (len) *len = need;
    return EY_OK;
}
