/* eyrie — Pillow-exact bicubic resize of 8-bit RGB.
 *
 * ref: Pillow src/libImaging/Resample.c (precompute_coeffs,
 * normalize_coeffs_8bpc, ImagingResampleHorizontal_8bpc/Vertical_8bpc,
 * ImagingResampleInner, Pillow 13.0). Coefficients are computed in double,
 * normalised to sum 1, converted to 22-bit fixed point with
 * round-half-away-from-zero, and applied in two passes with an 8-bit
 * intermediate and clip8 after each. The pass order matters for the last
 * bit: horizontal first, except vertical first when the height shrinks and
 * the width does not (Pillow >= 13). Same arithmetic, same bits. */
#include "modalities/image/ey_image.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PREC_BITS (32 - 8 - 2)

static double bicubic_filter(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Returns ksize, or 0 on allocation failure. bounds: (out, 2) = xmin, count;
 * kk: (out, ksize) fixed-point coefficients. */
static int precompute(int in_size, float in0, float in1, int out_size,
                      int **boundsp, int32_t **kkp)
{
    const double support0 = 2.0;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    if (out_size > INT_MAX / (ksize * (int)sizeof(double))) return 0;
    double *kk = malloc((size_t)out_size * ksize * sizeof(double));
    int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
    int32_t *kki = malloc((size_t)out_size * ksize * sizeof(int32_t));
    if (!kk || !bounds || !kki) {
        free(kk);
        free(bounds);
        free(kki);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &kk[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double wgt = bicubic_filter((x + xmin - center + 0.5) * ss);
            k[x] = wgt;
            ww += wgt;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        kki[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PREC_BITS))
                           : (int32_t)(0.5 + kk[i] * (1 << PREC_BITS));
    free(kk);
    *boundsp = bounds;
    *kkp = kki;
    return ksize;
}

static inline uint8_t clip8(int32_t v)
{
    v >>= PREC_BITS; /* arithmetic shift, as in Pillow's lookup index */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* Horizontal pass: rows [y0, y0 + n_rows) of src (width sw) -> dst (dw). */
static void hpass(const uint8_t *src, uint32_t sw, int y0, int n_rows, uint8_t *dst,
                  uint32_t dw, const int *b, const int32_t *kk, int ks)
{
    for (int yy = 0; yy < n_rows; yy++) {
        const uint8_t *row = src + (size_t)(yy + y0) * sw * 3;
        uint8_t *orow = dst + (size_t)yy * dw * 3;
        for (uint32_t xx = 0; xx < dw; xx++) {
            int xmin = b[xx * 2], xmax = b[xx * 2 + 1];
            const int32_t *k = &kk[(size_t)xx * ks];
            int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < xmax; x++) {
                const uint8_t *p = row + (size_t)(x + xmin) * 3;
                s0 += p[0] * k[x];
                s1 += p[1] * k[x];
                s2 += p[2] * k[x];
            }
            orow[xx * 3 + 0] = clip8(s0);
            orow[xx * 3 + 1] = clip8(s1);
            orow[xx * 3 + 2] = clip8(s2);
        }
    }
}

/* Vertical pass: src (width w) -> dst (w, dh); bounds relative to src row 0. */
static void vpass(const uint8_t *src, uint32_t w, uint8_t *dst, uint32_t dh, const int *b,
                  const int32_t *kk, int ks)
{
    for (uint32_t yy = 0; yy < dh; yy++) {
        const int32_t *k = &kk[(size_t)yy * ks];
        int ymin = b[yy * 2], ymax = b[yy * 2 + 1];
        uint8_t *orow = dst + (size_t)yy * w * 3;
        for (uint32_t xx = 0; xx < w; xx++) {
            int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
            for (int y = 0; y < ymax; y++) {
                const uint8_t *p = src + ((size_t)(y + ymin) * w + xx) * 3;
                s0 += p[0] * k[y];
                s1 += p[1] * k[y];
                s2 += p[2] * k[y];
            }
            orow[xx * 3 + 0] = clip8(s0);
            orow[xx * 3 + 1] = clip8(s1);
            orow[xx * 3 + 2] = clip8(s2);
        }
    }
}

ey_err ey_image_resize_bicubic(const uint8_t *src, uint32_t sw, uint32_t sh,
                               uint8_t *dst, uint32_t dw, uint32_t dh)
{
    if (!src || !dst || !sw || !sh || !dw || !dh || sw > INT_MAX / 4 || sh > INT_MAX / 4 ||
        dw > INT_MAX / 4 || dh > INT_MAX / 4)
        return ey_err_set(EY_ERR_ARG, "resize: bad sizes %ux%u -> %ux%u", sw, sh, dw, dh);
    if (sw == dw && sh == dh) { /* Image.resize returns a copy */
        memcpy(dst, src, (size_t)sw * sh * 3);
        return EY_OK;
    }
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    uint8_t *tmp = NULL;
    ey_err e = EY_OK;
    int ksh = precompute((int)sw, 0.0f, (float)sw, (int)dw, &bh, &kh);
    int ksv = precompute((int)sh, 0.0f, (float)sh, (int)dh, &bv, &kv);
    if (!ksh || !ksv) {
        e = ey_err_set(EY_ERR_NOMEM, "resize: coefficient tables");
        goto done;
    }
    const int need_h = dw != sw, need_v = dh != sh;
    if (!need_v) {
        hpass(src, sw, 0, (int)sh, dst, dw, bh, kh, ksh);
    } else if (!need_h) {
        vpass(src, sw, dst, dh, bv, kv, ksv);
    } else if (dw >= sw && dh < sh) {
        /* Pillow >= 13 (commit 3cab8da, "If height is being scaled down, but
         * not width, resize vertically first"); older Pillow always went
         * horizontal first except for images over 100:1 tall. */
        tmp = malloc((size_t)sw * dh * 3);
        if (!tmp) {
            e = ey_err_set(EY_ERR_NOMEM, "resize: %ux%u intermediate", sw, dh);
            goto done;
        }
        vpass(src, sw, tmp, dh, bv, kv, ksv);
        hpass(tmp, sw, 0, (int)dh, dst, dw, bh, kh, ksh);
    } else {
        /* Only the source rows the vertical pass reads. */
        int ybox_first = bv[0];
        int ybox_last = bv[dh * 2 - 2] + bv[dh * 2 - 1];
        int th = ybox_last - ybox_first;
        tmp = malloc((size_t)dw * th * 3);
        if (!tmp) {
            e = ey_err_set(EY_ERR_NOMEM, "resize: %ux%d intermediate", dw, th);
            goto done;
        }
        for (uint32_t i = 0; i < dh; i++) bv[i * 2] -= ybox_first;
        hpass(src, sw, ybox_first, th, tmp, dw, bh, kh, ksh);
        vpass(tmp, dw, dst, dh, bv, kv, ksv);
    }
done:
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    free(tmp);
    return e;
}
