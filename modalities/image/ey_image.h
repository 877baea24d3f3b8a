/* eyrie — image front-end: decode untrusted JPEG/PNG bytes to RGB, and turn
 * RGB into the patch tensors Qwen2-VL-family vision towers consume.
 *
 * Decoding (image_decode.c, image_jpeg.c, image_png.c):
 *   - the format is detected from magic bytes only (a claimed MIME type is
 *     never trusted);
 *   - every limit (encoded bytes, width, height, pixel count, decoder memory,
 *     JPEG scan count) is checked from the headers before anything sized by
 *     the input is allocated;
 *   - output is always 8-bit RGB, row-major (height, width, 3). Alpha (PNG
 *     RGBA / LA / tRNS) is composited over an opaque white background with
 *     Pillow's integer `alpha_composite` arithmetic, which is what the Hugging
 *     Face `convert_to_rgb` does; 16-bit samples keep their high byte; grey is
 *     replicated; JPEG EXIF orientation is applied (like PIL's
 *     `ImageOps.exif_transpose`); Adobe/YCCK CMYK JPEGs are converted to RGB.
 *
 * Preprocessing (image_resize.c, vision_prep.c) matches the transformers
 * `Qwen2VLImageProcessorPil` (transformers 5.x): smart_resize, Pillow's
 * uint8 bicubic (bit-exact), rescale 1/255, mean/std normalise in float32,
 * and the (t, h, w) patch layout in 2x2 merge-block order.
 *
 * Errors: EY_ERR_FORMAT (malformed/truncated/corrupt), EY_ERR_LIMIT (a limit
 * would be exceeded), EY_ERR_UNSUPPORTED (valid but not handled, e.g. an
 * unknown format or arithmetic-coded JPEG), EY_ERR_NOMEM, EY_ERR_ARG; every
 * error records a one-line detail via ey_err_set().
 *
 * Thread-safety: all functions are reentrant; no global state. */
#ifndef EY_IMAGE_H
#define EY_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/ey_err.h"

typedef enum ey_image_format {
    EY_IMAGE_FORMAT_UNKNOWN = 0,
    EY_IMAGE_FORMAT_JPEG,
    EY_IMAGE_FORMAT_PNG,
    EY_IMAGE_FORMAT_GIF,  /* detected (so the error can say so), not decoded */
    EY_IMAGE_FORMAT_WEBP, /* detected, not decoded */
    EY_IMAGE_FORMAT_BMP,  /* detected, not decoded */
} ey_image_format;

typedef struct ey_image_limits {
    size_t max_bytes;      /* encoded input size */
    uint32_t max_width;    /* per side, from the header, before decoding */
    uint32_t max_height;
    uint64_t max_pixels;   /* width * height */
    size_t max_mem;        /* peak bytes the decoder may allocate for pixels */
    uint32_t max_jpeg_scans; /* progressive JPEG scan count (CPU bomb guard) */
} ey_image_limits;

/* Defaults: 32 MiB encoded, 16384 per side, 50 Mpx, 512 MiB, 256 scans. */
void ey_image_limits_default(ey_image_limits *lim);

typedef struct ey_image {
    uint8_t *rgb;            /* (height, width, 3), malloc'd; ey_image_free */
    uint32_t width, height;  /* after EXIF orientation */
    ey_image_format format;
    /* What the file said, for probe output. */
    uint32_t src_width, src_height; /* as stored, before orientation */
    uint8_t src_channels;    /* 1 grey, 2 grey+alpha, 3 RGB/YCbCr, 4 RGBA/CMYK */
    uint8_t src_bit_depth;   /* 8 or 16 (PNG may also be 1/2/4) */
    uint8_t has_alpha;       /* alpha channel or tRNS present (composited) */
    uint8_t is_palette;      /* PNG colour type 3 */
    uint8_t is_cmyk;         /* JPEG CMYK/YCCK (converted) */
    uint8_t is_progressive;  /* progressive JPEG or interlaced PNG */
    uint8_t orientation;     /* EXIF orientation 1..8 applied (1 = none) */
} ey_image;

/* Magic-byte detection; n may be small (needs 12 bytes for every format). */
ey_image_format ey_image_detect(const void *data, size_t n);
const char *ey_image_format_name(ey_image_format f);

/* Decode JPEG or PNG bytes to RGB. lim NULL means defaults. On success *out
 * owns img->rgb; on error *out is zeroed and holds nothing. The caller keeps
 * data. */
ey_err ey_image_decode(const void *data, size_t n, const ey_image_limits *lim,
                       ey_image *out);
/* Frees out->rgb and zeroes *img. NULL and zeroed images are fine. */
void ey_image_free(ey_image *img);

/* ---- Qwen2-VL-family preprocessing ---- */

typedef struct ey_vision_prep_cfg {
    uint32_t patch_size;          /* 14 (Qwen2/2.5-VL) or 16 (Qwen3-VL) */
    uint32_t temporal_patch_size; /* 2 */
    uint32_t merge_size;          /* 2 */
    uint64_t min_pixels;          /* size.shortest_edge in preprocessor_config */
    uint64_t max_pixels;          /* size.longest_edge */
    float mean[3], std[3];
    double rescale_factor;        /* 1/255 */
} ey_vision_prep_cfg;

/* transformers class defaults for Qwen2-VL: patch 14, min 56*56, max
 * 28*28*1280, OpenAI CLIP mean/std. Released Qwen2/2.5-VL checkpoints ship
 * max 12845056 in preprocessor_config.json; set max_pixels from there. */
void ey_vision_prep_cfg_qwen2vl(ey_vision_prep_cfg *cfg);
/* Qwen3-VL preprocessor_config.json: patch 16, min 65536, max 16777216,
 * mean = std = 0.5. */
void ey_vision_prep_cfg_qwen3vl(ey_vision_prep_cfg *cfg);

/* transformers `smart_resize`: both sides multiples of factor, pixel count
 * in [min_pixels, max_pixels], aspect ratio kept; round half to even.
 * EY_ERR_LIMIT if the aspect ratio exceeds 200, EY_ERR_ARG on zero sizes. */
ey_err ey_smart_resize(uint32_t height, uint32_t width, uint32_t factor,
                       uint64_t min_pixels, uint64_t max_pixels,
                       uint32_t *out_height, uint32_t *out_width);

/* Pillow `Image.resize(..., BICUBIC)` on 8-bit RGB, bit-exact (fixed-point
 * two-pass filter, horizontal first). dst is (dh, dw, 3). Identical sizes
 * copy. EY_ERR_NOMEM on allocation failure. */
ey_err ey_image_resize_bicubic(const uint8_t *src, uint32_t sw, uint32_t sh,
                               uint8_t *dst, uint32_t dw, uint32_t dh);

typedef struct ey_vision_patches {
    float *data;          /* (n_patches, patch_dim), malloc'd */
    uint32_t n_patches;   /* grid_t * grid_h * grid_w */
    uint32_t patch_dim;   /* 3 * temporal * patch * patch (1176 or 1536) */
    uint32_t grid_t, grid_h, grid_w; /* image_grid_thw; grid_t = 1 for images */
    uint32_t resized_height, resized_width;
    uint32_t n_tokens;    /* grid_h * grid_w / merge^2: <|image_pad|> count */
} ey_vision_patches;

/* Resize, rescale, normalise and patchify one RGB image. Row p of data is
 * patch p in merge-block order: p = ((bh * (grid_w/m) + bw) * m + mh) * m + mw
 * and each row is laid out (channel, temporal, py, px). Bounded by
 * cfg->max_pixels (EY_ERR_LIMIT if the config would exceed 2^31 floats). */
ey_err ey_vision_preprocess(const ey_image *img, const ey_vision_prep_cfg *cfg,
                            ey_vision_patches *out);
void ey_vision_patches_free(ey_vision_patches *p);

#endif
