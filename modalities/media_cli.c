/* eyrie — `probe` and `convert-audio` subcommands (see media_cli.h). */
#include "modalities/media_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modalities/audio/ey_audio.h"
#include "modalities/image/ey_image.h"

#define CLI_MAX_FILE ((size_t)64 << 20)

/* Reads a whole regular file, refusing more than max bytes. */
static ey_err read_file(const char *path, size_t max, uint8_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ey_err_set(EY_ERR_IO, "cannot open: %s", strerror(errno));
    size_t cap = 0, len = 0;
    uint8_t *buf = NULL;
    for (;;) {
        if (len == cap) {
            if (cap >= max + 1) break;
            size_t nc = cap ? cap * 2 : 65536;
            if (nc > max + 1) nc = max + 1;
            uint8_t *p = realloc(buf, nc);
            if (!p) {
                free(buf);
                fclose(f);
                return ey_err_set(EY_ERR_NOMEM, "reading file");
            }
            buf = p;
            cap = nc;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return ey_err_set(EY_ERR_IO, "read error");
    }
    if (len > max) {
        free(buf);
        return ey_err_set(EY_ERR_LIMIT, "file larger than %zu MiB", max >> 20);
    }
    *out = buf;
    *n = len;
    return EY_OK;
}

static int fail(const char *cmd, const char *path, ey_err e)
{
    const char *d = ey_err_detail();
    fprintf(stderr, "eyrie %s: %s: %s%s%s\n", cmd, path, ey_strerror(e), *d ? ": " : "", d);
    return 1;
}

static void json_str(FILE *o, const char *s)
{
    fputc('"', o);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(o, "\\%c", *p);
        else if (*p < 0x20) fprintf(o, "\\u%04x", *p);
        else fputc(*p, o);
    }
    fputc('"', o);
}

static int probe_usage(void)
{
    fprintf(stderr,
            "usage: eyrie probe FILE [--json] [--vision qwen2vl|qwen3vl] [--max-pixels N]\n"
            "                        [--n-mels 80|128]\n"
            "  Decodes an image (JPEG, PNG) or audio file (WAV, FLAC, MP3, Ogg, M4A, WebM, ...)\n"
            "  with eyrie's front-ends and prints what was found and the tensor shapes the\n"
            "  vision (Qwen2-VL family) or audio (Whisper / Qwen2-Audio) encoder would get.\n");
    return 2;
}

static int parse_u64(const char *s, unsigned long long lo, unsigned long long hi,
                     unsigned long long *v)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-') return -1;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || x < lo || x > hi) return -1;
    *v = x;
    return 0;
}

static int probe_image(const char *path, const uint8_t *buf, size_t n, int json,
                       const ey_vision_prep_cfg *cfg, const char *vname)
{
    ey_image img;
    ey_err e = ey_image_decode(buf, n, NULL, &img);
    if (e) return fail("probe", path, e);
    ey_vision_patches vp;
    e = ey_vision_preprocess(&img, cfg, &vp);
    if (e) {
        ey_image_free(&img);
        return fail("probe", path, e);
    }
    if (json) {
        printf("{\"file\":");
        json_str(stdout, path);
        printf(",\"kind\":\"image\",\"format\":\"%s\",\"width\":%u,\"height\":%u,"
               "\"stored_width\":%u,\"stored_height\":%u,\"channels\":%u,\"bit_depth\":%u,"
               "\"alpha\":%s,\"palette\":%s,\"cmyk\":%s,\"progressive\":%s,\"orientation\":%u,"
               "\"vision\":{\"preset\":\"%s\",\"resized_height\":%u,\"resized_width\":%u,"
               "\"pixel_values\":[%u,%u],\"image_grid_thw\":[%u,%u,%u],\"image_tokens\":%u}}\n",
               ey_image_format_name(img.format), img.width, img.height, img.src_width,
               img.src_height, img.src_channels, img.src_bit_depth,
               img.has_alpha ? "true" : "false", img.is_palette ? "true" : "false",
               img.is_cmyk ? "true" : "false", img.is_progressive ? "true" : "false",
               img.orientation, vname, vp.resized_height, vp.resized_width, vp.n_patches,
               vp.patch_dim, vp.grid_t, vp.grid_h, vp.grid_w, vp.n_tokens);
    } else {
        printf("file:          %s\n", path);
        printf("kind:          image\n");
        printf("format:        %s%s%s%s%s\n", ey_image_format_name(img.format),
               img.is_progressive ? (img.format == EY_IMAGE_FORMAT_PNG ? ", interlaced" : ", progressive") : "",
               img.is_palette ? ", palette" : "", img.has_alpha ? ", alpha (over white)" : "",
               img.is_cmyk ? ", CMYK" : "");
        printf("size:          %ux%u (stored %ux%u, EXIF orientation %u)\n", img.width,
               img.height, img.src_width, img.src_height, img.orientation);
        printf("channels:      %u x %u-bit\n", img.src_channels, img.src_bit_depth);
        printf("vision (%s): resized %ux%u, pixel_values [%u, %u], image_grid_thw [%u, %u, %u], "
               "%u image tokens\n",
               vname, vp.resized_width, vp.resized_height, vp.n_patches, vp.patch_dim, vp.grid_t,
               vp.grid_h, vp.grid_w, vp.n_tokens);
    }
    ey_vision_patches_free(&vp);
    ey_image_free(&img);
    return 0;
}

static int probe_audio(const char *path, const uint8_t *buf, size_t n, int json, int n_mels)
{
    ey_audio a;
    ey_err e = ey_audio_decode(buf, n, EY_AUDIO_SAMPLE_RATE, NULL, &a);
    if (e) return fail("probe", path, e);
    ey_mel_ctx *mc = NULL;
    float *mel = malloc((size_t)n_mels * EY_MEL_N_FRAMES * sizeof(float));
    uint32_t real = 0;
    if (!mel) e = ey_err_set(EY_ERR_NOMEM, "mel buffer");
    if (!e) e = ey_mel_init(&mc, n_mels);
    if (!e) e = ey_mel_compute(mc, a.pcm, a.n_samples, mel, &real);
    ey_mel_free(mc);
    free(mel);
    if (e) {
        ey_audio_free(&a);
        return fail("probe", path, e);
    }
    /* Qwen2-Audio: conv stride 2 then avg-pool 2 over the real frames. */
    uint32_t l1 = real ? (real - 1) / 2 + 1 : 0;
    uint32_t tokens = l1 >= 2 ? (l1 - 2) / 2 + 1 : 0;
    double dur = (double)a.n_samples / a.sample_rate;
    if (json) {
        printf("{\"file\":");
        json_str(stdout, path);
        printf(",\"kind\":\"audio\",\"container\":");
        json_str(stdout, a.container);
        printf(",\"codec\":");
        json_str(stdout, a.codec);
        printf(",\"sample_rate\":%u,\"channels\":%u,\"duration_s\":%.3f,\"bit_rate\":%lld,"
               "\"pcm\":{\"sample_rate\":%u,\"samples\":%zu},"
               "\"log_mel\":{\"input_features\":[1,%d,%d],\"attention_frames\":%u,"
               "\"truncated\":%s,\"qwen2_audio_tokens\":%u}}\n",
               a.src_sample_rate, a.src_channels, a.src_duration_s, (long long)a.bit_rate,
               a.sample_rate, a.n_samples, n_mels, EY_MEL_N_FRAMES, real,
               a.n_samples > EY_MEL_CHUNK_SAMPLES ? "true" : "false", tokens);
    } else {
        printf("file:          %s\n", path);
        printf("kind:          audio\n");
        printf("format:        %s / %s\n", a.container, a.codec);
        printf("source:        %u Hz, %u channel%s, %.3f s\n", a.src_sample_rate,
               a.src_channels, a.src_channels == 1 ? "" : "s", a.src_duration_s);
        printf("pcm:           %zu samples mono float @ %u Hz (%.3f s)\n", a.n_samples,
               a.sample_rate, dur);
        printf("log-mel:       input_features [1, %d, %d], %u real frames%s, "
               "%u Qwen2-Audio tokens\n",
               n_mels, EY_MEL_N_FRAMES, real,
               a.n_samples > EY_MEL_CHUNK_SAMPLES ? " (truncated to 30 s)" : "", tokens);
    }
    ey_audio_free(&a);
    return 0;
}

int ey_cli_probe(int argc, char **argv)
{
    const char *path = NULL, *vname = "qwen2vl";
    int json = 0;
    unsigned long long max_px = 0, mels = 128;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--vision") && i + 1 < argc) vname = argv[++i];
        else if (!strcmp(a, "--max-pixels") && i + 1 < argc) {
            if (parse_u64(argv[++i], 1, 1ull << 30, &max_px)) return probe_usage();
        } else if (!strcmp(a, "--n-mels") && i + 1 < argc) {
            if (parse_u64(argv[++i], 80, 128, &mels) || (mels != 80 && mels != 128))
                return probe_usage();
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            probe_usage();
            return 0;
        } else if (a[0] == '-' && a[1]) {
            return probe_usage();
        } else if (!path) path = a;
        else return probe_usage();
    }
    if (!path) return probe_usage();
    ey_vision_prep_cfg cfg;
    if (!strcmp(vname, "qwen2vl")) ey_vision_prep_cfg_qwen2vl(&cfg);
    else if (!strcmp(vname, "qwen3vl")) ey_vision_prep_cfg_qwen3vl(&cfg);
    else return probe_usage();
    if (max_px) {
        cfg.max_pixels = max_px;
        if (cfg.min_pixels > max_px) cfg.min_pixels = max_px;
    }
    ey_audio_quiet_ffmpeg_log();
    uint8_t *buf;
    size_t n;
    ey_err e = read_file(path, CLI_MAX_FILE, &buf, &n);
    if (e) return fail("probe", path, e);
    int rc;
    ey_image_format f = ey_image_detect(buf, n);
    if (f != EY_IMAGE_FORMAT_UNKNOWN) rc = probe_image(path, buf, n, json, &cfg, vname);
    else if (n == 0) rc = fail("probe", path, ey_err_set(EY_ERR_FORMAT, "empty file"));
    else rc = probe_audio(path, buf, n, json, (int)mels);
    free(buf);
    return rc;
}

static int convert_usage(void)
{
    fprintf(stderr,
            "usage: eyrie convert-audio IN OUT.{wav,flac,opus,ogg,mp3} [--rate HZ] [--bitrate BPS]\n"
            "  Decodes IN (any supported audio), downmixes to mono and encodes OUT; the\n"
            "  codec follows OUT's extension. Default rate: the source's (48000 for Opus\n"
            "  when the source rate is not one Opus takes).\n");
    return 2;
}

int ey_cli_convert_audio(int argc, char **argv)
{
    const char *in = NULL, *outp = NULL;
    unsigned long long rate = 0, br = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--rate") && i + 1 < argc) {
            if (parse_u64(argv[++i], 8000, 192000, &rate)) return convert_usage();
        } else if (!strcmp(a, "--bitrate") && i + 1 < argc) {
            if (parse_u64(argv[++i], 6000, 1000000, &br)) return convert_usage();
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            convert_usage();
            return 0;
        } else if (a[0] == '-' && a[1]) {
            return convert_usage();
        } else if (!in) in = a;
        else if (!outp) outp = a;
        else return convert_usage();
    }
    if (!in || !outp) return convert_usage();
    const char *dot = strrchr(outp, '.');
    int codec = dot ? ey_audio_codec_from_name(dot + 1) : -1;
    if (codec < 0) {
        fprintf(stderr, "eyrie convert-audio: %s: output extension must be .wav, .flac, .opus, "
                        ".ogg or .mp3\n", outp);
        return convert_usage();
    }
    if (codec == EY_AUDIO_CODEC_OPUS && rate && rate != 8000 && rate != 12000 && rate != 16000 &&
        rate != 24000 && rate != 48000) {
        fprintf(stderr, "eyrie convert-audio: Opus takes 8000, 12000, 16000, 24000 or 48000 Hz\n");
        return 2;
    }
    ey_audio_quiet_ffmpeg_log();
    uint8_t *buf;
    size_t n;
    ey_err e = read_file(in, CLI_MAX_FILE, &buf, &n);
    if (e) return fail("convert-audio", in, e);
    ey_audio a;
    e = ey_audio_decode(buf, n, rate ? (uint32_t)rate : EY_AUDIO_RATE_SOURCE, NULL, &a);
    free(buf);
    if (e) return fail("convert-audio", in, e);
    uint32_t out_rate = a.sample_rate;
    if (codec == EY_AUDIO_CODEC_OPUS && out_rate != 8000 && out_rate != 12000 &&
        out_rate != 16000 && out_rate != 24000 && out_rate != 48000)
        out_rate = 48000;
    if (codec == EY_AUDIO_CODEC_MP3 && out_rate != 8000 && out_rate != 11025 && out_rate != 12000 &&
        out_rate != 16000 && out_rate != 22050 && out_rate != 24000 && out_rate != 32000 &&
        out_rate != 44100 && out_rate != 48000)
        out_rate = out_rate > 48000 ? 48000 : 44100;
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    e = ey_audio_encode(a.pcm, a.n_samples, a.sample_rate, (ey_audio_codec)codec, out_rate,
                        (int64_t)br, &enc, &enc_len);
    ey_audio_free(&a);
    if (e) return fail("convert-audio", outp, e);
    FILE *f = fopen(outp, "wb");
    if (!f) {
        free(enc);
        return fail("convert-audio", outp, ey_err_set(EY_ERR_IO, "cannot create: %s", strerror(errno)));
    }
    size_t w = fwrite(enc, 1, enc_len, f);
    int cerr = fclose(f);
    free(enc);
    if (w != enc_len || cerr)
        return fail("convert-audio", outp, ey_err_set(EY_ERR_IO, "write failed"));
    return 0;
}
