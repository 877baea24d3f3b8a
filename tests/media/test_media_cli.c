/* `eyrie probe` / `eyrie convert-audio` functions (argv[1] = source root):
 * exit codes 0 / 1 (bad input) / 2 (bad arguments), and a conversion that
 * decodes back to the same duration. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "media_fixture.h"
#include "modalities/audio/ey_audio.h"
#include "modalities/media_cli.h"
#include "test.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    char jpg[1024], png[1024], wav[1024], mp3[1024], bad[1024];
    snprintf(jpg, sizeof jpg, "%s/samples/media/photo.jpg", root);
    snprintf(png, sizeof png, "%s/samples/media/png_palette.png", root);
    snprintf(wav, sizeof wav, "%s/samples/media/speech.wav", root);
    snprintf(mp3, sizeof mp3, "%s/samples/media/speech.mp3", root);
    snprintf(bad, sizeof bad, "%s/tests/fixtures/media/corpus/jpeg_trunc_half.jpg", root);

    char *p1[] = {"probe", jpg};
    TEST_CHECK(ey_cli_probe(ARGC(p1), p1) == 0);
    char *p2[] = {"probe", jpg, "--json", "--vision", "qwen3vl"};
    TEST_CHECK(ey_cli_probe(ARGC(p2), p2) == 0);
    char *p3[] = {"probe", "--json", png};
    TEST_CHECK(ey_cli_probe(ARGC(p3), p3) == 0);
    char *p4[] = {"probe", mp3, "--n-mels", "80"};
    TEST_CHECK(ey_cli_probe(ARGC(p4), p4) == 0);
    char *p5[] = {"probe", wav, "--json"};
    TEST_CHECK(ey_cli_probe(ARGC(p5), p5) == 0);
    char *p6[] = {"probe", bad};
    TEST_CHECK(ey_cli_probe(ARGC(p6), p6) == 1);
    char *p7[] = {"probe", "/nonexistent/file.jpg"};
    TEST_CHECK(ey_cli_probe(ARGC(p7), p7) == 1);
    char *p8[] = {"probe"};
    TEST_CHECK(ey_cli_probe(ARGC(p8), p8) == 2);
    char *p9[] = {"probe", jpg, "--bogus"};
    TEST_CHECK(ey_cli_probe(ARGC(p9), p9) == 2);
    char *p10[] = {"probe", jpg, "--n-mels", "81"};
    TEST_CHECK(ey_cli_probe(ARGC(p10), p10) == 2);
    char *p11[] = {"probe", jpg, "--vision", "llava"};
    TEST_CHECK(ey_cli_probe(ARGC(p11), p11) == 2);

    char dir[] = "/tmp/eyrie-media-cli-XXXXXX";
    TEST_CHECK(mkdtemp(dir) != NULL);
    static const char *exts[] = {"wav", "flac", "opus", "mp3", "ogg"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        char out[1200];
        snprintf(out, sizeof out, "%s/out.%s", dir, exts[i]);
        char *c[] = {"convert-audio", mp3, out};
        int rc = ey_cli_convert_audio(ARGC(c), c);
        TEST_CHECK_MSG(rc == 0, "convert-audio -> %s: rc %d", exts[i], rc);
        size_t n;
        uint8_t *buf = media_read_file(out, &n);
        ey_audio a;
        ey_err e = buf ? ey_audio_decode(buf, n, 16000, NULL, &a) : EY_ERR_IO;
        TEST_CHECK_MSG(e == EY_OK && a.n_samples > 50000 && a.n_samples < 70000,
                       "%s: decode back: %s %s", exts[i], ey_strerror(e), ey_err_detail());
        if (!e) ey_audio_free(&a);
        free(buf);
        unlink(out);
    }
    char out[1200];
    snprintf(out, sizeof out, "%s/out16k.opus", dir);
    char *c1[] = {"convert-audio", wav, out, "--rate", "16000", "--bitrate", "32000"};
    TEST_CHECK(ey_cli_convert_audio(ARGC(c1), c1) == 0);
    unlink(out);
    char *c2[] = {"convert-audio", wav, out, "--rate", "44100"};
    TEST_CHECK(ey_cli_convert_audio(ARGC(c2), c2) == 2); /* Opus cannot do 44.1k */
    char *c3[] = {"convert-audio", wav};
    TEST_CHECK(ey_cli_convert_audio(ARGC(c3), c3) == 2);
    snprintf(out, sizeof out, "%s/out.aiff", dir);
    char *c4[] = {"convert-audio", wav, out};
    TEST_CHECK(ey_cli_convert_audio(ARGC(c4), c4) == 2);
    snprintf(out, sizeof out, "%s/out.wav", dir);
    char *c5[] = {"convert-audio", bad, out};
    TEST_CHECK(ey_cli_convert_audio(ARGC(c5), c5) == 1);
    char *c6[] = {"convert-audio", wav, "/nonexistent-dir/x.wav"};
    TEST_CHECK(ey_cli_convert_audio(ARGC(c6), c6) == 1);
    unlink(out);
    rmdir(dir);
    return test_result();
}
