/* eyrie — Qwen2-VL-family image preprocessing: smart_resize, rescale,
 * normalise, patchify.
 *
 * ref: transformers 5.x models/qwen2_vl/image_processing_pil_qwen2_vl.py
 * (smart_resize, Qwen2VLImageProcessorPil._preprocess, patchify) and
 * image_transforms.py (rescale: float64 multiply then float32; normalize:
 * float32 (x - mean) / std). With Pillow's resize reproduced bit-exactly the
 * output equals the Python processor's float32 tensor exactly. */
#include "modalities/image/ey_image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ey_vision_prep_cfg_qwen2vl(ey_vision_prep_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->patch_size = 14;
    cfg->temporal_patch_size = 2;
    cfg->merge_size = 2;
    cfg->min_pixels = 56 * 56;
    cfg->max_pixels = 28 * 28 * 1280;
    /* OPENAI_CLIP_MEAN/STD as Python floats, then rounded to float32 the way
     * numpy does (via double, not straight from the decimal literal). */
    const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
    const double std[3] = {0.26862954, 0.26130258, 0.27577711};
    for (int c = 0; c < 3; c++) {
        cfg->mean[c] = (float)mean[c];
        cfg->std[c] = (float)std[c];
    }
    cfg->rescale_factor = 1.0 / 255.0;
}

void ey_vision_prep_cfg_qwen3vl(ey_vision_prep_cfg *cfg)
{
    ey_vision_prep_cfg_qwen2vl(cfg);
    cfg->patch_size = 16;
    cfg->min_pixels = 65536;
    cfg->max_pixels = 16777216;
    for (int c = 0; c < 3; c++) cfg->mean[c] = cfg->std[c] = 0.5f;
}

ey_err ey_smart_resize(uint32_t height, uint32_t width, uint32_t factor,
                       uint64_t min_pixels, uint64_t max_pixels,
                       uint32_t *out_height, uint32_t *out_width)
{
    if (!height || !width || !factor || max_pixels < min_pixels || !out_height || !out_width)
        return ey_err_set(EY_ERR_ARG, "smart_resize: bad arguments %ux%u factor %u", height,
                          width, factor);
    double hi = height > width ? height : width, lo = height > width ? width : height;
    if (hi / lo > 200)
        return ey_err_set(EY_ERR_LIMIT,
                          "image aspect ratio %.1f exceeds 200 (%ux%u)", hi / lo, width, height);
    const double f = factor;
    /* Python round() is round-half-to-even: rint in the default mode. */
    double h_bar = rint(height / f) * f;
    double w_bar = rint(width / f) * f;
    if (h_bar * w_bar > (double)max_pixels) {
        double beta = sqrt(((double)height * width) / (double)max_pixels);
        h_bar = fmax(f, floor(height / beta / f) * f);
        w_bar = fmax(f, floor(width / beta / f) * f);
    } else if (h_bar * w_bar < (double)min_pixels) {
        double beta = sqrt((double)min_pixels / ((double)height * width));
        h_bar = ceil(height * beta / f) * f;
        w_bar = ceil(width * beta / f) * f;
    }
    if (h_bar < f || w_bar < f || h_bar > 1e9 || w_bar > 1e9)
        return ey_err_set(EY_ERR_LIMIT, "smart_resize: %ux%u gives %.0fx%.0f", width, height,
                          w_bar, h_bar);
    *out_height = (uint32_t)h_bar;
    *out_width = (uint32_t)w_bar;
    return EY_OK;
}

ey_err ey_vision_preprocess(const ey_image *img, const ey_vision_prep_cfg *cfg,
                            ey_vision_patches *out)
{
    if (!out) return ey_err_set(EY_ERR_ARG, "vision: NULL output");
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb || !cfg) return ey_err_set(EY_ERR_ARG, "vision: NULL image or config");
    const uint32_t P = cfg->patch_size, T = cfg->temporal_patch_size, M = cfg->merge_size;
    if (P < 1 || P > 64 || T < 1 || T > 8 || M < 1 || M > 8)
        return ey_err_set(EY_ERR_ARG, "vision: bad patch config %u/%u/%u", P, T, M);
    uint32_t rh, rw;
    ey_err e = ey_smart_resize(img->height, img->width, P * M, cfg->min_pixels,
                               cfg->max_pixels, &rh, &rw);
    if (e) return e;
    const uint32_t gh = rh / P, gw = rw / P;
    const uint64_t n_patches = (uint64_t)gh * gw;
    const uint64_t dim = 3ull * T * P * P;
    /* max_pixels bounds this; refuse configs that would not fit anyway. */
    if (n_patches * dim > ((uint64_t)1 << 31) || (uint64_t)rh * rw > ((uint64_t)1 << 30))
        return ey_err_set(EY_ERR_LIMIT, "vision: %ux%u resized image too large", rw, rh);
    uint8_t *res = malloc((size_t)rh * rw * 3);
    float *norm = malloc((size_t)rh * rw * 3 * sizeof(float)); /* (3, rh, rw) */
    float *data = malloc((size_t)(n_patches * dim) * sizeof(float));
    if (!res || !norm || !data) {
        e = ey_err_set(EY_ERR_NOMEM, "vision: buffers for %ux%u", rw, rh);
        goto fail;
    }
    e = ey_image_resize_bicubic(img->rgb, img->width, img->height, res, rw, rh);
    if (e) goto fail;
    /* rescale: (float)((double)u8 * factor); normalise in float32. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)((double)v * cfg->rescale_factor);
            lut[c][v] = (x - cfg->mean[c]) / cfg->std[c];
        }
    const size_t plane = (size_t)rh * rw;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) norm[c * plane + i] = lut[c][res[i * 3 + c]];
    /* Patch p = ((bh * (gw/M) + bw) * M + mh) * M + mw, row (c, t, py, px). */
    float *o = data;
    for (uint32_t bh = 0; bh < gh / M; bh++)
        for (uint32_t bw = 0; bw < gw / M; bw++)
            for (uint32_t mh = 0; mh < M; mh++)
                for (uint32_t mw = 0; mw < M; mw++) {
                    const size_t y0 = (size_t)(bh * M + mh) * P, x0 = (size_t)(bw * M + mw) * P;
                    for (int c = 0; c < 3; c++)
                        for (uint32_t t = 0; t < T; t++) /* a still image repeats in time */
                            for (uint32_t py = 0; py < P; py++) {
                                memcpy(o, norm + c * plane + (y0 + py) * rw + x0, P * sizeof(float));
                                o += P;
                            }
                }
    free(res);
    free(norm);
    out->data = data;
    out->n_patches = (uint32_t)n_patches;
    out->patch_dim = (uint32_t)dim;
    out->grid_t = 1;
    out->grid_h = gh;
    out->grid_w = gw;
    out->resized_height = rh;
    out->resized_width = rw;
    out->n_tokens = (uint32_t)(n_patches / ((uint64_t)M * M));
    return EY_OK;
fail:
    free(res);
    free(norm);
    free(data);
    return e;
}

void ey_vision_patches_free(ey_vision_patches *p)
{
    if (!p) return;
    free(p->data);
    memset(p, 0, sizeof *p);
}
