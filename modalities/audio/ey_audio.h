/* eyrie — audio front-end: decode untrusted audio bytes to 16 kHz mono float
 * PCM (FFmpeg, in memory), Whisper log-mel features, and encode float PCM to
 * WAV / FLAC / MP3 / Ogg Opus (FFmpeg, in memory).
 *
 * Decoding (audio_decode.c): any demuxer on a fixed allow-list (WAV, W64,
 * AIFF, CAF, AU, FLAC, MP3, Ogg Vorbis/Opus/FLAC, MP4/M4A/MOV with AAC/ALAC,
 * Matroska/WebM, ADTS AAC), read from a custom AVIOContext over the caller's
 * buffer (no temp files, no nested URLs). The best audio stream is decoded
 * with AV_EF_EXPLODE, downmixed and resampled by libswresample with its
 * default settings (the same as `ffmpeg -ac 1 -ar 16000`). Limits on encoded
 * size, channels, input rate and duration are checked from the headers where
 * they are declared and again while decoding, before each allocation grows.
 * A decode error, a stream that yields no samples, or a stream that stops
 * well short of the duration its container declares is EY_ERR_FORMAT.
 *
 * Log-mel (audio_mel.c) follows transformers' WhisperFeatureExtractor (numpy
 * path): pad/truncate to 30 s, reflect-pad 200, periodic Hann 400, hop 160,
 * |DFT|^2 (libavutil av_tx FFTs, Bluestein for n=400), Slaney mel filters to 8 kHz, log10 of
 * max(., 1e-10), floor at max - 8, (x + 4) / 4, last frame dropped.
 *
 * All functions are reentrant and keep no global state (FFmpeg's own log
 * level is process-wide; see ey_audio_quiet_ffmpeg_log). */
#ifndef EY_AUDIO_H
#define EY_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#include "common/ey_err.h"

#define EY_AUDIO_SAMPLE_RATE 16000

typedef struct ey_audio_limits {
    size_t max_bytes;        /* encoded input size */
    double max_duration_s;   /* decoded duration (declared and actual) */
    uint32_t max_channels;
    uint32_t max_sample_rate; /* input rate */
} ey_audio_limits;

/* Defaults: 64 MiB encoded, 20 minutes, 16 channels, 384 kHz. */
void ey_audio_limits_default(ey_audio_limits *lim);

typedef struct ey_audio {
    float *pcm;           /* (n_samples,) mono, out_rate Hz, malloc'd */
    size_t n_samples;
    uint32_t sample_rate; /* = the rate asked for */
    /* What the file said, for probe output. */
    char container[32];   /* demuxer short name, e.g. "wav", "ogg", "mov" */
    char codec[32];       /* e.g. "pcm_s16le", "mp3", "opus" */
    uint32_t src_sample_rate;
    uint32_t src_channels;
    double src_duration_s; /* decoded duration at the source rate */
    int64_t bit_rate;      /* container bit rate, 0 if unknown */
} ey_audio;

/* out_rate for ey_audio_decode: keep the source rate (clamped to
 * 8000..192000), e.g. for format conversion. */
#define EY_AUDIO_RATE_SOURCE UINT32_MAX

/* Decode bytes to mono float PCM at out_rate (0 = 16000; 8000..192000, or
 * EY_AUDIO_RATE_SOURCE).
 * lim NULL means defaults. On success *out owns out->pcm; on error *out is
 * zeroed. The caller keeps data. */
ey_err ey_audio_decode(const void *data, size_t n, uint32_t out_rate,
                       const ey_audio_limits *lim, ey_audio *out);
void ey_audio_free(ey_audio *a);

/* Quiets FFmpeg's global logger (AV_LOG_ERROR otherwise prints to stderr).
 * Process-wide: call once from main/test setup if wanted. */
void ey_audio_quiet_ffmpeg_log(void);

/* ---- Whisper log-mel ---- */

#define EY_MEL_N_FFT 400
#define EY_MEL_HOP 160
#define EY_MEL_CHUNK_SAMPLES 480000 /* 30 s at 16 kHz */
#define EY_MEL_N_FRAMES 3000

typedef struct ey_mel_ctx ey_mel_ctx; /* filters, window, FFT plan */

/* n_mels 80 (Whisper <= v2) or 128 (large-v3, Qwen2-Audio). */
ey_err ey_mel_init(ey_mel_ctx **ctx, int n_mels);
void ey_mel_free(ey_mel_ctx *ctx);
int ey_mel_n_mels(const ey_mel_ctx *ctx);

/* pcm: 16 kHz mono; n_samples may be anything (0 gives an all-silence
 * window). Longer input is truncated to 30 s. out: (n_mels, 3000) row-major
 * floats. *n_real_frames = ceil(min(n, 480000) / 160): the count of 1s in
 * the attention mask (frames [0, n_real) are 1, the rest 0). Not thread-safe
 * on one ctx (it holds scratch); use one ctx per thread. */
ey_err ey_mel_compute(ey_mel_ctx *ctx, const float *pcm, size_t n_samples,
                      float *out, uint32_t *n_real_frames);

/* ---- encoding ---- */

typedef enum ey_audio_codec {
    EY_AUDIO_CODEC_WAV = 0, /* RIFF WAVE, PCM s16le */
    EY_AUDIO_CODEC_FLAC,    /* native FLAC, 16-bit */
    EY_AUDIO_CODEC_MP3,     /* MPEG-1/2 layer III (libmp3lame if present) */
    EY_AUDIO_CODEC_OPUS,    /* Ogg Opus (libopus or FFmpeg's opus) */
} ey_audio_codec;

/* Parses "wav" / "flac" / "mp3" / "opus" / "ogg" (case-insensitive);
 * returns -1 if unknown. */
int ey_audio_codec_from_name(const char *name);
const char *ey_audio_codec_name(ey_audio_codec c);

/* Encodes mono float PCM (in_rate Hz, samples clipped to [-1, 1]) to c at
 * out_rate (0 = in_rate; Opus accepts 8000/12000/16000/24000/48000 and other
 * rates are refused with EY_ERR_ARG). bit_rate 0 = codec default (mp3 128k,
 * opus 64k). *out is malloc'd, *out_len its size; capped at 256 MiB.
 * EY_ERR_UNSUPPORTED if FFmpeg lacks the encoder. */
ey_err ey_audio_encode(const float *pcm, size_t n_samples, uint32_t in_rate,
                       ey_audio_codec c, uint32_t out_rate, int64_t bit_rate,
                       uint8_t **out, size_t *out_len);

#endif
