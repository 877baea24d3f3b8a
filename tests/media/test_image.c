/* Image front-end tests.
 *
 * Unit: magic detection, smart_resize against values from transformers'
 * smart_resize, limits refused before decoding, EXIF orientation mapping,
 * alpha compositing vs Pillow's integer formula, resize identity.
 * Parity (argv[1] = source root): for every tests/fixtures/media/img_*.eyfx
 * the decoded RGB must equal Pillow's (sampled bytes + full sum) and the
 * Qwen2VLImageProcessorPil pixel_values must match (sampled values + full
 * sum / sum of squares), with grid_thw and shape equal. Bounds: decoded RGB
 * exact; pixel values max |diff| <= 1e-6 (we expect 0). */
#include <dirent.h>
#include <string.h>

#include "media_fixture.h"
#include "modalities/image/ey_image.h"
#include "test.h"

static void test_detect(void)
{
    TEST_CHECK(ey_image_detect("\xff\xd8\xff\xe0", 4) == EY_IMAGE_FORMAT_JPEG);
    TEST_CHECK(ey_image_detect("\x89PNG\r\n\x1a\n", 8) == EY_IMAGE_FORMAT_PNG);
    TEST_CHECK(ey_image_detect("\x89PNG\r\n\x1a", 7) == EY_IMAGE_FORMAT_UNKNOWN);
    TEST_CHECK(ey_image_detect("GIF89a", 6) == EY_IMAGE_FORMAT_GIF);
    TEST_CHECK(ey_image_detect("RIFF\0\0\0\0WEBPVP8 ", 16) == EY_IMAGE_FORMAT_WEBP);
    TEST_CHECK(ey_image_detect("", 0) == EY_IMAGE_FORMAT_UNKNOWN);
    TEST_CHECK(ey_image_detect(NULL, 10) == EY_IMAGE_FORMAT_UNKNOWN);
    ey_image img;
    TEST_CHECK(ey_image_decode("", 0, NULL, &img) == EY_ERR_FORMAT);
    TEST_CHECK(ey_image_decode("GIF89a0000000", 13, NULL, &img) == EY_ERR_UNSUPPORTED);
    TEST_CHECK(ey_image_decode("hello world!", 12, NULL, &img) == EY_ERR_FORMAT);
    TEST_CHECK(img.rgb == NULL);
}

static void test_smart_resize(void)
{
    /* (h, w, factor, min, max) -> expected, computed with transformers 5.x
     * smart_resize. */
    static const struct { uint32_t h, w, f; uint64_t mn, mx; uint32_t eh, ew; } c[] = {
        {480, 640, 28, 3136, 1003520, 476, 644},
        {480, 640, 28, 3136, 50176, 168, 252},
        {1080, 1920, 28, 3136, 12845056, 1092, 1932},
        {120, 160, 28, 200704, 1003520, 392, 532},
        {24, 600, 28, 3136, 1003520, 28, 588},
        {14, 14, 28, 3136, 1003520, 56, 56},
        {42, 70, 28, 3136, 1003520, 56, 56},  /* 1.5 -> 2 and 2.5 -> 2: half to even */
        {240, 320, 32, 65536, 16777216, 256, 320}, /* 7.5 -> 8 */
        {4000, 3000, 32, 65536, 16777216, 4000, 3008},
        {8000, 6000, 32, 65536, 16777216, 4704, 3520},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        uint32_t h = 0, w = 0;
        ey_err e = ey_smart_resize(c[i].h, c[i].w, c[i].f, c[i].mn, c[i].mx, &h, &w);
        TEST_CHECK_MSG(e == EY_OK && h == c[i].eh && w == c[i].ew,
                       "smart_resize(%u,%u,f%u) = %ux%u, want %ux%u", c[i].h, c[i].w, c[i].f, h, w,
                       c[i].eh, c[i].ew);
    }
    uint32_t h, w;
    TEST_CHECK(ey_smart_resize(10, 2010, 28, 3136, 1003520, &h, &w) == EY_ERR_LIMIT);
    TEST_CHECK(ey_smart_resize(0, 10, 28, 3136, 1003520, &h, &w) == EY_ERR_ARG);
}

static void test_limits(const char *root)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/samples/media/photo.jpg", root);
    size_t n;
    uint8_t *buf = media_read_file(path, &n);
    TEST_CHECK_MSG(buf != NULL, "cannot read %s", path);
    if (!buf) return;
    ey_image_limits lim;
    ey_image_limits_default(&lim);
    ey_image img;
    TEST_CHECK(ey_image_decode(buf, n, &lim, &img) == EY_OK && img.width == 640 && img.height == 480);
    ey_image_free(&img);
    lim.max_bytes = n - 1;
    TEST_CHECK(ey_image_decode(buf, n, &lim, &img) == EY_ERR_LIMIT);
    ey_image_limits_default(&lim);
    lim.max_width = 639;
    TEST_CHECK(ey_image_decode(buf, n, &lim, &img) == EY_ERR_LIMIT);
    ey_image_limits_default(&lim);
    lim.max_pixels = 640 * 480 - 1;
    TEST_CHECK(ey_image_decode(buf, n, &lim, &img) == EY_ERR_LIMIT);
    TEST_CHECK(strstr(ey_err_detail(), "pixels") != NULL);
    ey_image_limits_default(&lim);
    lim.max_mem = 640 * 480;
    TEST_CHECK(ey_image_decode(buf, n, &lim, &img) == EY_ERR_LIMIT);
    TEST_CHECK(img.rgb == NULL);
    free(buf);

    snprintf(path, sizeof path, "%s/samples/media/png_rgba.png", root);
    buf = media_read_file(path, &n);
    TEST_CHECK(buf != NULL);
    if (!buf) return;
    ey_image_limits_default(&lim);
    lim.max_height = 71;
    TEST_CHECK(ey_image_decode(buf, n, &lim, &img) == EY_ERR_LIMIT);
    ey_image_limits_default(&lim);
    lim.max_pixels = 96 * 72 - 1;
    TEST_CHECK(ey_image_decode(buf, n, &lim, &img) == EY_ERR_LIMIT);
    free(buf);
}

static void test_composite(void)
{
    /* Pillow: alpha_composite(white, (c, a)) for a few values, from
     * Image.alpha_composite on 1x1 images. */
    static const uint8_t c[][3] = {{0, 0, 255}, {0, 255, 0},   {0, 128, 127},   {200, 100, 233},
                                   {10, 1, 254}, {255, 0, 255}, {77, 3, 253}, {130, 250, 132}};
    extern uint8_t ey_test_over_white(uint8_t, uint8_t);
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        uint8_t got = ey_test_over_white(c[i][0], c[i][1]);
        TEST_CHECK_MSG(got == c[i][2], "over_white(%u, %u) = %u, want %u", c[i][0], c[i][1], got,
                       c[i][2]);
    }
}

static void test_resize_basic(void)
{
    uint8_t src[4 * 3 * 3], dst[4 * 3 * 3];
    for (int i = 0; i < 36; i++) src[i] = (uint8_t)(i * 7);
    TEST_CHECK(ey_image_resize_bicubic(src, 4, 3, dst, 4, 3) == EY_OK && !memcmp(src, dst, 36));
    /* A constant image stays constant through any bicubic resize. */
    uint8_t flat[10 * 7 * 3], out[23 * 5 * 3];
    memset(flat, 77, sizeof flat);
    TEST_CHECK(ey_image_resize_bicubic(flat, 10, 7, out, 23, 5) == EY_OK);
    int ok = 1;
    for (size_t i = 0; i < sizeof out; i++) ok &= out[i] == 77;
    TEST_CHECK(ok);
    TEST_CHECK(ey_image_resize_bicubic(flat, 0, 7, out, 23, 5) == EY_ERR_ARG);
}

static void test_preprocess_layout(void)
{
    /* 56x56 image whose pixel (y, x) has R = y, G = x, B = 0: with
     * mean 0 / std 1 / rescale 1 the patch values are the coordinates. */
    ey_image img = {0};
    img.width = img.height = 56;
    img.rgb = malloc(56 * 56 * 3);
    for (int y = 0; y < 56; y++)
        for (int x = 0; x < 56; x++) {
            img.rgb[(y * 56 + x) * 3 + 0] = (uint8_t)y;
            img.rgb[(y * 56 + x) * 3 + 1] = (uint8_t)x;
            img.rgb[(y * 56 + x) * 3 + 2] = 0;
        }
    ey_vision_prep_cfg cfg;
    ey_vision_prep_cfg_qwen2vl(&cfg);
    for (int c = 0; c < 3; c++) {
        cfg.mean[c] = 0;
        cfg.std[c] = 1;
    }
    cfg.rescale_factor = 1.0;
    ey_vision_patches p;
    TEST_CHECK(ey_vision_preprocess(&img, &cfg, &p) == EY_OK);
    TEST_CHECK(p.grid_t == 1 && p.grid_h == 4 && p.grid_w == 4 && p.n_patches == 16 &&
               p.patch_dim == 1176 && p.n_tokens == 4);
    /* Patch 5 = merge block (0, 1), sub-patch (0, 1): rows 0..13, cols 42..55. */
    const float *row = p.data + 5 * 1176;
    TEST_CHECK(row[0] == 0.0f && row[196 * 2] == 42.0f); /* R(t0,0,0)=y=0; G(t0,0,0)=x=42 */
    TEST_CHECK(row[196] == 0.0f && row[196 + 13 * 14 + 13] == 13.0f); /* t1 repeats t0 */
    TEST_CHECK(row[2 * 196 + 13] == 55.0f);
    /* Patch 10 = block (1, 0), sub-patch (1, 0): rows 42..55, cols 0..13. */
    TEST_CHECK(p.data[10 * 1176] == 42.0f && p.data[10 * 1176 + 392] == 0.0f);
    ey_vision_patches_free(&p);
    ey_image_free(&img);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void parity_one(const char *root, const char *fixture)
{
    eyfx fx;
    if (eyfx_load(&fx, fixture)) {
        TEST_CHECK_MSG(0, "load %s", fixture);
        return;
    }
    char rel[256], preset[32], path[1024];
    eyfx_str(&fx, "file", rel, sizeof rel);
    eyfx_str(&fx, "preset", preset, sizeof preset);
    snprintf(path, sizeof path, "%s/%s", root, rel);
    size_t n;
    uint8_t *buf = media_read_file(path, &n);
    TEST_CHECK_MSG(buf != NULL, "cannot read %s", path);
    ey_image img;
    ey_err e = buf ? ey_image_decode(buf, n, NULL, &img) : EY_ERR_IO;
    free(buf);
    TEST_CHECK_MSG(e == EY_OK, "%s: decode: %s: %s", rel, ey_strerror(e), ey_err_detail());
    if (e) {
        eyfx_free(&fx);
        return;
    }
    /* Decoded RGB vs Pillow. */
    TEST_CHECK_MSG(img.height == (uint32_t)eyfx_i64(&fx, "decoded_hw", 0) &&
                       img.width == (uint32_t)eyfx_i64(&fx, "decoded_hw", 1),
                   "%s: decoded %ux%u, want %lldx%lld", rel, img.width, img.height,
                   (long long)eyfx_i64(&fx, "decoded_hw", 1), (long long)eyfx_i64(&fx, "decoded_hw", 0));
    const size_t nb = (size_t)img.width * img.height * 3;
    double dsum = 0;
    for (size_t i = 0; i < nb; i++) dsum += img.rgb[i];
    const eyfx_entry *dec = eyfx_get(&fx, "decoded", EYFX_U8);
    int64_t ds = eyfx_i64(&fx, "decoded_stride", 0);
    int max_d = 0, n_d = 0;
    for (uint64_t k = 0; dec && k < dec->count; k++) {
        size_t i = (size_t)(k * (uint64_t)ds);
        if (i >= nb) break;
        int d = abs((int)img.rgb[i] - (int)dec->data[k]);
        if (d > max_d) max_d = d;
        n_d += d != 0;
    }
    double want_dsum = eyfx_f64(&fx, "decoded_sum");
    TEST_CHECK_MSG(max_d == 0 && dsum == want_dsum,
                   "%s: decoded RGB differs from Pillow: %d of %llu samples, max |d| %d, sum %.0f vs %.0f",
                   rel, n_d, dec ? (unsigned long long)dec->count : 0ull, max_d, dsum, want_dsum);

    ey_vision_prep_cfg cfg;
    if (!strcmp(preset, "qwen3vl")) ey_vision_prep_cfg_qwen3vl(&cfg);
    else ey_vision_prep_cfg_qwen2vl(&cfg);
    cfg.min_pixels = (uint64_t)eyfx_i64(&fx, "min_pixels", 0);
    cfg.max_pixels = (uint64_t)eyfx_i64(&fx, "max_pixels", 0);
    ey_vision_patches p;
    e = ey_vision_preprocess(&img, &cfg, &p);
    TEST_CHECK_MSG(e == EY_OK, "%s: preprocess: %s", rel, ey_err_detail());
    if (!e) {
        TEST_CHECK_MSG(p.grid_t == eyfx_i64(&fx, "grid_thw", 0) && p.grid_h == eyfx_i64(&fx, "grid_thw", 1) &&
                           p.grid_w == eyfx_i64(&fx, "grid_thw", 2),
                       "%s: grid %u,%u,%u", rel, p.grid_t, p.grid_h, p.grid_w);
        TEST_CHECK(p.n_patches == eyfx_i64(&fx, "shape", 0) && p.patch_dim == eyfx_i64(&fx, "shape", 1));
        const size_t total = (size_t)p.n_patches * p.patch_dim;
        const eyfx_entry *pv = eyfx_get(&fx, "pixel", EYFX_F32);
        int64_t st = eyfx_i64(&fx, "pixel_stride", 0);
        double max_err = 0;
        for (uint64_t k = 0; pv && k < pv->count; k++) {
            size_t i = (size_t)(k * (uint64_t)st);
            if (i >= total) break;
            double d = fabs((double)p.data[i] - eyfx_f32_at(pv, k));
            if (d > max_err) max_err = d;
        }
        double s = 0, s2 = 0;
        for (size_t i = 0; i < total; i++) {
            s += p.data[i];
            s2 += (double)p.data[i] * p.data[i];
        }
        double ws = eyfx_f64(&fx, "pixel_sum"), ws2 = eyfx_f64(&fx, "pixel_sumsq");
        TEST_CHECK_MSG(max_err <= 1e-6, "%s: pixel_values max |diff| %.3g", rel, max_err);
        TEST_CHECK_MSG(fabs(s - ws) <= 1e-6 * (1 + fabs(ws)) + 1e-3 && fabs(s2 - ws2) <= 1e-6 * ws2 + 1e-3,
                       "%s: sum %.6f vs %.6f, sumsq %.6f vs %.6f", rel, s, ws, s2, ws2);
        printf("%-28s %4ux%-4u -> grid [%u,%u,%u] pixel max|diff| %.3g  sum diff %.3g  decoded max|diff| %d\n",
               rel + 14, img.width, img.height, p.grid_t, p.grid_h, p.grid_w, max_err, fabs(s - ws), max_d);
        ey_vision_patches_free(&p);
    }
    ey_image_free(&img);
    eyfx_free(&fx);
}

static void test_parity(const char *root)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/media", root);
    DIR *d = opendir(dir);
    TEST_CHECK_MSG(d != NULL, "no fixture dir %s", dir);
    if (!d) return;
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "img_", 4) || !ends_with(de->d_name, ".eyfx")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        parity_one(root, path);
        count++;
    }
    closedir(d);
    TEST_CHECK_MSG(count >= 10, "only %d image fixtures", count);
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    test_detect();
    test_smart_resize();
    test_limits(root);
    test_composite();
    test_resize_basic();
    test_preprocess_layout();
    test_parity(root);
    return test_result();
}
