/* eyrie — helpers shared by the image decoders (not a public header). */
#ifndef EY_IMAGE_INTERNAL_H
#define EY_IMAGE_INTERNAL_H

#include "modalities/image/ey_image.h"

/* Checks w/h/pixels and the decoder's memory estimate against lim. */
ey_err ey_image_check_dims_impl(const char *what, uint32_t w, uint32_t h,
                                uint64_t bytes_per_pixel,
                                const ey_image_limits *lim);

/* Pillow's alpha_composite of an RGBA/LA pixel over opaque white, channel c
 * with alpha a (both 8-bit), integer arithmetic exactly as libImaging. */
static inline uint8_t ey_image_over_white_impl(uint8_t c, uint8_t a)
{
    /* AlphaComposite.c with dst = (255,255,255,255): blend = 255*(255-a),
     * outa255 = a*255 + blend = 255*255, coef1 = a*255*255*128/outa255. */
    const uint32_t prec = 7;
    uint32_t outa255 = (uint32_t)a * 255u + 255u * (255u - a);
    uint32_t coef1 = (uint32_t)a * 255u * 255u * (1u << prec) / outa255;
    uint32_t coef2 = 255u * (1u << prec) - coef1;
    uint32_t tmp = (uint32_t)c * coef1 + 255u * coef2 + (0x80u << prec);
    return (uint8_t)((((tmp >> 8) + tmp) >> 8) >> prec);
}

/* Applies EXIF orientation o (2..8) to img->rgb in a new buffer. */
ey_err ey_image_orient_impl(ey_image *img, unsigned o);

ey_err ey_image_decode_jpeg_impl(const uint8_t *data, size_t n,
                                 const ey_image_limits *lim, ey_image *out);
ey_err ey_image_decode_png_impl(const uint8_t *data, size_t n,
                                const ey_image_limits *lim, ey_image *out);

#endif
