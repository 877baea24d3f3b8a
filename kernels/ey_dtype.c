#include "ey_dtype.h"

#include <math.h>

#include "../common/ey_err.h"

bool ey_dtype_valid(uint32_t t)
{
    switch (t) {
    case EY_F32: case EY_F16: case EY_Q4_0: case EY_Q4_1: case EY_Q8_0: case EY_BF16:
        return true;
    default:
        return false;
    }
}

const char *ey_dtype_name(ey_dtype t)
{
    switch (t) {
    case EY_F32: return "f32";
    case EY_F16: return "f16";
    case EY_BF16: return "bf16";
    case EY_Q4_0: return "q4_0";
    case EY_Q4_1: return "q4_1";
    case EY_Q8_0: return "q8_0";
    case EY_I32: return "i32";
    case EY_I64: return "i64";
    case EY_BOOL: return "bool";
    case EY_Q4_0_R8: return "q4_0_r8";
    case EY_Q4_1_R8: return "q4_1_r8";
    case EY_Q8_0_R8: return "q8_0_r8";
    }
    return "?";
}

int ey_dtype_block(ey_dtype t)
{
    return (t == EY_Q4_0 || t == EY_Q4_1 || t == EY_Q8_0 || ey_dtype_is_r8(t)) ? EY_QK : 1;
}

size_t ey_dtype_block_bytes(ey_dtype t)
{
    switch (t) {
    case EY_F32: case EY_I32: return 4;
    case EY_I64: return 8;
    case EY_BOOL: return 1;
    case EY_F16: case EY_BF16: return 2;
    case EY_Q4_0: case EY_Q4_0_R8: return sizeof(ey_block_q4_0);
    case EY_Q4_1: case EY_Q4_1_R8: return sizeof(ey_block_q4_1);
    case EY_Q8_0: case EY_Q8_0_R8: return sizeof(ey_block_q8_0);
    }
    return 0;
}

size_t ey_dtype_row_bytes(ey_dtype t, int64_t n)
{
    int b = ey_dtype_block(t);
    if (n < 0 || n % b) return 0;
    return (size_t)(n / b) * ey_dtype_block_bytes(t);
}

void ey_dequant_row(ey_dtype t, const void *src, float *dst, int64_t n)
{
    switch (t) {
    case EY_F32:
        memcpy(dst, src, (size_t)n * 4);
        return;
    case EY_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ey_f16_to_f32(s[i]);
        return;
    }
    case EY_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ey_bf16_to_f32(s[i]);
        return;
    }
    case EY_Q4_0: {
        const ey_block_q4_0 *b = src;
        for (int64_t i = 0; i < n / EY_QK; i++) {
            float d = ey_f16_to_f32(b[i].d);
            for (int j = 0; j < EY_QK / 2; j++) {
                dst[i * EY_QK + j] = ((b[i].qs[j] & 15) - 8) * d;
                dst[i * EY_QK + j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
            }
        }
        return;
    }
    case EY_Q4_1: {
        const ey_block_q4_1 *b = src;
        for (int64_t i = 0; i < n / EY_QK; i++) {
            float d = ey_f16_to_f32(b[i].d), m = ey_f16_to_f32(b[i].m);
            for (int j = 0; j < EY_QK / 2; j++) {
                dst[i * EY_QK + j] = (b[i].qs[j] & 15) * d + m;
                dst[i * EY_QK + j + 16] = (b[i].qs[j] >> 4) * d + m;
            }
        }
        return;
    }
    case EY_Q8_0: {
        const ey_block_q8_0 *b = src;
        for (int64_t i = 0; i < n / EY_QK; i++) {
            float d = ey_f16_to_f32(b[i].d);
            for (int j = 0; j < EY_QK; j++) dst[i * EY_QK + j] = b[i].qs[j] * d;
        }
        return;
    }
    case EY_I32: case EY_I64: case EY_BOOL: /* not numeric weights */
        return;
    case EY_Q4_0_R8: case EY_Q4_1_R8: case EY_Q8_0_R8: /* rows interleaved: ey_r8_row first */
        EY_ASSERT(!"ey_dequant_row on a repacked type");
        return;
    }
}

void ey_quantize_row(ey_dtype t, const float *src, void *dst, int64_t n)
{
    EY_ASSERT((t == EY_Q8_0 || t == EY_Q4_0 || t == EY_Q4_1) && n % EY_QK == 0);
    for (int64_t i = 0; i < n / EY_QK; i++) {
        const float *x = src + i * EY_QK;
        if (t == EY_Q8_0) {
            ey_block_q8_0 *b = (ey_block_q8_0 *)dst + i;
            float amax = 0.0f;
            for (int j = 0; j < EY_QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            b->d = ey_f32_to_f16(d);
            for (int j = 0; j < EY_QK; j++) b->qs[j] = (int8_t)roundf(x[j] * id);
        } else if (t == EY_Q4_0) {
            ey_block_q4_0 *b = (ey_block_q4_0 *)dst + i;
            float amax = 0.0f, v = 0.0f;
            for (int j = 0; j < EY_QK; j++)
                if (fabsf(x[j]) > amax) {
                    amax = fabsf(x[j]);
                    v = x[j];
                }
            const float d = v / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            b->d = ey_f32_to_f16(d);
            for (int j = 0; j < EY_QK / 2; j++) {
                int q0 = (int)(x[j] * id + 8.5f), q1 = (int)(x[j + 16] * id + 8.5f);
                q0 = q0 > 15 ? 15 : q0;
                q1 = q1 > 15 ? 15 : q1;
                b->qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        } else {
            ey_block_q4_1 *b = (ey_block_q4_1 *)dst + i;
            float mn = x[0], mx = x[0];
            for (int j = 1; j < EY_QK; j++) {
                mn = x[j] < mn ? x[j] : mn;
                mx = x[j] > mx ? x[j] : mx;
            }
            const float d = (mx - mn) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            b->d = ey_f32_to_f16(d);
            b->m = ey_f32_to_f16(mn);
            for (int j = 0; j < EY_QK / 2; j++) {
                int q0 = (int)((x[j] - mn) * id + 0.5f), q1 = (int)((x[j + 16] - mn) * id + 0.5f);
                q0 = q0 > 15 ? 15 : q0;
                q1 = q1 > 15 ? 15 : q1;
                b->qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
    }
}

ey_dtype ey_dtype_r8_base(ey_dtype t)
{
    return t == EY_Q4_0_R8 ? EY_Q4_0 : t == EY_Q4_1_R8 ? EY_Q4_1 : t == EY_Q8_0_R8 ? EY_Q8_0 : t;
}

ey_dtype ey_dtype_r8_of(ey_dtype b)
{
    return b == EY_Q4_0 ? EY_Q4_0_R8 : b == EY_Q4_1 ? EY_Q4_1_R8 : b == EY_Q8_0 ? EY_Q8_0_R8 : b;
}

/* f16 fields and 4-byte quant chunks of one block of an R8 type */
static void r8_shape(ey_dtype t, int *hw, int *nc)
{
    EY_ASSERT(ey_dtype_is_r8(t));
    *hw = t == EY_Q4_1_R8 ? 2 : 1;
    *nc = t == EY_Q8_0_R8 ? 8 : 4;
}

void ey_r8_pack(ey_dtype to, void *dst, const void *src, int64_t N, int64_t K)
{
    int hw, nc;
    r8_shape(to, &hw, &nc);
    EY_ASSERT(N % 8 == 0 && K % EY_QK == 0);
    const size_t bsz = ey_dtype_block_bytes(to), rb = ey_dtype_row_bytes(to, K), head = 16u * hw;
    for (int64_t g = 0; g < N / 8; g++) {
        const uint8_t *rows = (const uint8_t *)src + (size_t)g * 8 * rb;
        uint8_t *o = (uint8_t *)dst + (size_t)g * 8 * rb;
        for (int64_t b = 0; b < K / EY_QK; b++, o += 8 * bsz)
            for (int r = 0; r < 8; r++) {
                const uint8_t *blk = rows + (size_t)r * rb + (size_t)b * bsz;
                for (int f = 0; f < hw; f++) memcpy(o + 16 * f + 2 * r, blk + 2 * f, 2);
                for (int c = 0; c < nc; c++) memcpy(o + head + 32 * c + 4 * r, blk + 2 * hw + 4 * c, 4);
            }
    }
}

void ey_r8_row(ey_dtype t, const void *W, int64_t n, int64_t K, void *row)
{
    int hw, nc;
    r8_shape(t, &hw, &nc);
    EY_ASSERT(K % EY_QK == 0);
    const size_t bsz = ey_dtype_block_bytes(t), rb = ey_dtype_row_bytes(t, K), head = 16u * hw;
    const int r = (int)(n % 8);
    const uint8_t *o = (const uint8_t *)W + (size_t)(n / 8) * 8 * rb;
    uint8_t *out = row;
    for (int64_t b = 0; b < K / EY_QK; b++, o += 8 * bsz, out += bsz) {
        for (int f = 0; f < hw; f++) memcpy(out + 2 * f, o + 16 * f + 2 * r, 2);
        for (int c = 0; c < nc; c++) memcpy(out + 2 * hw + 4 * c, o + head + 32 * c + 4 * r, 4);
    }
}
