/* libFuzzer targets for the media front-ends. One source, three targets,
 * picked at compile time: -DEY_FUZZ_IMAGE (JPEG/PNG decode + Qwen2-VL
 * preprocessing), -DEY_FUZZ_AUDIO (FFmpeg decode from memory) and
 * -DEY_FUZZ_MEL (decode, then Whisper log-mel). Not part of the default
 * build: scripts/fuzz-media.sh builds them with clang -fsanitize=fuzzer,
 * address,undefined and runs them over tests/fixtures/media/corpus +
 * samples/media. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "modalities/audio/ey_audio.h"
#include "modalities/image/ey_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#if defined(EY_FUZZ_IMAGE)
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ey_image_limits lim;
    ey_image_limits_default(&lim);
    lim.max_pixels = 4u << 20; /* keep each run fast; limits are tested separately */
    lim.max_mem = 64u << 20;
    ey_image img;
    if (ey_image_decode(data, size, &lim, &img) == EY_OK) {
        ey_vision_prep_cfg cfg;
        ey_vision_prep_cfg_qwen2vl(&cfg);
        cfg.max_pixels = 28 * 28 * 16;
        ey_vision_patches p;
        if (ey_vision_preprocess(&img, &cfg, &p) == EY_OK) ey_vision_patches_free(&p);
        ey_image_free(&img);
    }
    return 0;
}
#elif defined(EY_FUZZ_AUDIO) || defined(EY_FUZZ_MEL)
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        ey_audio_quiet_ffmpeg_log();
        init = 1;
    }
    ey_audio_limits lim;
    ey_audio_limits_default(&lim);
    lim.max_duration_s = 60;
    ey_audio a;
    if (ey_audio_decode(data, size, 16000, &lim, &a) != EY_OK) return 0;
#if defined(EY_FUZZ_MEL)
    static ey_mel_ctx *mel;
    static float *out;
    if (!mel && ey_mel_init(&mel, 80) == EY_OK) out = malloc(80 * EY_MEL_N_FRAMES * sizeof(float));
    uint32_t real;
    if (mel && out) ey_mel_compute(mel, a.pcm, a.n_samples, out, &real);
#endif
    ey_audio_free(&a);
    return 0;
}
#else
#error "define EY_FUZZ_IMAGE, EY_FUZZ_AUDIO or EY_FUZZ_MEL"
#endif
