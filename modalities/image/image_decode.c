/* eyrie — image decode entry point: magic-byte detection, limits, dispatch
 * to the JPEG/PNG decoders, and EXIF orientation. See ey_image.h. */
#include "modalities/image/image_internal.h"

#include <stdlib.h>
#include <string.h>

void ey_image_limits_default(ey_image_limits *lim)
{
    lim->max_bytes = (size_t)32 << 20;
    lim->max_width = 16384;
    lim->max_height = 16384;
    lim->max_pixels = (uint64_t)50 * 1000 * 1000;
    lim->max_mem = (size_t)512 << 20;
    lim->max_jpeg_scans = 256;
}

ey_image_format ey_image_detect(const void *data, size_t n)
{
    const uint8_t *p = data;
    if (!p) return EY_IMAGE_FORMAT_UNKNOWN;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return EY_IMAGE_FORMAT_JPEG;
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return EY_IMAGE_FORMAT_PNG;
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6)))
        return EY_IMAGE_FORMAT_GIF;
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return EY_IMAGE_FORMAT_WEBP;
    if (n >= 14 && p[0] == 'B' && p[1] == 'M') return EY_IMAGE_FORMAT_BMP;
    return EY_IMAGE_FORMAT_UNKNOWN;
}

const char *ey_image_format_name(ey_image_format f)
{
    switch (f) {
    case EY_IMAGE_FORMAT_JPEG: return "jpeg";
    case EY_IMAGE_FORMAT_PNG: return "png";
    case EY_IMAGE_FORMAT_GIF: return "gif";
    case EY_IMAGE_FORMAT_WEBP: return "webp";
    case EY_IMAGE_FORMAT_BMP: return "bmp";
    default: return "unknown";
    }
}

ey_err ey_image_check_dims_impl(const char *what, uint32_t w, uint32_t h,
                                uint64_t bytes_per_pixel,
                                const ey_image_limits *lim)
{
    if (w == 0 || h == 0)
        return ey_err_set(EY_ERR_FORMAT, "%s: zero image size %ux%u", what, w, h);
    if (w > lim->max_width || h > lim->max_height)
        return ey_err_set(EY_ERR_LIMIT, "%s: image %ux%u exceeds the %ux%u limit",
                          what, w, h, lim->max_width, lim->max_height);
    uint64_t px = (uint64_t)w * h;
    if (px > lim->max_pixels)
        return ey_err_set(EY_ERR_LIMIT,
                          "%s: image %ux%u has %llu pixels, limit %llu", what, w,
                          h, (unsigned long long)px,
                          (unsigned long long)lim->max_pixels);
    /* w, h <= 2^32 and bytes_per_pixel is small, but guard the product. */
    if (bytes_per_pixel && px > UINT64_MAX / bytes_per_pixel)
        return ey_err_set(EY_ERR_LIMIT, "%s: image too large", what);
    uint64_t mem = px * bytes_per_pixel;
    if (mem > lim->max_mem || mem > SIZE_MAX / 2)
        return ey_err_set(EY_ERR_LIMIT,
                          "%s: decoding %ux%u needs %llu MiB, limit %zu MiB",
                          what, w, h, (unsigned long long)(mem >> 20),
                          lim->max_mem >> 20);
    return EY_OK;
}

ey_err ey_image_orient_impl(ey_image *img, unsigned o)
{
    if (o < 2 || o > 8) return EY_OK;
    const uint32_t W = img->width, H = img->height;
    const int swap = o >= 5;
    const uint32_t ow = swap ? H : W, oh = swap ? W : H;
    uint8_t *dst = malloc((size_t)ow * oh * 3);
    if (!dst) return ey_err_set(EY_ERR_NOMEM, "image: orientation buffer");
    for (uint32_t y = 0; y < oh; y++) {
        for (uint32_t x = 0; x < ow; x++) {
            uint32_t sx, sy;
            switch (o) { /* PIL ImageOps.exif_transpose's method table */
            case 2: sx = W - 1 - x; sy = y; break;          /* FLIP_LEFT_RIGHT */
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;  /* ROTATE_180 */
            case 4: sx = x; sy = H - 1 - y; break;          /* FLIP_TOP_BOTTOM */
            case 5: sx = y; sy = x; break;                  /* TRANSPOSE */
            case 6: sx = y; sy = H - 1 - x; break;          /* ROTATE_270 */
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;  /* TRANSVERSE */
            default: sx = W - 1 - y; sy = x; break;         /* 8: ROTATE_90 */
            }
            memcpy(dst + ((size_t)y * ow + x) * 3,
                   img->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = ow;
    img->height = oh;
    img->orientation = (uint8_t)o;
    return EY_OK;
}

ey_err ey_image_decode(const void *data, size_t n, const ey_image_limits *lim,
                       ey_image *out)
{
    ey_image_limits dl;
    if (!out) return ey_err_set(EY_ERR_ARG, "image: NULL output");
    memset(out, 0, sizeof *out);
    if (!lim) {
        ey_image_limits_default(&dl);
        lim = &dl;
    }
    if (!data && n) return ey_err_set(EY_ERR_ARG, "image: NULL data");
    if (n == 0) return ey_err_set(EY_ERR_FORMAT, "image: empty input (0 bytes)");
    if (n > lim->max_bytes)
        return ey_err_set(EY_ERR_LIMIT, "image: %zu bytes exceeds the %zu-byte limit",
                          n, lim->max_bytes);
    ey_image_format f = ey_image_detect(data, n);
    ey_err e;
    switch (f) {
    case EY_IMAGE_FORMAT_JPEG:
        e = ey_image_decode_jpeg_impl(data, n, lim, out);
        break;
    case EY_IMAGE_FORMAT_PNG:
        e = ey_image_decode_png_impl(data, n, lim, out);
        break;
    case EY_IMAGE_FORMAT_UNKNOWN:
        return ey_err_set(EY_ERR_FORMAT,
                          "image: unrecognised format (not JPEG or PNG by magic bytes)");
    default:
        return ey_err_set(EY_ERR_UNSUPPORTED,
                          "image: %s is not supported (JPEG and PNG are)",
                          ey_image_format_name(f));
    }
    if (e != EY_OK) {
        ey_image_free(out);
        return e;
    }
    out->format = f;
    return EY_OK;
}

void ey_image_free(ey_image *img)
{
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

/* Test hook for the compositing formula (declared in tests only). */
uint8_t ey_test_over_white(uint8_t c, uint8_t a);
uint8_t ey_test_over_white(uint8_t c, uint8_t a) { return ey_image_over_white_impl(c, a); }
