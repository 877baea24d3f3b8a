/* Tests for ey_quantize_row (kernels/ey_dtype.h): quantize then dequantize
 * (ey_dequant_row) stays within each type's rounding bound, per block:
 *   Q8_0  |x - x'| <= d/2 + 127 |d - d16|            (d = amax / 127)
 *   Q4_1  |x - x'| <= d/2 + 15 |d - d16| + |m - m16|  (d = (max - min) / 15)
 *   Q4_0  |x - x'| <= d + 8 |d - d16|                 (d = -v / 8; the far end clamps at 15)
 * with d16/m16 the stored f16 values (relative error <= 2^-11); exact
 * zeros for all-zero blocks; the element of largest |x| (Q8_0, Q4_0) and
 * the min/max (Q4_1) hit the grid ends; against hand-made blocks;
 * ey_owned_upload_quant refuses non-finite and out-of-f16-range matrices
 * with EY_ERR_FORMAT and repacks on the CPU where N % 8 == 0. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/owned.h"
#include "kernels/ey_dtype.h"
#include "test.h"

static uint64_t g_rng = 88172645463325252ull;
static float rnds(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void roundtrip(ey_dtype t, const float *x, int n, const char *what)
{
    uint8_t buf[64 * 34];
    float y[64 * 32];
    ey_quantize_row(t, x, buf, n);
    ey_dequant_row(t, buf, y, n);
    const size_t bsz = ey_dtype_block_bytes(t);
    int bad = 0;
    for (int b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0, mn = xb[0], mx = xb[0];
        for (int j = 0; j < 32; j++) {
            amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
            mn = xb[j] < mn ? xb[j] : mn;
            mx = xb[j] > mx ? xb[j] : mx;
        }
        uint16_t h;
        memcpy(&h, buf + (size_t)b * bsz, 2);
        const double d16 = ey_f16_to_f32(h);
        double d, bound;
        if (t == EY_Q8_0) {
            d = amax / 127.0;
            bound = d / 2 + 127 * fabs(d - d16);
        } else if (t == EY_Q4_1) {
            memcpy(&h, buf + (size_t)b * bsz + 2, 2);
            d = (mx - mn) / 15.0;
            bound = d / 2 + 15 * fabs(d - d16) + fabs(mn - ey_f16_to_f32(h));
        } else {
            d = amax / 8.0;
            bound = d + 8 * fabs(fabs(d) - fabs(d16));
        }
        bound = bound * (1 + 1e-6) + 1e-30;
        for (int j = 0; j < 32; j++) {
            const double e = fabs((double)xb[j] - y[32 * b + j]);
            if (!(e <= bound) && bad++ < 3)
                TEST_CHECK_MSG(0, "%s %s block %d [%d]: %.9g -> %.9g (err %.3g > %.3g)", what,
                               ey_dtype_name(t), b, j, xb[j], y[32 * b + j], e, bound);
        }
        if (amax == 0)
            for (int j = 0; j < 32; j++) TEST_CHECK(y[32 * b + j] == 0.0f);
    }
    if (!bad) TEST_CHECK(1);
}

int main(void)
{
    static const ey_dtype types[] = {EY_Q8_0, EY_Q4_0, EY_Q4_1};
    float x[64 * 32];
    for (int ti = 0; ti < 3; ti++) {
        const ey_dtype t = types[ti];
        for (int rep = 0; rep < 200; rep++) {
            const int n = 32 * (1 + rep % 64);
            const float scale = powf(10.0f, (float)(rep % 9) - 4.0f);
            for (int i = 0; i < n; i++) x[i] = rnds() * scale;
            if (rep % 5 == 1) /* an outlier per block */
                for (int b = 0; b < n / 32; b++) x[32 * b + (rep + b) % 32] *= 50.0f;
            if (rep % 7 == 2) /* a zero block and a constant block */
                for (int j = 0; j < 32; j++) {
                    x[j] = 0.0f;
                    if (n > 32) x[32 + j] = -0.375f * scale;
                }
            roundtrip(t, x, n, "random");
        }
    }
    /* hand-made: the grid ends are hit exactly */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) / 16.0f * 127.0f; /* -127 .. 119.06 */
    uint8_t b8[34], b4[20], b40[18];
    ey_quantize_row(EY_Q8_0, x, b8, 32);
    TEST_CHECK((int8_t)b8[2] == -127 && ey_f16_to_f32((uint16_t)(b8[0] | b8[1] << 8)) == 1.0f);
    ey_quantize_row(EY_Q4_1, x, b4, 32);
    TEST_CHECK((b4[4] & 15) == 0 && (b4[4 + 15] >> 4) == 15); /* min at j = 0, max at j = 31 */
    ey_quantize_row(EY_Q4_0, x, b40, 32);
    TEST_CHECK((b40[2] & 15) == 0); /* -127 is the largest |x|: q = 0, d = 127 / 8 */
    TEST_CHECK(fabsf(ey_f16_to_f32((uint16_t)(b40[0] | b40[1] << 8)) - 127.0f / 8.0f) < 1e-2f);
    /* quantize-and-upload on the CPU backend */
    ey_backend *be = NULL;
    TEST_CHECK(ey_backend_cpu_create(1, &be) == EY_OK);
    if (be) {
        float m[16 * 64];
        for (int i = 0; i < 16 * 64; i++) m[i] = rnds();
        static const int nrows[] = {16, 12};
        for (int i = 0; i < 2; i++) {
            ey_owned o = {0};
            ey_dtype t = EY_F32;
            ey_ptr p;
            TEST_CHECK(ey_owned_upload_quant(&o, be, "w", &t, EY_Q4_1, m, nrows[i], 64, &p) == EY_OK);
            TEST_CHECK(t == (nrows[i] % 8 ? EY_Q4_1 : EY_Q4_1_R8));
            ey_owned_free(&o, be);
        }
        static const float bad[] = {NAN, INFINITY, -1e6f};
        for (int i = 0; i < 3; i++) {
            ey_owned o = {0};
            ey_dtype t = EY_F32;
            ey_ptr p;
            m[5 * 64 + 7] = bad[i];
            TEST_CHECK(ey_owned_upload_quant(&o, be, "w", &t, EY_Q8_0, m, 16, 64, &p) == EY_ERR_FORMAT);
            TEST_CHECK(t == EY_F32);
            ey_owned_free(&o, be);
        }
        be->iface.destroy(be);
    }
    return test_result();
}
