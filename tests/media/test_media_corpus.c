/* Hostile-input tests (argv[1] = source root). Meant to run under
 * ASan/UBSan as well as in the plain build.
 *
 *  1. Every file in tests/fixtures/media/corpus/MANIFEST goes through the
 *     decoder its kind names and must give the listed result (OK, FORMAT,
 *     LIMIT, UNSUPPORTED; ERR = any error; ANY = error or success) with a
 *     non-empty detail message on error.
 *  2. Every corpus file and every sample is also fed to both decoders and,
 *     when audio decodes, to the log-mel path: nothing may crash or leak.
 *  3. Deterministic mutation sweep over the samples: 48 truncation points
 *     and 64 random multi-byte corruptions per file, each through both
 *     decoders (the in-tree stand-in for the libFuzzer targets). */
#include <dirent.h>
#include <string.h>

#include "media_fixture.h"
#include "modalities/audio/ey_audio.h"
#include "modalities/image/ey_image.h"
#include "test.h"

static ey_mel_ctx *g_mel;
static float *g_mel_out;

static ey_err run_image(const uint8_t *b, size_t n)
{
    ey_image img;
    ey_err e = ey_image_decode(b, n, NULL, &img);
    if (!e) {
        ey_vision_prep_cfg cfg;
        ey_vision_prep_cfg_qwen2vl(&cfg);
        cfg.max_pixels = 28 * 28 * 64; /* keep the sweep fast */
        ey_vision_patches p;
        if (ey_vision_preprocess(&img, &cfg, &p) == EY_OK) ey_vision_patches_free(&p);
        ey_image_free(&img);
    }
    return e;
}

static int g_with_mel = 1;

static ey_err run_audio(const uint8_t *b, size_t n)
{
    ey_audio a;
    ey_err e = ey_audio_decode(b, n, 16000, NULL, &a);
    if (!e && g_with_mel) {
        uint32_t real;
        ey_mel_compute(g_mel, a.pcm, a.n_samples, g_mel_out, &real);
    }
    ey_audio_free(&a);
    return e;
}

static int code_of(const char *s)
{
    if (!strcmp(s, "OK")) return EY_OK;
    if (!strcmp(s, "FORMAT")) return EY_ERR_FORMAT;
    if (!strcmp(s, "LIMIT")) return EY_ERR_LIMIT;
    if (!strcmp(s, "UNSUPPORTED")) return EY_ERR_UNSUPPORTED;
    if (!strcmp(s, "ERR")) return -1;
    return -2; /* ANY */
}

static void check_result(const char *name, const char *kind, const char *expect, ey_err e)
{
    int want = code_of(expect);
    if (want == -2) return;
    if (want == -1)
        TEST_CHECK_MSG(e != EY_OK, "%s (%s): expected an error, got OK", name, kind);
    else
        TEST_CHECK_MSG((int)e == want, "%s (%s): expected %s, got %s: %s", name, kind, expect,
                       ey_strerror(e), ey_err_detail());
    if (e != EY_OK) TEST_CHECK_MSG(ey_err_detail()[0] != 0, "%s: error without detail", name);
}

static void test_manifest(const char *root)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/media/corpus/MANIFEST", root);
    FILE *f = fopen(path, "r");
    TEST_CHECK_MSG(f != NULL, "no %s", path);
    if (!f) return;
    char line[512];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        char name[128], kind[16], expect[16];
        if (line[0] == '#' || sscanf(line, "%127s %15s %15s", name, kind, expect) != 3) continue;
        char fp[1024];
        snprintf(fp, sizeof fp, "%s/tests/fixtures/media/corpus/%s", root, name);
        size_t n;
        uint8_t *b = media_read_file(fp, &n);
        TEST_CHECK_MSG(b != NULL, "cannot read %s", fp);
        if (!b) continue;
        ey_err_clear();
        if (!strcmp(kind, "image") || !strcmp(kind, "any")) {
            ey_err e = run_image(b, n);
            check_result(name, "image", expect, e);
            printf("%-28s image -> %-12s %s\n", name, ey_strerror(e), ey_err_detail());
        }
        ey_err_clear();
        if (!strcmp(kind, "audio") || !strcmp(kind, "any")) {
            ey_err e = run_audio(b, n);
            check_result(name, "audio", expect, e);
            printf("%-28s audio -> %-12s %s\n", name, ey_strerror(e), ey_err_detail());
        }
        /* Cross-feed: the other decoder must fail cleanly too. */
        if (!strcmp(kind, "image")) run_audio(b, n);
        if (!strcmp(kind, "audio")) run_image(b, n);
        free(b);
        count++;
    }
    fclose(f);
    TEST_CHECK_MSG(count >= 30, "only %d corpus entries", count);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_mutations(const char *root, int quick)
{
    static const char *files[] = {"photo_exif6.jpg", "photo_progressive.jpg", "photo_cmyk.jpg",
                                  "png_rgba.png", "png_interlaced.png", "png_palette.png",
                                  "png_gray16.png", "speech.wav", "speech.flac", "speech.mp3",
                                  "speech.opus", "speech.m4a", "speech.webm", "speech_vorbis.ogg"};
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    int runs = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char fp[1024];
        snprintf(fp, sizeof fp, "%s/samples/media/%s", root, files[i]);
        size_t n;
        uint8_t *orig = media_read_file(fp, &n);
        TEST_CHECK_MSG(orig != NULL, "cannot read %s", fp);
        if (!orig) continue;
        const int is_image = ey_image_detect(orig, n) != EY_IMAGE_FORMAT_UNKNOWN;
        const int length_declared = is_image || strstr(files[i], ".wav") || strstr(files[i], ".flac") ||
                                    strstr(files[i], ".m4a");
        /* The decoders must not read the buffer past n: copy each variant
         * into an exactly-sized allocation so ASan sees overreads. */
        const int n_trunc = quick ? 12 : 48, n_flip = quick ? 16 : 64;
        for (int t = 0; t < n_trunc; t++) {
            size_t len = (size_t)((double)n * t / n_trunc);
            uint8_t *b = malloc(len ? len : 1);
            memcpy(b, orig, len);
            ey_err e = is_image ? run_image(b, len) : run_audio(b, len);
            /* Formats that declare their length must notice the cut; Ogg,
             * WebM and MP3 cut at a page/frame boundary are just shorter
             * valid streams. */
            const int only_iend_cut = strstr(files[i], ".png") && len + 12 >= n; /* Pillow accepts it too */
            if (length_declared && !only_iend_cut)
                TEST_CHECK_MSG(e != EY_OK, "%s cut to %zu bytes decoded OK", files[i], len);
            free(b);
            runs++;
        }
        for (int t = 0; t < n_flip; t++) {
            uint8_t *b = malloc(n);
            memcpy(b, orig, n);
            int k = 1 + (int)(rng_next(&seed) % 16);
            for (int j = 0; j < k; j++) {
                size_t pos = (size_t)(rng_next(&seed) % n);
                uint64_t r = rng_next(&seed);
                if (r & 1) b[pos] ^= (uint8_t)(1u << ((r >> 1) & 7));
                else b[pos] = (uint8_t)(r >> 8);
            }
            if (is_image) run_image(b, n);
            else run_audio(b, n);
            free(b);
            runs++;
        }
        free(orig);
    }
    printf("mutation sweep: %d decodes, no crash\n", runs);
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    const int quick = argc > 2 && !strcmp(argv[2], "--quick");
    ey_audio_quiet_ffmpeg_log();
    TEST_CHECK(ey_mel_init(&g_mel, 80) == EY_OK);
    g_mel_out = malloc(80 * EY_MEL_N_FRAMES * sizeof(float));
    test_manifest(root);
    g_with_mel = !quick; /* the mel path is fuzzed with decoded audio in the long run */
    test_mutations(root, quick);
    ey_mel_free(g_mel);
    free(g_mel_out);
    return test_result();
}
