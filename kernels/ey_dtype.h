/* eyrie — element types of weights and activations.
 *
 * Numeric ids are those of GGUF/ggml so a GGUF tensor's type maps 1:1.
 * Quantized types are stored in blocks of 32 elements, bit-exact with ggml:
 *   Q4_0: { f16 d; u8 qs[16]; }          x[i] = (q[i] - 8) * d
 *   Q4_1: { f16 d; f16 m; u8 qs[16]; }   x[i] = q[i] * d + m
 *   Q8_0: { f16 d; i8 qs[32]; }          x[i] = q[i] * d
 * where q[j] = qs[j] & 15 and q[j+16] = qs[j] >> 4 for the 4-bit types. */
#ifndef EY_DTYPE_H
#define EY_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum ey_dtype {
    EY_F32 = 0,
    EY_F16 = 1,
    EY_Q4_0 = 2,
    EY_Q4_1 = 3,
    EY_Q8_0 = 8,
    EY_I32 = 26,
    EY_I64 = 27,
    EY_BF16 = 30,
    EY_BOOL = 1024, /* not a ggml type: safetensors masks (EAGLE-3 t2d) */
    /* not ggml types: Q4_0 / Q4_1 / Q8_0 matrices repacked by the CPU backend
     * for its matmul kernels, 8 rows interleaved block by block (the R8
     * layouts below; kernels/cpu/cpu_matmul.h); never read from or written
     * to a file */
    EY_Q4_0_R8 = 1025,
    EY_Q4_1_R8 = 1026,
    EY_Q8_0_R8 = 1027,
} ey_dtype;

#define EY_QK 32 /* elements per quantized block */

typedef struct { uint16_t d; uint8_t qs[EY_QK / 2]; } ey_block_q4_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qs[EY_QK / 2]; } ey_block_q4_1;
typedef struct { uint16_t d; int8_t qs[EY_QK]; } ey_block_q8_0;

_Static_assert(sizeof(ey_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(ey_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(ey_block_q8_0) == 34, "q8_0 block");

/* true if `t` is a type eyrie can hold as a weight. */
bool ey_dtype_valid(uint32_t t);
const char *ey_dtype_name(ey_dtype t);
/* elements per block (1 for scalar types) and bytes per block; an R8 type
 * counts as its base type (a group of 8 rows is 8 rows' bytes) */
int ey_dtype_block(ey_dtype t);
size_t ey_dtype_block_bytes(ey_dtype t);
/* bytes of a row of n elements; 0 if n is not a multiple of the block size */
size_t ey_dtype_row_bytes(ey_dtype t, int64_t n);

/* IEEE half / bfloat16 conversions (round to nearest even on the way down). */
static inline float ey_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t ey_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)h;
}

static inline float ey_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t ey_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Dequantize one row of n elements of type t into f32 (reference path). */
void ey_dequant_row(ey_dtype t, const void *src, float *dst, int64_t n);
/* n floats (n % 32 == 0) to Q8_0, Q4_0 or Q4_1 blocks, ggml's rounding:
 *   Q8_0: d = amax / 127, q = round(x / d)
 *   Q4_0: d = -v / 8 with v the element of largest |x|, q = min(15, trunc(x / d + 8.5))
 *   Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - m) / d + 0.5))
 * (1/d computed once; d = 0 gives q = 0, or 8 for Q4_0; d and m stored as f16).
 * The input must be finite and within the f16 range (callers check it:
 * ey_owned_upload_quant). */
void ey_quantize_row(ey_dtype t, const float *src, void *dst, int64_t n);

/* R8 layouts: a matrix of N rows (N % 8 == 0) of a quantized base type with
 * each group of 8 rows interleaved block by block: per block the f16
 * fields of the 8 rows (d[8], then m[8] for Q4_1), then the quant bytes in
 * chunks of 32 where chunk c holds bytes 4c..4c+3 of rows 0..7 (row r at
 * 4r) — 4 chunks for Q4_0/Q4_1, 8 for Q8_0. The same bytes as the 8 rows,
 * reordered; group g starts at g * 8 * row_bytes. */
static inline bool ey_dtype_is_r8(ey_dtype t)
{
    return t == EY_Q4_0_R8 || t == EY_Q4_1_R8 || t == EY_Q8_0_R8;
}
/* the base type of an R8 type (t itself otherwise), and the R8 type of a base */
ey_dtype ey_dtype_r8_base(ey_dtype t);
ey_dtype ey_dtype_r8_of(ey_dtype base);
/* src (N rows of base(to)) -> dst in layout `to` (same size) */
void ey_r8_pack(ey_dtype to, void *dst, const void *src, int64_t N, int64_t K);
/* row n of an R8 matrix W back in its base layout (row_bytes(t, K) bytes) */
void ey_r8_row(ey_dtype t, const void *W, int64_t n, int64_t K, void *row);

#endif
