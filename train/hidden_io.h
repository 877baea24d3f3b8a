/* eyrie — the offline hidden-state format for EAGLE-3 drafter training
 * (docs/training.md, "Offline hidden states"): a directory holding
 *
 *   meta.json    {"format": "eyrie-hidden", "version": 1, "model": file name,
 *                 "n_layer", "hidden_size" (Ht), "vocab_size" (V),
 *                 "aux_layers": [input-of-layer ids, as ey_ctx_set_capture
 *                 takes], "n_aux", "topk" (k), "aux_dtype": "f16",
 *                 "byte_order": "little", "n_records", "n_tokens"}
 *   records.bin  records back to back, each a 32-byte header
 *                 {char magic[4] = "EYHR"; u32 T; u32 k; u32 crc32 (of the
 *                 payload, IEEE/zlib polynomial); u64 conversation index;
 *                 u64 reserved = 0}
 *                then the payload:
 *                 i32 ids[T]; u8 mask[T] + zero bytes up to a multiple of 4;
 *                 i32 top1[T]; i32 n_teach[T]; i32 teach_ids[T][k];
 *                 f32 teach_logits[T][k]; f16 aux[T][n_aux * Ht];
 *                 zero bytes up to a multiple of 8
 *
 * All integers and floats are in the host's byte order, which must be
 * little-endian (meta.json records it; a big-endian reader refuses). Every
 * record's offset is a multiple of 8, so the mapped arrays are aligned.
 *
 * Writers append one record at a time and flush it; meta.json is written
 * when the writer opens and rewritten with the counts when it closes
 * (temporary file + rename). A reader validates every header, size and CRC
 * before handing anything out, and requires meta.json's counts to match
 * (an interrupted writer leaves them stale until it is resumed and closed). */
#ifndef EY_HIDDEN_IO_H
#define EY_HIDDEN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/ey_err.h"

#define EY_HID_MAX_AUX 8
#define EY_HID_MIN_T 2
#define EY_HID_MAX_T 65536
#define EY_HID_MAX_K 262144
#define EY_HID_MAX_HT 65536
#define EY_HID_MAX_VOCAB (1 << 22)
#define EY_HID_MAX_LAYER 512
#define EY_HID_HEADER_BYTES 32

typedef struct ey_hid_meta {
    char model[256];   /* the target's file name (no directory) */
    int n_layer;       /* target layers */
    int Ht;            /* target hidden size */
    int V;             /* target vocabulary */
    int n_aux;         /* captures per row, 1..EY_HID_MAX_AUX */
    int aux_layers[EY_HID_MAX_AUX]; /* input-of-layer ids in [0, n_layer] */
    int k;             /* teacher entries per row (the row stride) */
    long n_records, n_tokens; /* filled in by the writer / reader */
} ey_hid_meta;

/* One record. For ey_hid_append every pointer is the caller's; from
 * ey_hid_get, ids..teach_logits point into the mapped file (valid until
 * ey_hid_close) and aux into the caller's conversion buffer. The fields map
 * 1:1 onto the trainer's ey_e3t_seq (kmax = k). */
typedef struct ey_hid_rec {
    uint64_t conv;           /* 0-based index of the conversation in the input */
    int T, k;
    const int32_t *ids;      /* [T] */
    const uint8_t *mask;     /* [T] 1 = assistant token */
    const int32_t *top1;     /* [T] */
    const int *n_teach;      /* [T], each in [0, k] */
    const int32_t *teach_ids;   /* [T][k] (entries past n_teach[t]: any value, written as 0) */
    const float *teach_logits;  /* [T][k] */
    const float *aux;        /* [T][n_aux * Ht] f32 (stored as f16) */
} ey_hid_rec;

typedef struct ey_hid_writer ey_hid_writer;
typedef struct ey_hid_file ey_hid_file;

/* Open (creating the directory if needed) for appending. meta's counts are
 * ignored. resume = false: the directory must not hold records yet
 * (EY_ERR_ARG otherwise). resume = true: an existing meta.json must match
 * meta (model, n_layer, Ht, V, aux layers, k; EY_ERR_ARG naming the
 * difference); records.bin is scanned and a torn or invalid LAST record (an
 * interrupted write) is cut off; damage before the last record is
 * EY_ERR_FORMAT. *n_done: the complete records kept. */
ey_err ey_hid_writer_open(const char *dir, const ey_hid_meta *meta, bool resume,
                          ey_hid_writer **w, long *n_done);
/* Bytes cut off the end of records.bin by the open (0: none). */
uint64_t ey_hid_writer_cut_bytes(const ey_hid_writer *w);
long ey_hid_writer_tokens(const ey_hid_writer *w); /* tokens in the records so far */
/* Append one record (r->k must equal meta.k, T in [2, 65536], ids and
 * top1 and teach ids in [0, V), n_teach in [0, k], mask 0/1) and flush it. */
ey_err ey_hid_append(ey_hid_writer *w, const ey_hid_rec *r);
/* Flush and sync records.bin, rewrite meta.json with the counts, free w. */
ey_err ey_hid_writer_close(ey_hid_writer *w);

/* Open a finished directory for reading (maps records.bin). */
ey_err ey_hid_open(const char *dir, ey_hid_file **f);
long ey_hid_count(const ey_hid_file *f);
const ey_hid_meta *ey_hid_meta_of(const ey_hid_file *f);
/* Record i: views into the map and aux converted to f32 into *aux_buf
 * (grown as needed: *aux_cap floats; start with NULL / 0, free() it when
 * done). Values are checked (ids, top1 and teacher ids in [0, V), mask 0/1,
 * n_teach in [0, k]) and EY_ERR_FORMAT reported otherwise. aux_buf NULL:
 * no aux (r->aux = NULL), for a pass over ids and masks only. */
ey_err ey_hid_get(const ey_hid_file *f, long i, ey_hid_rec *r, float **aux_buf, size_t *aux_cap);
/* Tokens of record i (0 when out of range); no validation beyond ey_hid_open's. */
int ey_hid_len(const ey_hid_file *f, long i);
void ey_hid_close(ey_hid_file *f);

/* Payload bytes of a record (without the header); 0 when out of limits. */
uint64_t ey_hid_payload_bytes(uint64_t T, uint64_t k, uint64_t aux_width);
/* CRC-32 (IEEE 802.3, as zlib's crc32: start with crc = 0). */
uint32_t ey_hid_crc32(uint32_t crc, const void *p, size_t n);

#endif
