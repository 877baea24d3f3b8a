/* eyrie — PNG decoding with libpng.
 *
 * libpng reports errors by longjmp; every object the jump can skip over is
 * reached through `volatile` locals or the read state and released after
 * setjmp returns. Limits: png_set_user_limits bounds width/height before the
 * IHDR is accepted, png_set_chunk_malloc_max bounds ancillary chunks
 * (zTXt/iCCP decompression bombs), and our own pixel/memory limits are
 * checked after png_read_info and before the row buffers exist.
 *
 * Output matches Pillow + transformers' convert_to_rgb: palette expanded,
 * grey replicated, 16-bit reduced to the high byte (Pillow's "RGB;16B"),
 * alpha and tRNS composited over white. Gamma/colour chunks are ignored, as
 * Pillow does. The first frame of an APNG is the image. */
#include "modalities/image/image_internal.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_src {
    const uint8_t *data;
    size_t n, pos;
    char msg[200];
    int limit_hit;
} png_src;

static void png_read_mem(png_structp png, png_bytep out, png_size_t len)
{
    png_src *s = png_get_io_ptr(png);
    if (len > s->n - s->pos) png_error(png, "truncated file (read past end of data)");
    memcpy(out, s->data + s->pos, len);
    s->pos += len;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    if (!s->limit_hit) snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "unknown error");
    if (msg && (strstr(msg, "exceeds user limit") || strstr(msg, "chunk data is too large") ||
                strstr(msg, "out of memory") || strstr(msg, "Image too large")))
        s->limit_hit = 1;
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    /* Mostly ancillary-chunk trouble (the image is still valid). IHDR checks
     * report "exceeds user limit" as a warning before the "Invalid IHDR
     * data" error, so remember it to return EY_ERR_LIMIT. */
    png_src *s = png_get_error_ptr(png);
    if (msg && (strstr(msg, "user limit") || strstr(msg, "too large"))) {
        s->limit_hit = 1;
        snprintf(s->msg, sizeof s->msg, "%s", msg);
    }
}

ey_err ey_image_decode_png_impl(const uint8_t *data, size_t n,
                                const ey_image_limits *lim, ey_image *out)
{
    png_src src = {.data = data, .n = n};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src,
                                             png_on_error, png_on_warning);
    if (!png) return ey_err_set(EY_ERR_NOMEM, "png: png_create_read_struct");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ey_err_set(EY_ERR_NOMEM, "png: png_create_info_struct");
    }
    uint8_t *volatile rgba = NULL;   /* (h, w, 4) decode buffer */
    png_bytepp volatile rows = NULL;
    volatile ey_err e = EY_OK;
    if (setjmp(png_jmpbuf(png))) {
        if (e == EY_OK)
            e = ey_err_set(src.limit_hit ? EY_ERR_LIMIT : EY_ERR_FORMAT, "png: %s", src.msg);
        goto done;
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, lim->max_width, lim->max_height);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20);
    png_set_chunk_cache_max(png, 1000);
    png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_DEFAULT); /* error on bad CRC */
    png_read_info(png, info);

    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info);
    int ctype = png_get_color_type(png, info);
    int interlace = png_get_interlace_type(png, info);
    int trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    /* RGBA decode buffer + final RGB + row pointers. */
    e = ey_image_check_dims_impl("png", w, h, 4 + 3, lim);
    if (e) goto done;

    out->src_width = w;
    out->src_height = h;
    out->src_bit_depth = (uint8_t)depth;
    out->src_channels = (uint8_t)png_get_channels(png, info);
    out->is_palette = ctype == PNG_COLOR_TYPE_PALETTE;
    out->has_alpha = (ctype & PNG_COLOR_MASK_ALPHA) || trns;
    out->is_progressive = interlace != PNG_INTERLACE_NONE;

    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (trns) png_set_tRNS_to_alpha(png);
    if (depth == 16) png_set_strip_16(png); /* high byte, like Pillow */
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    if (!(ctype & PNG_COLOR_MASK_ALPHA) && !trns)
        png_set_filler(png, 0xFF, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 4) {
        e = ey_err_set(EY_ERR_FORMAT, "png: unexpected row layout after transforms");
        goto done;
    }
    rgba = malloc((size_t)w * h * 4);
    rows = malloc(sizeof(png_bytep) * h);
    if (!rgba || !rows) {
        e = ey_err_set(EY_ERR_NOMEM, "png: %ux%u pixel buffer", (unsigned)w, (unsigned)h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rgba + (size_t)y * w * 4;
    png_read_image(png, rows);
    /* The IEND/trailing chunks are not needed; a file cut after the last
     * IDAT is accepted, as Pillow does. */

    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb) {
        e = ey_err_set(EY_ERR_NOMEM, "png: %ux%u RGB buffer", (unsigned)w, (unsigned)h);
        goto done;
    }
    const size_t np = (size_t)w * h;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *p = rgba + i * 4;
        uint8_t a = p[3];
        if (a == 255) {
            memcpy(rgb + i * 3, p, 3);
        } else {
            for (int c = 0; c < 3; c++) rgb[i * 3 + c] = ey_image_over_white_impl(p[c], a);
        }
    }
    out->rgb = rgb;
    out->width = w;
    out->height = h;
    out->orientation = 1;
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(rgba);
    return e;
}
