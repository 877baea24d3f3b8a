/* Audio front-end tests (argv[1] = source root).
 *
 *  - log-mel parity: every tests/fixtures/media/mel_*.eyfx (transformers
 *    WhisperFeatureExtractor, numpy path) against ey_mel_compute on the same
 *    PCM (decoded by ey_audio_decode from a 16 kHz s16 file, or synthesised):
 *    max |diff| <= 2e-4 on the stored frames, |sum diff| / n <= 1e-6,
 *    attention frames equal;
 *  - PCM parity: each sample file decoded to 16 kHz mono vs
 *    `ffmpeg -i F -f f32le -ac 1 -ar 16000 -` (skipped if no ffmpeg):
 *    same length (+-0) and max |diff| <= 1e-4 (lossless sources: 0);
 *  - limits and argument errors;
 *  - encode round trip: WAV/FLAC/MP3/Opus of a tone decode back to the
 *    right duration; WAV/FLAC are exact to 16-bit quantisation; lossy ones
 *    keep the tone (correlation > 0.9 after alignment). */
#include <dirent.h>
#include <math.h>
#include <string.h>

#include "media_fixture.h"
#include "modalities/audio/ey_audio.h"
#include "test.h"

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static float *load_pcm16k(const char *root, const char *src, size_t *n)
{
    *n = 0;
    if (!strncmp(src, "synth:", 6)) {
        const char *kind = src + 6;
        const char *colon = strchr(kind, ':');
        if (!colon) return NULL;
        size_t k = (size_t)strtoull(colon + 1, NULL, 10);
        float *x = calloc(k ? k : 1, sizeof(float));
        if (x && !strncmp(kind, "chirp", 5)) media_synth_chirp(x, k);
        *n = k;
        return x;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, src);
    size_t nb;
    uint8_t *buf = media_read_file(path, &nb);
    if (!buf) return NULL;
    ey_audio a;
    ey_err e = ey_audio_decode(buf, nb, 16000, NULL, &a);
    free(buf);
    if (e) {
        fprintf(stderr, "%s: %s: %s\n", path, ey_strerror(e), ey_err_detail());
        return NULL;
    }
    *n = a.n_samples;
    return a.pcm; /* ownership moves to the caller */
}

static void mel_parity_one(const char *root, const char *fixture, ey_mel_ctx *m80, ey_mel_ctx *m128)
{
    eyfx fx;
    if (eyfx_load(&fx, fixture)) {
        TEST_CHECK_MSG(0, "load %s", fixture);
        return;
    }
    char src[256];
    eyfx_str(&fx, "source", src, sizeof src);
    int n_mels = (int)eyfx_i64(&fx, "n_mels", 0);
    size_t n;
    float *pcm = load_pcm16k(root, src, &n);
    TEST_CHECK_MSG(pcm != NULL, "%s: no pcm", src);
    TEST_CHECK_MSG(n == (size_t)eyfx_i64(&fx, "n_samples", 0), "%s: %zu samples, fixture %lld", src,
                   n, (long long)eyfx_i64(&fx, "n_samples", 0));
    float *mel = malloc((size_t)n_mels * EY_MEL_N_FRAMES * sizeof(float));
    uint32_t real = 0;
    ey_err e = pcm && mel ? ey_mel_compute(n_mels == 80 ? m80 : m128, pcm, n, mel, &real) : EY_ERR_NOMEM;
    TEST_CHECK_MSG(e == EY_OK, "%s: mel: %s", src, ey_err_detail());
    if (!e) {
        TEST_CHECK_MSG(real == (uint32_t)eyfx_i64(&fx, "real_frames", 0), "%s: real frames %u vs %lld",
                       src, real, (long long)eyfx_i64(&fx, "real_frames", 0));
        const eyfx_entry *fr = eyfx_get(&fx, "frames", EYFX_I64);
        const eyfx_entry *mv = eyfx_get(&fx, "mel", EYFX_F32);
        double max_err = 0, sum = 0, mx = -1e30;
        size_t ns = fr ? fr->count : 0;
        for (int b = 0; b < n_mels && mv; b++)
            for (size_t j = 0; j < ns; j++) {
                int64_t t;
                memcpy(&t, fr->data + 8 * j, 8);
                double d = fabs((double)mel[(size_t)b * EY_MEL_N_FRAMES + (size_t)t] -
                                eyfx_f32_at(mv, (uint64_t)b * ns + j));
                if (d > max_err) max_err = d;
            }
        for (size_t i = 0; i < (size_t)n_mels * EY_MEL_N_FRAMES; i++) {
            sum += mel[i];
            if (mel[i] > mx) mx = mel[i];
        }
        double ws = eyfx_f64(&fx, "mel_sum"), wmax = eyfx_f64(&fx, "mel_max");
        double mean_err = fabs(sum - ws) / ((double)n_mels * EY_MEL_N_FRAMES);
        TEST_CHECK_MSG(max_err <= 2e-4, "%s (%d mels): max |diff| %.3g", src, n_mels, max_err);
        TEST_CHECK_MSG(mean_err <= 1e-6, "%s: mean diff %.3g", src, mean_err);
        TEST_CHECK_MSG(fabs(mx - wmax) <= 1e-5, "%s: max %.6f vs %.6f", src, mx, wmax);
        printf("mel %-34s %3d mels  frames %4u  max|diff| %.3g  mean diff %.3g\n", src, n_mels, real,
               max_err, mean_err);
    }
    free(mel);
    free(pcm);
    eyfx_free(&fx);
}

static void test_mel_parity(const char *root)
{
    ey_mel_ctx *m80 = NULL, *m128 = NULL;
    TEST_CHECK(ey_mel_init(&m80, 80) == EY_OK && ey_mel_init(&m128, 128) == EY_OK);
    TEST_CHECK(ey_mel_n_mels(m80) == 80 && ey_mel_n_mels(m128) == 128);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/media", root);
    DIR *d = opendir(dir);
    TEST_CHECK(d != NULL);
    int count = 0;
    struct dirent *de;
    while (d && m80 && m128 && (de = readdir(d))) {
        if (strncmp(de->d_name, "mel_", 4) || !ends_with(de->d_name, ".eyfx")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        mel_parity_one(root, path, m80, m128);
        count++;
    }
    if (d) closedir(d);
    TEST_CHECK_MSG(count >= 5, "only %d mel fixtures", count);
    /* Empty input = 30 s of silence: every value (log10(1e-10) + 4) / 4. */
    float *mel = malloc(80 * EY_MEL_N_FRAMES * sizeof(float));
    uint32_t real = 99;
    TEST_CHECK(mel && ey_mel_compute(m80, NULL, 0, mel, &real) == EY_OK && real == 0);
    TEST_CHECK(mel && mel[0] == -1.5f && mel[80 * EY_MEL_N_FRAMES - 1] == -1.5f);
    free(mel);
    ey_mel_ctx *bad = NULL;
    TEST_CHECK(ey_mel_init(&bad, 0) == EY_ERR_ARG && bad == NULL);
    ey_mel_free(m80);
    ey_mel_free(m128);
}

/* Reference PCM from the ffmpeg CLI; NULL if ffmpeg is unavailable. */
static float *ffmpeg_pcm(const char *path, size_t *n)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -nostdin -hide_banner -loglevel error -i '%s' -f f32le -ac 1 -ar 16000 - 2>/dev/null",
             path);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, len = 0;
    float *buf = malloc(cap * sizeof(float));
    while (buf) {
        if (len == cap) {
            float *q = realloc(buf, 2 * cap * sizeof(float));
            if (!q) break;
            buf = q;
            cap *= 2;
        }
        size_t k = fread(buf + len, sizeof(float), cap - len, p);
        if (k == 0) break;
        len += k;
    }
    int rc = pclose(p);
    if (rc != 0 || len == 0) {
        free(buf);
        return NULL;
    }
    *n = len;
    return buf;
}

static void test_pcm_vs_ffmpeg(const char *root)
{
    static const char *files[] = {"speech.wav", "speech.flac", "speech.mp3", "speech.opus",
                                  "speech_vorbis.ogg", "speech.m4a", "speech.webm",
                                  "speech_stereo22k.flac"};
    if (system("ffmpeg -version >/dev/null 2>&1") != 0) {
        printf("SKIP pcm-vs-ffmpeg: no ffmpeg command\n");
        return;
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/samples/media/%s", root, files[i]);
        size_t nb, nref = 0;
        uint8_t *buf = media_read_file(path, &nb);
        float *ref = ffmpeg_pcm(path, &nref);
        TEST_CHECK_MSG(buf && ref, "%s: read or ffmpeg failed", path);
        if (!buf || !ref) {
            free(buf);
            free(ref);
            continue;
        }
        ey_audio a;
        ey_err e = ey_audio_decode(buf, nb, 16000, NULL, &a);
        TEST_CHECK_MSG(e == EY_OK, "%s: %s: %s", files[i], ey_strerror(e), ey_err_detail());
        if (!e) {
            size_t m = a.n_samples < nref ? a.n_samples : nref;
            double max_err = 0, se = 0, sr = 0;
            for (size_t k = 0; k < m; k++) {
                double d = fabs((double)a.pcm[k] - ref[k]);
                if (d > max_err) max_err = d;
                se += d * d;
                sr += (double)ref[k] * ref[k];
            }
            const int lossless = strstr(files[i], ".wav") || strstr(files[i], "speech.flac");
            TEST_CHECK_MSG(a.n_samples == nref, "%s: %zu samples, ffmpeg %zu", files[i], a.n_samples, nref);
            TEST_CHECK_MSG(max_err <= (lossless ? 0.0 : 1e-4), "%s: max |diff| %.3g vs ffmpeg", files[i],
                           max_err);
            TEST_CHECK(a.sample_rate == 16000 && a.src_channels >= 1 && a.src_sample_rate >= 8000);
            printf("pcm %-24s %-10s %-10s %6u Hz %u ch  %zu samples (ffmpeg %zu)  max|diff| %.3g  "
                   "SNR %.1f dB\n",
                   files[i], a.container, a.codec, a.src_sample_rate, a.src_channels, a.n_samples, nref,
                   max_err, se > 0 ? 10 * log10(sr / se) : INFINITY);
        }
        ey_audio_free(&a);
        free(buf);
        free(ref);
    }
}

static void test_limits(const char *root)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/samples/media/speech.flac", root);
    size_t nb;
    uint8_t *buf = media_read_file(path, &nb);
    TEST_CHECK(buf != NULL);
    if (!buf) return;
    ey_audio_limits lim;
    ey_audio a;
    ey_audio_limits_default(&lim);
    lim.max_bytes = nb - 1;
    TEST_CHECK(ey_audio_decode(buf, nb, 16000, &lim, &a) == EY_ERR_LIMIT && a.pcm == NULL);
    ey_audio_limits_default(&lim);
    lim.max_duration_s = 1.0;
    TEST_CHECK(ey_audio_decode(buf, nb, 16000, &lim, &a) == EY_ERR_LIMIT);
    TEST_CHECK(strstr(ey_err_detail(), "duration") || strstr(ey_err_detail(), "longer"));
    ey_audio_limits_default(&lim);
    lim.max_sample_rate = 8000;
    TEST_CHECK(ey_audio_decode(buf, nb, 16000, &lim, &a) == EY_ERR_LIMIT);
    TEST_CHECK(ey_audio_decode(buf, nb, 5000, NULL, &a) == EY_ERR_ARG);
    TEST_CHECK(ey_audio_decode(buf, 0, 16000, NULL, &a) == EY_ERR_FORMAT);
    /* Keep the source rate. */
    TEST_CHECK(ey_audio_decode(buf, nb, EY_AUDIO_RATE_SOURCE, NULL, &a) == EY_OK &&
               a.sample_rate == 16000 && a.n_samples > 16000);
    ey_audio_free(&a);
    free(buf);
    snprintf(path, sizeof path, "%s/samples/media/speech_stereo22k.flac", root);
    buf = media_read_file(path, &nb);
    TEST_CHECK(buf && ey_audio_decode(buf, nb, EY_AUDIO_RATE_SOURCE, NULL, &a) == EY_OK &&
               a.sample_rate == 22050 && a.src_channels == 2);
    ey_audio_free(&a);
    TEST_CHECK(buf && ey_audio_decode(buf, nb, 48000, NULL, &a) == EY_OK && a.sample_rate == 48000);
    ey_audio_free(&a);
    free(buf);
}

/* Best normalised cross-correlation over lags 0..max_lag (codec delay). */
static double best_corr(const float *a, size_t na, const float *b, size_t nb, int max_lag)
{
    double best = -1;
    for (int lag = 0; lag <= max_lag; lag++) {
        double sab = 0, saa = 0, sbb = 0;
        for (size_t i = 0; i + (size_t)lag < nb && i < na; i++) {
            sab += (double)a[i] * b[i + lag];
            saa += (double)a[i] * a[i];
            sbb += (double)b[i + lag] * b[i + lag];
        }
        double c = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
        if (c > best) best = c;
    }
    return best;
}

static void test_encode(void)
{
    const uint32_t rate = 16000;
    const size_t n = rate; /* 1 s */
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 0.4f * sinf(2.0f * (float)M_PI * 440.0f * (float)i / rate);
    static const struct { ey_audio_codec c; uint32_t out_rate; const char *magic; size_t moff; } cs[] = {
        {EY_AUDIO_CODEC_WAV, 16000, "WAVE", 8},
        {EY_AUDIO_CODEC_WAV, 22050, "WAVE", 8},
        {EY_AUDIO_CODEC_FLAC, 16000, "fLaC", 0},
        {EY_AUDIO_CODEC_MP3, 16000, NULL, 0},
        {EY_AUDIO_CODEC_MP3, 44100, NULL, 0},
        {EY_AUDIO_CODEC_OPUS, 48000, "OggS", 0},
        {EY_AUDIO_CODEC_OPUS, 16000, "OggS", 0},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        uint8_t *out = NULL;
        size_t len = 0;
        ey_err e = ey_audio_encode(x, n, rate, cs[i].c, cs[i].out_rate, 0, &out, &len);
        const char *name = ey_audio_codec_name(cs[i].c);
        if (e == EY_ERR_UNSUPPORTED && cs[i].c == EY_AUDIO_CODEC_MP3) {
            printf("SKIP encode mp3: %s\n", ey_err_detail());
            continue;
        }
        TEST_CHECK_MSG(e == EY_OK && len > 0, "encode %s @%u: %s: %s", name, cs[i].out_rate,
                       ey_strerror(e), ey_err_detail());
        if (e) continue;
        if (cs[i].magic)
            TEST_CHECK_MSG(len > cs[i].moff + 4 && !memcmp(out + cs[i].moff, cs[i].magic, 4),
                           "%s: bad magic", name);
        ey_audio a;
        e = ey_audio_decode(out, len, 16000, NULL, &a);
        TEST_CHECK_MSG(e == EY_OK, "decode back %s: %s", name, ey_err_detail());
        if (!e) {
            double dur = (double)a.n_samples / 16000.0;
            TEST_CHECK_MSG(fabs(dur - 1.0) <= 0.08, "%s @%u: decoded %.3f s", name, cs[i].out_rate, dur);
            TEST_CHECK(a.src_sample_rate == (cs[i].c == EY_AUDIO_CODEC_OPUS ? 48000u : cs[i].out_rate));
            double c = best_corr(x + 2000, 8000, a.pcm + 2000, a.n_samples > 2000 ? a.n_samples - 2000 : 0,
                                 600);
            TEST_CHECK_MSG(c > 0.9, "%s: correlation %.3f", name, c);
            if (cs[i].c == EY_AUDIO_CODEC_FLAC || (cs[i].c == EY_AUDIO_CODEC_WAV && cs[i].out_rate == rate)) {
                double max_err = 0;
                for (size_t k = 0; k < n && k < a.n_samples; k++)
                    max_err = fmax(max_err, fabs((double)a.pcm[k] - x[k]));
                TEST_CHECK_MSG(a.n_samples == n && max_err <= 1.0 / 32768 + 1e-7,
                               "%s: lossless round trip max |diff| %.3g, %zu samples", name, max_err,
                               a.n_samples);
            }
            printf("encode %-5s @%5u Hz: %6zu bytes, decoded %.3f s, correlation %.4f\n", name,
                   cs[i].out_rate, len, dur, c);
        }
        ey_audio_free(&a);
        free(out);
    }
    uint8_t *out = NULL;
    size_t len = 0;
    TEST_CHECK(ey_audio_encode(x, n, rate, EY_AUDIO_CODEC_OPUS, 44100, 0, &out, &len) == EY_ERR_ARG);
    TEST_CHECK(ey_audio_encode(x, n, 0, EY_AUDIO_CODEC_WAV, 0, 0, &out, &len) == EY_ERR_ARG);
    TEST_CHECK(ey_audio_encode(x, n, rate, (ey_audio_codec)42, 0, 0, &out, &len) == EY_ERR_ARG);
    TEST_CHECK(out == NULL);
    /* Empty input still gives a valid (empty) WAV; NaN/out-of-range samples are clipped. */
    TEST_CHECK(ey_audio_encode(NULL, 0, rate, EY_AUDIO_CODEC_WAV, 0, 0, &out, &len) == EY_OK && len >= 44);
    free(out);
    x[0] = NAN;
    x[1] = 7.0f;
    TEST_CHECK(ey_audio_encode(x, n, rate, EY_AUDIO_CODEC_FLAC, 0, 0, &out, &len) == EY_OK);
    free(out);
    TEST_CHECK(ey_audio_codec_from_name("FLAC") == EY_AUDIO_CODEC_FLAC &&
               ey_audio_codec_from_name("ogg") == EY_AUDIO_CODEC_OPUS &&
               ey_audio_codec_from_name("aiff") == -1);
    free(x);
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    ey_audio_quiet_ffmpeg_log();
    test_mel_parity(root);
    test_pcm_vs_ffmpeg(root);
    test_limits(root);
    test_encode();
    return test_result();
}
